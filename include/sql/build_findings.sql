-- Rebuild the security findings of the events delivered on %(day)s (params.all_days: of every
-- event in the table), as build_summaries.sql does the day's part of the summaries: the day's
-- findings are deleted and found again in the day's own partition, in one scan that tests every
-- control at once, so reruns, late files and retention never double count or leave stale rows.
--
-- params.table: validated identifier. params.controls: [{number, condition}], each condition a
-- WHERE expression compiled by cloudtrail_mysql.findings from the control's filter pattern, its
-- values bound as %(cN_...)s parameters; the control's id is %(cN_id)s.
-- Each event counts once, as in the summaries: of an event delivered twice (same time and eventID),
-- only the copy in the file loaded first (the lowest file id, then record) is a finding, whichever
-- delivery day holds it.
DROP TEMPORARY TABLE IF EXISTS findings_candidates;
DROP TEMPORARY TABLE IF EXISTS findings_matches;

{% if params.all_days %}
DELETE FROM `{{ params.table }}_findings`;
{% else %}
DELETE FROM `{{ params.table }}_findings` WHERE deliveryDay = %(day)s;
{% endif %}

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

-- A copy loaded first in another delivery day makes this one no finding: looked up by (time, eventID)
-- for the few matching events only.
{% if not params.all_days %}
DELETE c FROM findings_candidates c
WHERE c.eventID IS NOT NULL
  AND EXISTS (SELECT 1 FROM `{{ params.table }}` o
              WHERE o.eventTimestamp = c.eventTime AND o.eventID = c.eventID AND o.sourceFileId < c.sourceFileId
                AND o.deliveryDay <> c.deliveryDay);
{% endif %}

-- Copies among the rest (the same delivery day, or every day with all_days): the first is kept.
CREATE TEMPORARY TABLE findings_matches (PRIMARY KEY (sourceFileId, recordIndex)) AS
SELECT *
FROM (
    SELECT c.*,
           CASE WHEN c.eventID IS NULL THEN 1
                ELSE ROW_NUMBER() OVER (PARTITION BY c.eventTime, c.eventID ORDER BY c.sourceFileId, c.recordIndex)
           END AS copy_number
    FROM findings_candidates c
) AS matched
WHERE copy_number = 1;

{% for control in params.controls %}
INSERT INTO `{{ params.table }}_findings`
    (event_day, control, sourceFileId, recordIndex, deliveryDay, eventTime, recipientAccountId, awsRegion, principal,
     sourceIPAddress, eventName, errorCode)
SELECT event_day, %(c{{ control.number }}_id)s, sourceFileId, recordIndex, deliveryDay, eventTime, recipientAccountId,
       awsRegion, principal, sourceIPAddress, eventName, errorCode
FROM findings_matches
WHERE matches_{{ control.number }} <> 0;
{% endfor %}

DROP TEMPORARY TABLE findings_matches;
DROP TEMPORARY TABLE findings_candidates;
