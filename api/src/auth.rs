//! Bearer authentication: `Authorization: Bearer <token>`.
//!
//! [`BearerToken`] reads the header; a missing or malformed one is 401 `unauthorized` before any
//! database work. [`AuthUser`] turns the token into the user it belongs to through the service
//! (which stores only token hashes); a handler that takes an `AuthUser` is authenticated, and its
//! OpenAPI operation should declare `security(("bearer" = []))`. Once the token is verified,
//! the user's id is recorded in the request span, so every later log line of the request names
//! the caller.

use std::fmt;

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use service::domain::users::User;

use crate::{ApiError, AppState, middleware::RequestSpan};

/// The token of the request's `Authorization: Bearer` header. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// The token as sent, for the lookup; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads `Bearer <token>` (the scheme is case-insensitive, RFC 9110 § 11.1).
    fn parse(value: &str) -> Option<BearerToken> {
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim();
        let well_formed = scheme.eq_ignore_ascii_case("bearer")
            && !token.is_empty()
            && !token.contains(char::is_whitespace);
        well_formed.then(|| BearerToken(token.to_owned()))
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::MissingCredentials(
                "This endpoint needs an `Authorization: Bearer <token>` header.",
            ));
        };
        value
            .to_str()
            .ok()
            .and_then(BearerToken::parse)
            .ok_or(ApiError::MissingCredentials(
                "The Authorization header must be `Bearer <token>`.",
            ))
    }
}

/// The user the request's bearer token belongs to.
#[derive(Debug, Clone)]
pub struct AuthUser(pub User);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = BearerToken::from_request_parts(parts, state).await?;
        // The service hashes the token and looks the hash up: unknown tokens are 401.
        let user = service::ops::users::authenticate(&state.db, token.expose()).await?;
        if let Some(RequestSpan(span)) = parts.extensions.get::<RequestSpan>() {
            span.record("user_id", user.id);
        }
        Ok(AuthUser(user))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;
    use crate::ErrorCode;

    async fn token_from(authorization: Option<&str>) -> Result<BearerToken, ErrorCode> {
        let mut request = Request::get("/me");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        BearerToken::from_request_parts(&mut parts, &())
            .await
            .map_err(|error| match error {
                ApiError::MissingCredentials(_) => ErrorCode::Unauthorized,
                other => panic!("unexpected rejection {other:?}"),
            })
    }

    #[tokio::test]
    async fn a_bearer_header_yields_its_token() {
        for header in ["Bearer abc123", "bearer abc123", "BEARER  abc123 "] {
            let token = token_from(Some(header)).await.unwrap();
            assert_eq!(token.expose(), "abc123", "{header:?}");
        }
    }

    #[tokio::test]
    async fn a_missing_header_is_unauthorized() {
        assert_eq!(token_from(None).await, Err(ErrorCode::Unauthorized));
    }

    #[tokio::test]
    async fn a_malformed_header_is_unauthorized() {
        for header in [
            "abc123",
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Bearer two tokens",
        ] {
            assert_eq!(
                token_from(Some(header)).await,
                Err(ErrorCode::Unauthorized),
                "{header:?}"
            );
        }
    }

    #[test]
    fn a_token_is_never_shown_in_debug_output() {
        let token = BearerToken::parse("Bearer s3cret").unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
