//! The HTTP application end to end, over real HTTP and a real database on every backend: the
//! operational endpoints, the problem+json error contract for requests no handler accepts, request
//! ids, the request timeout, the OpenAPI document and graceful shutdown.

mod support;

use std::time::Duration;

use anyhow::Context;
use api::{ApiError, AppState, MAX_BODY_BYTES, extract::Json, extract::Path};
use axum::{
    extract::State,
    routing::{get, post},
};
use mercado::settings::Settings;
use mercado_testkit::{TestDb, backend_tests};
use reqwest::{StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use support::{TestApp, expect_problem, expect_validation_failure};
use utoipa_axum::router::OpenApiRouter;

/// A body of the shape a real endpoint takes, echoed back by the probe.
#[derive(Debug, Serialize, Deserialize)]
struct Probe {
    name: String,
    quantity: u32,
}

async fn echo(Json(probe): Json<Probe>) -> Json<Probe> {
    Json(probe)
}

async fn id(Path(id): Path<i64>) -> Json<Value> {
    Json(json!({ "id": id }))
}

/// Reads the users it is given one by one: an N+1 on purpose, for the detector to catch.
async fn users_one_by_one(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let names = support::usernames_one_by_one(&state.db).await?;
    Ok(Json(json!({ "usernames": names })))
}

async fn never_finishes() -> &'static str {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    "finished"
}

/// Probe routes that take a JSON body, a path id, forever and three statements where one would do: the extractors and middleware
/// every phase-2 endpoint will rely on, driven through HTTP before those endpoints exist.
fn probes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/probe/echo", post(echo))
        .route("/probe/things/{id}", get(id))
        .route("/probe/slow", get(never_finishes))
        .route("/probe/n-plus-one", get(users_one_by_one))
}

async fn spawn_with_probes(db: &TestDb) -> TestApp {
    TestApp::spawn_with(db, |_| {}, probes()).await
}

backend_tests! {
    async fn healthz_answers_ok(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let response = app.get("/healthz").await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.json::<Value>().await?, json!({"status": "ok"}));
        Ok(())
    }

    async fn readyz_answers_ok_while_the_database_answers(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let response = app.get("/readyz").await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.json::<Value>().await?, json!({"status": "ok"}));
        Ok(())
    }

    async fn readyz_is_service_unavailable_once_the_database_is_gone(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        app.db.close_by_ref().await?;

        let response = app.get("/readyz").await;

        assert!(response.headers().contains_key(header::RETRY_AFTER));
        expect_problem(response, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await;
        Ok(())
    }

    async fn healthz_sends_no_statement_and_says_so(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let response = app.get("/healthz").await;

        assert_eq!(response.headers()["x-query-count"], "0");
        assert_eq!(
            response.headers()["server-timing"],
            "db;dur=0.000;desc=\"0 statements\""
        );
        assert!(!response.headers().contains_key("x-n-plus-one"));
        Ok(())
    }

    async fn readyz_counts_the_statement_it_sends_and_its_database_time(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let response = app.get("/readyz").await;

        assert!(support::query_count(&response) >= 1, "{:?}", response.headers());
        let timing = response.headers()["server-timing"].to_str()?;
        assert!(timing.starts_with("db;dur="), "{timing}");
        assert!(timing.ends_with(" statements\""), "{timing}");
        Ok(())
    }

    async fn errors_carry_the_query_count_too(db: TestDb) -> anyhow::Result<()> {
        let app = spawn_with_probes(&db).await;

        let unknown_route = app.get("/no/such/route").await;
        let wrong_method = app.client.delete(app.url("/healthz")).send().await?;
        let bad_body = app
            .post_raw("/probe/echo", "application/json", b"{".to_vec())
            .await;

        for response in [unknown_route, wrong_method, bad_body] {
            assert_eq!(response.headers()["x-query-count"], "0", "{}", response.status());
            assert!(response.headers().contains_key("server-timing"));
        }
        Ok(())
    }

    async fn a_request_that_times_out_still_reports_its_statements(
        db: TestDb
    ) -> anyhow::Result<()> {
        let short = |settings: &mut Settings| settings.server.request_timeout = Duration::from_millis(200);
        let app = TestApp::spawn_with(&db, short, probes()).await;

        let response = app.get("/probe/slow").await;

        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["x-query-count"], "0");
        Ok(())
    }

    async fn an_n_plus_one_is_named_in_a_header(db: TestDb) -> anyhow::Result<()> {
        let app = spawn_with_probes(&db).await;

        let response = app.get("/probe/n-plus-one").await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(support::query_count(&response), 3);
        let finding = response.headers()["x-n-plus-one"].to_str()?;
        assert!(finding.starts_with("3x SELECT "), "{finding}");
        assert!(finding.contains("\"users\".\"id\""), "{finding}");
        assert!(
            finding.contains(" at service::repo::users::find ("),
            "names the call site: {finding}"
        );
        Ok(())
    }

    async fn an_unknown_route_is_a_not_found_problem(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let response = app.get("/no/such/route").await;

        expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
        Ok(())
    }

    async fn an_unsupported_method_is_a_method_not_allowed_problem_listing_the_allowed_ones(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let response = app.client.delete(app.url("/healthz")).send().await?;

        assert_eq!(response.headers()[header::ALLOW], "GET,HEAD");
        expect_problem(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
        Ok(())
    }

    async fn malformed_json_is_a_bad_request_problem(db: TestDb) -> anyhow::Result<()> {
        let app = spawn_with_probes(&db).await;

        let response = app
            .post_raw("/probe/echo", "application/json", br#"{"name": "pen", "#.to_vec())
            .await;

        expect_problem(response, StatusCode::BAD_REQUEST, "bad_request").await;
        Ok(())
    }

    async fn a_body_that_is_not_json_is_an_unsupported_media_type_problem(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = spawn_with_probes(&db).await;

        let response = app
            .post_raw("/probe/echo", "text/plain", br#"{"name": "pen", "quantity": 1}"#.to_vec())
            .await;

        expect_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            .await;
        Ok(())
    }

    async fn a_body_over_one_mebibyte_is_a_payload_too_large_problem(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = spawn_with_probes(&db).await;
        let name = "x".repeat(MAX_BODY_BYTES);
        let body = serde_json::to_vec(&json!({"name": name, "quantity": 1}))?;
        assert!(body.len() > MAX_BODY_BYTES);

        let response = app.post_raw("/probe/echo", "application/json", body).await;

        expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
        Ok(())
    }

    async fn a_body_just_under_the_limit_is_accepted(db: TestDb) -> anyhow::Result<()> {
        let app = spawn_with_probes(&db).await;
        let envelope = br#"{"name":"","quantity":1}"#.len();
        let name = "x".repeat(MAX_BODY_BYTES - envelope);
        let body = serde_json::to_vec(&json!({"name": name, "quantity": 1}))?;
        assert_eq!(body.len(), MAX_BODY_BYTES);

        let response = app.post_raw("/probe/echo", "application/json", body).await;

        assert_eq!(response.status(), StatusCode::OK);
        let echoed: Probe = response.json().await?;
        assert_eq!(echoed.name, name);
        Ok(())
    }

    async fn a_wrong_json_type_is_a_validation_problem_naming_the_field(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = spawn_with_probes(&db).await;

        let response = app
            .post_raw(
                "/probe/echo",
                "application/json",
                br#"{"name": "pen", "quantity": -1}"#.to_vec(),
            )
            .await;

        let detail = expect_validation_failure(response).await;
        assert!(detail.starts_with("quantity: "), "{detail}");
        Ok(())
    }

    async fn a_missing_field_is_a_validation_problem_naming_it(db: TestDb) -> anyhow::Result<()> {
        let app = spawn_with_probes(&db).await;

        let response = app
            .post_raw("/probe/echo", "application/json", br#"{"name": "pen"}"#.to_vec())
            .await;

        let detail = expect_validation_failure(response).await;
        assert!(detail.contains("quantity"), "{detail}");
        Ok(())
    }

    async fn a_path_id_that_is_not_an_integer_is_a_validation_problem(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = spawn_with_probes(&db).await;

        let response = app.get("/probe/things/seven").await;

        let detail = expect_validation_failure(response).await;
        assert!(detail.starts_with("id: "), "{detail}");
        Ok(())
    }

    async fn a_request_that_outlives_the_timeout_is_a_service_unavailable_problem(
        db: TestDb
    ) -> anyhow::Result<()> {
        let short = |settings: &mut Settings| settings.server.request_timeout = Duration::from_millis(200);
        let app = TestApp::spawn_with(&db, short, probes()).await;

        let response = app.get("/probe/slow").await;

        expect_problem(response, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await;
        Ok(())
    }

    async fn every_response_gets_a_fresh_request_id_when_none_was_sent(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let first = app.get("/healthz").await;
        let second = app.get("/no/such/route").await;

        let first = first.headers()["x-request-id"].to_str()?.to_owned();
        let second = second.headers()["x-request-id"].to_str()?.to_owned();
        assert_eq!(first.len(), 36, "a UUID: {first}");
        assert_ne!(first, second);
        Ok(())
    }

    async fn a_request_id_sent_by_the_client_is_echoed(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let ok = app.client.get(app.url("/healthz")).header("x-request-id", "trace-me-42")
            .send().await?;
        let error = app.client.get(app.url("/nope")).header("x-request-id", "trace-me-43")
            .send().await?;

        assert_eq!(ok.headers()["x-request-id"], "trace-me-42");
        assert_eq!(error.headers()["x-request-id"], "trace-me-43");
        Ok(())
    }

    async fn the_openapi_document_is_openapi_3_1_and_lists_every_path(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let response = app.get("/openapi.json").await;

        assert_eq!(response.status(), StatusCode::OK);
        let raw: Value = response.json().await?;
        assert_eq!(raw["openapi"], "3.1.0");
        // It also reads back as an OpenAPI document, not merely as JSON; links aside, which
        // utoipa 5 cannot read back when their request body holds an array (it writes them in
        // snake case, and `api::openapi::to_json` spells them as OpenAPI does).
        let mut without_links = raw.clone();
        for item in without_links["paths"].as_object_mut().context("paths")?.values_mut() {
            for operation in item.as_object_mut().context("a path item")?.values_mut() {
                for response in operation["responses"].as_object_mut().context("responses")?.values_mut() {
                    response.as_object_mut().map(|response| response.remove("links"));
                }
            }
        }
        let document: utoipa::openapi::OpenApi = serde_json::from_value(without_links)?;
        let paths: Vec<&str> = document.paths.paths.keys().map(String::as_str).collect();
        for path in [
            "/healthz",
            "/readyz",
            "/openapi.json",
            "/users",
            "/users/{id}",
            "/me",
            "/me/deposits",
            "/transfers",
            "/products",
            "/products/{id}",
            "/orders",
            "/orders/{id}",
            "/orders/{id}/cancel",
            "/me/orders",
        ] {
            assert!(paths.contains(&path), "{path} missing from {paths:?}");
        }
        let components = &raw["components"];
        assert_eq!(components["securitySchemes"]["bearer"]["scheme"], "bearer");
        let codes = components["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .context("ErrorCode lists its codes")?;
        assert_eq!(codes.len(), 16, "{codes:?}");
        assert!(components["schemas"]["Problem"]["properties"]["code"].is_object());
        assert_eq!(
            raw["paths"]["/readyz"]["get"]["responses"]["503"]["$ref"],
            "#/components/responses/ServiceUnavailable"
        );
        Ok(())
    }

    async fn every_path_in_the_openapi_document_is_served(db: TestDb) -> anyhow::Result<()> {
        // With the inspector on, so that its routes are served too (off, they are the 404s the
        // document lists for them: tests/inspector.rs).
        let inspect = |settings: &mut Settings| settings.server.inspect = true;
        let app = TestApp::spawn_with(&db, inspect, OpenApiRouter::new()).await;
        let document: Value = app.get("/openapi.json").await.json().await?;
        // Sent on every request: public endpoints ignore it, authenticated ones need it.
        let caller = app.register("reader").await;

        for (path, item) in document["paths"].as_object().context("paths is an object")? {
            if item.get("get").is_some() && !path.contains('{') {
                let response = app.get_as(&caller, path).await;
                assert_eq!(response.status(), StatusCode::OK, "GET {path}");
            }
        }
        Ok(())
    }

    async fn every_success_of_every_write_declares_the_read_after_lsn_header(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let document: Value = app.get("/openapi.json").await.json().await?;

        let mut writes = 0;
        for (path, item) in document["paths"].as_object().context("paths is an object")? {
            for (method, operation) in item.as_object().context("a path item is an object")? {
                if !["post", "put", "patch", "delete"].contains(&method.as_str()) {
                    continue;
                }
                let responses = operation["responses"].as_object().context("responses")?;
                for (status, response) in responses.iter().filter(|(s, _)| s.starts_with('2')) {
                    writes += 1;
                    assert!(
                        response["headers"].get("x-read-after-lsn").is_some(),
                        "{method} {path} {status} does not declare x-read-after-lsn"
                    );
                }
            }
        }
        assert!(writes >= 6, "only {writes} write successes in the document");
        Ok(())
    }

    async fn a_stopped_server_finishes_cleanly_and_accepts_no_more_connections(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let url = app.url("/healthz");
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);

        app.stop().await?;

        let after = reqwest::Client::builder().no_proxy().build()?.get(&url).send().await;
        assert!(after.is_err(), "still answering after shutdown: {after:?}");
        Ok(())
    }
}
