{#- A fresh delivery day loaded into a table of its own, then swapped into its partition of the
    logs table (cloudtrail_mysql/staging.py), one macro each. table and stage are validated
    identifiers (the stage is <table>__day_YYYYMMDD), partition names are made from dates; every
    value is a bound %s parameter. -#}

{% macro partition_has_rows(table, partition) -%}
SELECT 1 FROM `{{ table }}` PARTITION (`{{ partition }}`) LIMIT 1
{%- endmacro %}

{% macro table_has_rows(table) -%}
SELECT 1 FROM `{{ table }}` LIMIT 1
{%- endmacro %}

{% macro day_rows(table) -%}
SELECT COALESCE(SUM(row_count), 0) FROM `{{ table }}_files` WHERE delivery_day = %s AND status = 'loaded'
{%- endmacro %}

{% macro drop_table(table) -%}
DROP TABLE IF EXISTS `{{ table }}`
{%- endmacro %}

{#- The stage has the logs table's columns and primary key, no partitions and no secondary index:
    rows go in at the cost of appending them, and the indexes are built once, sorted, at the end. -#}
{% macro create_stage(table, stage) -%}
CREATE TABLE `{{ stage }}` LIKE `{{ table }}`
{%- endmacro %}

{% macro remove_partitioning(stage) -%}
ALTER TABLE `{{ stage }}` REMOVE PARTITIONING
{%- endmacro %}

{#- indexes: (name, unique, [(column, prefix length or None)]) -#}
{% macro drop_indexes(stage, indexes) -%}
ALTER TABLE `{{ stage }}` {% for name, _, _ in indexes %}DROP INDEX `{{ name }}`{% if not loop.last %}, {% endif %}{% endfor %}
{%- endmacro %}

{% macro add_indexes(stage, indexes) -%}
ALTER TABLE `{{ stage }}` {% for name, unique, columns in indexes %}ADD {% if unique %}UNIQUE {% endif %}INDEX `{{ name }}` ({% for column, prefix in columns %}`{{ column }}`{% if prefix %}({{ prefix }}){% endif %}{% if not loop.last %}, {% endif %}{% endfor %}){% if not loop.last %}, {% endif %}{% endfor %}
{%- endmacro %}

{#- Secondary indexes as the server describes them, one row per column in order. -#}
{% macro secondary_indexes() -%}
SELECT index_name, non_unique, column_name, sub_part, index_type
FROM information_schema.statistics
WHERE table_schema = DATABASE() AND table_name = %s AND index_name <> 'PRIMARY'
ORDER BY index_name, seq_in_index
{%- endmacro %}

{% macro table_exists() -%}
SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = %s
{%- endmacro %}

{% macro add_marker(table) -%}
INSERT INTO `{{ table }}_staged_days` (delivery_day, stage_table, closing, staged_at)
VALUES (%s, %s, 0, UTC_TIMESTAMP())
{%- endmacro %}

{% macro markers(table) -%}
SELECT delivery_day, stage_table FROM `{{ table }}_staged_days` ORDER BY delivery_day
{%- endmacro %}

{#- Read in each file's transaction, the row locked in share mode until its commit: closing the day
    waits for the files loading into the stage, and files after it wait until the day is swapped in. -#}
{% macro stage_of(table) -%}
SELECT stage_table, closing FROM `{{ table }}_staged_days` WHERE delivery_day = %s LOCK IN SHARE MODE
{%- endmacro %}

{% macro close_day(table) -%}
UPDATE `{{ table }}_staged_days` SET closing = 1 WHERE delivery_day = %s
{%- endmacro %}

{% macro remove_marker(table) -%}
DELETE FROM `{{ table }}_staged_days` WHERE delivery_day = %s
{%- endmacro %}

{#- Both are checked first: the partition is empty and the stage has the table's structure (MySQL
    also checks that every row belongs to the partition). -#}
{% macro exchange(table, partition, stage) -%}
ALTER TABLE `{{ table }}` EXCHANGE PARTITION `{{ partition }}` WITH TABLE `{{ stage }}`
{%- endmacro %}

{#- Where the swap is refused (the structures differ, or the server cannot check the rows): the
    day's rows are copied, a range of file ids (bound) at a time, then deleted from the stage. -#}
{% macro first_file(stage) -%}
SELECT MIN(sourceFileId) FROM `{{ stage }}`
{%- endmacro %}

{% macro copy_rows(table, stage) -%}
INSERT INTO `{{ table }}` SELECT * FROM `{{ stage }}` WHERE sourceFileId BETWEEN %s AND %s
{%- endmacro %}

{% macro delete_files(stage) -%}
DELETE FROM `{{ stage }}` WHERE sourceFileId BETWEEN %s AND %s
{%- endmacro %}
