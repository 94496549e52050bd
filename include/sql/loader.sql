{#- The statements of the file loader (cloudtrail_mysql/writer.py), one macro each.
    table is a validated identifier; every value is a bound %s parameter. -#}

{% macro file_state(table) -%}
SELECT status, etag, size, source FROM `{{ table }}_files` WHERE id = %s
{%- endmacro %}

{% macro find_files(table, count) -%}
SELECT file_hash, status, etag, size FROM `{{ table }}_files`
WHERE file_hash IN ({% for _ in range(count) %}%s{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}

{#- Claims the file's manifest row (inserted, or the existing one locked) and returns its id through
    LAST_INSERT_ID. Claiming by insert, not SELECT ... FOR UPDATE, avoids gap-lock deadlocks between
    workers registering different files. A new row says 'loading' only inside this transaction.
    Nothing is claimed (id 0) for a file of a delivery day that retention dropped: reading
    _dropped_days here also makes retention wait for this transaction before it drops the day. -#}
{% macro claim_file(table) -%}
INSERT INTO `{{ table }}_files` (file_hash, file_name, source, etag, size, delivery_day, status, updated_at)
SELECT %s, %s, %s, %s, %s, %s, 'loading', UTC_TIMESTAMP(6) FROM DUAL
WHERE NOT EXISTS (SELECT 1 FROM `{{ table }}_dropped_days` WHERE delivery_day = %s)
ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(`{{ table }}_files`.id)
{%- endmacro %}

{#- The manifest row of a file the manifest had no row for when the load began: a plain insert, one
    round trip less than claim_file and file_state. A duplicate key means another loader has added
    the file since; the writer then claims it with claim_file. No row (0 rows) for a dropped day. -#}
{% macro add_file(table) -%}
INSERT INTO `{{ table }}_files` (file_hash, file_name, source, etag, size, delivery_day, status, updated_at)
SELECT %s, %s, %s, %s, %s, %s, 'loading', UTC_TIMESTAMP(6) FROM DUAL
WHERE NOT EXISTS (SELECT 1 FROM `{{ table }}_dropped_days` WHERE delivery_day = %s)
{%- endmacro %}

{% macro dropped_day(table) -%}
SELECT dropped_at FROM `{{ table }}_dropped_days` WHERE delivery_day = %s
{%- endmacro %}

{% macro delete_file_rows(table) -%}
DELETE FROM `{{ table }}` WHERE sourceFileId = %s
{%- endmacro %}

{% macro insert_rows(table, columns) -%}
INSERT INTO `{{ table }}` ({% for column in columns %}`{{ column }}`{% if not loop.last %}, {% endif %}{% endfor %}) VALUES ({% for _ in columns %}%s{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}

{#- The same rows as TSV (LOAD DATA's default escaping, \N for NULL), without the file's id and
    location: the statement sets those once (the server parses every byte of every line, so
    repeating them on each line costs). The file name and both values are bound. Tab, backslash
    and newline are written as hex literals: '\t' means two characters under the sql_mode
    NO_BACKSLASH_ESCAPES. -#}
{% macro load_data(table, columns, with_source_key, with_delivery_day) -%}
LOAD DATA LOCAL INFILE %s INTO TABLE `{{ table }}` CHARACTER SET utf8mb4
FIELDS TERMINATED BY X'09' ESCAPED BY X'5C' LINES TERMINATED BY X'0A'
({% for column in columns %}`{{ column }}`{% if not loop.last %}, {% endif %}{% endfor %})
SET sourceFileId = %s{% if with_source_key %}, sourceKey = %s{% endif %}{% if with_delivery_day %}, deliveryDay = %s{% endif %}
{%- endmacro %}

{#- rows_table: the logs table, or the stage its day loads into (staging.py).
    Bound: the file's id and its rows' deliveryDay (the bounds read one partition), row count, note
    (NULL, or how many rows of an earlier version the file replaced: writer.replaced_note), seconds,
    source, etag, size, delivery day, and the file's id again. The file's earliest and latest event
    tell build_summaries.sql which delivery days hold an event day's events. -#}
{% macro finish_file(table, rows_table) -%}
UPDATE `{{ table }}_files` f,
       (SELECT MIN(eventTimestamp) AS first_event, MAX(eventTimestamp) AS last_event
        FROM `{{ rows_table }}` WHERE sourceFileId = %s AND deliveryDay = %s) bounds
SET f.status = 'loaded', f.row_count = %s, f.error = %s, f.seconds = %s, f.source = %s, f.etag = %s,
    f.size = %s, f.delivery_day = %s, f.first_event = bounds.first_event, f.last_event = bounds.last_event,
    f.updated_at = UTC_TIMESTAMP(6)
WHERE f.id = %s
{%- endmacro %}

{% macro record_failure(table) -%}
INSERT INTO `{{ table }}_files` (file_hash, file_name, source, etag, size, delivery_day, status, error, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, 'failed', %s, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE
    error = VALUES(error),
    status = IF(status = 'loaded', status, 'failed'),
    updated_at = VALUES(updated_at)
{%- endmacro %}

{% macro max_allowed_packet() -%}
SELECT @@max_allowed_packet
{%- endmacro %}

{% macro server_version() -%}
SELECT VERSION()
{%- endmacro %}

{% macro existing_tables() -%}
SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()
{%- endmacro %}

{% macro table_columns() -%}
SELECT column_name, data_type, character_maximum_length, character_octet_length
FROM information_schema.columns
WHERE table_schema = DATABASE() AND table_name = %s
ORDER BY ordinal_position
{%- endmacro %}
