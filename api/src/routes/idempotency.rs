//! The `Idempotency-Key` request header, which makes `POST /orders`, `POST /me/deposits` and
//! `POST /transfers` safe to repeat. One reader for all three, so that they refuse the same
//! keys with the same words.

use axum::http::{HeaderMap, HeaderName};
use service::domain::orders::IdempotencyKey;
use utoipa::IntoParams;

use super::in_field;
use crate::{ApiError, schemas};

/// The request header that makes a request safe to repeat.
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The header as the OpenAPI document describes it (`params(IdempotencyHeader)`); the handlers
/// read it with [`idempotency_key`], which knows a repeated header too.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Never built: it only describes the header.
pub(crate) struct IdempotencyHeader {
    #[param(rename = "Idempotency-Key", schema_with = schemas::idempotency_key)]
    idempotency_key: Option<String>,
}

/// The request's `Idempotency-Key`, if it sent one: sent once, 1 to 255 characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidInput(
            "Idempotency-Key: send the header once".to_owned(),
        ));
    }
    let text = value.to_str().map_err(|_| {
        ApiError::InvalidInput("Idempotency-Key: must be visible ASCII characters".to_owned())
    })?;
    IdempotencyKey::parse(text)
        .map(Some)
        .map_err(|error| in_field("Idempotency-Key", error))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn detail_of(result: Result<Option<IdempotencyKey>, ApiError>) -> String {
        match result {
            Err(ApiError::InvalidInput(detail)) => detail,
            other => panic!("expected a validation failure, got {other:?}"),
        }
    }

    fn with_keys(keys: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for key in keys {
            headers.append(IDEMPOTENCY_KEY, HeaderValue::from_bytes(key).unwrap());
        }
        headers
    }

    #[test]
    fn no_header_is_no_key_and_one_header_is_the_key() {
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
        let key = idempotency_key(&with_keys(&[b"order-42"]))
            .unwrap()
            .unwrap();
        assert_eq!(key.as_str(), "order-42");
    }

    #[test]
    fn an_empty_long_repeated_or_non_ascii_key_is_refused_naming_the_header() {
        let long = vec![b'k'; 256];
        for keys in [
            vec![&b""[..]],
            vec![&long[..]],
            vec![&b"a"[..], &b"b"[..]],
            vec![&b"caf\xc3\xa9"[..]],
        ] {
            let detail = detail_of(idempotency_key(&with_keys(&keys)));
            assert!(
                detail.starts_with("Idempotency-Key: "),
                "{keys:?}: {detail}"
            );
        }
    }
}
