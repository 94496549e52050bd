-- The tables of the current database that the loader made: each has its <table>_files manifest.
SELECT t.table_name
FROM information_schema.tables AS t
JOIN information_schema.tables AS f ON f.table_schema = t.table_schema AND f.table_name = CONCAT(t.table_name, '_files')
WHERE t.table_schema = DATABASE()
ORDER BY t.table_name
