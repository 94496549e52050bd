-- Rebuild the security findings of every event day that the files delivered on %(day)s hold
-- (params.all_days: of every event day in the table), like build_summaries.sql: the touched days'
-- rows are deleted and found again from the logs table, so reruns, late files and retention never
-- double count or leave stale rows. One scan of the days' events tests every control at once.
--
-- params.table: validated identifier. params.controls: [{number, condition}], each condition a
-- WHERE expression compiled by cloudtrail_mysql.findings from the control's filter pattern, its
-- values bound as %(cN_...)s parameters; the control's id is %(cN_id)s.
-- Each event counts once: of an event delivered twice (same eventID), the first copy is kept, as
-- in the summaries. findings_days is left for the caller (to count the rebuilt days' findings).
DROP TEMPORARY TABLE IF EXISTS findings_days;
DROP TEMPORARY TABLE IF EXISTS findings_matches;

-- >>> WHICH EVENT DAYS ARE TOUCHED, AND WHICH ROWS ARE READ (one place: swap it when the logs
-- table gets its deliveryDay partitions). findings_days holds the event days to rebuild;
-- findings_rows: the FROM and WHERE that read those days' rows of the logs table, as `l`.
{% if params.all_days %}
-- Every event day in the table, and every day with findings (whose events may be gone since).
CREATE TEMPORARY TABLE findings_days (event_day DATE NOT NULL PRIMARY KEY) AS
SELECT DATE(l.eventTimestamp) AS event_day
FROM `{{ params.table }}` l
WHERE l.eventTimestamp IS NOT NULL
UNION
SELECT event_day FROM `{{ params.table }}_findings`;
{% else %}
CREATE TEMPORARY TABLE findings_days (event_day DATE NOT NULL PRIMARY KEY) AS
SELECT DISTINCT DATE(l.eventTimestamp) AS event_day
FROM `{{ params.table }}_files` f
JOIN `{{ params.table }}` l ON l.sourceFileId = f.id
WHERE f.delivery_day = %(day)s AND f.status = 'loaded' AND l.eventTimestamp IS NOT NULL;
{% endif %}
-- The days' rows: a range on eventTimestamp (its index, once create_indexes.sql has run) cut to
-- the touched days. The bounds are read first: a temporary table may appear once per query.
SET @findings_first_day = (SELECT MIN(event_day) FROM findings_days);
SET @findings_last_day = (SELECT MAX(event_day) FROM findings_days);
{%- set findings_rows %}
    `{{ params.table }}` l
    WHERE l.eventTimestamp >= @findings_first_day AND l.eventTimestamp < @findings_last_day + INTERVAL 1 DAY
      AND DATE(l.eventTimestamp) IN (SELECT event_day FROM findings_days)
{%- endset %}
-- <<< END OF THE BLOCK

DELETE f FROM `{{ params.table }}_findings` f JOIN findings_days t ON f.event_day = t.event_day;

-- The events that match at least one control, with one flag per control (primary key: servers may
-- require one on every table).
CREATE TEMPORARY TABLE findings_matches (row_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY) AS
SELECT *
FROM (
    SELECT DATE(l.eventTimestamp) AS event_day,
           l.sourceFileId,
           l.recordIndex,
           l.eventTimestamp AS eventTime,
           l.recipientAccountId,
           l.awsRegion,
           -- principal as build_summaries.sql computes it (a principal column filled at load time can replace it)
           LEFT(CASE WHEN JSON_VALID(l.userIdentity) THEN
                    COALESCE(JSON_UNQUOTE(JSON_EXTRACT(l.userIdentity, '$.arn')),
                             JSON_UNQUOTE(JSON_EXTRACT(l.userIdentity, '$.invokedBy')),
                             JSON_UNQUOTE(JSON_EXTRACT(l.userIdentity, '$.type')), '')
                ELSE COALESCE(l.userIdentity, '') END, 512) AS principal,
           l.sourceIPAddress,
           l.eventName,
           l.errorCode,
           {%- for control in params.controls %}
           COALESCE({{ control.condition }}, 0) AS matches_{{ control.number }},
           {%- endfor %}
           CASE WHEN l.eventID IS NULL THEN 1
                ELSE ROW_NUMBER() OVER (PARTITION BY DATE(l.eventTimestamp), l.eventID ORDER BY l.sourceFileId, l.recordIndex)
           END AS copy_number
    FROM {{ findings_rows }}
      AND ({% for control in params.controls %}{{ control.condition }}{% if not loop.last %}
       OR {% endif %}{% else %}FALSE{% endfor %})
) AS matched
WHERE copy_number = 1;

{% for control in params.controls %}
INSERT INTO `{{ params.table }}_findings`
    (event_day, control, sourceFileId, recordIndex, eventTime, recipientAccountId, awsRegion, principal,
     sourceIPAddress, eventName, errorCode)
SELECT event_day, %(c{{ control.number }}_id)s, sourceFileId, recordIndex, eventTime, recipientAccountId, awsRegion,
       principal, sourceIPAddress, eventName, errorCode
FROM findings_matches
WHERE matches_{{ control.number }} <> 0;
{% endfor %}

DROP TEMPORARY TABLE findings_matches;
