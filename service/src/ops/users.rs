//! Operations on users: registration (user, account and token in one transaction), token
//! authentication, and reading a user or their profile.

use rand::RngCore;
use sea_orm::{DatabaseConnection, DbErr};
use sha2::{Digest, Sha256};

use crate::{
    ServiceError,
    db::{begin_write, finish, reader},
    domain::{
        money::Money,
        users::{NewUser, Profile, Registered, User},
    },
    error::DbFailure,
    repo,
    retry::{RetryPolicy, with_retry, with_retry_idempotent},
};

/// Random bytes in a token: 256 bits, beyond guessing.
const TOKEN_BYTES: usize = 32;

/// Registers a user with an empty account and an API token, all or nothing. A taken username
/// or email is recognised from the unique constraint the insert violates — a lookup beforehand
/// could not see a concurrent registration — and reported as `UsernameTaken` / `EmailTaken`.
// The request holds an email address: personal data stays out of the span.
#[tracing::instrument(level = "info", skip_all)]
pub async fn register(db: &DatabaseConnection, new: NewUser) -> Result<Registered, ServiceError> {
    with_retry(RetryPolicy::reconnecting(), || register_once(db, &new)).await
}

async fn register_once(db: &DatabaseConnection, new: &NewUser) -> Result<Registered, ServiceError> {
    let now = super::now();
    let display_name = match &new.display_name {
        Some(name) => name.as_str(),
        None => new.username.as_str(),
    };
    let token = new_token();

    let txn = begin_write(db).await?;
    let result = async {
        let user = repo::users::insert(&txn, &new.username, &new.email, display_name, now)
            .await
            .map_err(taken_or_unexpected)?;
        repo::accounts::open(&txn, user.id, now).await?;
        repo::users::insert_token_hash(&txn, user.id, &token_hash(&token), now).await?;
        Ok(user)
    }
    .await;
    let user = finish(txn, result).await?;

    tracing::info!(user_id = user.id, "registered a user");
    Ok(Registered {
        user: User::from(user),
        token,
    })
}

fn taken_or_unexpected(error: DbErr) -> ServiceError {
    let failure = DbFailure::of(&error);
    if failure.violates(&repo::users::EMAIL_UNIQUE) {
        ServiceError::EmailTaken
    } else if failure.violates(&repo::users::USERNAME_UNIQUE) {
        ServiceError::UsernameTaken
    } else {
        error.into()
    }
}

/// A fresh token: 32 bytes from the thread-local CSPRNG (ChaCha, seeded by the OS), as 64 hex
/// digits, which are safe in a header and a URL.
fn new_token() -> String {
    let mut bytes = [0_u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Issues a new API token to each of these existing users, as registration does, in chunked
/// multi-row inserts: for tooling that gives seeded users credentials (the benchmark's HTTP
/// callers). Returns `(user_id, token)`; only the tokens' hashes are stored. All or nothing, in
/// one write transaction.
#[tracing::instrument(level = "info", skip_all, fields(users = user_ids.len()))]
pub async fn issue_tokens(
    db: &DatabaseConnection,
    user_ids: &[i64],
) -> Result<Vec<(i64, String)>, ServiceError> {
    with_retry(RetryPolicy::reconnecting(), || {
        issue_tokens_once(db, user_ids)
    })
    .await
}

async fn issue_tokens_once(
    db: &DatabaseConnection,
    user_ids: &[i64],
) -> Result<Vec<(i64, String)>, ServiceError> {
    let now = super::now();
    let issued: Vec<(i64, String)> = user_ids.iter().map(|&id| (id, new_token())).collect();
    let rows = issued
        .iter()
        .map(|(user_id, token)| repo::users::token_row(*user_id, token_hash(token), now))
        .collect();
    let txn = begin_write(db).await?;
    let result = crate::bulk::insert_chunked(&txn, rows).await;
    finish(txn, result).await?;
    Ok(issued)
}

/// The only form of a token the database ever sees.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The user holding `token`; an unknown or empty token is `Unauthenticated`. One statement.
// The token is the credential itself: it and its hash stay out of the span.
#[tracing::instrument(level = "info", skip_all)]
pub async fn authenticate(db: &DatabaseConnection, token: &str) -> Result<User, ServiceError> {
    if token.is_empty() {
        return Err(ServiceError::Unauthenticated);
    }
    let hash = token_hash(token);
    with_retry_idempotent(RetryPolicy::default(), || async {
        Ok(repo::users::find_by_token_hash(reader(db), &hash).await?)
    })
    .await?
    .map(User::from)
    .ok_or(ServiceError::Unauthenticated)
}

/// Any user, by id. One statement.
#[tracing::instrument(level = "info", skip_all, fields(user_id = id))]
pub async fn get_user(db: &DatabaseConnection, id: i64) -> Result<User, ServiceError> {
    with_retry_idempotent(RetryPolicy::default(), || async move {
        Ok(repo::users::find(reader(db), id).await?)
    })
    .await?
    .map(User::from)
    .ok_or(ServiceError::NotFound { resource: "user" })
}

/// The user and their balance, in one statement.
#[tracing::instrument(level = "info", skip_all, fields(user_id = user_id))]
pub async fn profile(db: &DatabaseConnection, user_id: i64) -> Result<Profile, ServiceError> {
    let (user, account) = with_retry_idempotent(RetryPolicy::default(), || async move {
        Ok(repo::users::find_with_account(reader(db), user_id).await?)
    })
    .await?
    .ok_or(ServiceError::NotFound { resource: "user" })?;
    let balance = match account {
        Some(account) => Money::from_stored(account.balance)?,
        None => Money::ZERO,
    };
    Ok(Profile {
        user: User::from(user),
        balance,
    })
}

/// Whether any user exists: the binary loads its demo data set only into a database with none.
/// One statement.
#[tracing::instrument(level = "info", skip_all)]
pub async fn any_user_exists(db: &DatabaseConnection) -> Result<bool, ServiceError> {
    with_retry_idempotent(RetryPolicy::default(), || async move {
        Ok(repo::users::any_exists(reader(db)).await?)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_never_repeat() {
        let first = new_token();
        assert_eq!(first.len(), 64);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first, new_token());
    }

    #[test]
    fn a_token_is_stored_as_its_sha256_hex_digest() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
