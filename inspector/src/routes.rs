//! The inspector's HTTP routes:
//!
//! | route | what it answers |
//! | --- | --- |
//! | `GET /_inspector` | the list page (HTML), newest first |
//! | `GET /_inspector/r/{id}` | one request's page (HTML) |
//! | `GET /_inspector/requests` | `{"requests": [summary…]}`, newest first |
//! | `GET /_inspector/requests/{id}` | one request with its statements and findings |
//! | `GET /_inspector/events` | server-sent events: one `request` event (a summary) per new request |
//! | `POST /_inspector/requests/{id}/statements/{n}/explain` | `EXPLAIN` (never `ANALYZE`) of statement `n`, a single SELECT, on PostgreSQL |
//!
//! Errors are `application/problem+json` (`not_found` 404, `validation_failed` 422).

use std::{convert::Infallible, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{
        Html, IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures::Stream;
use serde::Serialize;

use crate::{Inspector, RequestSummary, explain, render};

/// Where the inspector's routes live.
pub const PREFIX: &str = "/_inspector";

pub(crate) fn router<S: Clone + Send + Sync + 'static>(inspector: Inspector) -> Router<S> {
    Router::new()
        .route(PREFIX, get(list_page))
        .route("/_inspector/r/{id}", get(detail_page))
        .route("/_inspector/requests", get(list_json))
        .route("/_inspector/requests/{id}", get(detail_json))
        .route("/_inspector/events", get(events))
        .route(
            "/_inspector/requests/{id}/statements/{n}/explain",
            post(explain_statement),
        )
        .with_state(inspector)
}

/// An RFC 9457 problem, shaped as the application's own (`type`, `title`, `status`, `detail`,
/// `code`).
#[derive(Debug, Serialize)]
pub(crate) struct Problem {
    #[serde(rename = "type")]
    problem_type: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    code: &'static str,
}

impl Problem {
    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub(crate) fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            detail,
        )
    }

    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            problem_type: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            code,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

fn parse_id(text: &str, what: &str) -> Result<u64, Problem> {
    text.parse()
        .map_err(|_| Problem::unprocessable(format!("{what}: must be a positive integer")))
}

fn find(
    inspector: &Inspector,
    id: &str,
) -> Result<std::sync::Arc<crate::RecordedRequest>, Problem> {
    let id = parse_id(id, "id")?;
    inspector.get(id).ok_or_else(|| {
        Problem::not_found(format!(
            "No request {id} is kept (the inspector keeps the most recent ones)."
        ))
    })
}

async fn list_page(State(inspector): State<Inspector>) -> Html<String> {
    Html(render::list_page(&inspector.requests()).into_string())
}

async fn detail_page(
    State(inspector): State<Inspector>,
    Path(id): Path<String>,
) -> Result<Html<String>, Problem> {
    let request = find(&inspector, &id)?;
    // The button is offered where EXPLAIN is: on PostgreSQL.
    let explains = inspector
        .inner
        .db
        .as_ref()
        .is_some_and(|db| db.get_database_backend() == sea_orm::DbBackend::Postgres);
    Ok(Html(render::detail_page(&request, explains).into_string()))
}

#[derive(Debug, Serialize)]
struct RequestList {
    requests: Vec<RequestSummary>,
}

async fn list_json(State(inspector): State<Inspector>) -> Json<RequestList> {
    Json(RequestList {
        requests: inspector.requests().iter().map(|r| r.summary()).collect(),
    })
}

async fn detail_json(
    State(inspector): State<Inspector>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let request = find(&inspector, &id)?;
    Ok(Json(&*request).into_response())
}

/// One `request` event per request recorded from now on, its data the summary as JSON; the
/// stream ends when the inspector is closed (the server shutting down).
async fn events(
    State(inspector): State<Inspector>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = inspector.inner.events.subscribe();
    let closed = inspector.inner.closed.subscribe();
    let stream = futures::stream::unfold(
        (receiver, closed),
        |(mut receiver, mut closed)| async move {
            loop {
                if *closed.borrow() {
                    return None;
                }
                tokio::select! {
                    received = receiver.recv() => match received {
                        Ok(summary) => {
                            let event = Event::default()
                                .event("request")
                                .json_data(&summary)
                                .unwrap_or_else(|_| Event::default().event("request"));
                            return Some((Ok(event), (receiver, closed)));
                        }
                        // A slow page missed some; it goes on with the next.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    changed = closed.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                    }
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn explain_statement(
    State(inspector): State<Inspector>,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let request = find(&inspector, &id)?;
    let n = parse_id(&n, "n")?;
    let statement = request
        .trace
        .statements
        .iter()
        .find(|s| s.sequence as u64 == n)
        .ok_or_else(|| {
            Problem::not_found(format!("Request {} kept no statement {n}.", request.id))
        })?;
    let Some(db) = &inspector.inner.db else {
        return Err(Problem::unprocessable(
            "This inspector has no database connection to run EXPLAIN on.",
        ));
    };
    let plan = explain::explain(db, statement).await?;
    Ok(Json(plan).into_response())
}
