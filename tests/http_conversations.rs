//! Conversations and messages through HTTP, on every backend: each endpoint and each of its error
//! codes, strangers seeing 404 exactly as for unknown ids, keyset pagination walked to the end,
//! and hostile text that is either stored byte for byte or refused with a 422 — never a 500.

// In a test, a failed step is a failed test.
#![allow(clippy::expect_used)]

mod support;

use anyhow::Context;
use mercado_testkit::{TestDb, backend_tests};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use support::{Caller, TestApp, expect_problem, expect_validation_failure, json_of, query_count};

async fn start_conversation(
    app: &TestApp,
    caller: &Caller,
    title: &str,
    others: &[i64],
) -> anyhow::Result<i64> {
    let body = json!({"title": title, "participant_ids": others});
    let created = json_of(
        app.post_json_as(caller, "/conversations", &body).await,
        StatusCode::CREATED,
    )
    .await?;
    created["id"].as_i64().context("an id")
}

async fn say(
    app: &TestApp,
    caller: &Caller,
    conversation: i64,
    text: &str,
) -> anyhow::Result<Value> {
    let path = format!("/conversations/{conversation}/messages");
    json_of(
        app.post_json_as(caller, &path, &json!({"body": text}))
            .await,
        StatusCode::CREATED,
    )
    .await
}

fn ids(values: &Value, key: &str) -> Vec<i64> {
    values[key]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["id"].as_i64())
                .collect()
        })
        .unwrap_or_default()
}

backend_tests! {
    async fn listing_conversations_and_paging_messages_send_as_many_statements_for_much_data_as_for_little(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let bob = app.register("bob").await;
        let first = start_conversation(&app, &ann, "first", &[bob.id]).await?;
        say(&app, &ann, first, "hello").await?;
        start_conversation(&app, &ann, "second", &[bob.id]).await?;

        let few = app.get_as(&ann, "/conversations").await;
        let statements_for_two = query_count(&few);
        // The token, then the conversations with their newest messages, then their participants.
        assert_eq!(statements_for_two, 3, "GET /conversations");
        assert_eq!(json_of(few, StatusCode::OK).await?["conversations"].as_array().map(Vec::len), Some(2));

        for i in 0..8 {
            let conversation = start_conversation(&app, &ann, &format!("more {i}"), &[bob.id]).await?;
            say(&app, &bob, conversation, "a reply").await?;
        }
        for i in 0..40 {
            say(&app, &bob, first, &format!("message {i}")).await?;
        }
        let many = app.get_as(&ann, "/conversations").await;
        assert_eq!(query_count(&many), statements_for_two, "GET /conversations");
        assert_eq!(json_of(many, StatusCode::OK).await?["conversations"].as_array().map(Vec::len), Some(10));

        let short = app.get_as(&ann, &format!("/conversations/{first}/messages?limit=2")).await;
        let long = app.get_as(&ann, &format!("/conversations/{first}/messages?limit=40")).await;
        assert_eq!(query_count(&short), query_count(&long), "GET /conversations/{{id}}/messages");
        // The token, then the page with the participant check inside it.
        assert_eq!(query_count(&long), 2, "GET /conversations/{{id}}/messages");
        assert_eq!(json_of(long, StatusCode::OK).await?["messages"].as_array().map(Vec::len), Some(40));
        Ok(())
    }

    async fn a_conversation_is_created_with_its_caller_and_shown_to_every_participant(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let bob = app.register("bob").await;

        let body = json!({"title": "About the bike", "participant_ids": [bob.id, bob.id, ann.id]});
        let response = app.post_json_as(&ann, "/conversations", &body).await;

        let created = json_of(response, StatusCode::CREATED).await?;
        assert_eq!(created["title"], "About the bike");
        assert_eq!(created["product_id"], Value::Null);
        assert_eq!(created["last_message"], Value::Null);
        assert_eq!(
            created["participants"],
            json!([
                {"id": ann.id, "username": "ann", "display_name": "ann"},
                {"id": bob.id, "username": "bob", "display_name": "bob"},
            ])
        );
        let created_at = created["created_at"].as_str().context("created_at")?;
        assert!(created_at.ends_with('Z'), "{created_at}");
        chrono::DateTime::parse_from_rfc3339(created_at)?;
        let id = created["id"].as_i64().context("an id")?;

        let seen_by_bob = json_of(app.get_as(&bob, &format!("/conversations/{id}")).await, StatusCode::OK).await?;
        assert_eq!(seen_by_bob, created);
        let listed = json_of(app.get_as(&bob, "/conversations").await, StatusCode::OK).await?;
        assert_eq!(listed, json!({"conversations": [created]}));
        Ok(())
    }

    async fn a_message_a_moment_after_a_newer_conversation_puts_its_conversation_first(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        // All three within a second or so: only times finer than a second keep them apart.
        let older = start_conversation(&app, &ann, "older", &[]).await?;
        let newer = start_conversation(&app, &ann, "newer", &[]).await?;
        say(&app, &ann, older, "still here").await?;

        let listed = json_of(app.get_as(&ann, "/conversations").await, StatusCode::OK).await?;

        assert_eq!(ids(&listed, "conversations"), [older, newer]);
        Ok(())
    }

    async fn an_empty_participant_list_makes_a_conversation_of_one(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;

        let body = json!({"title": "Notes", "participant_ids": []});
        let response = app.post_json_as(&ann, "/conversations", &body).await;

        let created = json_of(response, StatusCode::CREATED).await?;
        assert_eq!(ids(&created, "participants"), vec![ann.id]);
        Ok(())
    }

    async fn a_conversation_about_a_product_names_it_and_an_unknown_one_is_not_found(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let bob = app.register("bob").await;
        let product = json_of(
            app.post_json_as(&bob, "/products",
                &json!({"sku": "BIKE-1", "name": "Bike", "price": "120.00", "stock": 1})).await,
            StatusCode::CREATED,
        ).await?;
        let product_id = product["id"].as_i64().context("a product id")?;

        let about = app.post_json_as(&ann, "/conversations",
            &json!({"title": "Bike", "participant_ids": [bob.id], "product_id": product_id})).await;
        let unknown_product = app.post_json_as(&ann, "/conversations",
            &json!({"title": "Bike", "participant_ids": [bob.id], "product_id": 999_999})).await;
        let unknown_participant = app.post_json_as(&ann, "/conversations",
            &json!({"title": "Bike", "participant_ids": [bob.id, 999_999]})).await;

        assert_eq!(json_of(about, StatusCode::CREATED).await?["product_id"], product_id);
        expect_problem(unknown_product, StatusCode::NOT_FOUND, "not_found").await;
        expect_problem(unknown_participant, StatusCode::NOT_FOUND, "not_found").await;
        Ok(())
    }

    async fn every_conversation_endpoint_is_unauthorized_without_a_valid_token(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let id = start_conversation(&app, &ann, "Hello", &[]).await?;
        let messages = format!("/conversations/{id}/messages");
        let one = format!("/conversations/{id}");
        let requests = [
            ("POST", "/conversations", Some(json!({"title": "x", "participant_ids": []}))),
            ("GET", "/conversations", None),
            ("GET", one.as_str(), None),
            ("POST", messages.as_str(), Some(json!({"body": "hi"}))),
            ("GET", messages.as_str(), None),
        ];

        for (method, path, body) in requests {
            for token in [None, Some("not-a-real-token")] {
                let mut request = match method {
                    "POST" => app.client.post(app.url(path)),
                    _ => app.client.get(app.url(path)),
                };
                if let Some(body) = &body {
                    request = request.json(body);
                }
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await?;
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path} {token:?}");
                expect_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
            }
        }
        Ok(())
    }

    async fn a_stranger_gets_exactly_the_404_of_a_conversation_that_does_not_exist(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let carol = app.register("carol").await;
        let id = start_conversation(&app, &ann, "Private", &[]).await?;
        say(&app, &ann, id, "secret").await?;

        for conversation in [id, 999_999] {
            let read = app.get_as(&carol, &format!("/conversations/{conversation}")).await;
            let page = app.get_as(&carol, &format!("/conversations/{conversation}/messages")).await;
            let posted = app.post_json_as(&carol, &format!("/conversations/{conversation}/messages"),
                &json!({"body": "let me in"})).await;
            for response in [read, page, posted] {
                let problem = expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
                assert_eq!(problem["detail"], "conversation not found", "{problem}");
            }
        }
        let listed = json_of(app.get_as(&carol, "/conversations").await, StatusCode::OK).await?;
        assert_eq!(listed, json!({"conversations": []}));
        Ok(())
    }

    async fn bad_titles_and_wrong_json_types_are_validation_failures_naming_the_field(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let cases = [
            (json!({"title": "", "participant_ids": []}), "title"),
            (json!({"title": "x".repeat(201), "participant_ids": []}), "title"),
            (json!({"title": "😀".repeat(201), "participant_ids": []}), "title"),
            (json!({"title": "nul\u{0}here", "participant_ids": []}), "title"),
            (json!({"title": 5, "participant_ids": []}), "title"),
            (json!({"title": null, "participant_ids": []}), "title"),
            (json!({"participant_ids": []}), "title"),
            (json!({"title": "ok"}), "participant_ids"),
            (json!({"title": "ok", "participant_ids": "2"}), "participant_ids"),
            (json!({"title": "ok", "participant_ids": [1.5]}), "participant_ids"),
            (json!({"title": "ok", "participant_ids": ["2"]}), "participant_ids"),
            (json!({"title": "ok", "participant_ids": [], "product_id": "1"}), "product_id"),
            (json!({"title": "ok", "participant_ids": [], "product_id": 1e30}), "product_id"),
            (json!({"title": "ok", "participant_ids": [], "participants": [2]}), "participants"),
            (json!(["title", "ok"]), ""),
        ];

        for (body, field) in cases {
            let response = app.post_json_as(&ann, "/conversations", &body).await;
            let detail = expect_validation_failure(response).await;
            assert!(detail.contains(field), "{body}: {detail}");
        }
        let emoji = "😀".repeat(200);
        let body = json!({"title": emoji, "participant_ids": []});
        let created = app.post_json_as(&ann, "/conversations", &body).await;
        assert_eq!(json_of(created, StatusCode::CREATED).await?["title"], emoji);
        Ok(())
    }

    async fn a_message_is_posted_with_its_sender_and_becomes_the_conversations_last_message(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let bob = app.register("bob").await;
        let older = start_conversation(&app, &ann, "Older", &[bob.id]).await?;
        let newer = start_conversation(&app, &ann, "Newer", &[bob.id]).await?;

        let question = say(&app, &ann, older, "Still for sale?").await?;
        let path = format!("/conversations/{older}/messages");
        let answer = json_of(
            app.post_json_as(&bob, &path, &json!({"body": "Yes", "reply_to_id": question["id"]}))
                .await,
            StatusCode::CREATED,
        ).await?;

        assert_eq!(answer["conversation_id"], older);
        assert_eq!(answer["sender"], json!({"id": bob.id, "username": "bob", "display_name": "bob"}));
        assert_eq!(answer["body"], "Yes");
        assert_eq!(answer["reply_to_id"], question["id"]);
        assert_eq!(question["reply_to_id"], Value::Null);
        chrono::DateTime::parse_from_rfc3339(answer["created_at"].as_str().context("created_at")?)?;
        // The older conversation now has the most recent activity.
        let listed = json_of(app.get_as(&ann, "/conversations").await, StatusCode::OK).await?;
        assert_eq!(ids(&listed, "conversations"), vec![older, newer]);
        assert_eq!(listed["conversations"][0]["last_message"], answer);
        assert_eq!(listed["conversations"][1]["last_message"], Value::Null);
        let one = json_of(app.get_as(&bob, &format!("/conversations/{older}")).await, StatusCode::OK).await?;
        assert_eq!(one["last_message"], answer);
        Ok(())
    }

    async fn bad_bodies_and_foreign_replies_are_validation_failures_never_500s(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let here = start_conversation(&app, &ann, "Here", &[]).await?;
        let elsewhere = start_conversation(&app, &ann, "Elsewhere", &[]).await?;
        let foreign = say(&app, &ann, elsewhere, "over there").await?;
        let path = format!("/conversations/{here}/messages");
        let cases = [
            (json!({"body": ""}), "body"),
            (json!({"body": "\u{0}"}), "body"),
            (json!({"body": "before\u{0}after"}), "body"),
            (json!({"body": "x".repeat(4001)}), "body"),
            (json!({"body": "x".repeat(10_000)}), "body"),
            (json!({"body": "😀".repeat(4001)}), "body"),
            (json!({"body": 42}), "body"),
            (json!({"body": ["hi"]}), "body"),
            (json!({}), "body"),
            (json!({"body": "hi", "reply_to_id": foreign["id"]}), "reply_to_id"),
            (json!({"body": "hi", "reply_to_id": 999_999}), "reply_to_id"),
            (json!({"body": "hi", "reply_to_id": "1"}), "reply_to_id"),
            (json!({"body": "hi", "reply_to_id": -1.5}), "reply_to_id"),
            (json!({"body": "hi", "reply_to": 1}), "reply_to"),
        ];

        for (body, field) in cases {
            let response = app.post_json_as(&ann, &path, &body).await;
            let detail = expect_validation_failure(response).await;
            assert!(detail.contains(field), "{}: {detail}", &body.to_string()[..40.min(body.to_string().len())]);
        }
        let page = json_of(app.get_as(&ann, &path).await, StatusCode::OK).await?;
        assert_eq!(page, json!({"messages": [], "next_before": null}));
        Ok(())
    }

    async fn accepted_text_comes_back_byte_for_byte(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let texts = [
            "plain".to_owned(),
            "😀 emoji, 👩‍👩‍👧 a family, and é vs e\u{301}".to_owned(),
            r#"She said "hi" and 'bye' — `back`ticks"#.to_owned(),
            r"back\slash \\ \n \0 \x00 \' \N \.".to_owned(),
            "'; DROP TABLE messages; --".to_owned(),
            "1' OR '1'='1".to_owned(),
            "%_% LIKE wildcards _%".to_owned(),
            "  leading and trailing spaces  ".to_owned(),
            "tab\tnewline\ncarriage\r\nreturn".to_owned(),
            "\u{feff}BOM and \u{200b}zero width".to_owned(),
            "x".repeat(4000),
            "😀".repeat(4000),
        ];
        let conversation = start_conversation(&app, &ann, "'; DROP TABLE conversations; -- \"quoted\" \\", &[]).await?;

        let mut posted = Vec::new();
        for text in &texts {
            let message = say(&app, &ann, conversation, text).await?;
            assert_eq!(message["body"].as_str(), Some(text.as_str()));
            posted.push(message);
        }

        let page = json_of(
            app.get_as(&ann, &format!("/conversations/{conversation}/messages?limit=100")).await,
            StatusCode::OK,
        ).await?;
        let mut read: Vec<Value> = page["messages"].as_array().cloned().unwrap_or_default();
        read.reverse();
        assert_eq!(read, posted);
        let one = json_of(app.get_as(&ann, &format!("/conversations/{conversation}")).await, StatusCode::OK).await?;
        assert_eq!(one["title"], "'; DROP TABLE conversations; -- \"quoted\" \\");
        Ok(())
    }

    async fn pagination_walks_every_message_newest_first_exactly_once(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let conversation = start_conversation(&app, &ann, "Many", &[]).await?;
        let mut posted = Vec::new();
        for n in 0..23 {
            posted.push(say(&app, &ann, conversation, &format!("message {n}")).await?["id"].as_i64().context("id")?);
        }
        posted.reverse();

        let mut seen = Vec::new();
        let mut pages = 0;
        let mut before: Option<i64> = None;
        loop {
            let mut path = format!("/conversations/{conversation}/messages?limit=5");
            if let Some(before) = before {
                path.push_str(&format!("&before={before}"));
            }
            let page = json_of(app.get_as(&ann, &path).await, StatusCode::OK).await?;
            pages += 1;
            seen.extend(ids(&page, "messages"));
            match page["next_before"].as_i64() {
                Some(next) => before = Some(next),
                None => break,
            }
        }

        assert_eq!(seen, posted);
        assert_eq!(pages, 5);
        let default_page = json_of(
            app.get_as(&ann, &format!("/conversations/{conversation}/messages")).await,
            StatusCode::OK,
        ).await?;
        assert_eq!(ids(&default_page, "messages"), posted[..10].to_vec());
        assert_eq!(default_page["next_before"], posted[9]);
        Ok(())
    }

    async fn bad_limits_befores_and_path_ids_are_validation_failures_naming_them(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let conversation = start_conversation(&app, &ann, "Paged", &[]).await?;
        let base = format!("/conversations/{conversation}/messages");
        let cases = [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=-1", "limit"),
            ("limit=ten", "limit"),
            ("limit=1.5", "limit"),
            ("limit=99999999999999999999", "limit"),
            ("before=0", "before"),
            ("before=-5", "before"),
            ("before=abc", "before"),
            ("before=%27%3B%20DROP%20TABLE%20messages", "before"),
        ];

        for (query, field) in cases {
            let detail = expect_validation_failure(app.get_as(&ann, &format!("{base}?{query}")).await).await;
            assert!(detail.contains(field), "{query}: {detail}");
        }
        for path in ["/conversations/abc", "/conversations/1.5/messages", "/conversations/99999999999999999999"] {
            let detail = expect_validation_failure(app.get_as(&ann, path).await).await;
            assert!(detail.starts_with("id: "), "{path}: {detail}");
        }
        Ok(())
    }

    async fn a_body_that_is_not_json_is_refused_before_anything_is_stored(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let conversation = start_conversation(&app, &ann, "Raw", &[]).await?;
        let path = format!("/conversations/{conversation}/messages");

        let malformed = app.client.post(app.url(&path)).bearer_auth(&ann.token)
            .header(header::CONTENT_TYPE, "application/json").body(r#"{"body": "hi""#).send().await?;
        let not_json = app.client.post(app.url(&path)).bearer_auth(&ann.token)
            .header(header::CONTENT_TYPE, "text/plain").body(r#"{"body": "hi"}"#).send().await?;

        expect_problem(malformed, StatusCode::BAD_REQUEST, "bad_request").await;
        expect_problem(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
        let page = json_of(app.get_as(&ann, &path).await, StatusCode::OK).await?;
        assert_eq!(page["messages"], json!([]));
        Ok(())
    }

    async fn the_openapi_document_describes_every_conversation_operation(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let document = json_of(app.get("/openapi.json").await, StatusCode::OK).await?;

        let paths = &document["paths"];
        for (path, method) in [
            ("/conversations", "post"),
            ("/conversations", "get"),
            ("/conversations/{id}", "get"),
            ("/conversations/{id}/messages", "post"),
            ("/conversations/{id}/messages", "get"),
        ] {
            let operation = &paths[path][method];
            assert!(operation.is_object(), "{method} {path}");
            assert_eq!(operation["security"], json!([{"bearer": []}]), "{method} {path}");
            assert!(operation["responses"]["401"].is_object(), "{method} {path}");
        }
        assert!(paths["/conversations/{id}/messages"]["get"]["responses"]["404"].is_object());
        Ok(())
    }
}
