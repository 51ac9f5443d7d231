-- Allocation-heavy SQLite workload with deterministic output.
-- Run by compare_under_preload.sh with and without strata preloaded.
PRAGMA cache_size = -65536;
CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, payload BLOB, score REAL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO items(name, grp, payload, score)
SELECT printf('item-%06d', i), i % 97, zeroblob(i % 500), (i * 7919) % 1000 / 10.0 FROM n;
CREATE INDEX items_grp ON items(grp, score);
CREATE INDEX items_name ON items(name);
SELECT count(*), sum(length(payload)), round(avg(score), 4) FROM items;
SELECT grp, count(*), round(sum(score), 2), max(name) FROM items GROUP BY grp ORDER BY grp LIMIT 10;
CREATE TABLE pairs AS SELECT a.id AS a, b.id AS b FROM items a JOIN items b ON b.id = a.id * 2 WHERE a.grp < 10;
SELECT count(*), sum(a), sum(b) FROM pairs;
SELECT group_concat(name, ',') FROM (SELECT name FROM items WHERE grp = 5 ORDER BY score DESC, id LIMIT 20);
SELECT json_group_array(json_object('id', id, 'score', score)) FROM (SELECT id, score FROM items WHERE id % 10000 = 0);
UPDATE items SET payload = randomblob(0) || zeroblob(1000) WHERE grp = 3;
DELETE FROM items WHERE grp % 2 = 1;
VACUUM;
SELECT count(*), sum(length(payload)) FROM items;
WITH RECURSIVE s(i, t) AS (SELECT 1, 'x' UNION ALL SELECT i + 1, t || printf('%d', i) FROM s WHERE i < 2000)
SELECT length(max(t)), count(*) FROM s;
SELECT upper(substr(name, 1, 6)), count(*) FROM items GROUP BY 1 ORDER BY 1;
PRAGMA integrity_check;
