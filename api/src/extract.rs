//! The extractors handlers take their input through, so that every rejection is an [`ApiError`]
//! and a handler's signature tells the whole story.
//!
//! [`Json`] checks the content type, buffers the body within the 1 MiB limit and deserializes it,
//! telling a malformed document (400 `bad_request`) from a well-formed one of the wrong shape
//! (422 `validation_failed`, naming the field by its path, e.g. `items[0].quantity`). [`Query`]
//! does the same for the query string and [`Path`] for path parameters: a path id that is not an
//! integer is 422. `Json` is also the response type for JSON bodies. [`Integer`] is an integer
//! field of a JSON body, read as JSON Schema counts integers (`2.0` is the integer 2).

use axum::{
    body::Bytes,
    extract::{
        FromRequest, FromRequestParts, RawPathParams, Request, path::ErrorKind,
        rejection::PathRejection,
    },
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, DeserializeOwned, IgnoredAny, Visitor},
};

use crate::ApiError;

/// A JSON request body, or a JSON response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !has_json_content_type(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest(rejection.body_text())
                }
            })?;
        parse_json(&body).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `application/json`, or any `application/*+json`, with any parameters.
fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application") && (subtype == "json" || subtype.ends_with("+json"))
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let malformed = |error: &serde_json::Error| {
        ApiError::BadRequest(format!(
            "The body is not valid JSON: {}.",
            without_position(error)
        ))
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            return malformed(&inner);
        }
        // A shape error may be met before a syntax error further on; malformed wins.
        if let Err(syntax) = serde_json::from_slice::<IgnoredAny>(body) {
            return malformed(&syntax);
        }
        ApiError::InvalidInput(at_path(&path, &without_position(&inner)))
    })?;
    // Anything but whitespace after the document is as malformed as a broken document.
    deserializer.end().map_err(|error| malformed(&error))?;
    Ok(value)
}

/// serde_json's message without its " at line 1 column 9" suffix, which means nothing to a
/// client that sent the body on one line.
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    message
        .strip_suffix(&suffix)
        .map(str::to_owned)
        .unwrap_or(message)
}

/// `path: message`, or just the message when the error is about the whole document (a missing
/// field, whose message names it).
fn at_path(path: &str, message: &str) -> String {
    if path.is_empty() || path == "." {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// An integer field of a JSON body, as JSON Schema's `"type": "integer"` counts them: any number
/// with no fractional part, so `2` and `2.0` are both 2 (JSON itself does not tell them apart,
/// and neither do the generated clients that send `2.0`). `2.5`, and anything outside the 64-bit
/// range, are refused as the wrong type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integer(pub i64);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntegerVisitor)
    }
}

struct IntegerVisitor;

/// 2^63, the first float past `i64::MAX` (which a float cannot hold exactly).
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

impl Visitor<'_> for IntegerVisitor {
    type Value = Integer;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a 64-bit integer")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Integer, E> {
        Ok(Integer(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Integer, E> {
        i64::try_from(value)
            .map(Integer)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Integer, E> {
        if value.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&value) {
            // Exact: a whole float within the range converts without rounding.
            #[allow(clippy::cast_possible_truncation)]
            Ok(Integer(value as i64))
        } else {
            Err(E::invalid_type(de::Unexpected::Float(value), &self))
        }
    }
}

/// Path parameters; one that does not parse (a non-integer id) is 422 naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let error = match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => return Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => error,
            // The route declares no such parameter: a bug of ours, not the caller's.
            Err(rejection) => {
                return Err(ApiError::unexpected(
                    "extracting path parameters",
                    rejection.body_text(),
                ));
            }
        };
        let detail = match error.kind() {
            ErrorKind::ParseErrorAtKey {
                key,
                value,
                expected_type,
            } => invalid_parameter(key, value, expected_type),
            // A lone parameter (`Path<i64>`) is reported without its name; the route has it.
            ErrorKind::ParseError {
                value,
                expected_type,
            } => {
                let params = RawPathParams::from_request_parts(parts, state).await;
                let key = params
                    .ok()
                    .and_then(|params| {
                        params
                            .iter()
                            .find(|(_, raw)| raw == value)
                            .map(|(key, _)| key.to_owned())
                    })
                    .unwrap_or_else(|| "path".to_owned());
                invalid_parameter(&key, value, expected_type)
            }
            _ => error.body_text(),
        };
        Err(ApiError::InvalidInput(detail))
    }
}

fn invalid_parameter(key: &str, value: &str, expected_type: &str) -> String {
    let integer = [
        "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
    ]
    .contains(&expected_type);
    if integer {
        format!("{key}: must be an integer, not {value:?}")
    } else {
        format!("{key}: {value:?} is not a valid {expected_type}")
    }
}

/// The query string; a parameter of the wrong type, or a missing one, is 422 naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|error| {
                let path = error.path().to_string();
                ApiError::InvalidInput(at_path(&path, &error.into_inner().to_string()))
            })
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, routing::get};
    use serde::Deserialize;
    use tower::ServiceExt;

    use super::*;
    use crate::{ErrorCode, Problem};

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        product_id: i64,
        quantity: u32,
    }

    async fn problem_of(error: ApiError) -> Problem {
        let body = axum::body::to_bytes(error.into_response().into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn json_request(content_type: Option<&str>, body: &str) -> Request {
        let mut request = Request::builder().method("POST").uri("/");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        request.body(Body::from(body.to_owned())).unwrap()
    }

    async fn extract_order(content_type: Option<&str>, body: &str) -> Result<Order, Problem> {
        match Json::<Order>::from_request(json_request(content_type, body), &()).await {
            Ok(Json(order)) => Ok(order),
            Err(error) => Err(problem_of(error).await),
        }
    }

    #[tokio::test]
    async fn a_well_formed_body_is_accepted_with_any_json_content_type() {
        let body = r#"{"items": [{"product_id": 1, "quantity": 2}]}"#;
        for content_type in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            let order = extract_order(Some(content_type), body).await;
            assert!(order.is_ok(), "{content_type}: {order:?}");
        }
    }

    #[tokio::test]
    async fn malformed_json_is_a_bad_request() {
        for body in [r#"{"items": ["#, "", "{} {}", "nonsense"] {
            let problem = extract_order(Some("application/json"), body)
                .await
                .unwrap_err();
            assert_eq!(problem.code, ErrorCode::BadRequest, "{body:?}: {problem:?}");
        }
    }

    #[tokio::test]
    async fn a_body_that_is_not_declared_json_is_an_unsupported_media_type() {
        for content_type in [None, Some("text/plain"), Some("application/jsonx")] {
            let problem = extract_order(content_type, r#"{"items": []}"#)
                .await
                .unwrap_err();
            assert_eq!(
                problem.code,
                ErrorCode::UnsupportedMediaType,
                "{content_type:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_wrong_type_is_a_validation_failure_naming_the_field_by_its_path() {
        let body = r#"{"items": [{"product_id": 1, "quantity": "two"}]}"#;
        let problem = extract_order(Some("application/json"), body)
            .await
            .unwrap_err();
        assert_eq!(problem.code, ErrorCode::ValidationFailed);
        assert!(
            problem
                .detail
                .starts_with("items[0].quantity: invalid type"),
            "{problem:?}"
        );
    }

    #[test]
    fn an_integer_field_takes_whole_numbers_also_written_with_a_fraction_of_zero() {
        let read = |json: &str| serde_json::from_str::<Integer>(json).map(|Integer(n)| n);
        assert_eq!(read("7").unwrap(), 7);
        assert_eq!(read("-465.0").unwrap(), -465);
        assert_eq!(read("2e3").unwrap(), 2000);
        assert_eq!(read("9223372036854775807").unwrap(), i64::MAX);
        assert_eq!(read("-9223372036854775808").unwrap(), i64::MIN);
        for refused in [
            "2.5",
            "9223372036854775808",
            "9223372036854775808.0",
            "1e300",
            "\"7\"",
            "null",
            "true",
        ] {
            assert!(read(refused).is_err(), "{refused}");
        }
    }

    #[tokio::test]
    async fn a_missing_field_is_a_validation_failure_naming_it() {
        let problem = extract_order(Some("application/json"), r#"{"items": [{"quantity": 1}]}"#)
            .await
            .unwrap_err();
        assert_eq!(problem.code, ErrorCode::ValidationFailed);
        assert!(problem.detail.contains("product_id"), "{problem:?}");
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Page {
        limit: Option<u32>,
        sort: String,
    }

    async fn status_and_problem(router: Router, uri: &str) -> (StatusCode, Option<Problem>) {
        let response = router
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).ok())
    }

    fn page_router() -> Router {
        Router::new().route("/", get(|Query(_page): Query<Page>| async { "ok" }))
    }

    fn id_router() -> Router {
        Router::new().route("/things/{id}", get(|Path(_id): Path<i64>| async { "ok" }))
    }

    #[tokio::test]
    async fn a_query_parameter_of_the_wrong_type_is_a_validation_failure_naming_it() {
        let (status, problem) = status_and_problem(page_router(), "/?sort=name&limit=ten").await;
        let problem = problem.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem.code, ErrorCode::ValidationFailed);
        assert!(problem.detail.starts_with("limit: "), "{problem:?}");
    }

    #[tokio::test]
    async fn a_missing_query_parameter_is_a_validation_failure_naming_it() {
        let (status, problem) = status_and_problem(page_router(), "/?limit=5").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(problem.unwrap().detail.contains("sort"));
    }

    #[tokio::test]
    async fn a_valid_query_string_is_accepted() {
        let (status, _) = status_and_problem(page_router(), "/?sort=name&limit=5").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_path_id_that_is_not_an_integer_is_a_validation_failure_naming_it() {
        for id in ["abc", "1.5", "99999999999999999999"] {
            let (status, problem) = status_and_problem(id_router(), &format!("/things/{id}")).await;
            let problem = problem.unwrap();
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{id}");
            assert!(problem.detail.starts_with("id: "), "{id}: {problem:?}");
        }
    }

    #[tokio::test]
    async fn an_integer_path_id_is_accepted() {
        let (status, _) = status_and_problem(id_router(), "/things/42").await;
        assert_eq!(status, StatusCode::OK);
    }
}
