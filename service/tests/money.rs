//! Deposits and transfers, on every configured backend: balances exact to the cent, every
//! refusal leaving nothing behind, and an idempotency key that makes each safe to repeat.

mod support;

use entity::{deposits, transfers};
use mercado_testkit::{TestDb, backend_tests};
use sea_orm::{EntityTrait, QueryOrder};
use service::{
    ServiceError,
    domain::{money::Money, orders::PlaceOrder},
    ops::{
        money::{deposit, transfer},
        orders::place_order,
    },
};
use support::*;

backend_tests! {
    async fn deposits_add_up_exactly_to_the_cent(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "0").await?;

        deposit(&db.conn, ann, money("0.10"), None).await?;
        let returned = deposit(&db.conn, ann, money("0.20"), None).await?;

        // 0.1 + 0.2 is not 0.3 in floating point; SQLite stores REAL, so this proves the rounding.
        assert_eq!(returned, money("0.30"));
        assert_eq!(balance(&db.conn, ann).await?, money("0.30"));
        Ok(())
    }

    async fn a_deposit_to_an_unknown_user_is_not_found(db: TestDb) -> anyhow::Result<()> {
        let result = deposit(&db.conn, 4242, money("1"), None).await;
        assert!(matches!(result, Err(ServiceError::NotFound { resource: "user" })), "{result:?}");
        Ok(())
    }

    async fn a_deposit_of_nothing_or_over_a_million_is_refused(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "0").await?;
        for amount in [Money::ZERO, money("1000000.01")] {
            let result = deposit(&db.conn, ann, amount, None).await;
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

        let sent = transfer(&db.conn, ann, bob, money("30.25"), None).await?;

        assert_eq!((sent.from_user_id, sent.to_user_id, sent.amount), (ann, bob, money("30.25")));
        assert_eq!(sent.sender_balance, money("69.75"));
        assert_eq!(balance(&db.conn, ann).await?, money("69.75"));
        assert_eq!(balance(&db.conn, bob).await?, money("35.25"));
        assert_eq!(transfer_count(&db.conn).await?, 1);

        // The other direction takes the locks in the same order (lower id first) and works too.
        let back = transfer(&db.conn, bob, ann, money("35.25"), None).await?;
        assert_eq!(back.sender_balance, Money::ZERO);
        assert_eq!(balance(&db.conn, ann).await?, money("105.00"));
        Ok(())
    }

    async fn small_transfers_never_leave_a_fraction_of_a_cent(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "0.30").await?;
        let bob = user_with(&db.conn, "bob", "0").await?;

        for _ in 0..3 {
            transfer(&db.conn, ann, bob, money("0.10"), None).await?;
        }
        let fourth = transfer(&db.conn, ann, bob, money("0.01"), None).await;

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
        let ann_to_bob = transfer(&db.conn, ann, bob, money("10.01"), None).await;
        let bob_to_ann = transfer(&db.conn, bob, ann, money("1.01"), None).await;

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
        let sent = transfer(&db.conn, ann, bob, money("10"), None).await?;
        assert_eq!(sent.sender_balance, Money::ZERO);
        Ok(())
    }

    async fn a_transfer_to_an_unknown_user_is_not_found_and_changes_nothing(
        db: TestDb
    ) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "10").await?;

        // Unknown ids below and above the sender's, so both lock orders are exercised.
        for nobody in [-1, ann + 1000] {
            let result = transfer(&db.conn, ann, nobody, money("1"), None).await;
            assert!(matches!(result, Err(ServiceError::NotFound { resource: "user" })), "{result:?}");
        }
        assert_eq!(balance(&db.conn, ann).await?, money("10"));
        assert_eq!(transfer_count(&db.conn).await?, 0);
        Ok(())
    }

    async fn a_transfer_to_oneself_is_refused(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "10").await?;
        let result = transfer(&db.conn, ann, ann, money("1"), None).await;
        assert!(matches!(result, Err(ServiceError::Validation { field: "to_user_id", .. })), "{result:?}");
        assert_eq!(balance(&db.conn, ann).await?, money("10"));
        Ok(())
    }

    async fn a_transfer_of_nothing_is_refused(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "10").await?;
        let bob = user_with(&db.conn, "bob", "0").await?;
        let result = transfer(&db.conn, ann, bob, Money::ZERO, None).await;
        assert!(matches!(result, Err(ServiceError::Validation { field: "amount", .. })), "{result:?}");
        Ok(())
    }

    async fn every_deposit_is_recorded_with_the_balance_it_left_and_its_key(
        db: TestDb
    ) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "0").await?;

        deposit(&db.conn, ann, money("0.10"), None).await?;
        deposit(&db.conn, ann, money("0.20"), key("top-up")).await?;

        let ledger = deposits::Entity::find().order_by_asc(deposits::Column::Id).all(&db.conn).await?;
        let rows: Vec<_> = ledger.iter()
            .map(|d| (d.user_id, d.amount.round_dp(2), d.balance_after.round_dp(2), d.idempotency_key.clone()))
            .collect();
        assert_eq!(rows, vec![
            (ann, money("0.10").as_decimal(), money("0.10").as_decimal(), None),
            (ann, money("0.20").as_decimal(), money("0.30").as_decimal(), Some("top-up".to_owned())),
        ]);
        Ok(())
    }

    async fn a_repeated_deposit_key_with_the_same_amount_answers_with_the_first_balance_and_deposits_nothing(
        db: TestDb
    ) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "0").await?;
        let first = deposit(&db.conn, ann, money("10"), key("d-1")).await?;
        deposit(&db.conn, ann, money("5"), None).await?;

        // "10.00" is the same amount as "10": the same request.
        let again = deposit(&db.conn, ann, money("10.00"), key("d-1")).await?;

        assert_eq!((first, again), (money("10.00"), money("10.00")));
        assert_eq!(balance(&db.conn, ann).await?, money("15.00"));
        assert_eq!(deposit_count(&db.conn).await?, 2);
        Ok(())
    }

    async fn a_repeated_deposit_key_with_another_amount_is_refused_and_deposits_nothing(
        db: TestDb
    ) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "0").await?;
        deposit(&db.conn, ann, money("10"), key("d-1")).await?;

        let result = deposit(&db.conn, ann, money("10.01"), key("d-1")).await;

        assert!(matches!(result, Err(ServiceError::IdempotencyKeyReused)), "{result:?}");
        assert_eq!(balance(&db.conn, ann).await?, money("10.00"));
        assert_eq!(deposit_count(&db.conn).await?, 1);
        Ok(())
    }

    async fn deposit_keys_belong_to_one_user(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "0").await?;
        let bob = user_with(&db.conn, "bob", "0").await?;

        deposit(&db.conn, ann, money("1"), key("same")).await?;
        let bobs = deposit(&db.conn, bob, money("2"), key("same")).await?;

        assert_eq!(bobs, money("2.00"));
        assert_eq!(balance(&db.conn, ann).await?, money("1.00"));
        assert_eq!(deposit_count(&db.conn).await?, 2);
        Ok(())
    }

    async fn a_transfer_records_the_senders_balance_after_it_in_the_ledger(
        db: TestDb
    ) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "100").await?;
        let bob = user_with(&db.conn, "bob", "0").await?;

        let sent = transfer(&db.conn, ann, bob, money("30.25"), None).await?;

        let row = transfers::Entity::find_by_id(sent.id).one(&db.conn).await?
            .ok_or_else(|| anyhow::anyhow!("the transfer is recorded"))?;
        assert_eq!(row.sender_balance_after.map(|b| b.round_dp(2)), Some(money("69.75").as_decimal()));
        assert_eq!(row.idempotency_key, None);
        Ok(())
    }

    async fn a_repeated_transfer_key_with_the_same_request_returns_the_first_transfer_and_moves_no_money(
        db: TestDb
    ) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "100").await?;
        let bob = user_with(&db.conn, "bob", "0").await?;
        let first = transfer(&db.conn, ann, bob, money("30"), key("t-1")).await?;
        transfer(&db.conn, ann, bob, money("10"), None).await?;

        let again = transfer(&db.conn, ann, bob, money("30.00"), key("t-1")).await?;

        // The sender's balance as it was right after the first, not as it is now.
        assert_eq!(again, first);
        assert_eq!(again.sender_balance, money("70.00"));
        assert_eq!(balance(&db.conn, ann).await?, money("60.00"));
        assert_eq!(balance(&db.conn, bob).await?, money("40.00"));
        assert_eq!(transfer_count(&db.conn).await?, 2);
        Ok(())
    }

    async fn a_repeated_transfer_key_with_another_recipient_or_amount_is_refused(
        db: TestDb
    ) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "100").await?;
        let bob = user_with(&db.conn, "bob", "0").await?;
        let cat = user_with(&db.conn, "cat", "0").await?;
        transfer(&db.conn, ann, bob, money("30"), key("t-1")).await?;

        for (to, amount) in [(bob, "30.01"), (cat, "30")] {
            let result = transfer(&db.conn, ann, to, money(amount), key("t-1")).await;
            assert!(matches!(result, Err(ServiceError::IdempotencyKeyReused)), "{to} {amount}: {result:?}");
        }

        assert_eq!(balance(&db.conn, ann).await?, money("70.00"));
        assert_eq!(balance(&db.conn, bob).await?, money("30.00"));
        assert_eq!(balance(&db.conn, cat).await?, Money::ZERO);
        assert_eq!(transfer_count(&db.conn).await?, 1);
        Ok(())
    }

    async fn a_refused_transfer_does_not_bind_its_key(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "10").await?;
        let bob = user_with(&db.conn, "bob", "0").await?;
        let too_much = transfer(&db.conn, ann, bob, money("20"), key("t-1")).await;
        let to_nobody = transfer(&db.conn, ann, ann + 1000, money("5"), key("t-1")).await;
        assert!(matches!(too_much, Err(ServiceError::InsufficientFunds)), "{too_much:?}");
        assert!(matches!(to_nobody, Err(ServiceError::NotFound { resource: "user" })), "{to_nobody:?}");
        deposit(&db.conn, ann, money("10"), None).await?;

        let sent = transfer(&db.conn, ann, bob, money("20"), key("t-1")).await?;

        assert_eq!(sent.sender_balance, Money::ZERO);
        assert_eq!(balance(&db.conn, bob).await?, money("20.00"));
        assert_eq!(transfer_count(&db.conn).await?, 1);
        Ok(())
    }

    async fn transfer_keys_belong_to_their_sender(db: TestDb) -> anyhow::Result<()> {
        let ann = user_with(&db.conn, "ann", "10").await?;
        let bob = user_with(&db.conn, "bob", "10").await?;

        transfer(&db.conn, ann, bob, money("3"), key("same")).await?;
        let back = transfer(&db.conn, bob, ann, money("3"), key("same")).await?;

        assert_eq!(back.sender_balance, money("10.00"));
        assert_eq!(transfer_count(&db.conn).await?, 2);
        Ok(())
    }

    async fn one_key_text_for_a_deposit_a_transfer_and_an_order_makes_three_requests(
        db: TestDb
    ) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        let ann = user_with(&db.conn, "ann", "0").await?;
        let pen = product(&db.conn, seller, "PEN", "2.50", 10).await?.id;

        let deposited = deposit(&db.conn, ann, money("100"), key("same")).await?;
        let sent = transfer(&db.conn, ann, seller, money("10"), key("same")).await?;
        let order = PlaceOrder { lines: lines(&[(pen, 2)]), idempotency_key: key("same") };
        let placed = place_order(&db.conn, ann, order).await?;

        assert_eq!((deposited, sent.sender_balance, placed.total), (money("100"), money("90"), money("5")));
        assert_eq!(balance(&db.conn, ann).await?, money("85.00"));
        assert_eq!(balance(&db.conn, seller).await?, money("15.00"));
        assert_eq!(
            (deposit_count(&db.conn).await?, transfer_count(&db.conn).await?, order_count(&db.conn).await?),
            (1, 1, 1)
        );
        Ok(())
    }
}
