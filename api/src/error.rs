//! The API's one error type and its one translation to HTTP.
//!
//! Every error response is `application/problem+json` (RFC 9457): `{type, title, status, detail,
//! code}`, where `code` is a stable snake_case word from [`ErrorCode`] that clients branch on, and
//! `detail` is a sentence for people. `type` is `about:blank` — the code carries the meaning — so
//! `title` is the status's reason phrase, as the RFC asks. Service errors are mapped in exactly one
//! `match` without a catch-all arm: a new [`ServiceError`] variant does not compile until it is
//! given its HTTP meaning here. Unexpected errors are logged here, once, with their cause chain,
//! and their response says nothing of it.

use std::error::Error as StdError;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use service::ServiceError;
use utoipa::ToSchema;

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The stable, machine-readable name of an error. Clients branch on it; it never changes meaning.
///
/// | code | status |
/// | --- | --- |
/// | `validation_failed` | 422 |
/// | `unauthorized` | 401 |
/// | `not_found` | 404 |
/// | `email_taken`, `username_taken`, `sku_taken` | 409 |
/// | `insufficient_stock`, `insufficient_funds`, `order_not_cancellable` | 409 |
/// | `idempotency_key_reused` | 422 |
/// | `payload_too_large` | 413 |
/// | `unsupported_media_type` | 415 |
/// | `method_not_allowed` | 405 |
/// | `bad_request` | 400 |
/// | `service_unavailable` | 503 |
/// | `internal` | 500 |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    ValidationFailed,
    Unauthorized,
    NotFound,
    EmailTaken,
    UsernameTaken,
    SkuTaken,
    InsufficientStock,
    InsufficientFunds,
    OrderNotCancellable,
    IdempotencyKeyReused,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    BadRequest,
    ServiceUnavailable,
    Internal,
}

impl ErrorCode {
    /// The HTTP status every error of this code is sent with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::ValidationFailed | ErrorCode::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::EmailTaken
            | ErrorCode::UsernameTaken
            | ErrorCode::SkuTaken
            | ErrorCode::InsufficientStock
            | ErrorCode::InsufficientFunds
            | ErrorCode::OrderNotCancellable => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An RFC 9457 problem document: the body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "about:blank",
    "title": "Conflict",
    "status": 409,
    "detail": "Insufficient stock for product 7",
    "code": "insufficient_stock"
}))]
pub struct Problem {
    /// Always `about:blank`: `code` identifies the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The reason phrase of `status`.
    pub title: String,
    /// The HTTP status, repeated for clients that only see the body.
    pub status: u16,
    /// What went wrong, for people; for `validation_failed`, it names the field.
    pub detail: String,
    pub code: ErrorCode,
}

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        let status = code.status();
        Problem {
            problem_type: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code,
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// What the business operation reported.
    Service(ServiceError),
    /// The request cannot be read: malformed JSON, a body that cannot be buffered.
    BadRequest(String),
    /// Well-formed input of the wrong shape: a missing field, a wrong JSON type, a path id that is
    /// not an integer, a bad query string. The message names the field.
    InvalidInput(String),
    /// The `Authorization` header is missing or is not `Bearer <token>`.
    MissingCredentials(&'static str),
    UnsupportedMediaType,
    PayloadTooLarge,
    /// No route has this path.
    RouteNotFound {
        path: String,
    },
    /// The path exists, but not for this method.
    MethodNotAllowed {
        method: String,
    },
    /// The request ran longer than the request timeout and was abandoned.
    Timeout,
    /// More requests were in flight than the concurrency limit allows; this one was shed
    /// without being started.
    Overloaded,
    /// The database has been unreachable for longer than the outage bound
    /// ([`service::health`]); the request was answered at once without trying it.
    DatabaseDown,
    /// `/readyz`: the database did not answer a ping within the readiness bound.
    NotReady,
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        ApiError::Service(error)
    }
}

/// How long a client should wait before retrying a 503, in seconds. Every 503 carries one.
const RETRY_SOON: &str = "1";
const RETRY_LATER: &str = "5";

impl ApiError {
    /// Wraps a failure nobody but an operator can act on; `context` says what was being done.
    pub fn unexpected(
        context: &'static str,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        ApiError::Service(ServiceError::Unexpected {
            context,
            source: source.into(),
        })
    }

    /// The problem document, and the `Retry-After` seconds for errors worth retrying.
    fn to_problem(&self) -> (Problem, Option<&'static str>) {
        let problem = |code, detail: String| (Problem::new(code, detail), None);
        match self {
            ApiError::Service(error) => service_problem(error),
            ApiError::BadRequest(detail) => problem(ErrorCode::BadRequest, detail.clone()),
            ApiError::InvalidInput(detail) => problem(ErrorCode::ValidationFailed, detail.clone()),
            ApiError::MissingCredentials(detail) => {
                problem(ErrorCode::Unauthorized, (*detail).to_owned())
            }
            ApiError::UnsupportedMediaType => problem(
                ErrorCode::UnsupportedMediaType,
                "The request body must be JSON, sent with `Content-Type: application/json`."
                    .to_owned(),
            ),
            ApiError::PayloadTooLarge => problem(
                ErrorCode::PayloadTooLarge,
                format!(
                    "The request body is larger than the limit of {} bytes.",
                    crate::MAX_BODY_BYTES
                ),
            ),
            ApiError::RouteNotFound { path } => {
                problem(ErrorCode::NotFound, format!("No route matches {path}."))
            }
            ApiError::MethodNotAllowed { method } => problem(
                ErrorCode::MethodNotAllowed,
                format!("{method} is not allowed here; the Allow header lists what is."),
            ),
            ApiError::Timeout => (
                Problem::new(
                    ErrorCode::ServiceUnavailable,
                    "The request took too long and was abandoned; try again.",
                ),
                Some(RETRY_SOON),
            ),
            ApiError::Overloaded => (
                Problem::new(
                    ErrorCode::ServiceUnavailable,
                    "The server is handling as many requests as it may; try again shortly.",
                ),
                Some(RETRY_SOON),
            ),
            ApiError::DatabaseDown => (
                Problem::new(
                    ErrorCode::ServiceUnavailable,
                    "The database is unreachable; try again later.",
                ),
                Some(RETRY_LATER),
            ),
            ApiError::NotReady => (
                Problem::new(
                    ErrorCode::ServiceUnavailable,
                    "The database does not answer; not ready.",
                ),
                Some(RETRY_SOON),
            ),
        }
    }
}

/// The HTTP meaning of each service error. No catch-all arm: a new variant must be mapped here
/// before the crate compiles again.
fn service_problem(error: &ServiceError) -> (Problem, Option<&'static str>) {
    let problem = |code, detail: String| (Problem::new(code, detail), None);
    match error {
        ServiceError::Validation { .. } => problem(ErrorCode::ValidationFailed, error.to_string()),
        ServiceError::NotFound { .. } => problem(ErrorCode::NotFound, error.to_string()),
        // Indistinguishable from a conversation that does not exist, on purpose.
        ServiceError::NotParticipant { .. } => {
            problem(ErrorCode::NotFound, "conversation not found".to_owned())
        }
        ServiceError::Unauthenticated => problem(
            ErrorCode::Unauthorized,
            "The bearer token is missing, malformed or unknown.".to_owned(),
        ),
        ServiceError::EmailTaken => problem(ErrorCode::EmailTaken, error.to_string()),
        ServiceError::UsernameTaken => problem(ErrorCode::UsernameTaken, error.to_string()),
        ServiceError::SkuTaken => problem(ErrorCode::SkuTaken, error.to_string()),
        ServiceError::InsufficientStock { .. } => {
            problem(ErrorCode::InsufficientStock, error.to_string())
        }
        ServiceError::InsufficientFunds => problem(ErrorCode::InsufficientFunds, error.to_string()),
        ServiceError::OrderNotCancellable { .. } => {
            problem(ErrorCode::OrderNotCancellable, error.to_string())
        }
        ServiceError::IdempotencyKeyReused => {
            problem(ErrorCode::IdempotencyKeyReused, error.to_string())
        }
        ServiceError::Contended(_) => (
            Problem::new(
                ErrorCode::ServiceUnavailable,
                "The database is busy with conflicting requests; try again.",
            ),
            Some(RETRY_SOON),
        ),
        ServiceError::Unavailable(_) => (
            Problem::new(
                ErrorCode::ServiceUnavailable,
                "The database is unavailable; try again later.",
            ),
            Some(RETRY_LATER),
        ),
        ServiceError::ConnectionLost(_) => (
            Problem::new(
                ErrorCode::ServiceUnavailable,
                "The connection to the database was lost and could not be made again in time; \
                 nothing was changed. Try again.",
            ),
            Some(RETRY_SOON),
        ),
        // The client must know this one from a plain failure: the change may have been made.
        ServiceError::CommitOutcomeUnknown(_) => (
            Problem::new(
                ErrorCode::ServiceUnavailable,
                "The connection to the database was lost while committing: the change may or may \
                 not have been made. Check before trying again, or resend with an Idempotency-Key.",
            ),
            Some(RETRY_SOON),
        ),
        ServiceError::TimedOut { .. } => (
            Problem::new(
                ErrorCode::ServiceUnavailable,
                "The database took too long and the statement was cancelled; nothing was \
                 changed. Try again.",
            ),
            Some(RETRY_SOON),
        ),
        ServiceError::Unexpected { .. } => problem(
            ErrorCode::Internal,
            "Something went wrong on our side; it has been logged.".to_owned(),
        ),
    }
}

/// `error` followed by each of its causes, `: `-separated.
fn cause_chain(error: &(dyn StdError + 'static)) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The system's own failures are logged here, once, inside the request's span (which
        // carries its request id); the caller's mistakes are only counted by the trace layer.
        match &self {
            ApiError::Service(error @ ServiceError::Unexpected { .. }) => {
                tracing::error!(error = %cause_chain(error), "request failed unexpectedly");
            }
            ApiError::Service(
                error @ (ServiceError::Unavailable(_) | ServiceError::Contended(_)),
            ) => {
                tracing::warn!(error = %cause_chain(error), "database unavailable or contended");
            }
            ApiError::Service(
                error @ (ServiceError::ConnectionLost(_) | ServiceError::CommitOutcomeUnknown(_)),
            ) => {
                tracing::warn!(error = %cause_chain(error), "the database connection was lost");
            }
            ApiError::Service(error @ ServiceError::TimedOut { limit, .. }) => {
                tracing::warn!(
                    timeout = %limit,
                    error = %cause_chain(error),
                    "a statement ran past {limit} and was cancelled; the transaction rolled back"
                );
            }
            ApiError::Timeout => tracing::warn!("request timed out"),
            ApiError::Overloaded => {
                tracing::warn!("request shed: the concurrency limit is reached");
            }
            _ => {}
        }
        let (problem, retry_after) = self.to_problem();
        problem_response(&problem, retry_after)
    }
}

/// The HTTP response carrying `problem`.
fn problem_response(problem: &Problem, retry_after: Option<&'static str>) -> Response {
    let status = problem.code.status();
    // Serializing strings and numbers cannot fail; if it ever did, the status would still tell.
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut response = (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    }
    if problem.code == ErrorCode::Unauthorized {
        // RFC 6750: a 401 names the scheme the client should use.
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbErr, error::ConnAcquireErr};

    use super::*;

    async fn respond(error: ApiError) -> (StatusCode, Response, Problem) {
        let response = error.into_response();
        let status = response.status();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let problem: Problem = serde_json::from_slice(&bytes).unwrap();
        (
            status,
            Response::from_parts(parts, axum::body::Body::empty()),
            problem,
        )
    }

    /// One case per `ServiceError` variant: the code, and a piece of the detail.
    fn every_service_error() -> Vec<(ServiceError, ErrorCode, &'static str)> {
        vec![
            (
                ServiceError::validation("email", "must contain one @"),
                ErrorCode::ValidationFailed,
                "email: must contain one @",
            ),
            (
                ServiceError::NotFound {
                    resource: "product",
                },
                ErrorCode::NotFound,
                "product not found",
            ),
            (
                ServiceError::NotParticipant { conversation_id: 7 },
                ErrorCode::NotFound,
                "conversation not found",
            ),
            (
                ServiceError::Unauthenticated,
                ErrorCode::Unauthorized,
                "bearer token",
            ),
            (
                ServiceError::EmailTaken,
                ErrorCode::EmailTaken,
                "That email is already registered.",
            ),
            (
                ServiceError::UsernameTaken,
                ErrorCode::UsernameTaken,
                "username",
            ),
            (ServiceError::SkuTaken, ErrorCode::SkuTaken, "SKU"),
            (
                ServiceError::InsufficientStock { product_id: 42 },
                ErrorCode::InsufficientStock,
                "Insufficient stock for product 42",
            ),
            (
                ServiceError::InsufficientFunds,
                ErrorCode::InsufficientFunds,
                "funds",
            ),
            (
                ServiceError::OrderNotCancellable {
                    reason: "it is already cancelled",
                },
                ErrorCode::OrderNotCancellable,
                "it is already cancelled",
            ),
            (
                ServiceError::IdempotencyKeyReused,
                ErrorCode::IdempotencyKeyReused,
                "idempotency key",
            ),
            (
                ServiceError::Contended(DbErr::Custom("40001".into())),
                ErrorCode::ServiceUnavailable,
                "try again",
            ),
            (
                ServiceError::Unavailable(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
                ErrorCode::ServiceUnavailable,
                "unavailable",
            ),
            (
                ServiceError::ConnectionLost(DbErr::Custom("57P01".into())),
                ErrorCode::ServiceUnavailable,
                "nothing was changed",
            ),
            (
                ServiceError::CommitOutcomeUnknown(DbErr::Custom("broken pipe".into())),
                ErrorCode::ServiceUnavailable,
                "may or may not",
            ),
            (
                ServiceError::TimedOut {
                    limit: service::error::DbTimeout::Statement,
                    source: DbErr::Custom("57014".into()),
                },
                ErrorCode::ServiceUnavailable,
                "cancelled",
            ),
            (
                ServiceError::Unexpected {
                    context: "loading the order",
                    source: "column total is NULL".into(),
                },
                ErrorCode::Internal,
                "our side",
            ),
        ]
    }

    #[tokio::test]
    async fn every_service_error_becomes_a_problem_with_its_code_and_status() {
        for (error, code, detail) in every_service_error() {
            let shown = format!("{error:?}");
            let (status, _, problem) = respond(error.into()).await;
            assert_eq!(problem.code, code, "{shown}");
            assert_eq!(status, code.status(), "{shown}");
            assert_eq!(problem.status, status.as_u16(), "{shown}");
            assert_eq!(problem.problem_type, "about:blank", "{shown}");
            assert_eq!(
                Some(problem.title.as_str()),
                status.canonical_reason(),
                "{shown}"
            );
            assert!(problem.detail.contains(detail), "{shown}: {problem:?}");
        }
    }

    #[test]
    fn service_errors_map_to_the_statuses_of_the_contract() {
        let expected = [
            (ErrorCode::ValidationFailed, 422),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::NotFound, 404),
            (ErrorCode::EmailTaken, 409),
            (ErrorCode::UsernameTaken, 409),
            (ErrorCode::SkuTaken, 409),
            (ErrorCode::InsufficientStock, 409),
            (ErrorCode::InsufficientFunds, 409),
            (ErrorCode::OrderNotCancellable, 409),
            (ErrorCode::IdempotencyKeyReused, 422),
            (ErrorCode::PayloadTooLarge, 413),
            (ErrorCode::UnsupportedMediaType, 415),
            (ErrorCode::MethodNotAllowed, 405),
            (ErrorCode::BadRequest, 400),
            (ErrorCode::ServiceUnavailable, 503),
            (ErrorCode::Internal, 500),
        ];
        for (code, status) in expected {
            assert_eq!(code.status().as_u16(), status, "{code:?}");
        }
    }

    #[tokio::test]
    async fn codes_are_sent_as_snake_case_words() {
        let (_, _, problem) =
            respond(ServiceError::InsufficientStock { product_id: 3 }.into()).await;
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["code"], "insufficient_stock");
        assert_eq!(json["type"], "about:blank");
        assert_eq!(json["detail"], "Insufficient stock for product 3");
    }

    #[tokio::test]
    async fn every_error_response_is_problem_json() {
        for (error, _, _) in every_service_error() {
            let (_, response, _) = respond(error.into()).await;
            assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        }
    }

    #[tokio::test]
    async fn an_unexpected_error_never_shows_its_cause() {
        let error = ServiceError::Unexpected {
            context: "loading the order",
            source: "password authentication failed for user app".into(),
        };
        let response = ApiError::from(error).into_response();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(!body.contains("password"), "{body}");
        assert!(!body.contains("loading the order"), "{body}");
    }

    #[tokio::test]
    async fn unavailable_and_contended_tell_the_client_when_to_retry() {
        let errors = [
            ServiceError::Unavailable(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
            ServiceError::Contended(DbErr::Custom("deadlock".into())),
        ];
        for error in errors {
            let (status, response, _) = respond(error.into()).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(response.headers().contains_key(header::RETRY_AFTER));
        }
    }

    #[tokio::test]
    async fn every_503_tells_the_client_when_to_retry() {
        let mut errors: Vec<ApiError> = every_service_error()
            .into_iter()
            .map(|(error, _, _)| error.into())
            .collect();
        errors.extend([
            ApiError::Timeout,
            ApiError::Overloaded,
            ApiError::DatabaseDown,
            ApiError::NotReady,
        ]);
        for error in errors {
            let shown = format!("{error:?}");
            let (status, response, problem) = respond(error).await;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(problem.code, ErrorCode::ServiceUnavailable, "{shown}");
                assert!(
                    response.headers().contains_key(header::RETRY_AFTER),
                    "{shown}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_401_names_the_bearer_scheme() {
        let (_, response, _) = respond(ServiceError::Unauthenticated.into()).await;
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn the_cause_chain_lists_every_source() {
        let error = ServiceError::Unavailable(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        let chain = cause_chain(&error);
        assert!(
            chain.starts_with("the database is unavailable: "),
            "{chain}"
        );
        assert!(
            chain.len() > "the database is unavailable: ".len(),
            "{chain}"
        );
    }
}
