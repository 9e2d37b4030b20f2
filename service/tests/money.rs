//! Deposits and transfers, on every configured backend: balances exact to the cent, every
//! refusal leaving nothing behind.

mod support;

use mercado_testkit::{TestDb, backend_tests};
use service::{
    ServiceError,
    domain::money::Money,
    ops::money::{deposit, transfer},
};
use support::*;

backend_tests! {
    async fn deposits_add_up_exactly_to_the_cent(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "0").await?;

        deposit(&db.conn, ann, money("0.10")).await?;
        let returned = deposit(&db.conn, ann, money("0.20")).await?;

        // 0.1 + 0.2 is not 0.3 in floating point; SQLite stores REAL, so this proves the rounding.
        assert_eq!(returned, money("0.30"));
        assert_eq!(balance(&db.conn, ann).await?, money("0.30"));
        Ok(())
    }

    async fn a_deposit_to_an_unknown_user_is_not_found(db: TestDb) -> anyhow::Result<()> {
        let result = deposit(&db.conn, 4242, money("1")).await;
        assert!(matches!(result, Err(ServiceError::NotFound { resource: "user" })), "{result:?}");
        Ok(())
    }

    async fn a_deposit_of_nothing_or_over_a_million_is_refused(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "0").await?;
        for amount in [Money::ZERO, money("1000000.01")] {
            let result = deposit(&db.conn, ann, amount).await;
            assert!(
                matches!(result, Err(ServiceError::Validation { field: "amount", .. })),
                "{amount}: {result:?}"
            );
        }
        assert_eq!(balance(&db.conn, ann).await?, Money::ZERO);
        Ok(())
    }

    async fn a_transfer_moves_money_records_it_and_returns_the_senders_balance(
        db: TestDb
    ) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "100").await?;
        let bob = user_with(&db.conn, "bob", "5").await?;

        let sent = transfer(&db.conn, ann, bob, money("30.25")).await?;

        assert_eq!((sent.from_user_id, sent.to_user_id, sent.amount), (ann, bob, money("30.25")));
        assert_eq!(sent.sender_balance, money("69.75"));
        assert_eq!(balance(&db.conn, ann).await?, money("69.75"));
        assert_eq!(balance(&db.conn, bob).await?, money("35.25"));
        assert_eq!(transfer_count(&db.conn).await?, 1);

        // The other direction takes the locks in the same order (lower id first) and works too.
        let back = transfer(&db.conn, bob, ann, money("35.25")).await?;
        assert_eq!(back.sender_balance, Money::ZERO);
        assert_eq!(balance(&db.conn, ann).await?, money("105.00"));
        Ok(())
    }

    async fn small_transfers_never_leave_a_fraction_of_a_cent(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "0.30").await?;
        let bob = user_with(&db.conn, "bob", "0").await?;

        for _ in 0..3 {
            transfer(&db.conn, ann, bob, money("0.10")).await?;
        }
        let fourth = transfer(&db.conn, ann, bob, money("0.01")).await;

        assert!(matches!(fourth, Err(ServiceError::InsufficientFunds)), "{fourth:?}");
        assert_eq!(balance(&db.conn, ann).await?, Money::ZERO);
        assert_eq!(balance(&db.conn, bob).await?, money("0.30"));
        Ok(())
    }

    async fn a_transfer_beyond_the_balance_is_refused_and_changes_nothing(
        db: TestDb
    ) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "10").await?;
        let bob = user_with(&db.conn, "bob", "1").await?;

        // Both lock orders: the sender's id below and above the recipient's.
        let ann_to_bob = transfer(&db.conn, ann, bob, money("10.01")).await;
        let bob_to_ann = transfer(&db.conn, bob, ann, money("1.01")).await;

        assert!(matches!(ann_to_bob, Err(ServiceError::InsufficientFunds)), "{ann_to_bob:?}");
        assert!(matches!(bob_to_ann, Err(ServiceError::InsufficientFunds)), "{bob_to_ann:?}");
        assert_eq!(balance(&db.conn, ann).await?, money("10"));
        assert_eq!(balance(&db.conn, bob).await?, money("1"));
        assert_eq!(transfer_count(&db.conn).await?, 0);
        Ok(())
    }

    async fn the_whole_balance_can_be_transferred(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "10").await?;
        let bob = user_with(&db.conn, "bob", "0").await?;
        let sent = transfer(&db.conn, ann, bob, money("10")).await?;
        assert_eq!(sent.sender_balance, Money::ZERO);
        Ok(())
    }

    async fn a_transfer_to_an_unknown_user_is_not_found_and_changes_nothing(
        db: TestDb
    ) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "10").await?;

        // Unknown ids below and above the sender's, so both lock orders are exercised.
        for nobody in [-1, ann + 1000] {
            let result = transfer(&db.conn, ann, nobody, money("1")).await;
            assert!(matches!(result, Err(ServiceError::NotFound { resource: "user" })), "{result:?}");
        }
        assert_eq!(balance(&db.conn, ann).await?, money("10"));
        assert_eq!(transfer_count(&db.conn).await?, 0);
        Ok(())
    }

    async fn a_transfer_to_oneself_is_refused(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "10").await?;
        let result = transfer(&db.conn, ann, ann, money("1")).await;
        assert!(matches!(result, Err(ServiceError::Validation { field: "to_user_id", .. })), "{result:?}");
        assert_eq!(balance(&db.conn, ann).await?, money("10"));
        Ok(())
    }

    async fn a_transfer_of_nothing_is_refused(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "10").await?;
        let bob = user_with(&db.conn, "bob", "0").await?;
        let result = transfer(&db.conn, ann, bob, Money::ZERO).await;
        assert!(matches!(result, Err(ServiceError::Validation { field: "amount", .. })), "{result:?}");
        Ok(())
    }
}
