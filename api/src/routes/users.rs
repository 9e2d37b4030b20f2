//! Users: registering (which returns the user's only copy of their token), reading anyone's
//! public face, and reading one's own profile with its balance.

use axum::{extract::State, response::Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service::domain::{
    money::Money,
    users::{DisplayName, Email, NewUser, Profile, Registered, User, Username},
};
use utoipa::ToSchema;

use super::created;
use crate::{
    ApiError, AppState, Problem,
    auth::AuthUser,
    extract::{Json, Path},
    read_after::{ReadAfter, ReadAfterHeader},
    schemas,
};

/// `POST /users`: who to register. Unknown fields are refused (422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "ann", "email": "ann@example.com", "display_name": "Ann"}))]
pub(crate) struct NewUserRequest {
    #[schema(schema_with = schemas::username)]
    username: String,
    #[schema(schema_with = schemas::email)]
    email: String,
    #[serde(default)]
    #[schema(schema_with = schemas::display_name)]
    display_name: Option<String>,
}

/// A user as they see themselves.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserBody {
    id: i64,
    /// As typed at registration.
    username: String,
    /// As typed at registration.
    email: String,
    display_name: String,
    created_at: DateTime<Utc>,
}

impl From<User> for UserBody {
    fn from(user: User) -> Self {
        UserBody {
            id: user.id,
            username: user.username,
            email: user.email,
            display_name: user.display_name,
            created_at: user.created_at,
        }
    }
}

/// A new user and their API token.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Registration {
    user: UserBody,
    /// `Authorization: Bearer <token>` for every authenticated request. Shown this once: only
    /// its hash is stored.
    #[schema(example = "3f6c0a4f5e0b8b1d2c7a9e4f1b3d5c7e9a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d")]
    token: String,
}

impl From<Registered> for Registration {
    fn from(registered: Registered) -> Self {
        Registration {
            user: registered.user.into(),
            token: registered.token,
        }
    }
}

/// A user as anyone sees them: no email.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PublicUser {
    id: i64,
    username: String,
    display_name: String,
    created_at: DateTime<Utc>,
}

impl From<User> for PublicUser {
    fn from(user: User) -> Self {
        PublicUser {
            id: user.id,
            username: user.username,
            display_name: user.display_name,
            created_at: user.created_at,
        }
    }
}

/// The caller, with their balance.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProfileBody {
    id: i64,
    username: String,
    email: String,
    display_name: String,
    created_at: DateTime<Utc>,
    /// Always with two decimal places.
    #[schema(value_type = String, example = "120.50")]
    balance: Money,
}

impl From<Profile> for ProfileBody {
    fn from(Profile { user, balance }: Profile) -> Self {
        ProfileBody {
            id: user.id,
            username: user.username,
            email: user.email,
            display_name: user.display_name,
            created_at: user.created_at,
            balance,
        }
    }
}

/// Registers a user with an empty account, and returns their API token — the only time it is
/// ever shown.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "Registered; `Location` names the user.", body = Registration),
        (
            status = 409,
            description = "`email_taken` (\"That email is already registered.\") or \
                           `username_taken`.",
            body = Problem,
            content_type = "application/problem+json",
        ),
    ),
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    Json(body): Json<NewUserRequest>,
) -> Result<Response, ApiError> {
    let new = NewUser {
        username: Username::parse(body.username)?,
        email: Email::parse(body.email)?,
        display_name: body.display_name.map(DisplayName::parse).transpose()?,
    };
    let registered = service::ops::users::register(&state.db, new).await?;
    let location = format!("/users/{}", registered.user.id);
    Ok(created(location, Registration::from(registered)))
}

/// Any user's public face: no email.
#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    params(ReadAfterHeader, ("id" = i64, Path, description = "The user's id.")),
    responses((status = 200, description = "The user.", body = PublicUser)),
)]
pub(crate) async fn get_user(
    State(state): State<AppState>,
    ReadAfter(after): ReadAfter,
    Path(id): Path<i64>,
) -> Result<Json<PublicUser>, ApiError> {
    let user = state
        .reads
        .read(after, |db| service::ops::users::get_user(db, id))
        .await?;
    Ok(Json(user.into()))
}

/// The caller's own profile, with their balance.
#[utoipa::path(
    get,
    path = "/me",
    tag = "users",
    params(ReadAfterHeader),
    security(("bearer" = [])),
    responses((status = 200, description = "The caller.", body = ProfileBody)),
)]
pub(crate) async fn me(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ReadAfter(after): ReadAfter,
) -> Result<Json<ProfileBody>, ApiError> {
    let profile = state
        .reads
        .read(after, |db| service::ops::users::profile(db, user.id))
        .await?;
    Ok(Json(profile.into()))
}
