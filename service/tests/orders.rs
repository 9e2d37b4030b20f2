//! Placing, cancelling and reading orders, on every configured backend: stock, balances and
//! orders always agree, and every refusal leaves nothing behind.

mod support;

use std::sync::atomic::Ordering;

use entity::products;
use mercado_testkit::{Backend, TestDb, backend_tests};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, Set,
};
use service::{
    ServiceError,
    domain::{
        money::Money,
        orders::{IdempotencyKey, OrderStatus, PlaceOrder},
    },
    ops::{
        self,
        money::transfer,
        orders::{cancel_order, get_order, list_orders, place_order},
    },
};
use sql_observe::{self as observe, ObserveConfig, SafelistEntry, Scope, ScopeReport};
use support::*;

/// A shop: a buyer with 100.00 and two sellers, each with one product.
struct Shop {
    buyer: i64,
    seller_a: i64,
    seller_b: i64,
    /// Sold by `seller_a` at 2.50, 10 in stock.
    pen: i64,
    /// Sold by `seller_b` at 10.00, 5 in stock.
    book: i64,
}

async fn shop(db: &DatabaseConnection) -> anyhow::Result<Shop> {
    let seller_a = user_with(db, "seller_a", "0").await?;
    let seller_b = user_with(db, "seller_b", "0").await?;
    let buyer = user_with(db, "buyer", "100").await?;
    let pen = product(db, seller_a, "PEN", "2.50", 10).await?.id;
    let book = product(db, seller_b, "BOOK", "10.00", 5).await?.id;
    Ok(Shop {
        buyer,
        seller_a,
        seller_b,
        pen,
        book,
    })
}

/// Everything an order can change, to compare before and after.
#[derive(Debug, PartialEq)]
struct Snapshot {
    balances: Vec<Money>,
    stock: Vec<i32>,
    orders: u64,
    items: u64,
}

async fn snapshot(db: &DatabaseConnection, shop: &Shop) -> anyhow::Result<Snapshot> {
    let mut balances = Vec::new();
    for user in [shop.buyer, shop.seller_a, shop.seller_b] {
        balances.push(balance(db, user).await?);
    }
    Ok(Snapshot {
        balances,
        stock: vec![stock(db, shop.pen).await?, stock(db, shop.book).await?],
        orders: order_count(db).await?,
        items: order_item_count(db).await?,
    })
}

fn keyed(pairs: &[(i64, i64)], key: &str) -> anyhow::Result<PlaceOrder> {
    Ok(PlaceOrder {
        lines: lines(pairs),
        idempotency_key: Some(IdempotencyKey::parse(key)?),
    })
}

backend_tests! {
    async fn an_order_takes_stock_debits_the_buyer_and_pays_each_seller(db: TestDb) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;

        // Sent with the higher product id first: the items keep this order.
        let order = place_order(&db.conn, shop.buyer, order_of(&[(shop.book, 2), (shop.pen, 3)])).await?;

        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(order.total, money("27.50"));
        let items: Vec<_> = order.items.iter()
            .map(|i| (i.product_id, i.name.as_str(), i.quantity, i.unit_price.to_string()))
            .collect();
        assert_eq!(items, vec![
            (shop.book, "Product BOOK", 2, "10.00".to_owned()),
            (shop.pen, "Product PEN", 3, "2.50".to_owned()),
        ]);
        assert_eq!(snapshot(&db.conn, &shop).await?, Snapshot {
            balances: vec![money("72.50"), money("7.50"), money("20.00")],
            stock: vec![7, 3],
            orders: 1,
            items: 2,
        });
        assert_eq!(get_order(&db.conn, shop.buyer, order.id).await?, order);
        Ok(())
    }

    async fn an_order_keeps_the_prices_it_was_placed_at(db: TestDb) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        let order = place_order(&db.conn, shop.buyer, order_of(&[(shop.pen, 1)])).await?;

        let mut pen = products::Entity::find_by_id(shop.pen).one(&db.conn).await?
            .ok_or_else(|| anyhow::anyhow!("the pen exists"))?
            .into_active_model();
        pen.price = Set(money("99.00").as_decimal());
        pen.update(&db.conn).await?;

        let read = get_order(&db.conn, shop.buyer, order.id).await?;
        assert_eq!(read.items[0].unit_price, money("2.50"));
        assert_eq!(read.total, money("2.50"));
        Ok(())
    }

    async fn an_unknown_product_is_not_found_and_changes_nothing(db: TestDb) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        let before = snapshot(&db.conn, &shop).await?;

        let result = place_order(&db.conn, shop.buyer, order_of(&[(shop.pen, 1), (4242, 1)])).await;

        assert!(matches!(result, Err(ServiceError::NotFound { resource: "product" })), "{result:?}");
        assert_eq!(snapshot(&db.conn, &shop).await?, before);
        Ok(())
    }

    async fn too_little_stock_names_the_product_and_changes_nothing(db: TestDb) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        let before = snapshot(&db.conn, &shop).await?;

        // The pen line succeeds first (lower id), then the book line fails: the pen comes back.
        let result = place_order(&db.conn, shop.buyer, order_of(&[(shop.pen, 2), (shop.book, 6)])).await;

        assert!(
            matches!(result, Err(ServiceError::InsufficientStock { product_id }) if product_id == shop.book),
            "{result:?}"
        );
        assert_eq!(
            result.err().map(|e| e.to_string()),
            Some(format!("Insufficient stock for product {}", shop.book))
        );
        assert_eq!(snapshot(&db.conn, &shop).await?, before);
        Ok(())
    }

    async fn the_last_items_in_stock_can_be_bought(db: TestDb) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        place_order(&db.conn, shop.buyer, order_of(&[(shop.book, 5)])).await?;
        assert_eq!(stock(&db.conn, shop.book).await?, 0);
        let more = place_order(&db.conn, shop.buyer, order_of(&[(shop.book, 1)])).await;
        assert!(matches!(more, Err(ServiceError::InsufficientStock { .. })), "{more:?}");
        Ok(())
    }

    async fn too_little_money_is_refused_and_changes_nothing(db: TestDb) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        transfer(&db.conn, shop.buyer, shop.seller_a, money("80"), None).await?;
        let tiny = product(&db.conn, shop.seller_b, "TINY", "0.01", 1).await?;
        let before = snapshot(&db.conn, &shop).await?;

        // 20.01 against a balance of 20.00: the stock was taken before the debit failed.
        let result = place_order(&db.conn, shop.buyer, order_of(&[(shop.book, 2), (tiny.id, 1)])).await;

        assert!(matches!(result, Err(ServiceError::InsufficientFunds)), "{result:?}");
        assert_eq!(snapshot(&db.conn, &shop).await?, before);
        assert_eq!(stock(&db.conn, tiny.id).await?, 1);
        Ok(())
    }

    async fn a_repeated_idempotency_key_with_the_same_lines_returns_the_first_order_and_changes_nothing(
        db: TestDb
    ) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        let first = place_order(&db.conn, shop.buyer, keyed(&[(shop.pen, 1), (shop.book, 1)], "k-1")?).await?;
        let after_first = snapshot(&db.conn, &shop).await?;

        let again = place_order(&db.conn, shop.buyer, keyed(&[(shop.pen, 1), (shop.book, 1)], "k-1")?).await?;

        assert_eq!(again, first);
        assert_eq!(snapshot(&db.conn, &shop).await?, after_first);
        Ok(())
    }

    async fn a_repeated_idempotency_key_with_other_lines_is_refused(db: TestDb) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        place_order(&db.conn, shop.buyer, keyed(&[(shop.pen, 1), (shop.book, 1)], "k-1")?).await?;
        let after_first = snapshot(&db.conn, &shop).await?;

        for other in [&[(shop.pen, 2), (shop.book, 1)][..], &[(shop.book, 1), (shop.pen, 1)], &[(shop.pen, 1)]] {
            let result = place_order(&db.conn, shop.buyer, keyed(other, "k-1")?).await;
            assert!(matches!(result, Err(ServiceError::IdempotencyKeyReused)), "{other:?}: {result:?}");
        }
        assert_eq!(snapshot(&db.conn, &shop).await?, after_first);
        Ok(())
    }

    async fn a_failed_order_does_not_bind_its_idempotency_key(db: TestDb) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        let failed = place_order(&db.conn, shop.buyer, keyed(&[(shop.book, 50)], "k-1")?).await;
        assert!(matches!(failed, Err(ServiceError::InsufficientStock { .. })), "{failed:?}");

        let placed = place_order(&db.conn, shop.buyer, keyed(&[(shop.book, 1)], "k-1")?).await?;

        assert_eq!(placed.items.len(), 1);
        assert_eq!(order_count(&db.conn).await?, 1);
        Ok(())
    }

    async fn idempotency_keys_belong_to_one_buyer(db: TestDb) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        let other_buyer = user_with(&db.conn, "other_buyer", "100").await?;

        let first = place_order(&db.conn, shop.buyer, keyed(&[(shop.pen, 1)], "same")?).await?;
        let second = place_order(&db.conn, other_buyer, keyed(&[(shop.pen, 1)], "same")?).await?;

        assert_ne!(first.id, second.id);
        assert_eq!(stock(&db.conn, shop.pen).await?, 8);
        Ok(())
    }

    async fn buying_ones_own_product_debits_and_credits_the_same_account(db: TestDb) -> anyhow::Result<()> {
        let maker = user_with(&db.conn, "maker", "10").await?;
        let own = product(&db.conn, maker, "OWN", "4", 5).await?;
        let before = money_in_system(&db.conn).await?;

        place_order(&db.conn, maker, order_of(&[(own.id, 2)])).await?;
        assert_eq!(balance(&db.conn, maker).await?, money("10"));
        assert_eq!(stock(&db.conn, own.id).await?, 3);

        // The buyer pays before being paid, so the whole total must be covered.
        let result = place_order(&db.conn, maker, order_of(&[(own.id, 3)])).await;
        assert!(matches!(result, Err(ServiceError::InsufficientFunds)), "{result:?}");
        assert_eq!(money_in_system(&db.conn).await?, before);
        Ok(())
    }

    async fn cancelling_returns_stock_refunds_the_buyer_and_takes_back_each_sellers_share(
        db: TestDb
    ) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        let before = snapshot(&db.conn, &shop).await?;
        let order = place_order(&db.conn, shop.buyer, order_of(&[(shop.book, 2), (shop.pen, 3)])).await?;

        let cancelled = cancel_order(&db.conn, shop.buyer, order.id).await?;

        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert_eq!((cancelled.id, cancelled.total, &cancelled.items), (order.id, order.total, &order.items));
        let after = snapshot(&db.conn, &shop).await?;
        assert_eq!((after.balances, after.stock), (before.balances, before.stock));
        assert_eq!(get_order(&db.conn, shop.buyer, order.id).await?.status, OrderStatus::Cancelled);
        Ok(())
    }

    async fn an_order_from_many_sellers_settles_its_accounts_and_stock_in_one_statement_each(
        db: TestDb
    ) -> anyhow::Result<()> {
        let mut conn = db.conn.clone();
        // The service's own safelist, as the application installs it.
        let config = ops::INTENDED_REPEATS.iter().fold(ObserveConfig::default(), |config, (fingerprint, reason)| {
            config.safelist(SafelistEntry::new(*fingerprint, *reason))
        });
        observe::install(&mut conn, config);
        let buyer = user_with(&conn, "many_buyer", "1000").await?;
        let updates_of = |report: &ScopeReport, table: &str| {
            // PostgreSQL and SQLite quote identifiers with `"`, MySQL with a backtick.
            let prefixes = [format!("UPDATE \"{table}\""), format!("UPDATE `{table}`")];
            report.statements.iter().filter(|s| prefixes.iter().any(|p| s.sql.starts_with(p))).count()
        };

        let mut updates = Vec::new();
        for sellers in [2, 5, 10] {
            let mut pairs = Vec::new();
            for s in 0..sellers {
                let seller = user_with(&conn, &format!("seller{sellers}_{s}"), "0").await?;
                pairs.push((product(&conn, seller, &format!("P{sellers}_{s}"), "1.00", 5).await?.id, 1));
            }
            let (placed, placing) =
                observe::scope(Scope::test("place"), place_order(&conn, buyer, order_of(&pairs))).await;
            let order = placed?;
            let (cancelled, cancelling) =
                observe::scope(Scope::test("cancel"), cancel_order(&conn, buyer, order.id)).await;
            cancelled?;

            assert!(placing.findings.is_empty(), "{:#?}", placing.findings);
            assert!(cancelling.findings.is_empty(), "{:#?}", cancelling.findings);
            updates.push((
                updates_of(&placing, "accounts"),
                updates_of(&cancelling, "accounts"),
                updates_of(&cancelling, "inventory"),
            ));
        }

        assert_eq!(updates, [(1, 1, 1); 3], "(place: accounts, cancel: accounts, inventory)");
        assert_eq!(balance(&conn, buyer).await?, Money::amount("1000")?);
        Ok(())
    }

    async fn an_order_is_cancelled_only_once(db: TestDb) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        let order = place_order(&db.conn, shop.buyer, order_of(&[(shop.pen, 1)])).await?;
        cancel_order(&db.conn, shop.buyer, order.id).await?;
        let after_first = snapshot(&db.conn, &shop).await?;

        let again = cancel_order(&db.conn, shop.buyer, order.id).await;

        assert!(matches!(again, Err(ServiceError::OrderNotCancellable { .. })), "{again:?}");
        assert!(again.err().map(|e| e.to_string()).unwrap_or_default().contains("already cancelled"));
        assert_eq!(snapshot(&db.conn, &shop).await?, after_first);
        Ok(())
    }

    async fn someone_elses_order_is_not_found_to_cancel_or_read(db: TestDb) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        let order = place_order(&db.conn, shop.buyer, order_of(&[(shop.pen, 1)])).await?;
        let after_order = snapshot(&db.conn, &shop).await?;

        let cancel = cancel_order(&db.conn, shop.seller_a, order.id).await;
        let read = get_order(&db.conn, shop.seller_a, order.id).await;
        let missing = get_order(&db.conn, shop.buyer, order.id + 1).await;

        for result in [cancel, read, missing] {
            assert!(matches!(result, Err(ServiceError::NotFound { resource: "order" })), "{result:?}");
        }
        assert_eq!(snapshot(&db.conn, &shop).await?, after_order);
        Ok(())
    }

    async fn an_order_whose_seller_spent_the_money_cannot_be_cancelled_and_nothing_changes(
        db: TestDb
    ) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        let order = place_order(&db.conn, shop.buyer, order_of(&[(shop.pen, 2), (shop.book, 1)])).await?;
        // seller_b received 10.00 and gives 0.01 of it away.
        transfer(&db.conn, shop.seller_b, shop.seller_a, money("0.01"), None).await?;
        let before = snapshot(&db.conn, &shop).await?;

        let result = cancel_order(&db.conn, shop.buyer, order.id).await;

        assert!(matches!(result, Err(ServiceError::OrderNotCancellable { .. })), "{result:?}");
        assert_eq!(snapshot(&db.conn, &shop).await?, before);
        assert_eq!(get_order(&db.conn, shop.buyer, order.id).await?.status, OrderStatus::Paid);
        Ok(())
    }

    async fn a_buyers_orders_are_listed_newest_first_in_one_statement_however_many(
        db: TestDb
    ) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        let other = user_with(&db.conn, "other", "100").await?;
        place_order(&db.conn, other, order_of(&[(shop.pen, 1)])).await?;
        let (counted, statements) = counting_connection(&db, every_statement);

        let first = place_order(&db.conn, shop.buyer, order_of(&[(shop.book, 1), (shop.pen, 1)])).await?;
        statements.store(0, Ordering::SeqCst);
        let one = list_orders(&counted, shop.buyer).await?;
        let for_one = statements.swap(0, Ordering::SeqCst);

        let mut placed = vec![first];
        for _ in 0..4 {
            placed.push(place_order(&db.conn, shop.buyer, order_of(&[(shop.pen, 1)])).await?);
        }
        let five = list_orders(&counted, shop.buyer).await?;
        let for_five = statements.load(Ordering::SeqCst);

        assert_eq!(one.len(), 1);
        // The orders joined to their lines and products: one statement, with no transaction.
        assert_eq!((for_one, for_five), (1, 1));
        placed.reverse();
        assert_eq!(five, placed);
        assert!(list_orders(&db.conn, shop.seller_a).await?.is_empty());
        Ok(())
    }

    async fn a_failure_in_the_last_step_of_an_order_rolls_every_step_back(db: TestDb) -> anyhow::Result<()> {
        let shop = shop(&db.conn).await?;
        let before = snapshot(&db.conn, &shop).await?;
        let break_order_items: &[&str] = match db.backend {
            Backend::Postgres => &[
                "CREATE FUNCTION refuse_order_items() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'boom'; END $$",
                "CREATE TRIGGER refuse_order_items BEFORE INSERT ON order_items \
                 FOR EACH ROW EXECUTE FUNCTION refuse_order_items()",
            ],
            Backend::Sqlite => &[
                "CREATE TRIGGER refuse_order_items BEFORE INSERT ON order_items \
                 BEGIN SELECT RAISE(ABORT, 'boom'); END",
            ],
            Backend::Mysql => &[
                "CREATE TRIGGER refuse_order_items BEFORE INSERT ON order_items \
                 FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom'",
            ],
        };
        for sql in break_order_items {
            db.conn.execute_unprepared(sql).await?;
        }

        // Stock taken, buyer debited, sellers credited, order inserted — then the items fail.
        let result = place_order(&db.conn, shop.buyer, keyed(&[(shop.book, 1), (shop.pen, 2)], "k")?).await;

        assert!(matches!(result, Err(ServiceError::Unexpected { .. })), "{result:?}");
        assert_eq!(snapshot(&db.conn, &shop).await?, before);

        // Without the trigger the very same order goes through (and its key was never bound).
        let repair = match db.backend {
            Backend::Postgres => "DROP TRIGGER refuse_order_items ON order_items",
            Backend::Sqlite | Backend::Mysql => "DROP TRIGGER refuse_order_items",
        };
        db.conn.execute_unprepared(repair).await?;
        place_order(&db.conn, shop.buyer, keyed(&[(shop.book, 1), (shop.pen, 2)], "k")?).await?;
        assert_ne!(snapshot(&db.conn, &shop).await?, before);
        Ok(())
    }
}
