-- Files delivered on the run's day, by manifest status, with their rows.
SELECT status, COUNT(*) AS files, SUM(row_count) AS row_total
FROM `{{ params.table }}_files`
WHERE delivery_day = %(day)s
GROUP BY status
ORDER BY status;
