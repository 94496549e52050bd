-- Rebuild the per-day summaries for every event day that the files delivered on %(day)s hold
-- (usually that day and the day before: events from just before midnight are delivered after it).
-- Built from the logs table itself, never added to, so reruns and late files never double count
-- and a day's summary converges once the next day's folder is loaded.
--
-- Each event counts once: CloudTrail may deliver an event twice (same eventID in two files); the
-- logs table keeps every delivered copy, the summaries count the first copy of each eventID
-- (events without an eventID count as delivered).
--
-- Cost grows with the day, not with the table: the touched event days come from the day's own
-- partition, and their events are read only from the partitions of the delivery days whose files
-- hold them (the manifest's first_event/last_event), named as literals so the server prunes.
DROP TEMPORARY TABLE IF EXISTS touched_days;
DROP TEMPORARY TABLE IF EXISTS source_days;
DROP TEMPORARY TABLE IF EXISTS day_events;

-- Every table gets a primary key, temporary ones too: servers may require one (MySQL's
-- sql_require_primary_key, MariaDB's innodb_force_primary_key, common on managed databases).
CREATE TEMPORARY TABLE touched_days (event_day DATE NOT NULL PRIMARY KEY) AS
SELECT DISTINCT DATE(eventTimestamp) AS event_day
FROM `{{ params.table }}`
WHERE deliveryDay = %(day)s AND eventTimestamp IS NOT NULL;

CREATE TEMPORARY TABLE source_days (delivery_day DATE NOT NULL PRIMARY KEY) AS
SELECT DISTINCT COALESCE(f.delivery_day, DATE '1970-01-01') AS delivery_day
FROM `{{ params.table }}_files` f
JOIN touched_days t ON f.first_event < t.event_day + INTERVAL 1 DAY AND f.last_event >= t.event_day
WHERE f.status = 'loaded';

-- Typed (and collated) as the logs table's columns, so that values differing only by case stay apart.
CREATE TEMPORARY TABLE day_events (row_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY) AS
SELECT DATE(l.eventTimestamp) AS event_day,
       HOUR(l.eventTimestamp) AS event_hour,
       COALESCE(l.eventSource, '') AS event_source,
       COALESCE(l.eventName, '') AS event_name,
       l.errorCode AS error_code,
       COALESCE(l.sourceIPAddress, '') AS source_ip,
       COALESCE(l.principal, '') AS principal
FROM `{{ params.table }}` l
WHERE FALSE;

SET @source_days = (SELECT GROUP_CONCAT(QUOTE(delivery_day)) FROM source_days);
SET @collect_events = CONCAT('
INSERT INTO day_events (event_day, event_hour, event_source, event_name, error_code, source_ip, principal)
SELECT event_day, event_hour, event_source, event_name, error_code, source_ip, principal
FROM (
    SELECT t.event_day,
           HOUR(l.eventTimestamp) AS event_hour,
           COALESCE(l.eventSource, '''') AS event_source,
           COALESCE(l.eventName, '''') AS event_name,
           l.errorCode AS error_code,
           COALESCE(l.sourceIPAddress, '''') AS source_ip,
           COALESCE(l.principal, '''') AS principal,
           CASE WHEN l.eventID IS NULL THEN 1
                ELSE ROW_NUMBER() OVER (PARTITION BY t.event_day, l.eventID ORDER BY l.sourceFileId, l.recordIndex)
           END AS copy_number
    FROM touched_days t
    JOIN `{{ params.table }}` l
      ON l.eventTimestamp >= t.event_day AND l.eventTimestamp < t.event_day + INTERVAL 1 DAY
    WHERE l.deliveryDay IN (', COALESCE(@source_days, 'NULL'), ')
) AS delivered
WHERE copy_number = 1');
PREPARE collect_events FROM @collect_events;
EXECUTE collect_events;
DEALLOCATE PREPARE collect_events;

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
DROP TEMPORARY TABLE source_days;
DROP TEMPORARY TABLE touched_days;
