-- The oversell guard of place_order: service::repo::products::take_stock's one statement,
-- byte for byte as service::observe captured it (mercado-bench checks this on every run).
--
-- The quantity is 0, not BEGIN … ROLLBACK around a real quantity: with 0 the statement does
-- all the work the real one does (the index probe, the row lock, a new row version, WAL, and a
-- commit, as place_order commits) but never drains the stock, so a run of any length measures
-- the same thing from start to end. A rolled-back transaction would skip the commit's WAL
-- flush and add BEGIN/ROLLBACK round trips the service does not send per statement.
-- Run with -D pid_min/pid_max: the seeded products' id range.
\set pid random(:pid_min, :pid_max)
\set qty 0
UPDATE "inventory" SET "quantity" = "quantity" - :qty WHERE "inventory"."product_id" = :pid AND "inventory"."quantity" >= :qty;
