-- Rebuild the security findings of the events delivered on %(day)s (params.all_days: of every
-- event in the table): the day's findings are deleted and made again, so reruns, late files and
-- retention never double count or leave stale rows. params.from_parts: from the day's part of the
-- findings, which build_summaries.sql found in its scan of the day for the same controls; else in
-- a scan of the day's own partition (or of the table) that tests every control at once.
--
-- params.table: validated identifier. params.controls: [{number, condition}], each condition a
-- WHERE expression compiled by cloudtrail_mysql.findings from the control's filter pattern, its
-- values bound as %(cN_...)s parameters; the control's id is %(cN_id)s.
-- Each event counts once, as in the summaries: of an event delivered twice (same time and eventID),
-- only the copy in the file loaded first (the lowest file id, then record) counts, whichever
-- delivery day holds it; it is a finding when it matches.
{#- One INSERT per control into the findings, of the rows of ``source`` (whose delivery day is in
    the column ``delivery_day``) that the caller's condition for the control selects. #}
{% macro insert_findings(source, delivery_day) -%}
{% for control in params.controls %}
INSERT INTO `{{ params.table }}_findings`
    (event_day, control, sourceFileId, recordIndex, deliveryDay, eventTime, recipientAccountId, awsRegion, principal,
     sourceIPAddress, eventName, errorCode)
SELECT event_day, %(c{{ control.number }}_id)s, sourceFileId, recordIndex, {{ delivery_day }}, eventTime, recipientAccountId,
       awsRegion, principal, sourceIPAddress, eventName, errorCode
FROM {{ source }}
WHERE {{ caller(control) }};
{% endfor %}
{%- endmacro -%}
-- Read committed (this session only): a scan of the day then locks none of the rows it reads (the
-- shared locks of 14M rows overflow InnoDB's lock table, error 1206; see build_summaries.sql).
SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
{% if params.all_days %}
DELETE FROM `{{ params.table }}_findings`;
{% else %}
DELETE FROM `{{ params.table }}_findings` WHERE deliveryDay = %(day)s;
{% endif %}

{% if params.from_parts %}
{% call(control) insert_findings("`" ~ params.table ~ "_parts_findings`", "delivery_day") -%}
delivery_day = %(day)s AND controls_matched & {{ 2 ** (control.number - 1) }} <> 0
{%- endcall %}
{% else %}
DROP TEMPORARY TABLE IF EXISTS findings_candidates;

-- The events that match at least one control, with one flag per control (primary key: servers may
-- require one on every table).
CREATE TEMPORARY TABLE findings_candidates (PRIMARY KEY (sourceFileId, recordIndex)) AS
SELECT DATE(l.eventTimestamp) AS event_day,
       l.sourceFileId,
       l.recordIndex,
       l.deliveryDay,
       l.eventID,
       l.eventTimestamp AS eventTime,
       l.recipientAccountId,
       l.awsRegion,
       COALESCE(l.principal, '') AS principal,
       l.sourceIPAddress,
       l.eventName,
       l.errorCode
       {%- for control in params.controls %},
       COALESCE({{ control.condition }}, 0) AS matches_{{ control.number }}
       {%- endfor %}
FROM `{{ params.table }}` l
WHERE l.eventTimestamp IS NOT NULL{% if not params.all_days %} AND l.deliveryDay = %(day)s{% endif %}
  AND ({% for control in params.controls %}{{ control.condition }}{% if not loop.last %}
       OR {% endif %}{% else %}FALSE{% endfor %});

-- A copy of the event loaded before (a lower file id, then record; in any delivery day) is the one
-- that counts: looked up by (time, eventID) for the few matching events only.
DELETE c FROM findings_candidates c
WHERE c.eventID IS NOT NULL
  AND EXISTS (SELECT 1 FROM `{{ params.table }}` o
              WHERE o.eventTimestamp = c.eventTime AND o.eventID = c.eventID
                AND (o.sourceFileId < c.sourceFileId OR (o.sourceFileId = c.sourceFileId AND o.recordIndex < c.recordIndex)));

{% call(control) insert_findings("findings_candidates", "deliveryDay") -%}
matches_{{ control.number }} <> 0
{%- endcall %}

DROP TEMPORARY TABLE findings_candidates;
{% endif %}
