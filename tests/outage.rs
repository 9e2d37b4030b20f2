//! The database taken away and given back, with the application in process: `/readyz` says so
//! within its bound and recovers by itself, and once the database has been unreachable for
//! longer than the outage bound (the acquire timeout) requests are answered 503 at once instead
//! of each waiting for a connection. Needs PostgreSQL's server programs: the server is a
//! throwaway one (`mercado-faults`), stopped and started by the test.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use mercado::{
    settings::Settings,
    startup::{Application, DemoData, ServeOptions},
};
use mercado_faults::pg::PgInstance;
use reqwest::StatusCode;
use tokio::sync::oneshot;

/// The outage bound in this test: short, so that the test is.
const BOUND: Duration = Duration::from_secs(2);

/// `/readyz` answers within about a second; this leaves room for a busy machine.
const READYZ_DEADLINE: Duration = Duration::from_secs(3);

async fn readyz(client: &reqwest::Client, base: &str) -> anyhow::Result<(StatusCode, Duration)> {
    let started = Instant::now();
    let response = client.get(format!("{base}/readyz")).send().await?;
    Ok((response.status(), started.elapsed()))
}

/// Polls `/readyz` until it answers `status`, at most `within`; every answer within its
/// deadline.
async fn until_readyz(
    client: &reqwest::Client,
    base: &str,
    status: StatusCode,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let (answered, took) = readyz(client, base).await?;
        anyhow::ensure!(
            took < READYZ_DEADLINE,
            "/readyz took {took:?} to answer {answered}"
        );
        if answered == status {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "/readyz still {answered} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "runs with the PostgreSQL tests (it needs PostgreSQL's server programs): set TEST_POSTGRES_URL"
)]
async fn readyz_follows_the_database_and_requests_fail_fast_once_it_is_gone_past_the_bound()
-> anyhow::Result<()> {
    let mut pg = PgInstance::start_new().await?;
    let mut settings = Settings::default();
    settings.database.url = pg.database_url().into();
    settings.database.acquire_timeout = BOUND;
    settings.server.listen_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let options = ServeOptions {
        migrate: true,
        demo_data: DemoData::SkipQuietly,
    };
    let application = Application::build(settings, options).await?;
    let base = format!("http://{}", application.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    until_readyz(&client, &base, StatusCode::OK, Duration::from_secs(5)).await?;
    pg.stop()?;
    until_readyz(
        &client,
        &base,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
    )
    .await?;

    // Past the bound (and a probe or two), a request that needs the database is refused at once.
    tokio::time::sleep(BOUND + Duration::from_secs(1)).await;
    let started = Instant::now();
    let response = client.get(format!("{base}/products/1")).send().await?;
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert!(
        took < BOUND,
        "answered in {took:?}, not faster than waiting for a connection"
    );
    let liveness = client.get(format!("{base}/healthz")).send().await?;
    assert_eq!(
        liveness.status(),
        StatusCode::OK,
        "liveness is not readiness"
    );

    pg.start().await?;
    until_readyz(&client, &base, StatusCode::OK, Duration::from_secs(10)).await?;
    let response = client.get(format!("{base}/products/1")).send().await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "served again");

    let _ = stop.send(());
    server.await??;
    Ok(())
}
