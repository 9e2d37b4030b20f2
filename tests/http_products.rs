//! Products over HTTP, on every backend: `POST /products`, `GET /products/{id}` and the search
//! at `GET /products`, with every status and error code each can answer, hostile input that must
//! come back byte for byte or be refused with a 4xx, and a search whose statement count does not
//! grow with the catalogue.

// In a test, a broken expectation is a failed test: expect says so most directly.
#![allow(clippy::expect_used)]

mod support;

use mercado_testkit::{TestDb, backend_tests};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use support::{Caller, TestApp, expect_problem, expect_validation_failure, query_count};

/// Puts a product on sale as `seller` and returns it as the API did.
async fn sell(app: &TestApp, seller: &Caller, sku: &str, name: &str, price: &str) -> Value {
    let response = app
        .post_json_as(
            seller,
            "/products",
            &json!({"sku": sku, "name": name, "price": price, "stock": 5}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED, "selling {sku}");
    response.json().await.expect("a product")
}

/// `GET <path>`'s products, as `(names, total)`.
async fn search(app: &TestApp, path: &str) -> (Vec<String>, u64) {
    let response = app.get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    let page: Value = response.json().await.expect("a page");
    let names = page["products"]
        .as_array()
        .expect("a list of products")
        .iter()
        .map(|product| product["name"].as_str().expect("a name").to_owned())
        .collect();
    (names, page["total"].as_u64().expect("a total"))
}

/// `GET /products?q=<q>` with `q` percent-encoded.
fn search_for(q: &str) -> String {
    let query: String = url_encode(q);
    format!("/products?q={query}&sort=name&order=asc")
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// What a hostile `POST /products` must get.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// 201, with `sku` and `name` returned exactly as sent.
    Accepted,
    /// 422 `validation_failed`, with a `detail` naming this field.
    Invalid(&'static str),
}

/// Every kind of hostile value, for each field of `POST /products`.
fn hostile_products() -> Vec<(&'static str, Value, Outcome)> {
    use Outcome::{Accepted, Invalid};
    let long = "x".repeat(10_000);
    vec![
        // Text that must be stored and returned exactly.
        ("name", json!("Robert'); DROP TABLE products;--"), Accepted),
        ("name", json!("\" OR \"1\"=\"1"), Accepted),
        ("name", json!(r"back\slash \\ \' \x00"), Accepted),
        ("name", json!("100% _cotton_ \\ LIKE"), Accepted),
        ("name", json!("😀".repeat(200)), Accepted),
        ("name", json!("  Mixed Case, spaces kept  "), Accepted),
        ("name", json!("tab\tnew\nline\u{7f}\u{202e}"), Accepted),
        ("sku", json!("'; DELETE FROM inventory; --"), Accepted),
        ("sku", json!(r#"SKU "quoted" \ back"#), Accepted),
        ("sku", json!("😀".repeat(64)), Accepted),
        // Text that breaks a rule.
        ("name", json!(""), Invalid("name")),
        ("name", json!("nul\u{0}"), Invalid("name")),
        ("name", json!(long.clone()), Invalid("name")),
        ("name", json!("😀".repeat(201)), Invalid("name")),
        ("sku", json!(""), Invalid("sku")),
        ("sku", json!("\u{0}"), Invalid("sku")),
        ("sku", json!(long), Invalid("sku")),
        ("sku", json!("x".repeat(65)), Invalid("sku")),
        // Money that is not a decimal string of 0 to 1000000.00.
        ("price", json!(12.5), Invalid("price")),
        ("price", json!(12), Invalid("price")),
        ("price", json!("-1"), Invalid("price")),
        ("price", json!("-0.01"), Invalid("price")),
        ("price", json!("1000000.01"), Invalid("price")),
        (
            "price",
            json!("99999999999999999999999999999"),
            Invalid("price"),
        ),
        ("price", json!("0.001"), Invalid("price")),
        ("price", json!("1e3"), Invalid("price")),
        ("price", json!("NaN"), Invalid("price")),
        ("price", json!("Infinity"), Invalid("price")),
        ("price", json!("0x10"), Invalid("price")),
        ("price", json!(" 1"), Invalid("price")),
        ("price", json!("1; DROP TABLE products"), Invalid("price")),
        ("price", json!(""), Invalid("price")),
        ("price", json!(null), Invalid("price")),
        // Stock that is not a whole number from 0 to 1,000,000.
        ("stock", json!(-1), Invalid("stock")),
        ("stock", json!(1_000_001), Invalid("stock")),
        ("stock", json!(i64::MAX), Invalid("stock")),
        ("stock", json!(i64::MIN), Invalid("stock")),
        ("stock", json!(u64::MAX), Invalid("stock")),
        ("stock", json!(1.5), Invalid("stock")),
        ("stock", json!(-0.5), Invalid("stock")),
        ("stock", json!(1e300), Invalid("stock")),
        ("stock", json!("5"), Invalid("stock")),
        ("stock", json!(null), Invalid("stock")),
        ("stock", json!([5]), Invalid("stock")),
        ("sku", json!(12345), Invalid("sku")),
        ("name", json!({"$gt": ""}), Invalid("name")),
    ]
}

backend_tests! {
    async fn a_product_is_put_on_sale_by_the_caller(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;

        let response = app
            .post_json_as(
                &ann,
                "/products",
                &json!({"sku": "MUG-1", "name": "Blue mug", "price": "12.5", "stock": 20}),
            )
            .await;

        assert_eq!(response.status(), StatusCode::CREATED);
        let location = response.headers()[header::LOCATION].to_str()?.to_owned();
        let product: Value = response.json().await?;
        let id = product["id"].as_i64().expect("an id");
        assert_eq!(location, format!("/products/{id}"));
        assert_eq!(product["sku"], "MUG-1");
        assert_eq!(product["name"], "Blue mug");
        assert_eq!(product["price"], "12.50");
        assert_eq!(product["stock"], 20);
        assert_eq!(product["seller_id"], ann.id);
        assert!(product["created_at"].as_str().expect("a time").ends_with('Z'));

        let read: Value = app.get(&location).await.json().await?;
        assert_eq!(read, product, "GET returns what POST did");
        Ok(())
    }

    async fn prices_and_stock_at_their_bounds_are_accepted(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;

        for (sku, price, stock, shown) in [
            ("FREE", "0", 0, "0.00"),
            ("MAX", "1000000.00", 1_000_000, "1000000.00"),
            ("ZEROS", "007.10", 1, "7.10"),
        ] {
            let response = app
                .post_json_as(
                    &ann,
                    "/products",
                    &json!({"sku": sku, "name": sku, "price": price, "stock": stock}),
                )
                .await;
            assert_eq!(response.status(), StatusCode::CREATED, "{sku}");
            let product: Value = response.json().await?;
            assert_eq!(product["price"], shown, "{sku}");
            assert_eq!(product["stock"], stock, "{sku}");
        }
        Ok(())
    }

    async fn a_taken_sku_is_a_conflict(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let bob = app.register("bob").await;
        sell(&app, &ann, "MUG-1", "Blue mug", "12.50").await;

        let response = app
            .post_json_as(
                &bob,
                "/products",
                &json!({"sku": "MUG-1", "name": "Red mug", "price": "9", "stock": 1}),
            )
            .await;

        expect_problem(response, StatusCode::CONFLICT, "sku_taken").await;
        Ok(())
    }

    async fn selling_needs_a_token(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let body = json!({"sku": "MUG-1", "name": "Blue mug", "price": "12.50", "stock": 1});

        let anonymous = app.post_json("/products", &body).await;
        let unknown = app
            .client
            .post(app.url("/products"))
            .bearer_auth("not-a-token")
            .json(&body)
            .send()
            .await?;

        expect_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
        expect_problem(unknown, StatusCode::UNAUTHORIZED, "unauthorized").await;
        Ok(())
    }

    async fn hostile_products_are_stored_exactly_or_refused_with_a_4xx(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let seller = app.register("seller").await;

        for (tag, (field, value, outcome)) in hostile_products().into_iter().enumerate() {
            let mut body = json!({
                "sku": format!("SKU-{tag}"),
                "name": format!("Product {tag}"),
                "price": "1.00",
                "stock": 1,
            });
            body[field] = value.clone();
            let case = format!("{field} = {:.80}", value.to_string());
            let response = app.post_json_as(&seller, "/products", &body).await;
            match outcome {
                Outcome::Accepted => {
                    assert_eq!(response.status(), StatusCode::CREATED, "{case}");
                    let product: Value = response.json().await?;
                    assert_eq!(product["sku"], body["sku"], "{case}: sku as returned");
                    assert_eq!(product["name"], body["name"], "{case}: name as returned");
                    let id = product["id"].as_i64().expect("an id");
                    let stored: Value = app.get(&format!("/products/{id}")).await.json().await?;
                    assert_eq!(stored["sku"], body["sku"], "{case}: sku as stored");
                    assert_eq!(stored["name"], body["name"], "{case}: name as stored");
                }
                Outcome::Invalid(named) => {
                    let detail = expect_validation_failure(response).await;
                    assert!(detail.contains(named), "{case}: {detail}");
                }
            }
        }
        Ok(())
    }

    async fn bodies_that_are_not_a_product_are_4xx_problems(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let seller = app.register("seller").await;
        let cases: Vec<(&[u8], StatusCode, &str)> = vec![
            (br#"{"sku": "A", "name": "B", "price": "1", "stock": 1e400}"#, StatusCode::BAD_REQUEST, "bad_request"),
            (br#"{"sku": "A", "name": "B\udc00", "price": "1", "stock": 1}"#, StatusCode::BAD_REQUEST, "bad_request"),
            (b"{\"sku\": \"A\", \"name\": \"B\xc3\x28\", \"price\": \"1\", \"stock\": 1}", StatusCode::BAD_REQUEST, "bad_request"),
            (br#"{"sku": "A", "name": "B", "price": "1", "stock": 01}"#, StatusCode::BAD_REQUEST, "bad_request"),
            (br#"{"sku": "A", "name": "B", "price": "1", "stock": NaN}"#, StatusCode::BAD_REQUEST, "bad_request"),
            (br#"{"sku": "A", "name": "B", "price": "1"}"#, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (b"[1, 2, 3]", StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ];

        for (body, status, code) in cases {
            let response = app
                .client
                .post(app.url("/products"))
                .bearer_auth(&seller.token)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.to_vec())
                .send()
                .await?;
            expect_problem(response, status, code).await;
        }
        let over_the_limit = json!({
            "sku": "BIG", "name": "x".repeat(api::MAX_BODY_BYTES), "price": "1", "stock": 1,
        });
        let too_large = app.post_json_as(&seller, "/products", &over_the_limit).await;
        expect_problem(too_large, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
        let (_, total) = search(&app, "/products").await;
        assert_eq!(total, 0);
        Ok(())
    }

    async fn a_method_the_products_do_not_take_is_refused_listing_those_they_do(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        let on_the_list = app.client.delete(app.url("/products")).send().await?;
        let on_one = app.client.put(app.url("/products/1")).send().await?;

        let allowed = |response: &reqwest::Response| {
            let mut methods: Vec<String> = response.headers()[header::ALLOW]
                .to_str()
                .unwrap_or_default()
                .split(',')
                .map(str::to_owned)
                .collect();
            methods.sort();
            methods
        };
        assert_eq!(allowed(&on_the_list), ["GET", "HEAD", "POST"]);
        assert_eq!(allowed(&on_one), ["GET", "HEAD"]);
        expect_problem(on_the_list, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
        expect_problem(on_one, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
        Ok(())
    }

    async fn a_product_is_read_with_its_stock_or_not_found(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let mug = sell(&app, &ann, "MUG-1", "Blue mug", "12.50").await;

        let found = app.get(&format!("/products/{}", mug["id"])).await;
        let missing = app.get("/products/999999").await;
        let not_an_id = app.get("/products/mug").await;

        assert_eq!(found.status(), StatusCode::OK);
        let found: Value = found.json().await?;
        // Exactly as created, the fraction of a second of `created_at` included.
        assert_eq!(found, mug);
        assert_eq!(found["stock"], 5);
        expect_problem(missing, StatusCode::NOT_FOUND, "not_found").await;
        assert!(expect_validation_failure(not_an_id).await.starts_with("id: "));
        Ok(())
    }

    async fn the_search_matches_a_piece_of_the_name_ignoring_case(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        for (sku, name) in [
            ("1", "Blue Mug"),
            ("2", "blue plate"),
            ("3", "Red mug"),
            ("4", "Green bowl"),
        ] {
            sell(&app, &ann, sku, name, "1").await;
        }

        assert_eq!(
            search(&app, &search_for("BLUE")).await,
            (vec!["Blue Mug".to_owned(), "blue plate".to_owned()], 2)
        );
        assert_eq!(
            search(&app, &search_for("mug")).await,
            (vec!["Blue Mug".to_owned(), "Red mug".to_owned()], 2)
        );
        assert_eq!(search(&app, &search_for("")).await.1, 4, "an empty q matches all");
        assert_eq!(search(&app, &search_for("teapot")).await, (vec![], 0));
        Ok(())
    }

    async fn percent_underscore_and_backslash_match_only_themselves(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        for (sku, name) in [
            ("1", "100% cotton"),
            ("2", "100 cotton"),
            ("3", "a_b"),
            ("4", "axb"),
            ("5", r"back\slash"),
            ("6", "backslash"),
            ("7", "it's"),
        ] {
            sell(&app, &ann, sku, name, "1").await;
        }

        for (q, expected) in [
            ("%", vec!["100% cotton"]),
            ("0%", vec!["100% cotton"]),
            ("_", vec!["a_b"]),
            ("a_b", vec!["a_b"]),
            ("\\", vec![r"back\slash"]),
            (r"k\s", vec![r"back\slash"]),
            ("'", vec!["it's"]),
            ("' OR '1'='1", vec![]),
            ("%' --", vec![]),
        ] {
            let (names, total) = search(&app, &search_for(q)).await;
            assert_eq!(names, expected, "q = {q:?}");
            assert_eq!(total, expected.len() as u64, "q = {q:?}");
        }
        Ok(())
    }

    async fn results_are_sorted_as_asked_and_paged_with_the_total(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        // Created in this order, so by creation: Cup, Apple, Bowl.
        sell(&app, &ann, "C", "Cup", "5").await;
        sell(&app, &ann, "A", "Apple", "20").await;
        sell(&app, &ann, "B", "Bowl", "1.50").await;
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

        for (query, expected) in [
            ("", names(&["Bowl", "Apple", "Cup"])),
            ("?sort=created_at&order=asc", names(&["Cup", "Apple", "Bowl"])),
            ("?sort=name", names(&["Cup", "Bowl", "Apple"])),
            ("?sort=name&order=asc", names(&["Apple", "Bowl", "Cup"])),
            ("?sort=price&order=asc", names(&["Bowl", "Cup", "Apple"])),
            ("?sort=price&order=desc", names(&["Apple", "Cup", "Bowl"])),
            ("?sort=name&order=asc&limit=2", names(&["Apple", "Bowl"])),
            ("?sort=name&order=asc&limit=2&offset=2", names(&["Cup"])),
            ("?sort=name&order=asc&offset=3", names(&[])),
            ("?offset=9223372036854775807", names(&[])),
        ] {
            let (found, total) = search(&app, &format!("/products{query}")).await;
            assert_eq!(found, expected, "{query}");
            assert_eq!(total, 3, "{query}: the total counts every page");
        }
        Ok(())
    }

    async fn the_default_page_is_twenty_and_at_most_a_hundred(db: TestDb) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        for n in 0..21 {
            sell(&app, &ann, &format!("SKU-{n}"), &format!("Product {n}"), "1").await;
        }

        assert_eq!(search(&app, "/products").await.0.len(), 20);
        assert_eq!(search(&app, "/products?limit=100").await.0.len(), 21);
        assert_eq!(search(&app, "/products?limit=1").await, (vec!["Product 20".to_owned()], 21));
        Ok(())
    }

    async fn search_parameters_outside_their_allowed_values_are_validation_failures(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;

        for (query, field) in [
            ("sort=id", "sort"),
            ("sort=NAME", "sort"),
            ("sort=name;DROP%20TABLE%20products", "sort"),
            ("sort=", "sort"),
            ("order=up", "order"),
            ("order=ASC", "order"),
            ("order=", "order"),
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=-1", "limit"),
            ("limit=1.5", "limit"),
            ("limit=ten", "limit"),
            ("limit=99999999999999999999999", "limit"),
            ("offset=-1", "offset"),
            ("offset=9223372036854775808", "offset"),
            ("offset=x", "offset"),
            ("q=nul%00byte", "q"),
            (&format!("q={}", "x".repeat(201)), "q"),
            ("sort=name&sort=price", "sort"),
        ] {
            let response = app.get(&format!("/products?{query}")).await;
            let detail = expect_validation_failure(response).await;
            assert!(detail.contains(field), "{query}: {detail}");
        }
        Ok(())
    }

    async fn the_search_sends_as_many_statements_for_eight_products_as_for_two(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let ann = app.register("ann").await;
        let mut counts = Vec::new();

        for n in 0..8 {
            sell(&app, &ann, &format!("SKU-{n}"), &format!("Product {n}"), "1").await;
            if n == 1 || n == 7 {
                for path in ["/products", "/products?q=product&sort=price&order=asc&limit=5"] {
                    let response = app.get(path).await;
                    assert_eq!(response.status(), StatusCode::OK);
                    assert!(!response.headers().contains_key("x-n-plus-one"), "{path}");
                    counts.push((path, query_count(&response)));
                }
            }
        }

        let (with_two, with_eight) = counts.split_at(2);
        assert_eq!(with_two, with_eight, "counts with 2 products, then 8");
        assert_eq!(with_two[0].1, 2, "the page and the total");
        Ok(())
    }
}
