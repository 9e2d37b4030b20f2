//! The end-to-end rig: the real application, started by the same builder as `mercado serve`
//! ([`mercado::startup::Application`]) with the test database's URL, on 127.0.0.1 port 0, and a
//! real HTTP client to call it. A test file includes it with `mod support;` and calls
//! [`TestApp::spawn`] inside a `backend_tests!` test. It also holds what several test files
//! share: requests as a registered [`Caller`], problem assertions, and [`race`].

// Each test file uses a different part of the rig; and in a test, a failed step is a failed test.
#![allow(dead_code, unreachable_pub, clippy::expect_used)]

use std::{
    future::Future,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use api::{ApiError, AppState, auth::AuthUser};
use mercado::{
    settings::Settings,
    startup::{Application, DemoData, ServeOptions},
};
use mercado_testkit::TestDb;
use reqwest::{Response, StatusCode, header};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use tokio::{
    sync::{Barrier, oneshot},
    task::{JoinHandle, JoinSet},
};
use utoipa_axum::router::OpenApiRouter;

/// A running server and a client for it. Dropping it stops the server.
#[derive(Debug)]
pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    /// The application's own pool (not the test's `db.conn`): closing it takes the database
    /// away from the application.
    pub db: DatabaseConnection,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The settings a test's application starts from: the defaults, with the test's database and a
/// free port.
pub fn settings_for(db: &TestDb) -> Settings {
    let mut settings = Settings::default();
    settings.database.url = db.url.as_str().into();
    // As long as the harness's own pool waits: tests run in parallel on few cores.
    settings.database.acquire_timeout = Duration::from_secs(30);
    settings.server.listen_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    settings
}

impl TestApp {
    /// Serves the application over `db` with the default settings.
    pub async fn spawn(db: &TestDb) -> TestApp {
        TestApp::spawn_with(db, |_| {}, OpenApiRouter::new()).await
    }

    /// Serves the application over `db`, with its settings changed by `configure`, plus
    /// `routes` (probes that drive the shared machinery — extractors, timeout — through routes
    /// the API does not have).
    pub async fn spawn_with(
        db: &TestDb,
        configure: impl FnOnce(&mut Settings),
        routes: OpenApiRouter<AppState>,
    ) -> TestApp {
        let mut settings = settings_for(db);
        configure(&mut settings);
        // The tests bring their own data: no demo users in their way, no welcome printed.
        let options = ServeOptions {
            demo_data: DemoData::SkipQuietly,
            ..ServeOptions::default()
        };
        let application = Application::build_with_routes(settings, options, routes)
            .await
            .expect("the application starts");
        let address = application.local_addr();
        let app_db = application.db().clone();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until(async {
            let _ = stopped.await;
        }));
        TestApp {
            address,
            client: client(),
            db: app_db,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("the server answers")
            .without_n_plus_one()
    }

    /// POSTs `body` as it is, with the given content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        self.client
            .post(self.url(path))
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("the server answers")
            .without_n_plus_one()
    }

    /// POSTs `body` as JSON, without credentials.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("the server answers")
            .without_n_plus_one()
    }

    /// POSTs `body` as JSON with `caller`'s bearer token.
    pub async fn post_json_as(&self, caller: &Caller, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&caller.token)
            .json(body)
            .send()
            .await
            .expect("the server answers")
            .without_n_plus_one()
    }

    /// POSTs no body with `caller`'s bearer token.
    pub async fn post_empty_as(&self, caller: &Caller, path: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&caller.token)
            .send()
            .await
            .expect("the server answers")
            .without_n_plus_one()
    }

    /// GETs `path` with `caller`'s bearer token.
    pub async fn get_as(&self, caller: &Caller, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&caller.token)
            .send()
            .await
            .expect("the server answers")
            .without_n_plus_one()
    }

    /// Registers `username` (email `<username>@example.com`) through `POST /users`.
    pub async fn register(&self, username: &str) -> Caller {
        let response = self
            .post_json(
                "/users",
                &json!({"username": username, "email": format!("{username}@example.com")}),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "registering {username}"
        );
        let body: Value = response.json().await.expect("a registration");
        Caller {
            id: body["user"]["id"].as_i64().expect("a user id"),
            token: body["token"].as_str().expect("a token").to_owned(),
        }
    }

    /// Registers `username` and deposits `amount` (a decimal string) into their account.
    pub async fn register_funded(&self, username: &str, amount: &str) -> Caller {
        let caller = self.register(username).await;
        let response = self
            .post_json_as(&caller, "/me/deposits", &json!({ "amount": amount }))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "funding {username}");
        caller
    }

    /// `caller`'s balance, as `GET /me` shows it.
    pub async fn balance_of(&self, caller: &Caller) -> String {
        let response = self.get_as(caller, "/me").await;
        assert_eq!(response.status(), StatusCode::OK, "GET /me");
        let me: Value = response.json().await.expect("a profile");
        me["balance"].as_str().expect("a balance string").to_owned()
    }

    /// Asks the server to stop, as SIGTERM would, and waits until it has.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.server.take() {
            Some(server) => server
                .await
                .expect("the server task ends without panicking"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A registered user, as a client knows them: their id and bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: i64,
    pub token: String,
}

/// Asserts that `response` is a problem+json with `status` and `code`, and returns its body.
pub async fn expect_problem(response: Response, status: StatusCode, code: &str) -> Value {
    let request_id = response.headers().get("x-request-id").cloned();
    assert_eq!(response.status(), status, "status");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(request_id.is_some(), "every response has an x-request-id");
    let problem: Value = response.json().await.expect("a JSON problem body");
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    assert_eq!(problem["type"], "about:blank", "{problem}");
    assert!(problem["title"].is_string(), "{problem}");
    assert!(problem["detail"].is_string(), "{problem}");
    problem
}

/// Asserts that `response` is a 422 `validation_failed` problem, and returns its `detail`.
pub async fn expect_validation_failure(response: Response) -> String {
    let problem = expect_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    problem["detail"].as_str().unwrap_or_default().to_owned()
}

/// Every response of the API is checked for an N+1 as it arrives: no endpoint of API.md may
/// run one, whatever the test is about. Probe routes (`/probe/…`), which run one on purpose,
/// are exempt.
trait WithoutNPlusOne {
    fn without_n_plus_one(self) -> Self;
}

impl WithoutNPlusOne for Response {
    fn without_n_plus_one(self) -> Self {
        let on_purpose = self.url().path().starts_with("/probe/");
        if let Some(finding) = self.headers().get("x-n-plus-one")
            && !on_purpose
        {
            panic!(
                "{} {} ran an N+1: {finding:?}",
                self.status(),
                self.url().path()
            );
        }
        self
    }
}

/// The response's `x-query-count`: how many SQL statements serving it sent.
pub fn query_count(response: &Response) -> usize {
    response
        .headers()
        .get("x-query-count")
        .expect("every response has an x-query-count")
        .to_str()
        .expect("an ASCII count")
        .parse()
        .expect("a whole number")
}

/// The JSON body of a response that must have `status`.
pub async fn json_of(response: Response, status: StatusCode) -> anyhow::Result<Value> {
    let actual = response.status();
    let body: Value = response.json().await.context("a JSON body")?;
    assert_eq!(actual, status, "{body}");
    Ok(body)
}

/// A new HTTP client, with connections of its own, as a separate machine would have.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

/// Runs `racers` copies of `racer(i)` at once and returns what each produced, in no particular
/// order. Each future is made first and then held at one barrier until all are ready, so that
/// they really start together.
pub async fn race<T, F, Fut>(racers: usize, racer: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let start = Arc::new(Barrier::new(racers));
    let mut running = JoinSet::new();
    for i in 0..racers {
        let (start, run) = (Arc::clone(&start), racer(i));
        running.spawn(async move {
            start.wait().await;
            run.await
        });
    }
    running.join_all().await
}

/// Reads users 1 to 3 one by one and returns the usernames it found: an N+1 on purpose, for
/// the probe routes through which the tests watch the detector catch one.
pub async fn usernames_one_by_one(db: &DatabaseConnection) -> Result<Vec<String>, ApiError> {
    let mut names = Vec::new();
    for id in 1..=3 {
        match service::ops::users::get_user(db, id).await {
            Ok(user) => names.push(user.username),
            Err(service::ServiceError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(names)
}

/// A probe route's handler: [`usernames_one_by_one`] for an authenticated caller, so that the
/// N+1 comes after the statement that looks the token's hash up.
pub async fn users_one_by_one_for_a_caller(
    axum::extract::State(state): axum::extract::State<AppState>,
    AuthUser(_caller): AuthUser,
) -> Result<axum::Json<Value>, ApiError> {
    let names = usernames_one_by_one(&state.db).await?;
    Ok(axum::Json(json!({ "usernames": names })))
}
