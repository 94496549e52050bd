-- Events loaded
SELECT COUNT(*) FROM `{{ params.table }}`;

-- Events per service
SELECT COUNT(*), eventSource FROM `{{ params.table }}` GROUP BY eventSource ORDER BY COUNT(*) DESC;

-- EMR API calls per event name
SELECT count(*), eventName FROM `{{ params.table }}` WHERE eventSource='elasticmapreduce.amazonaws.com' GROUP BY eventName;

-- EMR API calls per hour
SELECT count(*), substring(eventTime, 1, 13) as time FROM `{{ params.table }}` WHERE eventSource='elasticmapreduce.amazonaws.com' GROUP BY time;

-- Errors per code
SELECT COUNT(*), errorCode FROM `{{ params.table }}` WHERE errorCode IS NOT NULL GROUP BY errorCode ORDER BY COUNT(*) DESC;

-- Files in the manifest
SELECT status, COUNT(*), SUM(row_count) FROM `{{ params.table }}_files` GROUP BY status;
