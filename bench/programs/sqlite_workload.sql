-- SQLite workload for the tidalloc benchmark suite, run by Debian's sqlite3
-- CLI on an in-memory database (every page and row buffer comes from malloc).
-- bench/run.py prepends "CREATE TEMP TABLE cfg(n); INSERT INTO cfg VALUES(N);"
-- where N is the row count.  Deterministic: no random(), no time functions;
-- the run's checksum is a hash of everything printed.
PRAGMA cache_size = -262144;
CREATE TABLE base(s TEXT);
INSERT INTO base VALUES (replace(hex(zeroblob(1200)), '00', 'tidal-') || 'end');

CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, body TEXT);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < (SELECT n FROM cfg))
INSERT INTO t
SELECT i, (i * 7919) % 10007, printf('name-%08d', (i * 104729) % 1000003),
       substr((SELECT s FROM base), 1 + i % 97, 16 + (i * 37) % 400)
FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_name ON t(name);

SELECT k, count(*), sum(length(body)) FROM t GROUP BY k ORDER BY 3 DESC, 1 LIMIT 5;

-- grow a third of the rows, then delete 60 % and insert a wave of other sizes
UPDATE t SET body = body || name || body WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 < 3;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < (SELECT n FROM cfg) / 2)
INSERT INTO t(k, name, body)
SELECT (i * 31) % 5003, printf('wave-%d-%d', i, i % 17),
       substr((SELECT s FROM base), 1 + i % 53, 200 + (i * 13) % 3000)
FROM c;

SELECT count(*), sum(length(body)), max(length(name)) FROM t;
SELECT count(*), sum(a.k % 97) FROM t a JOIN t b ON a.k = b.k + 1 WHERE a.id % 50 = 0;
SELECT length(group_concat(name, ',')) FROM (SELECT name FROM t ORDER BY name DESC);
SELECT sum(x) FROM (SELECT sum(length(body)) OVER (PARTITION BY k % 100 ORDER BY id
                       ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS x FROM t);
SELECT length(json_group_array(json_object('id', id, 'k', k, 'name', name)))
FROM (SELECT * FROM t WHERE id % 4 = 1);
SELECT k % 10, count(DISTINCT name), sum(length(body)) FROM t GROUP BY k % 10 ORDER BY 1;
CREATE TABLE t2 AS SELECT id, upper(name) AS u, body || body AS b FROM t WHERE id % 2 = 0;
SELECT count(*), sum(length(b)) FROM t2;
DROP TABLE t2;
VACUUM;
SELECT count(*) FROM t;
