-- Rebuild the per-day summaries for every event day that the files delivered on %(day)s hold
-- (usually that day and the day before: events from just before midnight are delivered after it).
-- Built from the logs table itself, never added to, so reruns and late files never double count
-- and a day's summary converges once the next day's folder is loaded.
--
-- Each event counts once: CloudTrail may deliver an event twice (same eventID in two files); the
-- logs table keeps every delivered copy, the summaries count the first copy of each eventID
-- (events without an eventID count as delivered).
DROP TEMPORARY TABLE IF EXISTS touched_days;
DROP TEMPORARY TABLE IF EXISTS day_events;

CREATE TEMPORARY TABLE touched_days (event_day DATE NOT NULL PRIMARY KEY) AS
SELECT DISTINCT DATE(l.eventTimestamp) AS event_day
FROM `{{ params.table }}_files` f
JOIN `{{ params.table }}` l ON l.sourceFileId = f.id
WHERE f.delivery_day = %(day)s AND f.status = 'loaded' AND l.eventTimestamp IS NOT NULL;

-- Every table gets a primary key, temporary ones too: servers may require one (MySQL's
-- sql_require_primary_key, MariaDB's innodb_force_primary_key, common on managed databases).
CREATE TEMPORARY TABLE day_events (row_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY) AS
SELECT event_day, event_hour, event_source, event_name, error_code, source_ip, principal
FROM (
    SELECT t.event_day,
           HOUR(l.eventTimestamp) AS event_hour,
           COALESCE(l.eventSource, '') AS event_source,
           COALESCE(l.eventName, '') AS event_name,
           l.errorCode AS error_code,
           COALESCE(l.sourceIPAddress, '') AS source_ip,
           LEFT(CASE WHEN JSON_VALID(l.userIdentity) THEN
                    COALESCE(JSON_UNQUOTE(JSON_EXTRACT(l.userIdentity, '$.arn')),
                             JSON_UNQUOTE(JSON_EXTRACT(l.userIdentity, '$.invokedBy')),
                             JSON_UNQUOTE(JSON_EXTRACT(l.userIdentity, '$.type')), '')
                ELSE COALESCE(l.userIdentity, '') END, 512) AS principal,
           CASE WHEN l.eventID IS NULL THEN 1
                ELSE ROW_NUMBER() OVER (PARTITION BY t.event_day, l.eventID ORDER BY l.sourceFileId, l.recordIndex)
           END AS copy_number
    FROM touched_days t
    JOIN `{{ params.table }}` l
      ON l.eventTimestamp >= t.event_day AND l.eventTimestamp < t.event_day + INTERVAL 1 DAY
) AS delivered
WHERE copy_number = 1;

DELETE s FROM `{{ params.table }}_daily_events` s JOIN touched_days t ON s.event_day = t.event_day;
INSERT INTO `{{ params.table }}_daily_events` (event_day, event_hour, event_source, event_name, events, errors)
SELECT event_day, event_hour, event_source, event_name, COUNT(*), SUM(error_code IS NOT NULL)
FROM day_events
GROUP BY event_day, event_hour, event_source, event_name;

DELETE s FROM `{{ params.table }}_daily_errors` s JOIN touched_days t ON s.event_day = t.event_day;
INSERT INTO `{{ params.table }}_daily_errors` (event_day, event_source, error_code, events)
SELECT event_day, event_source, error_code, COUNT(*)
FROM day_events
WHERE error_code IS NOT NULL
GROUP BY event_day, event_source, error_code;

DELETE s FROM `{{ params.table }}_daily_principals` s JOIN touched_days t ON s.event_day = t.event_day;
INSERT INTO `{{ params.table }}_daily_principals` (event_day, principal, events, errors)
SELECT event_day, principal, COUNT(*), SUM(error_code IS NOT NULL)
FROM day_events
GROUP BY event_day, principal;

DELETE s FROM `{{ params.table }}_daily_source_ips` s JOIN touched_days t ON s.event_day = t.event_day;
INSERT INTO `{{ params.table }}_daily_source_ips` (event_day, source_ip, events, errors)
SELECT event_day, source_ip, COUNT(*), SUM(error_code IS NOT NULL)
FROM day_events
GROUP BY event_day, source_ip;

DROP TEMPORARY TABLE day_events;
DROP TEMPORARY TABLE touched_days;
