//! Mercado on the running topology of `scripts/cluster`: HAProxy round robin over three API
//! processes, PgBouncer (transaction pooling) in front of the primary, a streaming replica for
//! reads. Black box: HTTP through the balancer, SQL on the primary to check what is stored.
//! These tests leave the cluster as they found it and may run in parallel; the ones that stop or
//! kill a component are in `disruptive.rs`.
//!
//! Ignored without a cluster: `scripts/topology-test` runs them (`--ignored`).

// In a test, a broken expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use futures::future::join_all;
use mercado_topology::{APPS, Answer, Api, Topology, User, int, unique};
use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::StatusCode;
use serde_json::json;

fn setup() -> anyhow::Result<(Topology, Api)> {
    let topology = Topology::from_env()?;
    let api = Api::new(topology.balancer_url())?;
    Ok((topology, api))
}

/// The processes that served `answers`.
fn served_by(answers: &[Answer]) -> BTreeSet<String> {
    answers.iter().filter_map(|a| a.served_by.clone()).collect()
}

async fn funded(api: &Api, name: &str, amount: &str) -> anyhow::Result<User> {
    let user = api.register(&unique(name)).await?;
    api.deposit(&user, amount).await?;
    Ok(user)
}

#[tokio::test]
#[ignore = "needs the scripts/cluster topology; scripts/topology-test runs it"]
async fn the_main_flows_work_through_the_balancer_and_reach_every_process() -> anyhow::Result<()> {
    let (_, api) = setup()?;
    let mut answers = Vec::new();
    let seller = api.register(&unique("seller")).await?;
    let buyer = funded(&api, "buyer", "100").await?;
    let friend = api.register(&unique("friend")).await?;

    // users
    let me = api.send(api.get("/me", &buyer.token)).await?;
    ensure!(me.status == StatusCode::OK, "GET /me: {}", me.body);
    ensure!(
        me.body["balance"] == "100.00",
        "balance after deposit: {}",
        me.body
    );
    answers.push(me);
    let public = api
        .send(api.get(&format!("/users/{}", friend.id), ""))
        .await?;
    ensure!(public.status == StatusCode::OK && public.body.get("email").is_none());
    answers.push(public);

    // products
    let sku = unique("SKU");
    let product = api.product(&seller, &sku, "12.50", 10).await?;
    let shown = api
        .send(api.get(&format!("/products/{product}"), ""))
        .await?;
    ensure!(shown.body["stock"] == 10, "{}", shown.body);
    answers.push(shown);
    let found = api.send(api.get(&format!("/products?q={sku}"), "")).await?;
    ensure!(found.body["total"] == 1, "search for {sku}: {}", found.body);
    answers.push(found);

    // conversations and messages
    let conversation = api
        .send(api.post(
            "/conversations",
            &buyer.token,
            &json!({"title": "About the mug", "participant_ids": [seller.id], "product_id": product}),
        ))
        .await?
        .expect(StatusCode::CREATED)?;
    let conversation_id = int(&conversation, "id")?;
    let mut posted = Vec::new();
    for n in 0..12 {
        let author = if n % 2 == 0 { &buyer } else { &seller };
        let message = api
            .send(api.post(
                &format!("/conversations/{conversation_id}/messages"),
                &author.token,
                &json!({"body": format!("message {n} 😀")}),
            ))
            .await?;
        posted.push(int(&message.body, "id")?);
        answers.push(message);
    }
    let page = api
        .send(api.get(
            &format!("/conversations/{conversation_id}/messages?limit=10"),
            &seller.token,
        ))
        .await?;
    let ids: Vec<i64> = page.body["messages"]
        .as_array()
        .context("a page of messages")?
        .iter()
        .map(|m| m["id"].as_i64().unwrap_or_default())
        .collect();
    let newest_ten: Vec<i64> = posted.iter().rev().take(10).copied().collect();
    ensure!(ids == newest_ten, "last 10: {ids:?}, posted {posted:?}");
    ensure!(page.body["next_before"] == json!(newest_ten[9]));
    answers.push(page);
    let listed = api.send(api.get("/conversations", &seller.token)).await?;
    ensure!(
        listed.body["conversations"][0]["last_message"]["id"] == json!(posted[11]),
        "{}",
        listed.body
    );
    answers.push(listed);
    let one = api
        .send(api.get(&format!("/conversations/{conversation_id}"), &buyer.token))
        .await?;
    ensure!(one.status == StatusCode::OK);
    let stranger = api
        .send(api.get(&format!("/conversations/{conversation_id}"), &friend.token))
        .await?;
    ensure!(stranger.status == StatusCode::NOT_FOUND);
    answers.extend([one, stranger]);

    // orders
    let order = api
        .send(api.post(
            "/orders",
            &buyer.token,
            &json!({"items": [{"product_id": product, "quantity": 2}]}),
        ))
        .await?
        .expect(StatusCode::CREATED)?;
    let order_id = int(&order, "id")?;
    ensure!(
        order["total"] == "25.00" && order["status"] == "paid",
        "{order}"
    );
    let got = api
        .send(api.get(&format!("/orders/{order_id}"), &buyer.token))
        .await?;
    ensure!(got.body["id"] == json!(order_id));
    answers.push(got);
    let mine = api.send(api.get("/me/orders", &buyer.token)).await?;
    ensure!(
        mine.body["orders"][0]["id"] == json!(order_id),
        "{}",
        mine.body
    );
    answers.push(mine);
    let cancelled = api
        .send(api.post(
            &format!("/orders/{order_id}/cancel"),
            &buyer.token,
            &json!({}),
        ))
        .await?
        .expect(StatusCode::OK)?;
    ensure!(cancelled["status"] == "cancelled");
    let stock = api
        .send(api.get(&format!("/products/{product}"), ""))
        .await?;
    ensure!(
        stock.body["stock"] == 10,
        "stock back after cancel: {}",
        stock.body
    );
    answers.push(stock);

    // money
    let transfer = api
        .send(api.post(
            "/transfers",
            &buyer.token,
            &json!({"to_user_id": friend.id, "amount": "7.5"}),
        ))
        .await?
        .expect(StatusCode::CREATED)?;
    ensure!(transfer["balance"] == "92.50", "{transfer}");
    let poor = api
        .send(api.post(
            "/transfers",
            &friend.token,
            &json!({"to_user_id": buyer.id, "amount": "8"}),
        ))
        .await?;
    ensure!(poor.status == StatusCode::CONFLICT && poor.body["code"] == "insufficient_funds");
    let friend_me = api.send(api.get("/me", &friend.token)).await?;
    ensure!(friend_me.body["balance"] == "7.50", "{}", friend_me.body);
    answers.push(friend_me);

    // health, through the balancer
    let ready = api.send(api.get("/readyz", "")).await?;
    ensure!(ready.status == StatusCode::OK);
    answers.push(ready);

    let processes = served_by(&answers);
    ensure!(
        processes.len() == usize::from(APPS),
        "{} answers came from {processes:?}, not from all {APPS} processes",
        answers.len()
    );
    println!(
        "main flows: {} answers checked, served by {processes:?}",
        answers.len()
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the scripts/cluster topology; scripts/topology-test runs it"]
async fn two_hundred_concurrent_orders_on_a_stock_of_fifty_sell_exactly_fifty() -> anyhow::Result<()>
{
    let (topology, api) = setup()?;
    let seller = api.register(&unique("seller")).await?;
    let product = api.product(&seller, &unique("LAST50"), "1", 50).await?;
    let mut buyers = Vec::new();
    for _ in 0..20 {
        buyers.push(funded(&api, "rush", "20").await?);
    }
    let body = json!({"items": [{"product_id": product, "quantity": 1}]});
    let answers = join_all((0..200).map(|n| {
        let api = api.clone();
        let buyer = buyers[n % buyers.len()].clone();
        let body = body.clone();
        async move { api.send(api.post("/orders", &buyer.token, &body)).await }
    }))
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()?;
    let created = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    let out_of_stock = answers
        .iter()
        .filter(|a| a.status == StatusCode::CONFLICT && a.body["code"] == "insufficient_stock")
        .count();
    let processes = served_by(&answers);
    ensure!(created == 50, "{created} orders created, not 50");
    ensure!(
        out_of_stock == 150,
        "{out_of_stock} refused for stock, not 150"
    );
    ensure!(
        processes.len() == usize::from(APPS),
        "served by {processes:?}"
    );

    let mut db = topology.primary().await?;
    let (stock, sold, orders): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT quantity::bigint FROM inventory WHERE product_id = $1), \
                (SELECT coalesce(sum(quantity), 0)::bigint FROM order_items WHERE product_id = $1), \
                (SELECT count(DISTINCT order_id) FROM order_items WHERE product_id = $1)",
    )
    .bind(product)
    .fetch_one(&mut db)
    .await?;
    ensure!(
        (stock, sold, orders) == (0, 50, 50),
        "stock {stock}, sold {sold}, orders {orders}"
    );
    println!(
        "200 orders on stock 50 over {processes:?}: 50 created, 150 insufficient_stock, stock 0, 50 items stored"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the scripts/cluster topology; scripts/topology-test runs it"]
async fn one_idempotency_key_sent_twenty_times_over_every_process_makes_one_order()
-> anyhow::Result<()> {
    let (topology, api) = setup()?;
    let seller = api.register(&unique("seller")).await?;
    let product = api.product(&seller, &unique("ONCE"), "3", 100).await?;
    let buyer = funded(&api, "keyed", "100").await?;
    let key = unique("key");
    let body = json!({"items": [{"product_id": product, "quantity": 3}]});
    let answers = join_all((0..20).map(|_| {
        let api = api.clone();
        let (token, key, body) = (buyer.token.clone(), key.clone(), body.clone());
        async move {
            api.send(
                api.post("/orders", &token, &body)
                    .header("Idempotency-Key", key),
            )
            .await
        }
    }))
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()?;
    let ids: BTreeSet<i64> = answers
        .iter()
        .map(|a| {
            ensure!(a.status == StatusCode::CREATED, "{}: {}", a.status, a.body);
            int(&a.body, "id")
        })
        .collect::<anyhow::Result<_>>()?;
    let processes = served_by(&answers);
    ensure!(ids.len() == 1, "20 sends made orders {ids:?}");
    ensure!(
        processes.len() == usize::from(APPS),
        "served by {processes:?}"
    );

    let mut db = topology.primary().await?;
    let (orders, stock, balance): (i64, i64, String) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders WHERE buyer_id = $1 AND idempotency_key = $2), \
                (SELECT quantity::bigint FROM inventory WHERE product_id = $3), \
                (SELECT balance::text FROM accounts WHERE user_id = $1)",
    )
    .bind(buyer.id)
    .bind(&key)
    .bind(product)
    .fetch_one(&mut db)
    .await?;
    ensure!(orders == 1 && stock == 97, "orders {orders}, stock {stock}");
    ensure!(balance == "91.00", "balance {balance}");
    println!(
        "one key × 20 over {processes:?}: 20 × 201 with one id, one order stored, stock 100 → 97"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the scripts/cluster topology; scripts/topology-test runs it"]
async fn four_hundred_random_transfers_leave_every_balance_explained_and_the_total_conserved()
-> anyhow::Result<()> {
    let (topology, api) = setup()?;
    let mut users = Vec::new();
    for _ in 0..10 {
        users.push(funded(&api, "payer", "50").await?);
    }
    let mut rng = StdRng::seed_from_u64(12);
    let plan: Vec<(usize, usize, i64)> = (0..400)
        .map(|_| {
            let from = rng.random_range(0..users.len());
            let to = (from + rng.random_range(1..users.len())) % users.len();
            (from, to, rng.random_range(1..=2_000))
        })
        .collect();
    let mut answers = Vec::new();
    for chunk in plan.chunks(40) {
        let sent = join_all(chunk.iter().map(|&(from, to, cents)| {
            let api = api.clone();
            let (token, to_id) = (users[from].token.clone(), users[to].id);
            async move {
                let amount = format!("{}.{:02}", cents / 100, cents % 100);
                api.send(api.post(
                    "/transfers",
                    &token,
                    &json!({"to_user_id": to_id, "amount": amount}),
                ))
                .await
            }
        }))
        .await;
        for answer in sent {
            answers.push(answer?);
        }
    }
    let created = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    let refused = answers
        .iter()
        .filter(|a| a.status == StatusCode::CONFLICT && a.body["code"] == "insufficient_funds")
        .count();
    ensure!(
        created + refused == 400,
        "answers other than 201 and 409 insufficient_funds: {:?}",
        answers
            .iter()
            .filter(|a| a.status != StatusCode::CREATED && a.status != StatusCode::CONFLICT)
            .map(|a| (a.status, a.body.clone()))
            .take(3)
            .collect::<Vec<_>>()
    );

    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let mut db = topology.primary().await?;
    let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT a.user_id, (a.balance * 100)::bigint, \
                coalesce((SELECT sum(amount * 100) FROM transfers WHERE to_user_id = a.user_id), 0)::bigint, \
                coalesce((SELECT sum(amount * 100) FROM transfers WHERE from_user_id = a.user_id), 0)::bigint \
         FROM accounts a WHERE a.user_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut db)
    .await?;
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM transfers WHERE from_user_id = ANY($1) OR to_user_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&mut db)
    .await?;
    ensure!(
        stored == created as i64,
        "{stored} transfers stored, {created} acknowledged"
    );
    let mut total = 0;
    for (user, balance, received, sent) in &rows {
        ensure!(
            *balance >= 0,
            "user {user} has a negative balance {balance}"
        );
        ensure!(
            *balance == 5_000 + received - sent,
            "user {user}: balance {balance} ≠ 5000 deposited + {received} received − {sent} sent"
        );
        total += balance;
    }
    ensure!(
        rows.len() == 10 && total == 50_000,
        "total {total} cents over {} accounts",
        rows.len()
    );
    println!(
        "400 transfers over {:?}: {created} made, {refused} insufficient_funds; every balance = deposits + received − sent; total 500.00 conserved",
        served_by(&answers)
    );
    Ok(())
}

/// Server connections of the application's role on the primary (what PgBouncer opened).
async fn server_connections(topology: &Topology) -> anyhow::Result<i64> {
    let mut db = topology.primary().await?;
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE usename = 'mercado' AND datname = 'mercado' AND backend_type = 'client backend'",
    )
    .fetch_one(&mut db)
    .await?)
}

/// The API processes' client connections to PgBouncer (their pools), from `SHOW CLIENTS`.
async fn app_clients(topology: &Topology) -> anyhow::Result<usize> {
    let clients = topology.pgbouncer_show("CLIENTS").await?;
    Ok(clients
        .iter()
        .filter(|row| {
            row.iter()
                .any(|(k, v)| k == "application_name" && v.starts_with("mercado-"))
        })
        .count())
}

#[tokio::test]
#[ignore = "needs the scripts/cluster topology; scripts/topology-test runs it"]
async fn pgbouncer_holds_its_server_connections_at_its_pool_while_the_processes_hold_three_pools()
-> anyhow::Result<()> {
    let (topology, api) = setup()?;
    let app_pool: usize = std::env::var("CLUSTER_APP_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let pgbouncer_pool: i64 = std::env::var("CLUSTER_PGBOUNCER_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    // the pool and its reserve: PgBouncer's max_db_connections
    let server_limit = pgbouncer_pool + 1;
    let seller = api.register(&unique("seller")).await?;
    let product = api
        .product(&seller, &unique("POOL"), "0.01", 1_000_000)
        .await?;
    let buyer = funded(&api, "pooled", "1000").await?;

    // 96 clients placing orders (writes take the primary) for 4 s
    let until = Instant::now() + Duration::from_secs(4);
    let load = join_all((0..96).map(|_| {
        let api = api.clone();
        let token = buyer.token.clone();
        async move {
            let mut answered = 0_u32;
            let body = json!({"items": [{"product_id": product, "quantity": 1}]});
            while Instant::now() < until {
                if let Ok(answer) = api.send(api.post("/orders", &token, &body)).await
                    && answer.status == StatusCode::CREATED
                {
                    answered += 1;
                }
            }
            answered
        }
    }));
    let sample = async {
        let (mut max_servers, mut max_clients, mut samples) = (0, 0, 0);
        tokio::time::sleep(Duration::from_millis(500)).await;
        while Instant::now() < until {
            max_servers = max_servers.max(server_connections(&topology).await?);
            max_clients = max_clients.max(app_clients(&topology).await?);
            samples += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok((max_servers, max_clients, samples))
    };
    let (orders, sampled) = tokio::join!(load, sample);
    let (max_servers, max_clients, samples) = sampled?;
    let orders: u32 = orders.iter().sum();
    ensure!(orders > 0, "no order succeeded under load");
    ensure!(
        max_clients == usize::from(APPS) * app_pool,
        "the processes held {max_clients} client connections at most, not {} × {app_pool}",
        APPS
    );
    ensure!(
        max_servers <= server_limit,
        "the primary saw {max_servers} server connections of the app's role, more than PgBouncer's {server_limit}"
    );
    println!(
        "{orders} orders by 96 clients in 4 s; {samples} samples: up to {max_clients} client connections \
         (3 × {app_pool}) → at most {max_servers} server connections (limit {server_limit})"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the scripts/cluster topology; scripts/topology-test runs it"]
async fn a_statement_longer_than_the_roles_timeout_is_cancelled_through_pgbouncer()
-> anyhow::Result<()> {
    let (topology, _) = setup()?;
    let mut db = topology.through_pgbouncer("mercado").await?;
    let shown: String = sqlx::query_scalar("SELECT current_setting('statement_timeout')")
        .fetch_one(&mut db)
        .await?;
    let timeout_ms: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM current_setting('statement_timeout')::interval)::float8 * 1000",
    )
    .fetch_one(&mut db)
    .await?;
    ensure!(
        timeout_ms > 0.0 && timeout_ms <= 10_000.0,
        "the role's statement_timeout through PgBouncer is {shown}: scripts/topology-test sets a short one"
    );
    let sleep_s = timeout_ms / 1000.0 + 2.0;

    // autocommit, as a single-statement read runs
    let started = Instant::now();
    let error = sqlx::query("SELECT pg_sleep($1)")
        .bind(sleep_s)
        .execute(&mut db)
        .await
        .expect_err("the sleep outlives the timeout");
    let autocommit = started.elapsed();
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    ensure!(code.as_deref() == Some("57014"), "autocommit: {error}");

    // inside a transaction, as every operation of several statements runs
    let started = Instant::now();
    let mut txn = sqlx::Connection::begin(&mut db).await?;
    let error = sqlx::query("SELECT pg_sleep($1)")
        .bind(sleep_s)
        .execute(&mut *txn)
        .await
        .expect_err("the sleep outlives the timeout");
    let in_transaction = started.elapsed();
    txn.rollback().await?;
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    ensure!(
        code.as_deref() == Some("57014"),
        "in a transaction: {error}"
    );

    for elapsed in [autocommit, in_transaction] {
        let ms = elapsed.as_secs_f64() * 1000.0;
        ensure!(
            ms >= timeout_ms - 50.0 && ms < timeout_ms + 1_500.0,
            "cancelled after {ms:.0} ms, the timeout is {timeout_ms} ms"
        );
    }
    println!(
        "statement_timeout {shown} through PgBouncer: a {sleep_s} s sleep cancelled (57014) after {:.2} s autocommit, {:.2} s in a transaction",
        autocommit.as_secs_f64(),
        in_transaction.as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the scripts/cluster topology; scripts/topology-test runs it"]
async fn a_write_then_an_immediate_read_with_its_lsn_sees_the_write_on_any_process()
-> anyhow::Result<()> {
    let (topology, api) = setup()?;
    let author = api.register(&unique("author")).await?;
    let conversation = api
        .send(api.post(
            "/conversations",
            &author.token,
            &json!({"title": "Read your writes", "participant_ids": []}),
        ))
        .await?;
    ensure!(
        conversation.read_after_lsn.is_some(),
        "a write's answer carries no x-read-after-lsn: is replica routing (DATABASE_REPLICA_URL) on?"
    );
    let conversation_id = int(&conversation.body, "id")?;
    let mut by_process: BTreeMap<String, u32> = BTreeMap::new();
    let rounds = 200;
    for n in 0..rounds {
        let posted = api
            .send(api.post(
                &format!("/conversations/{conversation_id}/messages"),
                &author.token,
                &json!({"body": format!("write {n}")}),
            ))
            .await?
            .expect(StatusCode::CREATED)?;
        // the next request carries the LSN the write returned (Api does it, as a client should)
        let page = api
            .send(api.get(
                &format!("/conversations/{conversation_id}/messages?limit=1"),
                &author.token,
            ))
            .await?;
        ensure!(
            page.body["messages"][0]["id"] == posted["id"],
            "round {n}: wrote message {}, read {}",
            posted["id"],
            page.body
        );
        *by_process
            .entry(page.served_by.clone().unwrap_or_default())
            .or_default() += 1;
    }
    // the replica does serve reads: the processes hold connections to it
    let mut replica = topology.replica().await?;
    let replica_sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'mercado' AND application_name LIKE 'mercado-%'",
    )
    .fetch_one(&mut replica)
    .await?;
    ensure!(
        replica_sessions > 0,
        "no API process is connected to the replica"
    );
    println!(
        "{rounds} writes each read back at once with its LSN: all seen; reads by process {by_process:?}; {replica_sessions} app sessions on the replica"
    );
    Ok(())
}
