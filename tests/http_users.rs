//! Users and money over HTTP, on every backend: `POST /users`, `GET /users/{id}`, `GET /me`,
//! `POST /me/deposits` and `POST /transfers` (with and without `Idempotency-Key`), with every
//! status and error code each can answer, and hostile input that must come back byte for byte or
//! be refused with a 4xx — never a 500. The money behind a replayed answer is the service tests'
//! to check (`service/tests/money.rs`, `concurrency.rs`); here only the balance a client can see.

// In a test, a broken expectation is a failed test: expect says so most directly.
#![allow(clippy::expect_used)]

mod support;

use mercado_testkit::{TestDb, backend_tests};
use reqwest::{Response, StatusCode, header};
use serde_json::{Value, json};
use support::{Caller, TestApp, expect_problem, expect_validation_failure, race};

/// What a hostile `POST /users` must get.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// 201, with every text field returned exactly as sent.
    Accepted,
    /// 422 `validation_failed`, with a `detail` naming this field.
    Invalid(&'static str),
}

/// A registration body with `field` replaced by `value`; the rest is valid and unique per `tag`.
fn user_with(tag: usize, field: &str, value: Value) -> Value {
    let mut body = json!({
        "username": format!("user{tag}"),
        "email": format!("user{tag}@example.com"),
        "display_name": format!("User {tag}"),
    });
    body[field] = value;
    body
}

/// Every kind of hostile value, for each field of `POST /users`.
fn hostile_registrations() -> Vec<(&'static str, Value, Outcome)> {
    use Outcome::{Accepted, Invalid};
    let long = "x".repeat(10_000);
    vec![
        // Text that must be stored and returned exactly.
        (
            "display_name",
            json!("Robert'); DROP TABLE users;--"),
            Accepted,
        ),
        ("display_name", json!("\" OR \"1\"=\"1"), Accepted),
        ("display_name", json!("' OR 1=1 --"), Accepted),
        ("display_name", json!(r"back\slash \\ \n \' \0"), Accepted),
        ("display_name", json!("%_\\ wildcards of LIKE"), Accepted),
        ("display_name", json!("😀".repeat(100)), Accepted),
        ("display_name", json!("👩‍👩‍👧‍👦 family, é vs é"), Accepted),
        ("display_name", json!("  spaces kept  "), Accepted),
        ("display_name", json!("tab\tnew\nline\r\u{7f}"), Accepted),
        (
            "display_name",
            json!("\u{202e}rtl \u{200b}zero-width \u{feff}bom"),
            Accepted,
        ),
        ("display_name", json!("<script>alert(1)</script>"), Accepted),
        ("display_name", json!("$1 ? :name @p1 {0}"), Accepted),
        ("email", json!("o'brien+tag@example.com"), Accepted),
        ("email", json!("\"; DROP TABLE users;--@x"), Accepted),
        ("email", json!("😀@例え.jp"), Accepted),
        ("username", json!("a.b-c_D"), Accepted),
        // Text that breaks a rule.
        (
            "username",
            json!("a'; DROP TABLE users;--"),
            Invalid("username"),
        ),
        ("username", json!("ann\u{0}"), Invalid("username")),
        ("username", json!("😀😀😀"), Invalid("username")),
        ("username", json!(long.clone()), Invalid("username")),
        ("username", json!("ab"), Invalid("username")),
        ("email", json!("no-at-sign"), Invalid("email")),
        ("email", json!("two@at@signs"), Invalid("email")),
        ("email", json!("nul\u{0}@example.com"), Invalid("email")),
        (
            "email",
            json!(format!("{long}@example.com")),
            Invalid("email"),
        ),
        (
            "display_name",
            json!("nul \u{0} inside"),
            Invalid("display_name"),
        ),
        ("display_name", json!(long), Invalid("display_name")),
        (
            "display_name",
            json!("😀".repeat(101)),
            Invalid("display_name"),
        ),
        ("display_name", json!(""), Invalid("display_name")),
        // Values of the wrong JSON type.
        ("username", json!(12345), Invalid("username")),
        ("username", json!(-1), Invalid("username")),
        ("username", json!(1.5), Invalid("username")),
        ("username", json!(null), Invalid("username")),
        ("username", json!(["ann"]), Invalid("username")),
        ("email", json!({"$ne": null}), Invalid("email")),
        ("email", json!(true), Invalid("email")),
        ("display_name", json!(-1), Invalid("display_name")),
        ("display_name", json!(0.5), Invalid("display_name")),
        ("display_name", json!(u64::MAX), Invalid("display_name")),
        ("display_name", json!(1e300), Invalid("display_name")),
        (
            "display_name",
            json!({"nested": "object"}),
            Invalid("display_name"),
        ),
    ]
}

/// `POST path` as `caller` with `body` and an `Idempotency-Key`.
async fn post_keyed(
    app: &TestApp,
    caller: &Caller,
    path: &str,
    body: &Value,
    key: &str,
) -> Response {
    app.client
        .post(app.url(path))
        .bearer_auth(&caller.token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("the server answers")
}

/// A response's status and JSON body.
async fn outcome(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

backend_tests! {
    async fn registering_returns_the_user_a_token_and_where_to_find_them(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let response = app
            .post_json(
                "/users",
                &json!({"username": "Ann", "email": "Ann@Example.com", "display_name": "Ann L."}),
            )
            .await;

        assert_eq!(response.status(), StatusCode::CREATED);
        let location = response.headers()[header::LOCATION].to_str()?.to_owned();
        let body: Value = response.json().await?;
        let user = &body["user"];
        let id = user["id"].as_i64().expect("an integer id");
        assert_eq!(location, format!("/users/{id}"));
        assert_eq!(user["username"], "Ann");
        assert_eq!(user["email"], "Ann@Example.com");
        assert_eq!(user["display_name"], "Ann L.");
        let created_at = user["created_at"].as_str().expect("a time");
        chrono::DateTime::parse_from_rfc3339(created_at)?;
        assert!(created_at.ends_with('Z'), "RFC 3339 in UTC: {created_at}");
        let token = body["token"].as_str().expect("a token");
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
        Ok(())
    }

    async fn the_display_name_defaults_to_the_username(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let absent: Value = app
            .post_json("/users", &json!({"username": "Bob", "email": "bob@x.io"}))
            .await
            .json()
            .await?;
        let null: Value = app
            .post_json(
                "/users",
                &json!({"username": "cy.d", "email": "cy@x.io", "display_name": null}),
            )
            .await
            .json()
            .await?;

        assert_eq!(absent["user"]["display_name"], "Bob");
        assert_eq!(null["user"]["display_name"], "cy.d");
        Ok(())
    }

    async fn a_taken_email_is_a_conflict_whatever_its_case(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        app.register("ann").await;

        let response = app
            .post_json("/users", &json!({"username": "other", "email": "ANN@example.COM"}))
            .await;

        let problem = expect_problem(response, StatusCode::CONFLICT, "email_taken").await;
        assert_eq!(problem["detail"], "That email is already registered.");
        Ok(())
    }

    async fn a_taken_username_is_a_conflict_whatever_its_case(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        app.register("ann").await;

        let response = app
            .post_json("/users", &json!({"username": "ANN", "email": "someone@example.com"}))
            .await;

        expect_problem(response, StatusCode::CONFLICT, "username_taken").await;
        Ok(())
    }

    async fn a_missing_field_is_a_validation_failure_naming_it(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let no_email = app.post_json("/users", &json!({"username": "ann"})).await;
        let no_username = app.post_json("/users", &json!({"email": "a@b"})).await;

        assert!(expect_validation_failure(no_email).await.contains("email"));
        assert!(expect_validation_failure(no_username).await.contains("username"));
        Ok(())
    }

    async fn hostile_registrations_are_stored_exactly_or_refused_with_a_4xx(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        for (tag, (field, value, outcome)) in hostile_registrations().into_iter().enumerate() {
            let body = user_with(tag, field, value.clone());
            let response = app.post_json("/users", &body).await;
            let status = response.status();
            let case = format!("{field} = {:.80}", value.to_string());
            match outcome {
                Outcome::Accepted => {
                    assert_eq!(status, StatusCode::CREATED, "{case}");
                    let registered: Value = response.json().await?;
                    let user = &registered["user"];
                    for text in ["username", "email", "display_name"] {
                        assert_eq!(user[text], body[text], "{case}: {text} as returned");
                    }
                    // And as stored: read back, publicly and by the user themselves.
                    let id = user["id"].as_i64().expect("an id");
                    let public: Value = app.get(&format!("/users/{id}")).await.json().await?;
                    assert_eq!(public["display_name"], body["display_name"], "{case}");
                    assert_eq!(public["username"], body["username"], "{case}");
                    let caller = Caller {
                        id,
                        token: registered["token"].as_str().expect("a token").to_owned(),
                    };
                    let me: Value = app.get_as(&caller, "/me").await.json().await?;
                    for text in ["username", "email", "display_name"] {
                        assert_eq!(me[text], body[text], "{case}: {text} as stored");
                    }
                }
                Outcome::Invalid(named) => {
                    let detail = expect_validation_failure(response).await;
                    assert!(detail.contains(named), "{case}: {detail}");
                }
            }
        }
        Ok(())
    }

    async fn bodies_that_are_not_a_registration_are_4xx_problems(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
            (br#"{"username": "ann", "email": "a@b""#.to_vec(), StatusCode::BAD_REQUEST, "bad_request"),
            (br#"{"username": "ann\ud800", "email": "a@b"}"#.to_vec(), StatusCode::BAD_REQUEST, "bad_request"),
            (b"{\"username\": \"ann\xff\", \"email\": \"a@b\"}".to_vec(), StatusCode::BAD_REQUEST, "bad_request"),
            (br#"{"username": "ann", "email": "a@b", "display_name": 1e400}"#.to_vec(), StatusCode::BAD_REQUEST, "bad_request"),
            (b"[]".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (b"\"ann\"".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (b"null".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (
                br#"{"username": "ann", "username": "bob", "email": "a@b"}"#.to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            ),
        ];

        for (body, status, code) in cases {
            let response = app.post_raw("/users", "application/json", body.clone()).await;
            let problem = expect_problem(response, status, code).await;
            assert!(
                problem["detail"].is_string(),
                "{}: {problem}",
                String::from_utf8_lossy(&body)
            );
        }
        let as_text = app
            .post_raw("/users", "text/plain", br#"{"username": "ann", "email": "a@b"}"#.to_vec())
            .await;
        expect_problem(as_text, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
        Ok(())
    }

    async fn anyone_sees_a_users_public_face_without_their_email(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;

        let response = app.get(&format!("/users/{}", ann.id)).await;

        assert_eq!(response.status(), StatusCode::OK);
        let user: Value = response.json().await?;
        let mut keys: Vec<&str> = user.as_object().expect("an object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["created_at", "display_name", "id", "username"]);
        assert_eq!(user["id"], ann.id);
        assert_eq!(user["username"], "ann");
        Ok(())
    }

    async fn an_unknown_user_is_not_found_and_a_non_integer_id_is_invalid(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        for id in ["999999", "0", "-1"] {
            let response = app.get(&format!("/users/{id}")).await;
            expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
        }
        for id in ["ann", "1.5", "1e3", "99999999999999999999", "1%20OR%201=1"] {
            let detail = expect_validation_failure(app.get(&format!("/users/{id}")).await).await;
            assert!(detail.starts_with("id: "), "{id}: {detail}");
        }
        Ok(())
    }

    async fn me_is_the_caller_with_their_balance(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;

        let response = app.get_as(&ann, "/me").await;

        assert_eq!(response.status(), StatusCode::OK);
        let me: Value = response.json().await?;
        assert_eq!(me["id"], ann.id);
        assert_eq!(me["username"], "ann");
        assert_eq!(me["email"], "ann@example.com");
        assert_eq!(me["display_name"], "ann");
        assert_eq!(me["balance"], "0.00");
        assert!(me["created_at"].is_string());
        Ok(())
    }

    async fn authenticated_endpoints_refuse_a_missing_malformed_or_unknown_token(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let authenticated = [
            ("GET", "/me"),
            ("POST", "/me/deposits"),
            ("POST", "/transfers"),
        ];
        let headers = [
            None,
            Some("Basic YW5uOnNlY3JldA==".to_owned()),
            Some("Bearer".to_owned()),
            Some(format!("Bearer {}x", ann.token)),
            Some("Bearer ' OR 1=1 --".to_owned()),
            Some(format!("Bearer {}", "0".repeat(64))),
        ];

        for (method, path) in authenticated {
            for authorization in &headers {
                let mut request = app
                    .client
                    .request(method.parse()?, app.url(path))
                    .json(&json!({"amount": "1", "to_user_id": ann.id}));
                if let Some(value) = authorization {
                    request = request.header(header::AUTHORIZATION, value);
                }
                let response = request.send().await?;
                assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
                expect_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
            }
        }
        Ok(())
    }

    async fn deposits_add_up_and_come_back_with_two_decimal_places(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;

        let mut balances = Vec::new();
        for amount in ["7", "7.5", "12.50", "0.01", "1000000.00"] {
            let response = app.post_json_as(&ann, "/me/deposits", &json!({ "amount": amount })).await;
            assert_eq!(response.status(), StatusCode::OK, "{amount}");
            let body: Value = response.json().await?;
            balances.push(body["balance"].as_str().unwrap_or_default().to_owned());
        }

        assert_eq!(balances, ["7.00", "14.50", "27.00", "27.01", "1000027.01"]);
        assert_eq!(app.balance_of(&ann).await, "1000027.01");
        Ok(())
    }

    async fn a_deposit_outside_the_rules_is_refused_naming_the_amount_and_changes_nothing(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register_funded("ann", "10").await;

        for amount in [
            json!("0"),
            json!("0.00"),
            json!("-1"),
            json!("1000000.01"),
            json!("1.234"),
            json!("1e3"),
            json!(" 1"),
            json!("1,50"),
            json!("NaN"),
            json!(""),
            json!("99999999999999999999999999"),
            json!("1; DROP TABLE accounts"),
            json!(7.5),
            json!(7),
            json!(-1),
            json!(null),
        ] {
            let response = app.post_json_as(&ann, "/me/deposits", &json!({ "amount": amount })).await;
            let detail = expect_validation_failure(response).await;
            assert!(detail.starts_with("amount"), "{amount}: {detail}");
        }
        assert_eq!(app.balance_of(&ann).await, "10.00");
        Ok(())
    }

    async fn a_transfer_is_created_with_its_parties_its_amount_and_the_senders_balance(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register_funded("ann", "100").await;
        let bob = app.register("bob").await;

        let response = app
            .post_json_as(&ann, "/transfers", &json!({"to_user_id": bob.id, "amount": "30.5"}))
            .await;

        assert_eq!(response.status(), StatusCode::CREATED);
        let transfer: Value = response.json().await?;
        assert!(transfer["id"].is_i64(), "{transfer}");
        assert_eq!(transfer["from_user_id"], ann.id);
        assert_eq!(transfer["to_user_id"], bob.id);
        assert_eq!(transfer["amount"], "30.50");
        assert_eq!(transfer["balance"], "69.50");
        Ok(())
    }

    async fn a_transfer_beyond_the_balance_is_a_conflict(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register_funded("ann", "10").await;
        let bob = app.register("bob").await;

        let response = app
            .post_json_as(&ann, "/transfers", &json!({"to_user_id": bob.id, "amount": "10.01"}))
            .await;

        expect_problem(response, StatusCode::CONFLICT, "insufficient_funds").await;
        Ok(())
    }

    async fn a_transfer_to_nobody_is_not_found(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register_funded("ann", "10").await;

        let response = app
            .post_json_as(&ann, "/transfers", &json!({"to_user_id": 999_999, "amount": "1"}))
            .await;

        expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
        Ok(())
    }

    async fn a_transfer_to_oneself_or_of_a_bad_amount_is_a_validation_failure(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register_funded("ann", "10").await;
        let bob = app.register("bob").await;
        let cases = [
            (json!({"to_user_id": ann.id, "amount": "1"}), "to_user_id"),
            (json!({"to_user_id": bob.id, "amount": "0"}), "amount"),
            (json!({"to_user_id": bob.id, "amount": "-5"}), "amount"),
            (json!({"to_user_id": bob.id, "amount": "1000000.01"}), "amount"),
            (json!({"to_user_id": bob.id, "amount": "0.005"}), "amount"),
            (json!({"to_user_id": bob.id, "amount": 1}), "amount"),
            (json!({"to_user_id": bob.id}), "amount"),
            (json!({"to_user_id": "2", "amount": "1"}), "to_user_id"),
            (json!({"to_user_id": 1.5, "amount": "1"}), "to_user_id"),
            (json!({"to_user_id": 1e20, "amount": "1"}), "to_user_id"),
            (json!({"amount": "1"}), "to_user_id"),
        ];

        for (body, field) in cases {
            let response = app.post_json_as(&ann, "/transfers", &body).await;
            let detail = expect_validation_failure(response).await;
            assert!(detail.contains(field), "{body}: {detail}");
        }
        assert_eq!(app.balance_of(&ann).await, "10.00");
        assert_eq!(app.balance_of(&bob).await, "0.00");
        Ok(())
    }

    async fn a_repeated_deposit_key_answers_with_the_first_balance_and_deposits_nothing(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let first = outcome(post_keyed(&app, &ann, "/me/deposits", &json!({"amount": "10"}), "dep-1").await).await;
        app.post_json_as(&ann, "/me/deposits", &json!({"amount": "5"})).await;

        let again = outcome(post_keyed(&app, &ann, "/me/deposits", &json!({"amount": "10"}), "dep-1").await).await;

        assert_eq!(first, (StatusCode::OK, json!({"balance": "10.00"})));
        assert_eq!(again, first);
        assert_eq!(app.balance_of(&ann).await, "15.00");
        Ok(())
    }

    async fn a_repeated_transfer_key_answers_with_the_first_transfer_and_moves_no_money(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register_funded("ann", "100").await;
        let bob = app.register("bob").await;
        let body = json!({"to_user_id": bob.id, "amount": "30"});
        let first = outcome(post_keyed(&app, &ann, "/transfers", &body, "pay-1").await).await;
        app.post_json_as(&ann, "/transfers", &json!({"to_user_id": bob.id, "amount": "10"})).await;

        let again = outcome(post_keyed(&app, &ann, "/transfers", &body, "pay-1").await).await;

        assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
        assert_eq!(first.1["balance"], "70.00");
        assert_eq!(again, first);
        assert_eq!(app.balance_of(&ann).await, "60.00");
        assert_eq!(app.balance_of(&bob).await, "40.00");
        Ok(())
    }

    async fn a_money_key_reused_with_another_body_is_refused_and_moves_nothing(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register_funded("ann", "100").await;
        let bob = app.register("bob").await;
        let cat = app.register("cat").await;
        post_keyed(&app, &ann, "/me/deposits", &json!({"amount": "1"}), "k").await;
        post_keyed(&app, &ann, "/transfers", &json!({"to_user_id": bob.id, "amount": "1"}), "k").await;

        let other_deposit = post_keyed(&app, &ann, "/me/deposits", &json!({"amount": "2"}), "k").await;
        let other_amount = post_keyed(&app, &ann, "/transfers", &json!({"to_user_id": bob.id, "amount": "2"}), "k").await;
        let other_recipient = post_keyed(&app, &ann, "/transfers", &json!({"to_user_id": cat.id, "amount": "1"}), "k").await;

        for response in [other_deposit, other_amount, other_recipient] {
            expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
        }
        assert_eq!(app.balance_of(&ann).await, "100.00");
        assert_eq!(app.balance_of(&cat).await, "0.00");
        Ok(())
    }

    async fn only_a_successful_transfer_binds_its_key(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register_funded("ann", "10").await;
        let bob = app.register("bob").await;
        let body = json!({"to_user_id": bob.id, "amount": "20"});
        let refused = post_keyed(&app, &ann, "/transfers", &body, "retry-me").await;
        expect_problem(refused, StatusCode::CONFLICT, "insufficient_funds").await;
        app.post_json_as(&ann, "/me/deposits", &json!({"amount": "10"})).await;

        let accepted = post_keyed(&app, &ann, "/transfers", &body, "retry-me").await;

        assert_eq!(accepted.status(), StatusCode::CREATED);
        assert_eq!(app.balance_of(&bob).await, "20.00");
        Ok(())
    }

    async fn a_money_idempotency_key_must_be_1_to_255_characters(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register_funded("ann", "10").await;
        let bob = app.register("bob").await;
        let requests = [
            ("/me/deposits", json!({"amount": "1"})),
            ("/transfers", json!({"to_user_id": bob.id, "amount": "1"})),
        ];

        for (path, body) in &requests {
            for key in [String::new(), "k".repeat(256)] {
                let response = post_keyed(&app, &ann, path, body, &key).await;
                let detail = expect_validation_failure(response).await;
                assert!(detail.starts_with("Idempotency-Key: "), "{path}, {} characters: {detail}", key.len());
            }
        }
        assert_eq!(app.balance_of(&ann).await, "10.00");

        for (path, body) in &requests {
            let longest = post_keyed(&app, &ann, path, body, &"k".repeat(255)).await;
            assert!(longest.status().is_success(), "{path}: {}", longest.status());
        }
        Ok(())
    }

    async fn one_transfer_key_sent_ten_times_at_once_is_answered_ten_times_with_one_transfer(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register_funded("ann", "25").await;
        let bob = app.register("bob").await;

        let outcomes = race(10, |_| {
            let request = support::client()
                .post(app.url("/transfers"))
                .bearer_auth(&ann.token)
                .header("idempotency-key", "rent-december")
                .json(&json!({"to_user_id": bob.id, "amount": "25"}));
            async move { outcome(request.send().await.expect("the server answers")).await }
        })
        .await;

        for (status, body) in &outcomes {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            assert_eq!(body, &outcomes[0].1, "one transfer");
        }
        assert_eq!(app.balance_of(&bob).await, "25.00");
        Ok(())
    }

    async fn the_openapi_document_declares_the_idempotency_key_and_its_422_for_money(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let document: Value = app.get("/openapi.json").await.json().await?;

        for path in ["/me/deposits", "/transfers"] {
            let operation = &document["paths"][path]["post"];
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            let header = parameters.iter().find(|p| p["name"] == "Idempotency-Key");
            let header = header.unwrap_or_else(|| panic!("{path}: no Idempotency-Key in {parameters:?}"));
            assert_eq!((&header["in"], &header["required"]), (&json!("header"), &json!(false)), "{path}");
            let unprocessable = operation["responses"]["422"]["description"].as_str().unwrap_or_default();
            assert!(unprocessable.contains("idempotency_key_reused"), "{path}: {unprocessable}");
        }
        Ok(())
    }
}
