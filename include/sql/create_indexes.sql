-- The tutorial's indexes plus the typed timestamp, added after the first day's load and only where
-- missing (portable between MySQL 8 and MariaDB, which lack a common "ADD INDEX IF NOT EXISTS"): one
-- ALTER TABLE adds all the missing ones, or nothing runs at all. Each partition (delivery day) has its
-- own trees, maintained as its rows are loaded. eventID is indexed after eventTimestamp, not alone: a
-- copy of an event has its time, so summaries find copies through it, and the tree grows in time
-- order instead of at random places (a random key's tree outgrows the buffer pool on large days).
{%- set indexes = [
    ("ix_eventSource", "eventSource"),
    ("ix_eventName", "eventName"),
    ("ix_errorCode", "errorCode"),
    ("ix_requestID", "requestID"),
    ("ix_eventType", "eventType"),
    ("ix_eventTimestamp", "eventTimestamp, eventID"),
] %}
SET @missing_indexes = (
    SELECT GROUP_CONCAT(CONCAT('ADD INDEX ', wanted.index_name, ' (', wanted.column_name, ')') SEPARATOR ', ')
    FROM (
        {%- for name, column in indexes %}
        SELECT '{{ name }}' AS index_name, '{{ column }}' AS column_name{% if not loop.last %} UNION ALL{% endif %}
        {%- endfor %}
    ) AS wanted
    WHERE wanted.index_name NOT IN (
        SELECT index_name FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = '{{ params.table }}'
    )
);
SET @add_indexes = IF(@missing_indexes IS NULL, 'DO 0', CONCAT('ALTER TABLE `{{ params.table }}` ', @missing_indexes));
PREPARE add_indexes FROM @add_indexes;
EXECUTE add_indexes;
DEALLOCATE PREPARE add_indexes;
