-- Rebuild the per-day summaries for every event day that the files delivered on %(day)s hold
-- (usually that day and the day before: events from just before midnight are delivered after it).
-- Built from the logs table itself, never added to, so reruns and late files never double count
-- and a day's summary converges once the next day's folder is loaded.
DROP TEMPORARY TABLE IF EXISTS touched_days;

CREATE TEMPORARY TABLE touched_days (event_day DATE NOT NULL PRIMARY KEY) AS
SELECT DISTINCT DATE(l.eventTimestamp) AS event_day
FROM {{ params.table }}_files f
JOIN {{ params.table }} l ON l.sourceFileId = f.id
WHERE f.delivery_day = %(day)s AND f.status = 'loaded' AND l.eventTimestamp IS NOT NULL;

DELETE s FROM {{ params.table }}_daily_events s JOIN touched_days t ON s.event_day = t.event_day;
INSERT INTO {{ params.table }}_daily_events (event_day, event_hour, event_source, event_name, events, errors)
SELECT t.event_day, HOUR(l.eventTimestamp), COALESCE(l.eventSource, ''), COALESCE(l.eventName, ''),
       COUNT(*), SUM(l.errorCode IS NOT NULL)
FROM touched_days t
JOIN {{ params.table }} l ON l.eventTimestamp >= t.event_day AND l.eventTimestamp < t.event_day + INTERVAL 1 DAY
GROUP BY t.event_day, HOUR(l.eventTimestamp), COALESCE(l.eventSource, ''), COALESCE(l.eventName, '');

DELETE s FROM {{ params.table }}_daily_errors s JOIN touched_days t ON s.event_day = t.event_day;
INSERT INTO {{ params.table }}_daily_errors (event_day, event_source, error_code, events)
SELECT t.event_day, COALESCE(l.eventSource, ''), l.errorCode, COUNT(*)
FROM touched_days t
JOIN {{ params.table }} l ON l.eventTimestamp >= t.event_day AND l.eventTimestamp < t.event_day + INTERVAL 1 DAY
WHERE l.errorCode IS NOT NULL
GROUP BY t.event_day, COALESCE(l.eventSource, ''), l.errorCode;

DELETE s FROM {{ params.table }}_daily_principals s JOIN touched_days t ON s.event_day = t.event_day;
INSERT INTO {{ params.table }}_daily_principals (event_day, principal, events, errors)
SELECT event_day, principal, COUNT(*), SUM(failed)
FROM (
    SELECT t.event_day,
           LEFT(CASE WHEN JSON_VALID(l.userIdentity) THEN
                    COALESCE(JSON_UNQUOTE(JSON_EXTRACT(l.userIdentity, '$.arn')),
                             JSON_UNQUOTE(JSON_EXTRACT(l.userIdentity, '$.invokedBy')),
                             JSON_UNQUOTE(JSON_EXTRACT(l.userIdentity, '$.type')), '')
                ELSE COALESCE(l.userIdentity, '') END, 512) AS principal,
           l.errorCode IS NOT NULL AS failed
    FROM touched_days t
    JOIN {{ params.table }} l ON l.eventTimestamp >= t.event_day AND l.eventTimestamp < t.event_day + INTERVAL 1 DAY
) AS events_of_day
GROUP BY event_day, principal;

DELETE s FROM {{ params.table }}_daily_source_ips s JOIN touched_days t ON s.event_day = t.event_day;
INSERT INTO {{ params.table }}_daily_source_ips (event_day, source_ip, events, errors)
SELECT t.event_day, COALESCE(l.sourceIPAddress, ''), COUNT(*), SUM(l.errorCode IS NOT NULL)
FROM touched_days t
JOIN {{ params.table }} l ON l.eventTimestamp >= t.event_day AND l.eventTimestamp < t.event_day + INTERVAL 1 DAY
GROUP BY t.event_day, COALESCE(l.sourceIPAddress, '');

DROP TEMPORARY TABLE touched_days;
