//! The OpenAPI document tells the whole truth, checked against the running server: the bounds,
//! patterns and enums it states are exactly where the server draws the line (read from the
//! served document, so a change to a parser that the document does not follow fails here), every
//! body refuses unknown fields and says so, every error it lists is problem+json, and its links
//! name operations, parameters and fields that exist.

mod support;

use anyhow::Context;
use mercado_testkit::{TestDb, backend_tests};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Caller, TestApp, expect_validation_failure, json_of};

/// `schema` with a `$ref` to a component schema followed.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &document["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// The schema of property `field` of the JSON body `method path` takes.
fn body_property<'a>(document: &'a Value, method: &str, path: &str, field: &str) -> &'a Value {
    let body = &document["paths"][path][method]["requestBody"]["content"]["application/json"];
    &resolve(document, &body["schema"])["properties"][field]
}

/// The schema of query parameter `name` of `GET path`.
fn query_parameter<'a>(document: &'a Value, path: &str, name: &str) -> &'a Value {
    let parameters = document["paths"][path]["get"]["parameters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let parameter = parameters
        .iter()
        .find(|p| p["name"] == name && p["in"] == "query");
    &parameter.unwrap_or_else(|| panic!("GET {path} has no {name}"))["schema"]
}

fn integer(schema: &Value, keyword: &str) -> i64 {
    schema[keyword]
        .as_i64()
        .unwrap_or_else(|| panic!("{keyword} is an integer in {schema}"))
}

fn length(schema: &Value, keyword: &str) -> usize {
    schema[keyword]
        .as_u64()
        .unwrap_or_else(|| panic!("{keyword} is a length in {schema}")) as usize
}

async fn document(app: &TestApp) -> anyhow::Result<Value> {
    json_of(app.get("/openapi.json").await, StatusCode::OK).await
}

async fn create_product(app: &TestApp, seller: &Caller, body: &Value) -> reqwest::Response {
    app.post_json_as(seller, "/products", body).await
}

backend_tests! {
    async fn the_product_bounds_in_the_document_are_where_the_server_draws_the_line(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let doc = document(&app).await?;
        let seller = app.register("seller").await;
        let stock = body_property(&doc, "post", "/products", "stock");
        let sku = body_property(&doc, "post", "/products", "sku");
        let name = body_property(&doc, "post", "/products", "name");
        let (max_stock, min_stock) = (integer(stock, "maximum"), integer(stock, "minimum"));
        let (max_sku, max_name) = (length(sku, "maxLength"), length(name, "maxLength"));
        let product = |n: usize, sku: String, name: String, stock: i64| {
            json!({"sku": format!("{n}{sku}"), "name": name, "price": "0", "stock": stock})
        };

        // At the bounds the document states: accepted (lengths in code points).
        for (n, body) in [
            product(0, "😀".repeat(max_sku - 1), "😀".repeat(max_name), max_stock),
            product(1, "s".repeat(max_sku - 1), "n".repeat(max_name), min_stock),
        ].into_iter().enumerate() {
            let response = create_product(&app, &seller, &body).await;
            assert_eq!(response.status(), StatusCode::CREATED, "{n}: {}", response.text().await?);
        }
        // One past each: refused, naming the field.
        for (field, body) in [
            ("stock", product(2, "x".into(), "n".into(), max_stock + 1)),
            ("stock", product(3, "x".into(), "n".into(), min_stock - 1)),
            ("sku", product(4, "😀".repeat(max_sku), "n".into(), 1)),
            ("name", product(5, "x".into(), "😀".repeat(max_name + 1), 1)),
        ] {
            let detail = expect_validation_failure(create_product(&app, &seller, &body).await).await;
            assert!(detail.contains(field), "{field}: {detail}");
        }
        Ok(())
    }

    async fn a_value_matching_the_money_pattern_is_accepted_and_one_past_the_limit_is_not(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let doc = document(&app).await?;
        let caller = app.register("depositor").await;
        let pattern = body_property(&doc, "post", "/me/deposits", "amount")["pattern"]
            .as_str()
            .context("amount has a pattern")?
            .to_owned();
        let matches = |text: &str| regex::Regex::new(&pattern).map(|r| r.is_match(text));

        for amount in ["1000000.00", "0.01", "007.5", "12"] {
            assert!(matches(amount)?, "{amount} should match {pattern}");
            let response = app.post_json_as(&caller, "/me/deposits", &json!({"amount": amount})).await;
            assert_eq!(response.status(), StatusCode::OK, "{amount}");
        }
        for amount in ["1000000.01", "0", "0.00", "", "1.234", "1e3", " 1"] {
            assert!(!matches(amount)?, "{amount} should not match {pattern}");
            let response = app.post_json_as(&caller, "/me/deposits", &json!({"amount": amount})).await;
            let detail = expect_validation_failure(response).await;
            assert!(detail.contains("amount"), "{amount}: {detail}");
        }
        Ok(())
    }

    async fn the_query_bounds_and_enums_in_the_document_are_what_the_server_accepts(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let doc = document(&app).await?;
        let limit = query_parameter(&doc, "/products", "limit");
        let (min, max) = (integer(limit, "minimum"), integer(limit, "maximum"));
        for value in [min, max] {
            assert_eq!(app.get(&format!("/products?limit={value}")).await.status(), StatusCode::OK);
        }
        for value in [min - 1, max + 1] {
            expect_validation_failure(app.get(&format!("/products?limit={value}")).await).await;
        }
        for (name, refused) in [("sort", "id"), ("order", "ASC")] {
            let allowed = query_parameter(&doc, "/products", name)["enum"]
                .as_array()
                .with_context(|| format!("{name} has an enum"))?;
            for value in allowed {
                let value = value.as_str().context("a string")?;
                let response = app.get(&format!("/products?{name}={value}")).await;
                assert_eq!(response.status(), StatusCode::OK, "{name}={value}");
            }
            expect_validation_failure(app.get(&format!("/products?{name}={refused}")).await).await;
            expect_validation_failure(app.get(&format!("/products?{name}=")).await).await;
        }

        let reader = app.register("reader").await;
        let conversation = json_of(
            app.post_json_as(&reader, "/conversations", &json!({"title": "t", "participant_ids": []})).await,
            StatusCode::CREATED,
        ).await?;
        let path = format!("/conversations/{}/messages", conversation["id"]);
        let limit = query_parameter(&doc, "/conversations/{id}/messages", "limit");
        let max = integer(limit, "maximum");
        assert_eq!(app.get_as(&reader, &format!("{path}?limit={max}")).await.status(), StatusCode::OK);
        expect_validation_failure(app.get_as(&reader, &format!("{path}?limit={}", max + 1)).await).await;
        Ok(())
    }

    async fn the_order_bounds_in_the_document_are_where_the_server_draws_the_line(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let doc = document(&app).await?;
        let seller = app.register("seller").await;
        let buyer = app.register("buyer").await;
        let items = body_property(&doc, "post", "/orders", "items");
        let line = resolve(&doc, &items["items"]);
        let quantity = &line["properties"]["quantity"];
        let (min, max) = (integer(quantity, "minimum"), integer(quantity, "maximum"));
        let max_items = length(items, "maxItems");
        let product = json_of(
            create_product(&app, &seller, &json!({"sku": "FREE", "name": "Free", "price": "0", "stock": 1_000_000})).await,
            StatusCode::CREATED,
        ).await?;
        let id = &product["id"];

        for value in [min, max] {
            let order = json!({"items": [{"product_id": id, "quantity": value}]});
            let response = app.post_json_as(&buyer, "/orders", &order).await;
            assert_eq!(response.status(), StatusCode::CREATED, "quantity {value}");
        }
        for value in [min - 1, max + 1] {
            let order = json!({"items": [{"product_id": id, "quantity": value}]});
            let detail = expect_validation_failure(app.post_json_as(&buyer, "/orders", &order).await).await;
            assert!(detail.contains("quantity"), "{value}: {detail}");
        }
        let too_many: Vec<Value> = (0..=max_items as i64)
            .map(|n| json!({"product_id": n + 1_000_000, "quantity": 1}))
            .collect();
        let detail = expect_validation_failure(
            app.post_json_as(&buyer, "/orders", &json!({"items": too_many})).await,
        ).await;
        assert!(detail.contains("items"), "{detail}");
        Ok(())
    }

    async fn the_user_bounds_in_the_document_are_where_the_server_draws_the_line(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let doc = document(&app).await?;
        let username = body_property(&doc, "post", "/users", "username");
        let display_name = body_property(&doc, "post", "/users", "display_name");
        let email = body_property(&doc, "post", "/users", "email");
        let (min, max) = (length(username, "minLength"), length(username, "maxLength"));
        let max_display = length(display_name, "maxLength");
        let max_email = length(email, "maxLength");

        let long_email = format!("{}@b", "😀".repeat(max_email - 2));
        for (name, shown, email) in [
            ("u".repeat(min), "😀".repeat(max_display), "a@b".to_owned()),
            ("v".repeat(max), "d".to_owned(), long_email),
        ] {
            let response = app.post_json("/users", &json!({"username": name, "email": email, "display_name": shown})).await;
            assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await?);
        }
        for (field, body) in [
            ("username", json!({"username": "w".repeat(min - 1), "email": "w@b"})),
            ("username", json!({"username": "w".repeat(max + 1), "email": "w@b"})),
            ("display_name", json!({"username": "www", "email": "w@b", "display_name": "😀".repeat(max_display + 1)})),
            ("email", json!({"username": "www", "email": format!("{}@b", "a".repeat(max_email - 1))})),
            ("email", json!({"username": "www", "email": "no-at-sign"})),
        ] {
            let detail = expect_validation_failure(app.post_json("/users", &body).await).await;
            assert!(detail.contains(field), "{field}: {detail}");
        }
        Ok(())
    }

    async fn every_body_refuses_unknown_fields_and_its_schema_says_so(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let doc = document(&app).await?;
        let caller = app.register("caller").await;

        let mut bodies = 0;
        for (path, item) in doc["paths"].as_object().context("paths")? {
            for (method, operation) in item.as_object().context("a path item")? {
                let Some(content) = operation["requestBody"]["content"].as_object() else {
                    continue;
                };
                bodies += 1;
                for (media_type, body) in content {
                    let schema = resolve(&doc, &body["schema"]);
                    assert_eq!(schema["additionalProperties"], json!(false), "{method} {path} {media_type}");
                }
            }
        }
        assert!(bodies >= 7, "only {bodies} operations take a body");

        for path in ["/users", "/me/deposits", "/transfers", "/products", "/orders", "/conversations"] {
            let response = app.post_json_as(&caller, path, &json!({"surplus": 1})).await;
            let detail = expect_validation_failure(response).await;
            assert!(detail.contains("surplus") || detail.contains("unknown field"), "{path}: {detail}");
        }
        Ok(())
    }

    async fn every_error_the_document_lists_is_problem_json_and_every_operation_lists_its_input_errors(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let doc = document(&app).await?;

        for (path, item) in doc["paths"].as_object().context("paths")? {
            for (method, operation) in item.as_object().context("a path item")? {
                let responses = operation["responses"].as_object().context("responses")?;
                for (status, response) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
                    let response = match response["$ref"].as_str() {
                        Some(reference) => &doc["components"]["responses"][reference.trim_start_matches("#/components/responses/")],
                        None => response,
                    };
                    let content = response["content"].as_object().context("content")?;
                    let media_types: Vec<&String> = content.keys().collect();
                    assert_eq!(media_types, ["application/problem+json"], "{method} {path} {status}");
                    assert_eq!(
                        content["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{method} {path} {status}"
                    );
                }
                let has = |status: &str| responses.contains_key(status);
                let mut expected = vec!["500", "503"];
                if operation.get("requestBody").is_some() {
                    expected.extend(["400", "413", "415", "422"]);
                }
                if path.contains('{') {
                    expected.extend(["404", "422"]);
                }
                if operation.get("security").is_some() {
                    expected.push("401");
                }
                for status in expected {
                    assert!(has(status), "{method} {path} does not list {status}");
                }
            }
        }
        Ok(())
    }

    async fn every_link_names_an_operation_parameters_and_fields_that_exist(
        db: TestDb
    ) -> anyhow::Result<()> {
        let app = TestApp::spawn(&db).await;
        let doc = document(&app).await?;
        let mut operations = std::collections::BTreeMap::new();
        for item in doc["paths"].as_object().context("paths")?.values() {
            for operation in item.as_object().context("a path item")?.values() {
                if let Some(id) = operation["operationId"].as_str() {
                    operations.insert(id.to_owned(), operation.clone());
                }
            }
        }

        let mut links = 0;
        for (source, operation) in &operations {
            for (status, response) in operation["responses"].as_object().context("responses")? {
                let Some(named) = response["links"].as_object() else { continue };
                let schema = resolve(&doc, &response["content"]["application/json"]["schema"]);
                for (name, link) in named {
                    links += 1;
                    let target_id = link["operationId"].as_str().context("an operationId")?;
                    let target = operations.get(target_id)
                        .with_context(|| format!("{source} {status} {name}: no operation {target_id}"))?;
                    let mut expressions = Vec::new();
                    for (parameter, expression) in link["parameters"].as_object().into_iter().flatten() {
                        let (location, parameter) = parameter.split_once('.').context("a located parameter")?;
                        let declared = target["parameters"].as_array().into_iter().flatten()
                            .any(|p| p["in"] == location && p["name"] == parameter);
                        assert!(declared, "{source} {name}: {target_id} takes no {location} {parameter}");
                        expressions.push(expression.clone());
                    }
                    collect_expressions(&link["requestBody"], &mut expressions);
                    assert!(!expressions.is_empty(), "{source} {name} carries nothing");
                    for expression in expressions {
                        let pointer = expression.as_str().and_then(|e| e.strip_prefix("$response.body#"))
                            .with_context(|| format!("{source} {name}: {expression}"))?;
                        assert!(
                            points_into(&doc, schema, pointer),
                            "{source} {name}: {pointer} is not a field of the response"
                        );
                    }
                }
            }
        }
        assert!(links >= 10, "only {links} links");
        for source in ["register", "create_product", "create_conversation", "place_order"] {
            assert!(operations[source]["responses"]["201"]["links"].is_object(), "{source} has no links");
        }
        Ok(())
    }
}

/// Every runtime expression (`$…`) inside a link's request body.
fn collect_expressions(value: &Value, into: &mut Vec<Value>) {
    match value {
        Value::String(text) if text.starts_with('$') => into.push(value.clone()),
        Value::Array(values) => values.iter().for_each(|v| collect_expressions(v, into)),
        Value::Object(fields) => fields.values().for_each(|v| collect_expressions(v, into)),
        _ => {}
    }
}

/// Whether the JSON pointer `pointer` (`/user/id`) names a property of `schema`.
fn points_into(document: &Value, schema: &Value, pointer: &str) -> bool {
    let mut schema = resolve(document, schema);
    for name in pointer.trim_start_matches('/').split('/') {
        let property = &schema["properties"][name];
        if property.is_null() {
            return false;
        }
        schema = resolve(document, property);
    }
    true
}
