//! The users repository: users and the hashes of their API tokens.

use chrono::{DateTime, FixedOffset};
use entity::{accounts, api_tokens, users};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    Set,
};

use crate::{
    domain::users::{Email, Username},
    error::UniqueConstraint,
};

/// Two users may not share a username, compared in lower case.
pub const USERNAME_UNIQUE: UniqueConstraint = UniqueConstraint {
    name: "uq_users_username_canonical",
    table: "users",
    columns: &["username_canonical"],
};

/// Two users may not share an email, compared in lower case.
pub const EMAIL_UNIQUE: UniqueConstraint = UniqueConstraint {
    name: "uq_users_email_canonical",
    table: "users",
    columns: &["email_canonical"],
};

/// Inserts a user. A taken username or email fails with a unique violation of
/// [`USERNAME_UNIQUE`] or [`EMAIL_UNIQUE`]; the database is the judge, not a prior lookup.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    username: &Username,
    email: &Email,
    display_name: &str,
    created_at: DateTime<FixedOffset>,
) -> Result<users::Model, DbErr> {
    users::ActiveModel {
        username: Set(username.as_str().to_owned()),
        username_canonical: Set(username.canonical()),
        email: Set(email.as_str().to_owned()),
        email_canonical: Set(email.canonical()),
        display_name: Set(display_name.to_owned()),
        created_at: Set(created_at),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Stores the SHA-256 hex digest of a token issued to `user_id`.
/// The `api_tokens` row for a token's hash, to insert one by one or in bulk.
pub fn token_row(
    user_id: i64,
    token_hash: String,
    created_at: DateTime<FixedOffset>,
) -> api_tokens::ActiveModel {
    api_tokens::ActiveModel {
        user_id: Set(user_id),
        token_hash: Set(token_hash),
        created_at: Set(created_at),
        ..Default::default()
    }
}

pub async fn insert_token_hash<C: ConnectionTrait>(
    db: &C,
    user_id: i64,
    token_hash: &str,
    created_at: DateTime<FixedOffset>,
) -> Result<(), DbErr> {
    api_tokens::Entity::insert(token_row(user_id, token_hash.to_owned(), created_at))
        .exec(db)
        .await?;
    Ok(())
}

/// The user with this id, if any.
pub async fn find<C: ConnectionTrait>(db: &C, id: i64) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find_by_id(id).one(db).await
}

/// Whether any user exists, in one statement that reads at most one id.
pub async fn any_exists<C: ConnectionTrait>(db: &C) -> Result<bool, DbErr> {
    let first: Option<i64> = users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    Ok(first.is_some())
}

/// The user holding the token whose hash is `token_hash`, in one statement (a join).
pub async fn find_by_token_hash<C: ConnectionTrait>(
    db: &C,
    token_hash: &str,
) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find()
        .inner_join(api_tokens::Entity)
        .filter(api_tokens::Column::TokenHash.eq(token_hash))
        .one(db)
        .await
}

/// A user and their account, in one statement (a join).
pub async fn find_with_account<C: ConnectionTrait>(
    db: &C,
    id: i64,
) -> Result<Option<(users::Model, Option<accounts::Model>)>, DbErr> {
    users::Entity::find_by_id(id)
        .find_also_related(accounts::Entity)
        .one(db)
        .await
}
