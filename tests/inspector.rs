//! The SQL inspector and `SQL_HEADERS` over real HTTP, on every backend: what each header
//! setting sends, what the inspector records (every request but its own, newest first, with
//! statements, findings and call sites, and no secret), its event stream, `EXPLAIN` (on
//! PostgreSQL; refused elsewhere and for anything but a single SELECT), and its routes being
//! 404 problems while it is off.

mod support;

use std::time::Duration;

use anyhow::Context;
use api::{AppState, SqlHeaders};
use axum::routing::get;
use mercado::settings::Settings;
use mercado_testkit::{TestDb, backend_tests};
use reqwest::StatusCode;
use sea_orm::{DbBackend, EntityTrait};
use serde_json::{Value, json};
use support::{TestApp, expect_problem, json_of};
use utoipa_axum::router::OpenApiRouter;

fn probes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().route(
        "/probe/n-plus-one",
        get(support::users_one_by_one_for_a_caller),
    )
}

async fn spawn(db: &TestDb, headers: SqlHeaders, inspect: bool) -> TestApp {
    let configure = move |settings: &mut Settings| {
        settings.server.sql_headers = headers.into();
        settings.server.inspect = inspect;
    };
    TestApp::spawn_with(db, configure, probes()).await
}

/// Registers three users (so that the probe finds them all) and returns the last one.
async fn three_users(app: &TestApp, prefix: &str) -> support::Caller {
    app.register(&format!("{prefix}ada")).await;
    app.register(&format!("{prefix}grace")).await;
    app.register(&format!("{prefix}edsger")).await
}

async fn token_hashes(db: &TestDb) -> anyhow::Result<Vec<String>> {
    let tokens = entity::api_tokens::Entity::find().all(&db.conn).await?;
    Ok(tokens.into_iter().map(|t| t.token_hash).collect())
}

/// The inspector's JSON list, newest first.
async fn recorded(app: &TestApp) -> anyhow::Result<Vec<Value>> {
    let list = json_of(app.get("/_inspector/requests").await, StatusCode::OK).await?;
    Ok(list["requests"].as_array().context("requests")?.clone())
}

async fn text_of(app: &TestApp, path: &str) -> anyhow::Result<String> {
    let response = app.get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    Ok(response.text().await?)
}

backend_tests! {
    async fn each_sql_headers_setting_sends_its_headers_and_no_more(db: TestDb) -> anyhow::Result<()> {
        for (setting, count, timing, n_plus_one) in [
            (SqlHeaders::Full, true, true, true),
            (SqlHeaders::Count, true, true, false),
            (SqlHeaders::Off, false, false, false),
        ] {
            let app = spawn(&db, setting, true).await;
            let caller = three_users(&app, setting.as_str()).await;

            let response = app.get_as(&caller, "/probe/n-plus-one").await;

            assert_eq!(response.status(), StatusCode::OK, "{setting}");
            let headers = response.headers();
            assert_eq!(headers.contains_key("x-query-count"), count, "{setting}: x-query-count");
            assert_eq!(headers.contains_key("server-timing"), timing, "{setting}: server-timing");
            assert_eq!(headers.contains_key("x-n-plus-one"), n_plus_one, "{setting}: x-n-plus-one");
            if count {
                assert_eq!(headers["x-query-count"], "4", "{setting}");
            }
            // Whatever the responses say, the inspector saw the N+1.
            let newest = recorded(&app).await?.into_iter().next().context("a request")?;
            assert_eq!(newest["path"], "/probe/n-plus-one", "{setting}");
            assert_eq!(newest["n_plus_one"], 1, "{setting}");
            app.stop().await?;
        }
        Ok(())
    }

    async fn the_inspector_records_every_request_but_its_own_and_shows_no_secret(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = spawn(&db, SqlHeaders::Full, true).await;
        let caller = three_users(&app, "").await;
        let before = recorded(&app).await?.len();

        let me = app.get_as(&caller, "/me?secret=query").await;
        assert_eq!(me.status(), StatusCode::OK);
        let n_plus_one = app.get_as(&caller, "/probe/n-plus-one").await;
        assert_eq!(n_plus_one.status(), StatusCode::OK);

        let requests = recorded(&app).await?;
        assert_eq!(requests.len(), before + 2, "the inspector's own requests are not recorded: {requests:#?}");
        let (newest, previous) = (&requests[0], &requests[1]);
        assert_eq!(newest["method"], "GET");
        assert_eq!(newest["path"], "/probe/n-plus-one");
        assert_eq!(newest["route"], "/probe/n-plus-one");
        assert_eq!(newest["status"], 200);
        assert_eq!(newest["statement_count"], 4);
        assert_eq!(newest["n_plus_one"], 1);
        assert_eq!(previous["path"], "/me", "the query string is not kept");
        assert_eq!(previous["n_plus_one"], 0);

        let id = newest["id"].as_u64().context("an id")?;
        let detail = json_of(app.get(&format!("/_inspector/requests/{id}")).await, StatusCode::OK).await?;
        let statements = detail["statements"].as_array().context("statements")?;
        assert_eq!(statements.len(), 4);
        let token_params = statements[0]["params"].as_array().context("params")?;
        assert_eq!(token_params[0], "'***'", "the token's hash is redacted");
        assert!(statements[0]["sql"].as_str().context("sql")?.contains("token_hash"));
        let groups: Vec<&Value> = statements.iter().map(|s| &s["group"]).collect();
        assert_eq!(groups, [&json!(1), &json!(2), &json!(2), &json!(2)]);
        assert_eq!(statements[2]["offset_us"].as_u64(), Some(
            statements[0]["duration_us"].as_u64().context("duration")? + statements[1]["duration_us"].as_u64().context("duration")?
        ));
        let finding = &detail["findings"][0];
        assert_eq!(finding["kind"], "n_plus_one");
        assert_eq!(finding["count"], 3);
        let call_site = finding["call_site"].as_str().context("a call site")?;
        assert!(call_site.starts_with("service::repo::users::find ("), "{call_site}");
        assert!(!finding["fix"].as_str().context("a fix")?.is_empty());

        let pages = [
            text_of(&app, "/_inspector").await?,
            text_of(&app, &format!("/_inspector/r/{id}")).await?,
            text_of(&app, &format!("/_inspector/r/{}", previous["id"])).await?,
            detail.to_string(),
            Value::Array(requests.clone()).to_string(),
        ];
        assert!(pages[1].contains("service::repo::users::find"), "the detail page names the call site");
        assert!(pages[0].contains("N+1"), "the list shows the badge");
        let hashes = token_hashes(&db).await?;
        assert!(!hashes.is_empty());
        for page in &pages {
            assert!(!page.contains(&caller.token), "the bearer token is shown: {page}");
            for hash in &hashes {
                assert!(!page.contains(hash.as_str()), "a token hash is shown: {page}");
            }
            assert!(!page.contains("secret=query"), "a query string is shown");
        }

        let missing = app.get("/_inspector/requests/999999").await;
        expect_problem(missing, StatusCode::NOT_FOUND, "not_found").await;
        let not_an_id = app.get("/_inspector/requests/abc").await;
        expect_problem(not_an_id, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        Ok(())
    }

    async fn a_new_request_arrives_on_the_event_stream(db: TestDb) -> anyhow::Result<()> {
        let app = spawn(&db, SqlHeaders::Full, true).await;
        let mut events = app.client.get(app.url("/_inspector/events")).send().await?;
        assert_eq!(events.status(), StatusCode::OK);
        assert_eq!(events.headers()["content-type"], "text/event-stream");

        app.get("/healthz").await;

        let mut received = String::new();
        while !received.contains("\n\n") {
            let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk())
                .await
                .context("an event within 10 s")??
                .context("the stream is open")?;
            received.push_str(std::str::from_utf8(&chunk)?);
        }
        assert!(received.starts_with("event: request\ndata: {"), "{received}");
        assert!(received.contains("\"path\":\"/healthz\""), "{received}");
        assert!(received.contains("\"route\":\"/healthz\","), "{received}");
        Ok(())
    }

    async fn explain_plans_a_select_on_postgresql_only_and_never_anything_else(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = spawn(&db, SqlHeaders::Full, true).await;
        let caller = three_users(&app, "").await;
        app.get_as(&caller, "/probe/n-plus-one").await;
        let probe = recorded(&app).await?[0]["id"].as_u64().context("an id")?;
        let register = recorded(&app).await?.into_iter()
            .find(|r| r["path"] == "/users")
            .context("a registration")?["id"].as_u64().context("an id")?;
        let register_detail = json_of(app.get(&format!("/_inspector/requests/{register}")).await, StatusCode::OK).await?;
        let write_n = register_detail["statements"].as_array().context("statements")?.iter()
            .find(|s| s["sql"].as_str().is_some_and(|sql| !sql.starts_with("SELECT")))
            .context("a write")?["sequence"].as_u64().context("a sequence")?;
        let explain = |id: u64, n: u64| app.client
            .post(app.url(&format!("/_inspector/requests/{id}/statements/{n}/explain")))
            .send();

        let select = explain(probe, 2).await?;
        let redacted = explain(probe, 1).await?;
        let write = explain(register, write_n).await?;

        let probe_detail = json_of(app.get(&format!("/_inspector/requests/{probe}")).await, StatusCode::OK).await?;
        if db.db_backend() == DbBackend::Postgres {
            assert_eq!(select.status(), StatusCode::OK, "{probe_detail:#}");
            let plan = json_of(select, StatusCode::OK).await?;
            let lines = plan["plan"].as_array().context("plan lines")?;
            assert!(lines.iter().any(|l| l.as_str().is_some_and(|l| l.contains("users"))), "{plan}");
            assert!(plan["sql"].as_str().context("sql")?.starts_with("EXPLAIN SELECT"), "{plan}");
            assert_eq!(plan["bound_as_null"], json!([]));
            let plan = json_of(redacted, StatusCode::OK).await?;
            assert_eq!(plan["bound_as_null"][0], 1, "the token hash is bound as NULL: {plan}");
            let refused = expect_problem(write, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
            assert!(refused["detail"].as_str().context("detail")?.contains("single SELECT"), "{refused}");
        } else {
            for response in [select, redacted, write] {
                let refused = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
                assert!(refused["detail"].as_str().context("detail")?.contains("PostgreSQL only"), "{refused}");
            }
        }
        let nothing = explain(probe, 99).await?;
        expect_problem(nothing, StatusCode::NOT_FOUND, "not_found").await;
        // EXPLAIN ran outside any recorded scope: the explain requests are not recorded, and
        // no request was recorded with the EXPLAIN statements either.
        for request in recorded(&app).await? {
            let id = request["id"].as_u64().context("an id")?;
            let detail = json_of(app.get(&format!("/_inspector/requests/{id}")).await, StatusCode::OK).await?;
            assert!(!detail.to_string().contains("EXPLAIN"), "{detail}");
        }
        Ok(())
    }

    async fn with_the_inspector_off_its_routes_are_not_found_problems(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        for path in ["/_inspector", "/_inspector/r/1", "/_inspector/requests", "/_inspector/requests/1", "/_inspector/events"] {
            let response = app.get(path).await;
            expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
        }
        let explain = app.client.post(app.url("/_inspector/requests/1/statements/1/explain")).send().await?;
        expect_problem(explain, StatusCode::NOT_FOUND, "not_found").await;
        let wrong_method = app.client.delete(app.url("/_inspector/requests")).send().await?;
        expect_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
        Ok(())
    }
}
