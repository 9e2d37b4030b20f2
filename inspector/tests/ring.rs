//! The inspector on its own, over SQLite in memory: a bounded ring of requests, newest first,
//! each with a bounded number of statements (the rest counted), served as JSON and HTML.

use std::time::Duration;

use axum::{Router, body::Body, http::Request};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use sql_inspector::{Inspector, InspectorConfig, RequestMeta};
use sql_observe::{ObserveConfig, Scope};
use tower::ServiceExt;

fn meta(path: &str) -> RequestMeta {
    RequestMeta {
        method: "GET".to_owned(),
        path: path.to_owned(),
        route: Some("/things/{id}".to_owned()),
        status: 200,
        started_at: chrono::Utc::now(),
        duration: Duration::from_millis(3),
    }
}

async fn body_of(app: &Router, uri: &str) -> anyhow::Result<(u16, String)> {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty())?)
        .await?;
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok((status, String::from_utf8(bytes.to_vec())?))
}

#[tokio::test]
async fn the_ring_keeps_the_newest_requests_and_the_first_statements_of_each() -> anyhow::Result<()>
{
    let mut db = Database::connect("sqlite::memory:").await?;
    sql_observe::install(&mut db, ObserveConfig::default());
    let inspector = Inspector::new(InspectorConfig {
        capacity: 3,
        statement_limit: 2,
    });

    for n in 1..=5 {
        let (result, report) = sql_observe::scope(Scope::request("GET /things/{id}"), async {
            for value in 0..3 {
                let sql = format!("SELECT {value} AS v");
                db.query_all_raw(Statement::from_string(DbBackend::Sqlite, sql))
                    .await?;
            }
            anyhow::Ok(())
        })
        .await;
        result?;
        inspector.record(meta(&format!("/things/{n}")), &report);
    }

    let kept = inspector.requests();
    let ids: Vec<u64> = kept.iter().map(|r| r.id).collect();
    assert_eq!(ids, [5, 4, 3], "the newest three, newest first");
    assert!(inspector.get(1).is_none());
    let newest = &kept[0];
    assert_eq!(newest.path, "/things/5");
    assert_eq!(newest.trace.statement_count, 3);
    assert_eq!(newest.trace.statements.len(), 2);
    assert_eq!(newest.trace.dropped_statements, 1);

    let app: Router = inspector.router();
    let (status, json) = body_of(&app, "/_inspector/requests").await?;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(json["requests"][0]["id"], 5);
    assert_eq!(json["requests"][0]["statement_count"], 3);
    assert_eq!(json["requests"].as_array().map(Vec::len), Some(3));

    let (status, page) = body_of(&app, "/_inspector/r/5").await?;
    assert_eq!(status, 200);
    assert!(
        page.contains("1 more statements ran and were counted, not kept."),
        "{page}"
    );
    let (status, list) = body_of(&app, "/_inspector").await?;
    assert_eq!(status, 200);
    assert_eq!(list.matches("<tr class=\"request\"").count(), 3, "{list}");
    let (status, _) = body_of(&app, "/_inspector/r/1").await?;
    assert_eq!(status, 404);

    assert!(sql_inspector::is_inspector_path("/_inspector"));
    assert!(sql_inspector::is_inspector_path("/_inspector/requests/1"));
    assert!(!sql_inspector::is_inspector_path("/_inspectorate"));
    Ok(())
}
