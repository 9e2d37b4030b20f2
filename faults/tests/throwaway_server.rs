//! The throwaway server itself: it starts on its own port, survives a stop and a crash with its
//! data, kills only the backends it is asked to, and leaves nothing behind.

use std::path::PathBuf;
use std::sync::mpsc::{Sender, channel};
use std::time::Duration;

use mercado_faults::pg::PgInstance;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

async fn app_session(pg: &PgInstance, name: &str) -> anyhow::Result<PgConnection> {
    let options = PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(pg.port())
        .username("postgres")
        .database("mercado")
        .application_name(name);
    Ok(PgConnection::connect_with(&options).await?)
}

#[tokio::test]
async fn a_throwaway_server_keeps_its_data_across_a_stop_and_a_crash_and_leaves_nothing_behind()
-> anyhow::Result<()> {
    let mut pg = PgInstance::start_new().await?;
    assert_ne!(pg.port(), 5432, "never the system server's port");
    let dir = pg.dir().to_owned();
    let mut db = pg.admin().await?;
    sqlx::query("CREATE TABLE kept (n int)")
        .execute(&mut db)
        .await?;
    sqlx::query("INSERT INTO kept VALUES ($1)")
        .bind(7_i32)
        .execute(&mut db)
        .await?;
    db.close().await?;

    pg.stop()?;
    assert!(pg.admin().await.is_err(), "a stopped server answers");
    pg.start().await?;
    pg.crash()?;
    pg.start().await?;
    let mut db = pg.admin().await?;
    let n: i32 = sqlx::query_scalar("SELECT n FROM kept")
        .fetch_one(&mut db)
        .await?;
    assert_eq!(n, 7);

    let mut victim = app_session(&pg, "victim").await?;
    let mut bystander = app_session(&pg, "bystander").await?;
    assert_eq!(pg.terminate_backends("victim").await?, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        sqlx::query("SELECT 1").execute(&mut victim).await.is_err(),
        "the victim lives"
    );
    sqlx::query("SELECT 1").execute(&mut bystander).await?;
    sqlx::query("SELECT 1").execute(&mut db).await?;

    drop(pg);
    assert!(!dir.exists(), "{} is left behind", dir.display());
    Ok(())
}

async fn start_a_server_then_panic(seen: Sender<(PathBuf, u16)>) -> anyhow::Result<()> {
    let pg = PgInstance::start_new().await?;
    seen.send((pg.dir().to_owned(), pg.port()))?;
    panic!("a test fails with its server running");
}

#[test]
fn a_throwaway_server_is_removed_when_its_test_panics() -> anyhow::Result<()> {
    let (seen, started) = channel();
    let outcome = std::thread::spawn(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(start_a_server_then_panic(seen))
    })
    .join();
    assert!(outcome.is_err(), "the thread was meant to panic");
    let (dir, port) = started.recv()?;
    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something still listens on {port}"
    );
    Ok(())
}
