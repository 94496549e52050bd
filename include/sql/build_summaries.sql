-- The summaries after delivery day %(day)s is loaded (or loaded again).
--
-- Summaries are keyed by the event's own day. A delivery day's files hold that day's events and the
-- last minutes of the day before, so an event day's summary is the sum of what each delivery day adds
-- to it: the day's part (<table>_parts_*) is rebuilt from the day's own partition only, then the
-- event days it touches are summed again from their parts. Cost follows the day, not the table;
-- reruns and late files never double count; a day's summary converges once the next day is loaded.
--
-- Each event counts once: CloudTrail may deliver an event twice (same eventID in two files). The logs
-- table keeps every delivered copy; the summaries count only the copy in the file loaded first (the
-- lowest file id, then record), whichever delivery day holds it. Events without an eventID count as
-- delivered.

-- Read committed (this session only): the scans below then read the day without locking each row
-- they read (CREATE ... SELECT and INSERT ... SELECT do under repeatable read); the shared locks of a
-- tutorial-sized day (14M rows) overflow InnoDB's lock table (error 1206) with a stock buffer pool.
SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
-- Room for the groupings in memory (this session only): on disk they cost several times more.
SET SESSION max_heap_table_size = 268435456;
SET SESSION tmp_table_size = 268435456;
SET SESSION group_concat_max_len = 1048576;
DROP TEMPORARY TABLE IF EXISTS touched_days;
DROP TEMPORARY TABLE IF EXISTS other_days;
DROP TEMPORARY TABLE IF EXISTS day_events;
DROP TEMPORARY TABLE IF EXISTS repeated_ids;
DROP TEMPORARY TABLE IF EXISTS repeated_rows;
DROP TEMPORARY TABLE IF EXISTS later_copies;
DROP TEMPORARY TABLE IF EXISTS day_calls;

-- The event days the day's files hold now, or held when last summarised (a replaced file may have
-- moved its events). Every table gets a primary key, temporary ones too: servers may require one
-- (MySQL's sql_require_primary_key, MariaDB's innodb_force_primary_key, common on managed databases).
CREATE TEMPORARY TABLE touched_days (event_day DATE NOT NULL PRIMARY KEY) AS
SELECT DISTINCT DATE(eventTimestamp) AS event_day
FROM `{{ params.table }}`
WHERE deliveryDay = %(day)s AND eventTimestamp IS NOT NULL;
INSERT IGNORE INTO touched_days (event_day)
SELECT DISTINCT event_day FROM `{{ params.table }}_parts_events` WHERE delivery_day = %(day)s;

-- Other delivery days holding events of the touched days (the manifest's first/last event per file):
-- a copy of an event there may have been loaded first.
CREATE TEMPORARY TABLE other_days (event_day DATE NOT NULL, delivery_day DATE NOT NULL,
                                   PRIMARY KEY (event_day, delivery_day)) AS
SELECT DISTINCT t.event_day, COALESCE(f.delivery_day, DATE '1970-01-01') AS delivery_day
FROM `{{ params.table }}_files` f
JOIN touched_days t ON f.first_event < t.event_day + INTERVAL 1 DAY AND f.last_event >= t.event_day
WHERE f.status = 'loaded' AND COALESCE(f.delivery_day, DATE '1970-01-01') <> %(day)s;

-- The day's events, one narrow row each, in one scan of its partition; typed (and collated) as the
-- logs table's columns, so that values differing only by case stay apart.
CREATE TEMPORARY TABLE day_events (PRIMARY KEY (file_id, record_index)) AS
SELECT DATE(l.eventTimestamp) AS event_day,
       HOUR(l.eventTimestamp) AS event_hour,
       COALESCE(l.eventSource, '') AS event_source,
       COALESCE(l.eventName, '') AS event_name,
       l.errorCode AS error_code,
       COALESCE(l.sourceIPAddress, '') AS source_ip,
       COALESCE(l.principal, '') AS principal,
       l.eventID AS event_id,
       l.eventTimestamp AS event_time,
       l.sourceFileId AS file_id,
       l.recordIndex AS record_index
       {%- if params.get("controls") %},
       -- The same scan tests the security controls for build_findings.sql (compiled by findings.py;
       -- bit n-1 for control n) and keeps what a finding shows beyond the columns above.
       l.recipientAccountId AS account,
       l.awsRegion AS region,
       l.sourceIPAddress IS NULL AS no_source_ip,
       l.eventName IS NULL AS no_event_name,
       -- (Which controls is asked only of the few events that match one.)
       CASE WHEN {% for control in params.controls %}{{ control.condition }}{% if not loop.last %}
                 OR {% endif %}{% endfor %}
            THEN {% for control in params.controls -%}
                 (COALESCE({{ control.condition }}, 0) <> 0) * {{ 2 ** (control.number - 1) }}{% if not loop.last %} + {% endif %}
                 {%- endfor %}
            ELSE 0 END AS controls_matched
       {%- endif %}
FROM `{{ params.table }}` l
WHERE l.deliveryDay = %(day)s AND l.eventTimestamp IS NOT NULL;

-- Copies within the day: (time, eventID) found twice in the partition (a copy has its event's time;
-- read in order from the index on them), then every copy but the first.
CREATE TEMPORARY TABLE repeated_ids (event_time DATETIME NOT NULL, event_id VARCHAR(255) NOT NULL,
                                     PRIMARY KEY (event_time, event_id)) AS
SELECT eventTimestamp AS event_time, eventID AS event_id
FROM `{{ params.table }}`
WHERE deliveryDay = %(day)s AND eventTimestamp IS NOT NULL AND eventID IS NOT NULL
GROUP BY eventTimestamp, eventID
HAVING COUNT(*) > 1;

CREATE TEMPORARY TABLE repeated_rows (PRIMARY KEY (file_id, record_index)) AS
SELECT l.eventID AS event_id, l.sourceFileId AS file_id, l.recordIndex AS record_index
FROM repeated_ids r
JOIN `{{ params.table }}` l ON l.eventTimestamp = r.event_time AND l.eventID = r.event_id
WHERE l.deliveryDay = %(day)s;

CREATE TEMPORARY TABLE later_copies (PRIMARY KEY (file_id, record_index)) AS
SELECT file_id, record_index
FROM (SELECT file_id, record_index,
             ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY file_id, record_index) AS copy_number
      FROM repeated_rows) AS copies
WHERE copy_number > 1;

DELETE d FROM day_events d JOIN later_copies c ON c.file_id = d.file_id AND c.record_index = d.record_index;

-- Copies in other delivery days, loaded first (a lower file id): only for the event days that other
-- days hold too (usually the day before's last minutes), looked up by (time, eventID) in those
-- partitions, named as literals so that the server reads only them.
SET @cross_days = (SELECT GROUP_CONCAT(DISTINCT QUOTE(event_day)) FROM other_days);
SET @other_days = (SELECT GROUP_CONCAT(DISTINCT QUOTE(delivery_day)) FROM other_days);
SET @drop_copies = IF(@cross_days IS NULL, 'DO 0', CONCAT('
DELETE d FROM day_events d
WHERE d.event_day IN (', @cross_days, ') AND d.event_id IS NOT NULL
  AND EXISTS (SELECT 1 FROM `{{ params.table }}` o
              WHERE o.deliveryDay IN (', @other_days, ')
                AND o.eventTimestamp = d.event_time AND o.eventID = d.event_id AND o.sourceFileId < d.file_id)'));
PREPARE drop_copies FROM @drop_copies;
EXECUTE drop_copies;
DEALLOCATE PREPARE drop_copies;

-- The day's parts, grouped on hashes of their text columns (a sort of short keys, not of 2 KB ones);
-- the exact values, by which the binary collation keeps case apart, are what is hashed. Events and
-- errors come from one grouping by hour, service, event name and error code (a few thousand rows).
CREATE TEMPORARY TABLE day_calls (row_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY) AS
SELECT event_day, event_hour, MIN(event_source) AS event_source, MIN(event_name) AS event_name,
       MIN(error_code) AS error_code, COUNT(*) AS events
FROM day_events
GROUP BY event_day, event_hour, UNHEX(MD5(CONCAT(event_source, X'00', event_name, X'00', COALESCE(error_code, ''))))
         , error_code IS NULL;

DELETE FROM `{{ params.table }}_parts_events` WHERE delivery_day = %(day)s;
INSERT INTO `{{ params.table }}_parts_events`
    (delivery_day, event_day, event_hour, event_source, event_name, events, errors)
SELECT %(day)s, event_day, event_hour, MIN(event_source), MIN(event_name), SUM(events),
       SUM(CASE WHEN error_code IS NULL THEN 0 ELSE events END)
FROM day_calls
GROUP BY event_day, event_hour, UNHEX(MD5(CONCAT(event_source, X'00', event_name)));

DELETE FROM `{{ params.table }}_parts_errors` WHERE delivery_day = %(day)s;
INSERT INTO `{{ params.table }}_parts_errors` (delivery_day, event_day, event_source, error_code, events)
SELECT %(day)s, event_day, MIN(event_source), MIN(error_code), SUM(events)
FROM day_calls
WHERE error_code IS NOT NULL
GROUP BY event_day, UNHEX(MD5(CONCAT(event_source, X'00', error_code)));

DELETE FROM `{{ params.table }}_parts_principals` WHERE delivery_day = %(day)s;
INSERT INTO `{{ params.table }}_parts_principals` (delivery_day, event_day, principal, events, errors)
SELECT %(day)s, event_day, MIN(principal), COUNT(*), SUM(error_code IS NOT NULL)
FROM day_events
GROUP BY event_day, UNHEX(MD5(principal));

DELETE FROM `{{ params.table }}_parts_source_ips` WHERE delivery_day = %(day)s;
INSERT INTO `{{ params.table }}_parts_source_ips` (delivery_day, event_day, source_ip, events, errors)
SELECT %(day)s, event_day, MIN(source_ip), COUNT(*), SUM(error_code IS NOT NULL)
FROM day_events
GROUP BY event_day, UNHEX(MD5(source_ip));

{% if params.get("controls") %}
-- The day's part of the findings: its first copies of events that match a control, and the controls
-- it was built for (build_findings.sql takes it only for the same controls).
DELETE FROM `{{ params.table }}_parts_findings` WHERE delivery_day = %(day)s;
INSERT INTO `{{ params.table }}_parts_findings`
    (delivery_day, event_day, sourceFileId, recordIndex, eventTime, recipientAccountId, awsRegion, principal,
     sourceIPAddress, eventName, errorCode, controls_matched)
SELECT %(day)s, event_day, file_id, record_index, event_time, account, region, principal,
       CASE WHEN no_source_ip THEN NULL ELSE source_ip END, CASE WHEN no_event_name THEN NULL ELSE event_name END,
       error_code, controls_matched
FROM day_events
WHERE controls_matched <> 0;
DELETE FROM `{{ params.table }}_parts_findings_built` WHERE delivery_day = %(day)s;
INSERT INTO `{{ params.table }}_parts_findings_built` (delivery_day, controls) VALUES (%(day)s, %(controls_hash)s);
{% else %}
-- Built without controls: the day's part of the findings would be stale, so there is none.
DELETE FROM `{{ params.table }}_parts_findings_built` WHERE delivery_day = %(day)s;
DELETE FROM `{{ params.table }}_parts_findings` WHERE delivery_day = %(day)s;
{% endif %}

-- The touched event days' summaries: the sum of their parts, whichever delivery days hold them.
DELETE s FROM `{{ params.table }}_daily_events` s JOIN touched_days t ON s.event_day = t.event_day;
INSERT INTO `{{ params.table }}_daily_events` (event_day, event_hour, event_source, event_name, events, errors)
SELECT p.event_day, p.event_hour, MIN(p.event_source), MIN(p.event_name), SUM(p.events), SUM(p.errors)
FROM `{{ params.table }}_parts_events` p JOIN touched_days t ON p.event_day = t.event_day
GROUP BY p.event_day, p.event_hour, UNHEX(MD5(CONCAT(p.event_source, X'00', p.event_name)));

DELETE s FROM `{{ params.table }}_daily_errors` s JOIN touched_days t ON s.event_day = t.event_day;
INSERT INTO `{{ params.table }}_daily_errors` (event_day, event_source, error_code, events)
SELECT p.event_day, MIN(p.event_source), MIN(p.error_code), SUM(p.events)
FROM `{{ params.table }}_parts_errors` p JOIN touched_days t ON p.event_day = t.event_day
GROUP BY p.event_day, UNHEX(MD5(CONCAT(p.event_source, X'00', p.error_code)));

DELETE s FROM `{{ params.table }}_daily_principals` s JOIN touched_days t ON s.event_day = t.event_day;
INSERT INTO `{{ params.table }}_daily_principals` (event_day, principal, events, errors)
SELECT p.event_day, MIN(p.principal), SUM(p.events), SUM(p.errors)
FROM `{{ params.table }}_parts_principals` p JOIN touched_days t ON p.event_day = t.event_day
GROUP BY p.event_day, UNHEX(MD5(p.principal));

DELETE s FROM `{{ params.table }}_daily_source_ips` s JOIN touched_days t ON s.event_day = t.event_day;
INSERT INTO `{{ params.table }}_daily_source_ips` (event_day, source_ip, events, errors)
SELECT p.event_day, MIN(p.source_ip), SUM(p.events), SUM(p.errors)
FROM `{{ params.table }}_parts_source_ips` p JOIN touched_days t ON p.event_day = t.event_day
GROUP BY p.event_day, UNHEX(MD5(p.source_ip));

DROP TEMPORARY TABLE day_calls;
DROP TEMPORARY TABLE later_copies;
DROP TEMPORARY TABLE repeated_rows;
DROP TEMPORARY TABLE repeated_ids;
DROP TEMPORARY TABLE day_events;
DROP TEMPORARY TABLE other_days;
DROP TEMPORARY TABLE touched_days;
