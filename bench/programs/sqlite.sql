-- SQLite workload: bulk inserts, indexes, aggregate and join queries,
-- updates and deletes. Row count comes from the bound parameter @n
-- (sqlite3 -cmd ".parameter set @n 100000" DB < sqlite.sql).
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -65536;

CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, item TEXT, qty INTEGER, price REAL, note TEXT);

BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < @n / 10)
INSERT INTO customers SELECT x, 'customer-' || x, 'city-' || (x * 7919 % 97) FROM c;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < @n)
INSERT INTO orders
  SELECT x, 1 + (x * 2654435761 % (@n / 10)), 'item-' || (x * 40503 % 1000),
         1 + x % 17, (x * 31 % 10000) / 100.0,
         substr('lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod', 1 + x % 40, 10 + x % 50)
  FROM c;
COMMIT;

CREATE INDEX orders_customer ON orders(customer);
CREATE INDEX orders_item ON orders(item, qty);

SELECT 'count', count(*), sum(qty), round(sum(qty * price), 2) FROM orders;
SELECT city, count(*), round(sum(o.qty * o.price), 2) AS total
  FROM orders o JOIN customers c ON c.id = o.customer
  GROUP BY city ORDER BY total DESC, city LIMIT 5;
SELECT item, sum(qty) AS q FROM orders GROUP BY item ORDER BY q DESC, item LIMIT 5;
SELECT count(*) FROM orders WHERE note LIKE '%dolor%';
SELECT group_concat(name, ',') FROM (SELECT name FROM customers ORDER BY name DESC LIMIT 5);

BEGIN;
UPDATE orders SET note = upper(note) || '-' || id WHERE id % 3 = 0;
DELETE FROM orders WHERE qty > 14;
COMMIT;
SELECT 'after', count(*), sum(length(note)) FROM orders;
SELECT customer, count(*) AS n FROM orders GROUP BY customer ORDER BY n DESC, customer LIMIT 3;
