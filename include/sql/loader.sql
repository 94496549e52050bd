{#- The statements of the file loader (cloudtrail_mysql/writer.py), one macro each.
    table is a validated identifier; every value is a bound %s parameter. -#}

{% macro file_state(table) -%}
SELECT status, etag, size FROM `{{ table }}_files` WHERE id = %s
{%- endmacro %}

{% macro find_files(table, count) -%}
SELECT file_hash, status, etag, size FROM `{{ table }}_files`
WHERE file_hash IN ({% for _ in range(count) %}%s{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}

{#- Claims the file's manifest row (inserted, or the existing one locked) and returns its id through
    LAST_INSERT_ID. Claiming by insert, not SELECT ... FOR UPDATE, avoids gap-lock deadlocks between
    workers registering different files. A new row says 'loading' only inside this transaction. -#}
{% macro claim_file(table) -%}
INSERT INTO `{{ table }}_files` (file_hash, file_name, source, etag, size, delivery_day, status, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, 'loading', UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)
{%- endmacro %}

{#- The manifest row of a file the manifest had no row for when the load began: a plain insert, one
    round trip less than claim_file and file_state. A duplicate key means another loader has added
    the file since; the writer then claims it with claim_file. -#}
{% macro add_file(table) -%}
INSERT INTO `{{ table }}_files` (file_hash, file_name, source, etag, size, delivery_day, status, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, 'loading', UTC_TIMESTAMP(6))
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
{% macro load_data(table, columns, with_source_key) -%}
LOAD DATA LOCAL INFILE %s INTO TABLE `{{ table }}` CHARACTER SET utf8mb4
FIELDS TERMINATED BY X'09' ESCAPED BY X'5C' LINES TERMINATED BY X'0A'
({% for column in columns %}`{{ column }}`{% if not loop.last %}, {% endif %}{% endfor %})
SET sourceFileId = %s{% if with_source_key %}, sourceKey = %s{% endif %}
{%- endmacro %}

{% macro finish_file(table) -%}
UPDATE `{{ table }}_files`
SET status = 'loaded', row_count = %s, error = NULL, seconds = %s, source = %s, etag = %s, size = %s,
    updated_at = UTC_TIMESTAMP(6)
WHERE id = %s
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
