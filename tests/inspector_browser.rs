//! The SQL inspector in a real browser: headless Chromium, driven through chromedriver by
//! fantoccini, looks at the pages of a Mercado started with the inspector on (SQLite) after one
//! request that runs an N+1 on purpose and others that do not, and checks what a person sees:
//! every request listed, the N+1 badge on the right row only, a request arriving without a
//! reload, the N+1 request's statements and call site on its page, and no secret anywhere.
//!
//! It needs chromedriver and Chromium (Debian's `chromium` and `chromium-driver`): set
//! `TEST_CHROMEDRIVER=/usr/bin/chromedriver` when building the tests, as `.ci/run` does;
//! without it the test is listed as ignored. With `INSPECTOR_SCREENSHOTS=DIR` it also writes
//! the screenshots the README shows (`inspector-list.png`, `inspector-detail.png`).

mod support;

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::routing::get;
use fantoccini::{Client, ClientBuilder, Locator};
use mercado_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::json;
use support::TestApp;
use utoipa_axum::router::OpenApiRouter;

/// chromedriver on a free loopback port, killed when dropped.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    fn start(binary: &str) -> anyhow::Result<Chromedriver> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        let driver = Chromedriver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "chromedriver did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(driver)
    }

    async fn browser(&self, profile: &std::path::Path) -> anyhow::Result<Client> {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,900", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        Ok(ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await?)
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn row_with_path(
    browser: &Client,
    path: &str,
) -> anyhow::Result<fantoccini::elements::Element> {
    for row in browser.find_all(Locator::Css("tr.request")).await? {
        let shown = row.find(Locator::Css("td.path")).await?.text().await?;
        if shown == path {
            return Ok(row);
        }
    }
    anyhow::bail!("no row shows {path}")
}

async fn look_at_the_inspector(db: TestDb) -> anyhow::Result<()> {
    let binary =
        option_env!("TEST_CHROMEDRIVER").context("TEST_CHROMEDRIVER names chromedriver")?;
    let app = TestApp::spawn_with(
        &db,
        |settings| settings.server.inspect = true,
        OpenApiRouter::new().route(
            "/probe/n-plus-one",
            get(support::users_one_by_one_for_a_caller),
        ),
    )
    .await;
    app.register("ada").await;
    app.register("grace").await;
    let caller = app.register("edsger").await;
    assert_eq!(app.get("/products?q=mug").await.status(), StatusCode::OK);
    assert_eq!(app.get_as(&caller, "/me").await.status(), StatusCode::OK);
    assert_eq!(
        app.get_as(&caller, "/probe/n-plus-one").await.status(),
        StatusCode::OK
    );

    let driver = Chromedriver::start(binary)?;
    let profile = tempfile::tempdir()?;
    let browser = driver.browser(profile.path()).await?;
    let outcome = async {
        browser.goto(&app.url("/_inspector")).await?;
        browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("tr.request"))
            .await?;

        // Every request is listed; the badge is on the N+1 only.
        let rows = browser.find_all(Locator::Css("tr.request")).await?;
        assert_eq!(
            rows.len(),
            6,
            "three registrations, the search, /me and the probe"
        );
        let n_plus_one = row_with_path(&browser, "/probe/n-plus-one").await?;
        let id = n_plus_one.attr("data-id").await?.context("a data-id")?;
        assert_eq!(
            n_plus_one
                .find(Locator::Css(".badge.n-plus-one"))
                .await?
                .text()
                .await?,
            "N+1"
        );
        for path in ["/me", "/products", "/users"] {
            let row = row_with_path(&browser, path).await?;
            assert!(
                row.find_all(Locator::Css(".badge.n-plus-one"))
                    .await?
                    .is_empty(),
                "{path} has no N+1 badge"
            );
        }
        let newest = browser
            .find(Locator::Css("tr.request td.path"))
            .await?
            .text()
            .await?;
        assert_eq!(newest, "/probe/n-plus-one", "newest first");

        // A new request appears without a reload.
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
        let arrived = browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(
                "//tr[contains(@class,'request')]/td[contains(@class,'path')][.='/healthz']",
            ))
            .await?;
        assert_eq!(arrived.text().await?, "/healthz");
        let list_html = browser.source().await?;
        if let Some(dir) = std::env::var_os("INSPECTOR_SCREENSHOTS") {
            tokio::time::sleep(Duration::from_millis(2500)).await; // let the highlight fade
            std::fs::write(
                std::path::Path::new(&dir).join("inspector-list.png"),
                browser.screenshot().await?,
            )?;
        }

        // The N+1 request's page: its statements, the finding and its call site.
        row_with_path(&browser, "/probe/n-plus-one")
            .await?
            .find(Locator::Css("td.path a"))
            .await?
            .click()
            .await?;
        let heading = browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("h1"))
            .await?;
        assert!(heading.text().await?.contains("/probe/n-plus-one"));
        let statements = browser.find_all(Locator::Css("div.statement")).await?;
        assert_eq!(statements.len(), 4, "the token lookup and three user reads");
        let call_site = browser
            .find(Locator::Css(".finding .call-site"))
            .await?
            .text()
            .await?;
        assert!(
            call_site.starts_with("service::repo::users::find ("),
            "{call_site}"
        );
        let badge = browser
            .find(Locator::Css(".finding .badge.n-plus-one"))
            .await?
            .text()
            .await?;
        assert_eq!(badge, "N+1");
        let first_value = browser
            .find(Locator::Css("div.statement ol.values code"))
            .await?
            .text()
            .await?;
        assert_eq!(first_value, "'***'", "the token hash is shown redacted");
        let bars = browser.find_all(Locator::Css(".waterfall .bar")).await?;
        assert_eq!(bars.len(), 4);
        let detail_html = browser.source().await?;
        if let Some(dir) = std::env::var_os("INSPECTOR_SCREENSHOTS") {
            browser.set_window_size(1280, 1500).await?;
            std::fs::write(
                std::path::Path::new(&dir).join("inspector-detail.png"),
                browser.screenshot().await?,
            )?;
        }

        // No secret anywhere: not the bearer token, not a token hash, in the pages or the JSON.
        let list_json = app.get("/_inspector/requests").await.text().await?;
        let detail_json = app
            .get(&format!("/_inspector/requests/{id}"))
            .await
            .text()
            .await?;
        let hashes: Vec<String> = entity::api_tokens::Entity::find()
            .all(&db.conn)
            .await?
            .into_iter()
            .map(|t| t.token_hash)
            .collect();
        assert_eq!(hashes.len(), 3);
        for (what, text) in [
            ("list page", &list_html),
            ("detail page", &detail_html),
            ("list JSON", &list_json),
            ("detail JSON", &detail_json),
        ] {
            assert!(
                !text.contains(&caller.token),
                "the {what} shows the bearer token"
            );
            for hash in &hashes {
                assert!(
                    !text.contains(hash.as_str()),
                    "the {what} shows a token hash"
                );
            }
        }
        anyhow::Ok(())
    }
    .await;
    browser.close().await?;
    app.stop().await?;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_chromedriver),
    ignore = "Chromium is not configured: set TEST_CHROMEDRIVER=/usr/bin/chromedriver to run this test"
)]
async fn a_person_sees_every_request_the_n_plus_one_badge_and_its_call_site_and_no_secret() {
    mercado_testkit::run(Backend::Sqlite, look_at_the_inspector).await;
}
