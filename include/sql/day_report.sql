{#- The day report's queries (report_day task), one macro each; the day is a bound value. -#}

{% macro files_by_status(table) -%}
SELECT status, COUNT(*) AS files, COALESCE(SUM(row_count), 0) AS row_total
FROM `{{ table }}_files`
WHERE delivery_day = %(day)s
GROUP BY status
ORDER BY status
{%- endmacro %}

{#- Loaded files that replaced the rows of an earlier version (the note writer.replaced_note leaves). -#}
{% macro replaced_files(table) -%}
SELECT source, error
FROM `{{ table }}_files`
WHERE delivery_day = %(day)s AND status = 'loaded' AND error LIKE 'replaced %%'
ORDER BY source
{%- endmacro %}

{% macro events_by_hour(table) -%}
SELECT event_hour, event_source, SUM(events)
FROM `{{ table }}_daily_events`
WHERE event_day = %(day)s
GROUP BY event_hour, event_source
{%- endmacro %}

{% macro top_errors(table) -%}
SELECT event_source, error_code, events FROM `{{ table }}_daily_errors`
WHERE event_day = %(day)s ORDER BY events DESC, event_source, error_code LIMIT 20
{%- endmacro %}

{% macro top_principals(table) -%}
SELECT principal, events, errors FROM `{{ table }}_daily_principals`
WHERE event_day = %(day)s ORDER BY events DESC, principal LIMIT 20
{%- endmacro %}

{% macro top_source_ips(table) -%}
SELECT source_ip, events, errors FROM `{{ table }}_daily_source_ips`
WHERE event_day = %(day)s ORDER BY events DESC, source_ip LIMIT 20
{%- endmacro %}

{#- The day's findings: each control's first %(limit)s rows by time, with the control's total. -#}
{% macro findings(table) -%}
SELECT control, findings, eventTime, recipientAccountId, awsRegion, principal, sourceIPAddress, eventName,
       errorCode, sourceFileId, recordIndex
FROM (
    SELECT f.*,
           ROW_NUMBER() OVER (PARTITION BY control ORDER BY eventTime, sourceFileId, recordIndex) AS position,
           COUNT(*) OVER (PARTITION BY control) AS findings
    FROM `{{ table }}_findings` f
    WHERE event_day = %(day)s
) AS ranked
WHERE position <= %(limit)s
ORDER BY control, position
{%- endmacro %}

{#- Findings per control of one delivery day's events (or, with every_day, of the whole table). -#}
{% macro findings_per_control(table, every_day) -%}
SELECT control, COUNT(*) FROM `{{ table }}_findings`
{% if not every_day %}WHERE deliveryDay = %(day)s{% endif %}
GROUP BY control
{%- endmacro %}

{#- The controls the day's part of the findings was built for (build_summaries.sql), if any. #}
{% macro findings_part_controls(table) -%}
SELECT controls FROM `{{ table }}_parts_findings_built` WHERE delivery_day = %(day)s
{%- endmacro %}
