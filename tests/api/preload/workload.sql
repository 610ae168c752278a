-- Deterministic SQLite workload for preload_programs.sh.
CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL);
WITH RECURSIVE cnt(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM cnt WHERE x < 200000)
INSERT INTO t(a, b, c)
  SELECT (x * 7919) % 1000, printf('row-%08d-%s', x, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26)), x * 0.5
  FROM cnt;
CREATE INDEX t_a ON t(a);
CREATE INDEX t_b ON t(b);
SELECT count(*), sum(a), min(b), max(b), total(c) FROM t;
SELECT a, count(*), sum(length(b)) FROM t GROUP BY a ORDER BY count(*) DESC, a LIMIT 10;
CREATE TABLE u AS SELECT a, group_concat(id, ',') AS ids FROM (SELECT a, id FROM t WHERE a < 50 ORDER BY id) GROUP BY a;
SELECT a, length(ids), substr(ids, 1, 40) FROM u ORDER BY a LIMIT 10;
SELECT count(*) FROM t JOIN u USING (a);
UPDATE t SET b = b || b WHERE id % 10 = 0;
DELETE FROM t WHERE id % 7 = 0;
SELECT count(*), sum(length(b)) FROM t;
SELECT hex(zeroblob(16)), upper(b) FROM t ORDER BY b DESC LIMIT 5;
SELECT id, a, sum(a) OVER (ORDER BY id ROWS BETWEEN 5 PRECEDING AND CURRENT ROW) FROM t WHERE id < 100 ORDER BY id LIMIT 20;
SELECT b FROM t ORDER BY substr(b, 14), id LIMIT 5 OFFSET 1000;
SELECT group_concat(b, '|') FROM (SELECT b FROM t WHERE id BETWEEN 5000 AND 5050 ORDER BY b);
VACUUM;
PRAGMA integrity_check;
