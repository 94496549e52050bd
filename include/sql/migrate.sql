{#- Converting a logs table made before day partitions (cloudtrail_mysql/migrate.py), one macro each.
    Identifiers are validated; values are bound %s parameters. -#}

{% macro add_manifest_columns(table) -%}
ALTER TABLE `{{ table }}_files` ADD COLUMN first_event DATETIME NULL AFTER seconds,
    ADD COLUMN last_event DATETIME NULL AFTER first_event
{%- endmacro %}

{% macro file_id_bounds(table) -%}
SELECT MIN(sourceFileId), MAX(sourceFileId) FROM `{{ table }}`
{%- endmacro %}

{#- One slice of files at a time, so that no transaction holds the whole table. The principal is
    computed as the loader computes it: userIdentity.arn, else .invokedBy, else .type. -#}
{% macro copy_rows(old, new, columns) -%}
INSERT INTO `{{ new }}` ({% for column in columns %}`{{ column }}`, {% endfor %}principal, deliveryDay)
SELECT {% for column in columns %}l.`{{ column }}`, {% endfor %}
       LEFT(CASE WHEN JSON_VALID(l.userIdentity) AND JSON_TYPE(l.userIdentity) = 'OBJECT' THEN
                COALESCE(JSON_UNQUOTE(JSON_EXTRACT(l.userIdentity, '$.arn')),
                         JSON_UNQUOTE(JSON_EXTRACT(l.userIdentity, '$.invokedBy')),
                         JSON_UNQUOTE(JSON_EXTRACT(l.userIdentity, '$.type')))
            ELSE l.userIdentity END, 512),
       COALESCE(f.delivery_day, DATE '1970-01-01')
FROM `{{ old }}` l
LEFT JOIN `{{ old }}_files` f ON f.id = l.sourceFileId
WHERE l.sourceFileId BETWEEN %s AND %s
{%- endmacro %}

{% macro count_rows(table) -%}
SELECT COUNT(*) FROM `{{ table }}`
{%- endmacro %}

{% macro index_names(table) -%}
SELECT DISTINCT index_name FROM information_schema.statistics
WHERE table_schema = DATABASE() AND table_name = '{{ table }}' AND index_name <> 'PRIMARY'
{%- endmacro %}

{% macro manifest_days(table) -%}
SELECT DISTINCT delivery_day FROM `{{ table }}_files`
{%- endmacro %}

{% macro file_event_bounds(table, rows_table) -%}
UPDATE `{{ table }}_files` f
JOIN (SELECT sourceFileId, MIN(eventTimestamp) AS first_event, MAX(eventTimestamp) AS last_event
      FROM `{{ rows_table }}` GROUP BY sourceFileId) bounds ON bounds.sourceFileId = f.id
SET f.first_event = bounds.first_event, f.last_event = bounds.last_event
{%- endmacro %}

{% macro swap(table, new, old) -%}
RENAME TABLE `{{ table }}` TO `{{ old }}`, `{{ new }}` TO `{{ table }}`
{%- endmacro %}

{% macro drop_table(table) -%}
DROP TABLE IF EXISTS `{{ table }}`
{%- endmacro %}
