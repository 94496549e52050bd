{#- Day partitions of the logs table (cloudtrail_mysql/partitions.py), one macro each.
    table is a validated identifier, partition names are made by partitions.py from dates
    (p20170410: the day 2017-04-10; g20170411: empty days from 2017-04-11 on); every value is a
    bound %s parameter. RANGE COLUMNS bounds are exclusive upper bounds: a partition holds the days
    from the previous partition's bound up to (not including) its own. -#}

{% macro list_partitions() -%}
SELECT partition_name, partition_description
FROM information_schema.partitions
WHERE table_schema = DATABASE() AND table_name = %s AND partition_name IS NOT NULL
ORDER BY partition_ordinal_position
{%- endmacro %}

{% macro partition_list(partitions) -%}
({% for name in partitions %}PARTITION `{{ name }}` VALUES LESS THAN (%s){% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}

{#- New days after the last partition: cheap, nothing is copied. -#}
{% macro add_partitions(table, partitions) -%}
ALTER TABLE `{{ table }}` ADD PARTITION {{ partition_list(partitions) }}
{%- endmacro %}

{#- Splits or merges consecutive partitions; rows are copied, so partitions.py only ever
    reorganizes empty ones (gaps, or days that retention has just truncated). -#}
{% macro reorganize_partitions(table, old, partitions) -%}
ALTER TABLE `{{ table }}` REORGANIZE PARTITION {% for name in old %}`{{ name }}`{% if not loop.last %}, {% endif %}{% endfor %} INTO {{ partition_list(partitions) }}
{%- endmacro %}

{% macro truncate_partitions(table, names) -%}
ALTER TABLE `{{ table }}` TRUNCATE PARTITION {% for name in names %}`{{ name }}`{% if not loop.last %}, {% endif %}{% endfor %}
{%- endmacro %}

{% macro get_lock() -%}
SELECT GET_LOCK(%s, %s)
{%- endmacro %}

{% macro release_lock() -%}
SELECT RELEASE_LOCK(%s)
{%- endmacro %}

{% macro dropped_days(table) -%}
SELECT delivery_day FROM `{{ table }}_dropped_days`
{%- endmacro %}

{#- Retention: the delivery days before the cutoff, with what the manifest says they hold. -#}
{% macro days_before(table) -%}
SELECT delivery_day, COUNT(*), COALESCE(SUM(row_count), 0)
FROM `{{ table }}_files`
WHERE delivery_day < %s
GROUP BY delivery_day
ORDER BY delivery_day
{%- endmacro %}

{#- Recorded before anything is emptied (first count kept on a rerun): loaders of those days then
    find them dropped, and this insert waits for the ones already loading a file of them. -#}
{% macro record_dropped_day(table) -%}
INSERT INTO `{{ table }}_dropped_days` (delivery_day, files, events, dropped_at)
VALUES (%s, %s, %s, UTC_TIMESTAMP())
ON DUPLICATE KEY UPDATE delivery_day = delivery_day
{%- endmacro %}

{% macro delete_manifest_before(table) -%}
DELETE FROM `{{ table }}_files` WHERE delivery_day < %s
{%- endmacro %}

{% macro delete_summaries_before(table) -%}
DELETE FROM `{{ table }}` WHERE event_day < %s
{%- endmacro %}

{% macro delete_parts_before(table) -%}
DELETE FROM `{{ table }}` WHERE delivery_day < %s OR event_day < %s
{%- endmacro %}

{% macro delete_days_before(table) -%}
DELETE FROM `{{ table }}` WHERE delivery_day < %s
{%- endmacro %}

{% macro loaded_days(table) -%}
SELECT DISTINCT delivery_day FROM `{{ table }}_files`
WHERE status = 'loaded' AND delivery_day IS NOT NULL
ORDER BY delivery_day
{%- endmacro %}
