-- The logs table and its manifest of loaded files; safe to run again (creates only what is missing).
-- params.table: validated identifier; params.collation: exact, no-pad binary collation of the server
-- (utf8mb4_nopad_bin on MariaDB, utf8mb4_0900_bin on MySQL 8) so that values differing only by
-- case or a trailing space stay apart in GROUP BY.
--
-- The first 16 columns are the tutorial's, same names and order, so its queries run unchanged
-- (eventTime keeps CloudTrail's ISO text). Widths are generous; a longer value is stored cut to the
-- column and kept whole in extraFields. Every other column is the CloudTrail field of that name,
-- but for those the loader fills itself (eventTimestamp, principal, extraFields, and the last four).
--
-- Partitioned by the day CloudTrail delivered the file (one partition per day, made ahead of the
-- load by partitions.py): each day's secondary indexes are a small tree of their own, a day's
-- summaries read only the partitions holding its events, and retention empties whole partitions.
-- Files outside CloudTrail's dated layout have deliveryDay 1970-01-01, in p_undated.
CREATE TABLE IF NOT EXISTS `{{ params.table }}` (
    eventVersion VARCHAR(16) NULL,
    userIdentity MEDIUMTEXT NULL,
    eventTime VARCHAR(40) NULL,
    eventSource VARCHAR(255) NULL,
    eventName VARCHAR(255) NULL,
    awsRegion VARCHAR(64) NULL,
    sourceIPAddress VARCHAR(255) NULL,
    userAgent TEXT NULL,
    errorCode VARCHAR(255) NULL,
    errorMessage MEDIUMTEXT NULL,
    requestParameters MEDIUMTEXT NULL,
    responseElements LONGTEXT NULL,
    requestID VARCHAR(255) NULL,
    eventID VARCHAR(255) NULL,
    eventType VARCHAR(64) NULL,
    recipientAccountId VARCHAR(64) NULL,
    -- Typed UTC time of the event, for range queries and per-day summaries.
    eventTimestamp DATETIME NULL,
    -- Who made the call: userIdentity.arn, else .invokedBy (AWS services), else .type (cut to 512).
    principal VARCHAR(512) NULL,
    -- Fields of eventVersion 1.01 to 1.11.
    eventCategory VARCHAR(64) NULL,
    readOnly BOOLEAN NULL,
    managementEvent BOOLEAN NULL,
    resources MEDIUMTEXT NULL,
    apiVersion VARCHAR(64) NULL,
    sharedEventID VARCHAR(255) NULL,
    vpcEndpointId VARCHAR(255) NULL,
    vpcEndpointAccountId VARCHAR(64) NULL,
    additionalEventData MEDIUMTEXT NULL,
    serviceEventDetails MEDIUMTEXT NULL,
    tlsDetails TEXT NULL,
    sessionCredentialFromConsole BOOLEAN NULL,
    edgeDeviceDetails MEDIUMTEXT NULL,
    insightDetails MEDIUMTEXT NULL,
    addendum TEXT NULL,
    -- JSON object: fields without a column, and the whole of any value cut or not typeable.
    extraFields MEDIUMTEXT NULL,
    -- Where the row came from: the file (S3 URI or path), its manifest id and the record's position.
    sourceKey VARCHAR(1024) NOT NULL,
    sourceFileId BIGINT NOT NULL,
    recordIndex INT NOT NULL,
    deliveryDay DATE NOT NULL,
    PRIMARY KEY (sourceFileId, recordIndex, deliveryDay)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }}
PARTITION BY RANGE COLUMNS (deliveryDay) (PARTITION p_undated VALUES LESS THAN ('1970-01-02'));

-- One row per file ever seen: a file is 'loaded' (its rows are in the table, exactly once) or
-- 'failed' (nothing of it is in the table; error says why). file_name identifies the file (see records.file_identity).
CREATE TABLE IF NOT EXISTS `{{ params.table }}_files` (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    file_hash CHAR(64) CHARACTER SET ascii NOT NULL,
    file_name VARCHAR(1024) NOT NULL,
    source VARCHAR(2048) NOT NULL,
    etag VARCHAR(128) NULL,
    size BIGINT NULL,
    -- The YYYY/MM/DD folder of the key: the day CloudTrail delivered the file (the DAG's day).
    delivery_day DATE NULL,
    status VARCHAR(16) NOT NULL,
    row_count INT NOT NULL DEFAULT 0,
    error TEXT NULL,
    seconds DOUBLE NULL,
    -- The file's earliest and latest eventTimestamp: which delivery days hold an event day's events.
    first_event DATETIME NULL,
    last_event DATETIME NULL,
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY uq_file_hash (file_hash),
    KEY ix_status (status),
    KEY ix_delivery_day (delivery_day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

-- Per-day summaries, keyed by the event's own day (from eventTimestamp), rebuilt by
-- build_summaries.sql for every event day a run touched. Same exact collation as the logs table,
-- so that names differing only by case or a trailing space stay separate rows.
CREATE TABLE IF NOT EXISTS `{{ params.table }}_daily_events` (
    event_day DATE NOT NULL,
    event_hour TINYINT NOT NULL,
    event_source VARCHAR(255) NOT NULL,
    event_name VARCHAR(255) NOT NULL,
    events BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    PRIMARY KEY (event_day, event_hour, event_source, event_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

CREATE TABLE IF NOT EXISTS `{{ params.table }}_daily_errors` (
    event_day DATE NOT NULL,
    event_source VARCHAR(255) NOT NULL,
    error_code VARCHAR(255) NOT NULL,
    events BIGINT NOT NULL,
    PRIMARY KEY (event_day, event_source, error_code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

-- principal: userIdentity.arn, else userIdentity.invokedBy (AWS services), else userIdentity.type.
CREATE TABLE IF NOT EXISTS `{{ params.table }}_daily_principals` (
    event_day DATE NOT NULL,
    principal VARCHAR(512) NOT NULL,
    events BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    PRIMARY KEY (event_day, principal)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

CREATE TABLE IF NOT EXISTS `{{ params.table }}_daily_source_ips` (
    event_day DATE NOT NULL,
    source_ip VARCHAR(255) NOT NULL,
    events BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    PRIMARY KEY (event_day, source_ip)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

-- What each delivery day's files add to each event day's summaries (build_summaries.sql): a day is
-- summarised from its own partition only, and an event day's summary is the sum of its parts.
CREATE TABLE IF NOT EXISTS `{{ params.table }}_parts_events` (
    delivery_day DATE NOT NULL,
    event_day DATE NOT NULL,
    event_hour TINYINT NOT NULL,
    event_source VARCHAR(255) NOT NULL,
    event_name VARCHAR(255) NOT NULL,
    events BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    PRIMARY KEY (delivery_day, event_day, event_hour, event_source, event_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

CREATE TABLE IF NOT EXISTS `{{ params.table }}_parts_errors` (
    delivery_day DATE NOT NULL,
    event_day DATE NOT NULL,
    event_source VARCHAR(255) NOT NULL,
    error_code VARCHAR(255) NOT NULL,
    events BIGINT NOT NULL,
    PRIMARY KEY (delivery_day, event_day, event_source, error_code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

CREATE TABLE IF NOT EXISTS `{{ params.table }}_parts_principals` (
    delivery_day DATE NOT NULL,
    event_day DATE NOT NULL,
    principal VARCHAR(512) NOT NULL,
    events BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    PRIMARY KEY (delivery_day, event_day, principal)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

CREATE TABLE IF NOT EXISTS `{{ params.table }}_parts_source_ips` (
    delivery_day DATE NOT NULL,
    event_day DATE NOT NULL,
    source_ip VARCHAR(255) NOT NULL,
    events BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    PRIMARY KEY (delivery_day, event_day, source_ip)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

-- What each delivery day's files add to the findings, found in the summaries' scan of the day
-- (build_summaries.sql): the first copy of each event that matches a control, with one bit per
-- control (bit n-1 for the n-th control of the list it was built for). build_findings.sql takes a
-- day's part only when <table>_parts_findings_built says it was built for the same controls.
{#- A finding's own columns, here and in <table>_findings alike. #}
{% set finding_columns -%}
    sourceFileId BIGINT NOT NULL,
    recordIndex INT NOT NULL,
    eventTime DATETIME NOT NULL,
    recipientAccountId VARCHAR(64) NULL,
    awsRegion VARCHAR(64) NULL,
    principal VARCHAR(512) NOT NULL,
    sourceIPAddress VARCHAR(255) NULL,
    eventName VARCHAR(255) NULL,
    errorCode VARCHAR(255) NULL,
{%- endset -%}
CREATE TABLE IF NOT EXISTS `{{ params.table }}_parts_findings` (
    delivery_day DATE NOT NULL,
    event_day DATE NOT NULL,
    {{ finding_columns }}
    controls_matched BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (delivery_day, sourceFileId, recordIndex)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

CREATE TABLE IF NOT EXISTS `{{ params.table }}_parts_findings_built` (
    delivery_day DATE NOT NULL PRIMARY KEY,
    -- findings.controls_hash of the compiled controls the part was built for.
    controls CHAR(64) CHARACTER SET ascii NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

-- Delivery days that retention emptied (their rows, manifest rows and summaries are gone): a file
-- delivered on one of them is refused by name, not loaded into a day that is no longer whole.
CREATE TABLE IF NOT EXISTS `{{ params.table }}_dropped_days` (
    delivery_day DATE NOT NULL PRIMARY KEY,
    files BIGINT NOT NULL,
    events BIGINT NOT NULL,
    dropped_at DATETIME NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

-- Delivery days loading into a table of their own (<table>__day_YYYYMMDD, no secondary index)
-- until they are swapped into their partition, empty until then (cloudtrail_mysql/staging.py).
-- closing: being swapped in; files of the day wait for it.
CREATE TABLE IF NOT EXISTS `{{ params.table }}_staged_days` (
    delivery_day DATE NOT NULL PRIMARY KEY,
    stage_table VARCHAR(64) CHARACTER SET ascii NOT NULL,
    closing TINYINT NOT NULL,
    staged_at DATETIME NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};

-- Security findings: one row per (control, matching event), keyed by the event's own day and its
-- key in the logs table, rebuilt by build_findings.sql for each delivery day loaded. The
-- controls are CloudWatch Logs filter patterns (include/controls/, compiled by findings.py).
-- principal: userIdentity.arn, else userIdentity.invokedBy, else userIdentity.type, as in the summaries.
CREATE TABLE IF NOT EXISTS `{{ params.table }}_findings` (
    event_day DATE NOT NULL,
    control VARCHAR(64) NOT NULL,
    {{ finding_columns }}
    -- The delivery day of the event's file (its partition of the logs table): rebuilt by delivery day.
    deliveryDay DATE NOT NULL,
    PRIMARY KEY (event_day, control, sourceFileId, recordIndex),
    KEY ix_deliveryDay (deliveryDay)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{ params.collation }};
