//! Orders over HTTP, on every backend: `POST /orders` (with and without `Idempotency-Key`),
//! `POST /orders/{id}/cancel`, `GET /orders/{id}` and `GET /me/orders`, with every status and
//! error code each can answer; strangers who get 404 for orders that are not theirs; a list
//! whose statement count does not grow with the orders; and how parallel requests are answered —
//! twenty 201s for twenty items, one order for one idempotency key, one 200 for one order's
//! cancels. The stock and money behind each answer are the service tests' to check
//! (`service/tests/orders.rs`, `concurrency.rs`); here they are checked only where the HTTP layer
//! refuses a request before any operation runs.

// In a test, a broken expectation is a failed test: expect says so most directly.
#![allow(clippy::expect_used)]

mod support;

use mercado_testkit::{TestDb, backend_tests};
use reqwest::{Response, StatusCode, header};
use serde_json::{Value, json};
use support::{Caller, TestApp, expect_problem, expect_validation_failure, query_count, race};

/// Two sellers, three products and a buyer with 100.00.
struct Shop {
    seller: Caller,
    other_seller: Caller,
    buyer: Caller,
    /// 12.50, 10 in stock, sold by `seller`.
    mug: i64,
    /// 3.00, 5 in stock, sold by `other_seller`.
    plate: i64,
    /// 7.25, 2 in stock, sold by `seller`.
    bowl: i64,
}

async fn product(app: &TestApp, seller: &Caller, sku: &str, price: &str, stock: i64) -> i64 {
    let response = app
        .post_json_as(
            seller,
            "/products",
            &json!({"sku": sku, "name": format!("The {sku}"), "price": price, "stock": stock}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED, "selling {sku}");
    let product: Value = response.json().await.expect("a product");
    product["id"].as_i64().expect("a product id")
}

async fn shop(app: &TestApp) -> Shop {
    let seller = app.register("seller").await;
    let other_seller = app.register("other_seller").await;
    let buyer = app.register_funded("buyer", "100").await;
    Shop {
        mug: product(app, &seller, "mug", "12.50", 10).await,
        plate: product(app, &other_seller, "plate", "3", 5).await,
        bowl: product(app, &seller, "bowl", "7.25", 2).await,
        seller,
        other_seller,
        buyer,
    }
}

/// `POST /orders` as `buyer`, with an `Idempotency-Key` when one is given.
async fn place(app: &TestApp, buyer: &Caller, body: &Value, key: Option<&str>) -> Response {
    let mut request = app
        .client
        .post(app.url("/orders"))
        .bearer_auth(&buyer.token)
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.expect("the server answers")
}

/// Places an order that must succeed, and returns it.
async fn order(app: &TestApp, buyer: &Caller, body: Value) -> Value {
    let response = place(app, buyer, &body, None).await;
    assert_eq!(response.status(), StatusCode::CREATED, "ordering {body}");
    response.json().await.expect("an order")
}

async fn stock_of(app: &TestApp, product_id: i64) -> i64 {
    let product: Value = app
        .get(&format!("/products/{product_id}"))
        .await
        .json()
        .await
        .expect("a product");
    product["stock"].as_i64().expect("a stock")
}

/// Stock of each product, and the balance of each party: what a request the HTTP layer refuses
/// must not change.
async fn snapshot(app: &TestApp, shop: &Shop) -> (Vec<i64>, Vec<String>) {
    let mut stocks = Vec::new();
    for id in [shop.mug, shop.plate, shop.bowl] {
        stocks.push(stock_of(app, id).await);
    }
    let mut balances = Vec::new();
    for party in [&shop.buyer, &shop.seller, &shop.other_seller] {
        balances.push(app.balance_of(party).await);
    }
    (stocks, balances)
}

fn items(lines: &[(i64, i64)]) -> Value {
    json!({
        "items": lines
            .iter()
            .map(|(product_id, quantity)| json!({"product_id": product_id, "quantity": quantity}))
            .collect::<Vec<_>>()
    })
}

/// Each racer's response: its status and body.
async fn outcome(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

backend_tests! {
    async fn an_order_is_created_with_its_location_status_total_and_lines_in_the_order_sent(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;

        let response = place(&app, &shop.buyer, &items(&[(shop.plate, 2), (shop.mug, 3)]), None)
            .await;

        assert_eq!(response.status(), StatusCode::CREATED);
        let location = response.headers()[header::LOCATION].to_str()?.to_owned();
        let placed: Value = response.json().await?;
        assert_eq!(location, format!("/orders/{}", placed["id"]));
        assert_eq!(placed["status"], "paid");
        assert_eq!(placed["total"], "43.50");
        assert!(placed["created_at"].as_str().expect("a time").ends_with('Z'));
        assert_eq!(
            placed["items"],
            json!([
                {"product_id": shop.plate, "name": "The plate", "quantity": 2, "unit_price": "3.00"},
                {"product_id": shop.mug, "name": "The mug", "quantity": 3, "unit_price": "12.50"},
            ]),
            "the lines in the order they were sent"
        );
        Ok(())
    }

    async fn an_order_of_two_sellers_and_its_cancel_are_not_reported_as_an_n_plus_one(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;

        // Three lines, two sellers: a guarded stock UPDATE per line (safelisted), then one
        // settlement UPDATE for the three accounts; the cancel returns stock and settles in one
        // statement each.
        let body = items(&[(shop.mug, 1), (shop.bowl, 1), (shop.plate, 1)]);
        let placed = place(&app, &shop.buyer, &body, None).await;
        assert_eq!(placed.status(), StatusCode::CREATED);
        assert!(!placed.headers().contains_key("x-n-plus-one"), "{:?}", placed.headers().get("x-n-plus-one"));
        let placed: Value = placed.json().await?;
        let cancelled = app
            .post_empty_as(&shop.buyer, &format!("/orders/{}/cancel", placed["id"]))
            .await;

        assert_eq!(cancelled.status(), StatusCode::OK);
        assert!(!cancelled.headers().contains_key("x-n-plus-one"), "{:?}", cancelled.headers().get("x-n-plus-one"));
        Ok(())
    }

    async fn too_little_stock_is_a_conflict_naming_the_product(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;

        let response = place(&app, &shop.buyer, &items(&[(shop.mug, 1), (shop.bowl, 3)]), None)
            .await;

        let problem = expect_problem(response, StatusCode::CONFLICT, "insufficient_stock").await;
        assert_eq!(problem["detail"], format!("Insufficient stock for product {}", shop.bowl));
        Ok(())
    }

    async fn too_little_money_is_a_conflict(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;

        // 9 × 12.50 = 112.50, more than the buyer's 100.00.
        let response = place(&app, &shop.buyer, &items(&[(shop.plate, 1), (shop.mug, 9)]), None)
            .await;

        expect_problem(response, StatusCode::CONFLICT, "insufficient_funds").await;
        Ok(())
    }

    async fn an_unknown_product_is_not_found(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;

        let response = place(&app, &shop.buyer, &items(&[(shop.mug, 1), (999_999, 1)]), None)
            .await;

        expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
        Ok(())
    }

    async fn order_requests_outside_the_rules_are_validation_failures_naming_the_field(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let before = snapshot(&app, &shop).await;
        let fifty_one: Vec<(i64, i64)> = (1..=51).map(|id| (id, 1)).collect();
        let line = |quantity: Value| json!({"items": [{"product_id": shop.mug, "quantity": quantity}]});

        for (body, field) in [
            (json!({"items": []}), "items"),
            (items(&fifty_one), "items"),
            (items(&[(shop.mug, 1), (shop.plate, 1), (shop.mug, 2)]), "items"),
            (line(json!(0)), "items[0].quantity"),
            (line(json!(1001)), "items[0].quantity"),
            (line(json!(-1)), "items[0].quantity"),
            (line(json!(i64::MAX)), "items[0].quantity"),
            (line(json!(1.5)), "items[0].quantity"),
            (line(json!(1e300)), "items[0].quantity"),
            (line(json!("2")), "items[0].quantity"),
            (line(json!(null)), "items[0].quantity"),
            (items(&[(shop.plate, 1), (shop.mug, 0)]), "items[1].quantity"),
            (json!({"items": [{"product_id": "1; DROP TABLE orders", "quantity": 1}]}), "items[0].product_id"),
            (json!({"items": [{"product_id": 1.5, "quantity": 1}]}), "items[0].product_id"),
            (json!({"items": [{"quantity": 1}]}), "product_id"),
            (json!({"items": {"product_id": shop.mug, "quantity": 1}}), "items"),
            (json!({"items": null}), "items"),
            (json!({}), "items"),
        ] {
            let response = place(&app, &shop.buyer, &body, None).await;
            let detail = expect_validation_failure(response).await;
            assert!(detail.starts_with(field) || detail.contains(&format!("`{field}`")), "{body}: {detail}");
        }
        assert_eq!(snapshot(&app, &shop).await, before);
        Ok(())
    }

    async fn ordering_needs_a_token(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let anonymous = [
            app.post_json("/orders", &items(&[(shop.mug, 1)])).await,
            app.client.post(app.url("/orders/1/cancel")).send().await?,
            app.get("/orders/1").await,
            app.get("/me/orders").await,
        ];

        for response in anonymous {
            expect_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        }
        Ok(())
    }

    async fn orders_are_placed_with_post_and_cancelled_with_post_only(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let buyer = app.register("buyer").await;

        let list = app.get_as(&buyer, "/orders").await;
        let cancel = app.get_as(&buyer, "/orders/1/cancel").await;
        let delete = app.client.delete(app.url("/orders/1")).bearer_auth(&buyer.token).send().await?;

        assert_eq!(list.headers()[header::ALLOW], "POST");
        assert_eq!(cancel.headers()[header::ALLOW], "POST");
        assert_eq!(delete.headers()[header::ALLOW], "GET,HEAD");
        for response in [list, cancel, delete] {
            expect_problem(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
        }
        Ok(())
    }

    async fn a_repeated_idempotency_key_answers_with_the_first_order_and_its_location(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let body = items(&[(shop.mug, 2)]);

        let first = place(&app, &shop.buyer, &body, Some("order-1")).await;
        assert_eq!(first.status(), StatusCode::CREATED);
        let first: Value = first.json().await?;
        let again = place(&app, &shop.buyer, &body, Some("order-1")).await;

        assert_eq!(again.status(), StatusCode::CREATED);
        let location = again.headers()[header::LOCATION].to_str()?.to_owned();
        assert_eq!(again.json::<Value>().await?, first);
        assert_eq!(location, format!("/orders/{}", first["id"]));
        Ok(())
    }

    async fn a_reused_idempotency_key_with_other_lines_is_refused(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        order_with_key(&app, &shop.buyer, items(&[(shop.mug, 1)]), "order-1").await;

        let other_quantity = place(&app, &shop.buyer, &items(&[(shop.mug, 2)]), Some("order-1")).await;
        let other_product = place(&app, &shop.buyer, &items(&[(shop.plate, 1)]), Some("order-1")).await;

        expect_problem(other_quantity, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
        expect_problem(other_product, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
        Ok(())
    }

    async fn only_a_successful_order_binds_its_idempotency_key(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;

        let refused = place(&app, &shop.buyer, &items(&[(shop.bowl, 3)]), Some("retry-me")).await;
        expect_problem(refused, StatusCode::CONFLICT, "insufficient_stock").await;
        let accepted = place(&app, &shop.buyer, &items(&[(shop.bowl, 2)]), Some("retry-me")).await;

        assert_eq!(accepted.status(), StatusCode::CREATED);
        Ok(())
    }

    async fn idempotency_keys_belong_to_their_user(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let other_buyer = app.register_funded("other_buyer", "100").await;
        let body = items(&[(shop.mug, 1)]);

        let first = order_with_key(&app, &shop.buyer, body.clone(), "shared-key").await;
        let second = order_with_key(&app, &other_buyer, body, "shared-key").await;

        assert_ne!(first["id"], second["id"]);
        Ok(())
    }

    async fn an_idempotency_key_must_be_1_to_255_characters_sent_once(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let body = items(&[(shop.mug, 1)]);
        let before = snapshot(&app, &shop).await;

        for key in [String::new(), "k".repeat(256)] {
            let response = place(&app, &shop.buyer, &body, Some(&key)).await;
            let detail = expect_validation_failure(response).await;
            assert!(detail.starts_with("Idempotency-Key: "), "{} characters: {detail}", key.len());
        }
        let twice = app
            .client
            .post(app.url("/orders"))
            .bearer_auth(&shop.buyer.token)
            .header("idempotency-key", "a")
            .header("idempotency-key", "b")
            .json(&body)
            .send()
            .await?;
        assert!(expect_validation_failure(twice).await.starts_with("Idempotency-Key: "));
        let not_ascii = app
            .client
            .post(app.url("/orders"))
            .bearer_auth(&shop.buyer.token)
            .header("idempotency-key", header::HeaderValue::from_bytes(b"caf\xc3\xa9")?)
            .json(&body)
            .send()
            .await?;
        assert!(expect_validation_failure(not_ascii).await.starts_with("Idempotency-Key: "));
        assert_eq!(snapshot(&app, &shop).await, before);

        let longest = place(&app, &shop.buyer, &body, Some(&"k".repeat(255))).await;
        assert_eq!(longest.status(), StatusCode::CREATED);
        Ok(())
    }

    async fn a_cancel_answers_with_the_cancelled_order_and_reading_it_says_so(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let placed = order(&app, &shop.buyer, items(&[(shop.mug, 2), (shop.plate, 1)])).await;

        let response = app
            .post_empty_as(&shop.buyer, &format!("/orders/{}/cancel", placed["id"]))
            .await;

        assert_eq!(response.status(), StatusCode::OK);
        let cancelled: Value = response.json().await?;
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(cancelled["id"], placed["id"]);
        assert_eq!(cancelled["total"], placed["total"]);
        assert_eq!(cancelled["items"], placed["items"]);
        let read: Value = app
            .get_as(&shop.buyer, &format!("/orders/{}", placed["id"]))
            .await
            .json()
            .await?;
        assert_eq!(read["status"], "cancelled");
        Ok(())
    }

    async fn cancelling_an_order_a_second_time_is_a_conflict(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let placed = order(&app, &shop.buyer, items(&[(shop.mug, 2)])).await;
        let cancel = format!("/orders/{}/cancel", placed["id"]);
        assert_eq!(app.post_empty_as(&shop.buyer, &cancel).await.status(), StatusCode::OK);

        let again = app.post_empty_as(&shop.buyer, &cancel).await;

        expect_problem(again, StatusCode::CONFLICT, "order_not_cancellable").await;
        Ok(())
    }

    async fn an_order_whose_seller_spent_the_money_is_a_conflict_to_cancel_and_stays_paid(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let placed = order(&app, &shop.buyer, items(&[(shop.mug, 1), (shop.plate, 1)])).await;
        // The other seller passes on the 3.00 they were paid.
        let spent = app
            .post_json_as(
                &shop.other_seller,
                "/transfers",
                &json!({"to_user_id": shop.seller.id, "amount": "2"}),
            )
            .await;
        assert_eq!(spent.status(), StatusCode::CREATED);

        let response = app
            .post_empty_as(&shop.buyer, &format!("/orders/{}/cancel", placed["id"]))
            .await;

        expect_problem(response, StatusCode::CONFLICT, "order_not_cancellable").await;
        let read: Value = app
            .get_as(&shop.buyer, &format!("/orders/{}", placed["id"]))
            .await
            .json()
            .await?;
        assert_eq!(read["status"], "paid");
        Ok(())
    }

    async fn the_buyer_reads_their_order_as_it_was_placed(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let placed = order(&app, &shop.buyer, items(&[(shop.bowl, 1), (shop.mug, 1)])).await;

        let response = app.get_as(&shop.buyer, &format!("/orders/{}", placed["id"])).await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.json::<Value>().await?, placed);
        Ok(())
    }

    async fn strangers_get_404_for_orders_that_are_not_theirs(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let placed = order(&app, &shop.buyer, items(&[(shop.mug, 1)])).await;
        let theirs = placed["id"].as_i64().expect("an id");
        let nobodys = theirs + 1000;

        // The seller of the product is a stranger to the order too.
        for stranger in [&shop.seller, &shop.other_seller] {
            for id in [theirs, nobodys] {
                let read = app.get_as(stranger, &format!("/orders/{id}")).await;
                let cancel = app.post_empty_as(stranger, &format!("/orders/{id}/cancel")).await;
                let read = expect_problem(read, StatusCode::NOT_FOUND, "not_found").await;
                let cancel = expect_problem(cancel, StatusCode::NOT_FOUND, "not_found").await;
                assert_eq!(read["detail"], "order not found", "{id}");
                assert_eq!(cancel["detail"], "order not found", "{id}");
            }
            let listed: Value = app.get_as(stranger, "/me/orders").await.json().await?;
            assert_eq!(listed, json!({"orders": []}));
        }
        Ok(())
    }

    async fn an_order_id_that_is_not_an_integer_is_a_validation_failure(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let buyer = app.register("buyer").await;

        for id in ["abc", "1.5", "99999999999999999999"] {
            let read = app.get_as(&buyer, &format!("/orders/{id}")).await;
            let cancel = app.post_empty_as(&buyer, &format!("/orders/{id}/cancel")).await;
            assert!(expect_validation_failure(read).await.starts_with("id: "), "{id}");
            assert!(expect_validation_failure(cancel).await.starts_with("id: "), "{id}");
        }
        Ok(())
    }

    async fn my_orders_are_listed_newest_first_with_their_items(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let first = order(&app, &shop.buyer, items(&[(shop.mug, 1)])).await;
        let second = order(&app, &shop.buyer, items(&[(shop.plate, 2), (shop.bowl, 1)])).await;
        let cancelled = app
            .post_empty_as(&shop.buyer, &format!("/orders/{}/cancel", first["id"]))
            .await
            .json::<Value>()
            .await?;

        let response = app.get_as(&shop.buyer, "/me/orders").await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.json::<Value>().await?, json!({"orders": [second, cancelled]}));
        Ok(())
    }

    async fn my_orders_take_as_many_statements_for_eight_orders_as_for_two(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let pen = product(&app, &shop.seller, "pen", "1", 100).await;
        let ink = product(&app, &shop.other_seller, "ink", "0.50", 100).await;
        let mut counts = Vec::new();

        for n in 1..=8 {
            order(&app, &shop.buyer, items(&[(pen, 2), (ink, 1)])).await;
            if n == 2 || n == 8 {
                let response = app.get_as(&shop.buyer, "/me/orders").await;
                assert_eq!(response.status(), StatusCode::OK);
                assert!(!response.headers().contains_key("x-n-plus-one"));
                counts.push(query_count(&response));
                let listed: Value = response.json().await?;
                assert_eq!(listed["orders"].as_array().map(Vec::len), Some(n));
            }
        }

        assert_eq!(counts[0], counts[1], "2 orders, then 8");
        // The token, then the orders joined to their items and products: one statement.
        assert_eq!(counts[1], 2, "GET /me/orders");
        let one = app.get_as(&shop.buyer, "/me/orders").await;
        let first_id = one.json::<Value>().await?["orders"][0]["id"].clone();
        let single = app.get_as(&shop.buyer, &format!("/orders/{first_id}")).await;
        assert_eq!(query_count(&single), 2, "GET /orders/{{id}}");
        Ok(())
    }

    async fn sixteen_clients_racing_for_twenty_items_buy_exactly_twenty(
        db: TestDb
    ) -> anyhow::Result<()> {
        const CLIENTS: usize = 16;
        const ATTEMPTS_EACH: usize = 2;
        let app = TestApp::spawn(&db).await;
        let seller = app.register("seller").await;
        let scarce = product(&app, &seller, "scarce", "1.50", 20).await;
        let mut buyers = Vec::new();
        for n in 0..CLIENTS {
            buyers.push(app.register_funded(&format!("buyer{n}"), "10").await);
        }

        // Each client its own connections, as separate machines would have.
        let clients: Vec<_> = buyers.iter().map(|_| support::client()).collect();
        let outcomes = race(CLIENTS * ATTEMPTS_EACH, |i| {
            let buyer = i / ATTEMPTS_EACH;
            let request = clients[buyer]
                .post(app.url("/orders"))
                .bearer_auth(&buyers[buyer].token)
                .json(&items(&[(scarce, 1)]));
            async move { outcome(request.send().await.expect("the server answers")).await }
        })
        .await;

        let placed = outcomes.iter().filter(|(status, _)| *status == StatusCode::CREATED).count();
        assert_eq!(placed, 20, "{outcomes:?}");
        for (status, body) in outcomes.iter().filter(|(status, _)| *status != StatusCode::CREATED) {
            assert_eq!(*status, StatusCode::CONFLICT, "{body}");
            assert_eq!(body["code"], "insufficient_stock", "{body}");
        }
        Ok(())
    }

    async fn one_idempotency_key_sent_ten_times_at_once_is_answered_ten_times_with_one_order(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let outcomes = race(10, |_| {
            let request = support::client()
                .post(app.url("/orders"))
                .bearer_auth(&shop.buyer.token)
                .header("idempotency-key", "checkout-7f3a")
                .json(&items(&[(shop.mug, 2), (shop.plate, 1)]));
            async move { outcome(request.send().await.expect("the server answers")).await }
        })
        .await;

        for (status, body) in &outcomes {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            assert_eq!(body["id"], outcomes[0].1["id"], "one order id");
        }
        Ok(())
    }

    async fn ten_cancels_at_once_succeed_once_and_are_a_conflict_nine_times(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let shop = shop(&app).await;
        let placed = order(&app, &shop.buyer, items(&[(shop.mug, 2), (shop.plate, 1)])).await;
        let cancel = app.url(&format!("/orders/{}/cancel", placed["id"]));
        let outcomes = race(10, |_| {
            let request = support::client().post(&cancel).bearer_auth(&shop.buyer.token);
            async move { outcome(request.send().await.expect("the server answers")).await }
        })
        .await;

        let cancelled = outcomes.iter().filter(|(status, _)| *status == StatusCode::OK).count();
        assert_eq!(cancelled, 1, "{outcomes:?}");
        for (status, body) in outcomes.iter().filter(|(status, _)| *status != StatusCode::OK) {
            assert_eq!(*status, StatusCode::CONFLICT, "{body}");
            assert_eq!(body["code"], "order_not_cancellable", "{body}");
        }
        Ok(())
    }
}

/// Places an order with an idempotency key that must succeed, and returns it.
async fn order_with_key(app: &TestApp, buyer: &Caller, body: Value, key: &str) -> Value {
    let response = place(app, buyer, &body, Some(key)).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "ordering {body} with {key}"
    );
    response.json().await.expect("an order")
}
