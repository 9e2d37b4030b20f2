//! Registration, authentication and reading users, on every configured backend.

mod support;

use entity::{api_tokens, users};
use mercado_testkit::{TestDb, backend_tests};
use sea_orm::{EntityTrait, PaginatorTrait};
use service::{
    ServiceError,
    domain::users::{DisplayName, Email, NewUser, Username},
    ops::{self, users::authenticate},
};
use sha2::{Digest, Sha256};
use support::*;

backend_tests! {
    async fn registering_creates_a_user_with_an_empty_account_and_a_token_that_authenticates(
        db: TestDb
    ) -> anyhow::Result<()> {
        let registered = ops::users::register(&db.conn, NewUser {
            username: Username::parse("Ann.Lee")?,
            email: Email::parse("Ann@Example.com")?,
            display_name: Some(DisplayName::parse("Ann 😀")?),
        })
        .await?;

        assert_eq!(registered.user.username, "Ann.Lee");
        assert_eq!(registered.user.email, "Ann@Example.com");
        assert_eq!(registered.user.display_name, "Ann 😀");
        let profile = ops::users::profile(&db.conn, registered.user.id).await?;
        assert_eq!(profile.user, registered.user);
        assert_eq!(profile.balance.to_string(), "0.00");
        let authenticated = authenticate(&db.conn, &registered.token).await?;
        assert_eq!(authenticated, registered.user);
        Ok(())
    }

    async fn tokens_issued_to_existing_users_authenticate_each_as_its_own_user(
        db: TestDb
    ) -> anyhow::Result<()> {
        let ann = register(&db.conn, "ann").await?.user;
        let bob = register(&db.conn, "bob").await?.user;

        let issued = ops::users::issue_tokens(&db.conn, &[ann.id, bob.id]).await?;

        assert_eq!(issued.len(), 2);
        assert_ne!(issued[0].1, issued[1].1);
        for ((user_id, token), user) in issued.iter().zip([&ann, &bob]) {
            assert_eq!(*user_id, user.id);
            assert_eq!(&authenticate(&db.conn, token).await?, user);
        }
        Ok(())
    }

    async fn the_display_name_defaults_to_the_username(db: TestDb) -> anyhow::Result<()> {
        let registered = register(&db.conn, "Bob_the-builder").await?;
        assert_eq!(registered.user.display_name, "Bob_the-builder");
        Ok(())
    }

    async fn only_the_sha256_of_a_token_is_stored(db: TestDb) -> anyhow::Result<()> {
        let registered = register(&db.conn, "ann").await?;

        let stored: Vec<String> = api_tokens::Entity::find()
            .all(&db.conn)
            .await?
            .into_iter()
            .map(|token| token.token_hash)
            .collect();
        let expected = hex::encode(Sha256::digest(registered.token.as_bytes()));
        assert_eq!(stored, vec![expected]);
        assert!(registered.token.len() >= 43, "at least 32 random bytes");
        Ok(())
    }

    async fn a_taken_email_is_refused_whatever_its_case_and_nothing_is_written(
        db: TestDb
    ) -> anyhow::Result<()> {
        register(&db.conn, "ann").await?;

        let result = ops::users::register(&db.conn, NewUser {
            username: Username::parse("someone_else")?,
            email: Email::parse("ANN@example.COM")?,
            display_name: None,
        })
        .await;

        assert!(matches!(result, Err(ServiceError::EmailTaken)), "{result:?}");
        assert_eq!(
            result.err().map(|e| e.to_string()).as_deref(),
            Some("That email is already registered.")
        );
        assert_eq!(users::Entity::find().count(&db.conn).await?, 1);
        assert_eq!(api_tokens::Entity::find().count(&db.conn).await?, 1);
        Ok(())
    }

    async fn a_taken_username_is_refused_whatever_its_case(db: TestDb) -> anyhow::Result<()> {
        register(&db.conn, "ann").await?;

        let result = ops::users::register(&db.conn, NewUser {
            username: Username::parse("ANN")?,
            email: Email::parse("other@example.com")?,
            display_name: None,
        })
        .await;

        assert!(matches!(result, Err(ServiceError::UsernameTaken)), "{result:?}");
        assert_eq!(users::Entity::find().count(&db.conn).await?, 1);
        Ok(())
    }

    async fn an_unknown_or_empty_token_is_unauthenticated(db: TestDb) -> anyhow::Result<()> {
        let registered = register(&db.conn, "ann").await?;
        let mut almost = registered.token.clone();
        let last = almost.pop();
        almost.push(if last == Some('0') { '1' } else { '0' });

        for token in ["", "not-a-token", almost.as_str()] {
            let result = authenticate(&db.conn, token).await;
            assert!(matches!(result, Err(ServiceError::Unauthenticated)), "{token:?}: {result:?}");
        }
        Ok(())
    }

    async fn a_user_is_read_by_id_and_an_unknown_id_is_not_found(db: TestDb) -> anyhow::Result<()> {
        let registered = register(&db.conn, "ann").await?;

        assert_eq!(ops::users::get_user(&db.conn, registered.user.id).await?, registered.user);
        let missing = ops::users::get_user(&db.conn, registered.user.id + 1).await;
        assert!(matches!(missing, Err(ServiceError::NotFound { resource: "user" })), "{missing:?}");
        let no_profile = ops::users::profile(&db.conn, registered.user.id + 1).await;
        assert!(matches!(no_profile, Err(ServiceError::NotFound { resource: "user" })), "{no_profile:?}");
        Ok(())
    }

    async fn a_profile_shows_the_current_balance(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "12.34").await?;
        assert_eq!(ops::users::profile(&db.conn, ann).await?.balance, money("12.34"));
        Ok(())
    }
}
