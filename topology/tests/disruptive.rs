//! The tests that break a component of the running topology on purpose — an API process
//! SIGKILLed mid-load, every connection through PgBouncer dropped, the replica stopped — and
//! bring it back with `scripts/cluster up`
//! afterwards (`TOPOLOGY_CLUSTER_SCRIPT`). `scripts/topology-test` runs this binary alone and
//! with one test thread, after the others: the SIGKILL test empties the database first, because
//! its invariants (from the fault suite, `mercado-faults`) account for every row stored.
//!
//! Ignored without a cluster: `scripts/topology-test` runs them.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use anyhow::{Context, ensure};
use mercado_faults::{
    invariants,
    load::{Fixture, LoadHandle, LoadPlan, Outcome, resend_failed_writes},
};
use mercado_topology::{APPS, Api, Topology, unique};
use reqwest::StatusCode;
use serde_json::json;

/// Every table of the application's schema, emptied (the migrations' own table kept).
async fn empty_the_database(topology: &Topology) -> anyhow::Result<()> {
    let mut db = topology.primary().await?;
    // one static statement: the table names come from the catalogue, quoted by format('%I')
    sqlx::raw_sql(
        "DO $$ BEGIN EXECUTE (SELECT 'TRUNCATE ' || string_agg(format('%I', tablename), ', ') \
         || ' RESTART IDENTITY CASCADE' FROM pg_tables \
         WHERE schemaname = 'public' AND tablename <> 'seaql_migrations'); END $$",
    )
    .execute(&mut db)
    .await
    .context("emptying the database")?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the scripts/cluster topology; scripts/topology-test runs it (alone, it empties the database)"]
async fn a_sigkilled_api_process_mid_load_is_routed_around_and_no_acknowledged_write_is_lost()
-> anyhow::Result<()> {
    let topology = Topology::from_env()?;
    empty_the_database(&topology).await?;
    let fixture = Fixture::arrange(&topology.balancer_url(), 8).await?;
    let victim = 2;
    let pid = topology.app_pid(victim)?;

    let plan = LoadPlan::new(Duration::from_secs(10));
    let load = LoadHandle::start(plan, &fixture, 7)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = load.now();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -KILL {pid} failed");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rotation = topology.in_rotation().await?;
    let mut result = load.finish().await?;

    // HAProxy answers 502 when the process it sent a request to dies before answering: the
    // request may have been applied, so it counts as unanswered (Lost), not as refused.
    let mut bad_gateway = 0;
    for record in &mut result.records {
        if record.status == Some(502) {
            bad_gateway += 1;
            record.status = None;
            record.not_delivered = false;
            record.error = Some("502 from HAProxy: the process died mid-request".to_owned());
        }
    }
    let resends = resend_failed_writes(&result.records, &fixture).await?;
    let mut db = topology.primary().await?;
    let checks = invariants::check(&mut db, &fixture, &result.records, &resends).await?;

    let total = result.records.len();
    let acked = result.records.iter().filter(|r| r.acked()).count();
    let lost = result
        .records
        .iter()
        .filter(|r| r.outcome() == Outcome::Lost)
        .count();
    // after the balancer noticed (checks every 500 ms, down after 2 failures; 1.5 s of margin)
    let settled = killed_at + Duration::from_millis(1_500);
    let after: Vec<_> = result
        .records
        .iter()
        .filter(|r| r.start >= settled)
        .collect();
    let failed_after = after
        .iter()
        .filter(|r| r.status.is_none_or(|s| s >= 500))
        .count();

    println!(
        "SIGKILL of mercado-{victim} (pid {pid}) at {:.1} s of a 10 s load of 8 clients: {total} requests, \
         {acked} acknowledged, {lost} unanswered ({bad_gateway} × 502); {} sent after the balancer settled, \
         {failed_after} of them failed; {} failed writes resent; in rotation after: {rotation:?}",
        killed_at.as_secs_f64(),
        after.len(),
        resends.len()
    );
    for check in &checks {
        println!(
            "  {} {}: {}",
            if check.passed { "ok  " } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    let heal = topology.heal().await;
    ensure!(
        checks.iter().all(|c| c.passed),
        "an invariant does not hold"
    );
    ensure!(
        !rotation.contains(&format!("mercado-{victim}")) && rotation.len() == usize::from(APPS) - 1,
        "HAProxy still routes to the killed process: {rotation:?}"
    );
    ensure!(!after.is_empty(), "no request after the kill");
    ensure!(
        failed_after == 0,
        "{failed_after} of {} requests failed after the balancer had routed around the killed process",
        after.len()
    );
    heal?;
    Ok(())
}

fn replica_dir(topology: &Topology) -> std::path::PathBuf {
    topology.cluster_dir.join("replica")
}

fn as_postgres(program: &std::path::Path) -> std::process::Command {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command.current_dir("/");
        command
    } else {
        std::process::Command::new(program)
    }
}

#[tokio::test]
#[ignore = "needs the scripts/cluster topology; scripts/topology-test runs it (alone, it stops the replica)"]
async fn with_the_replica_stopped_reads_still_succeed_from_the_primary() -> anyhow::Result<()> {
    let topology = Topology::from_env()?;
    let api = Api::new(topology.balancer_url())?;
    let seller = api.register(&unique("seller")).await?;
    let product = api.product(&seller, &unique("NOREPLICA"), "2", 5).await?;
    // the earlier tests may have logged fallbacks already: only new ones count
    let fallbacks = "reads go to the primary";
    let fallbacks_before = topology.log_lines_with(fallbacks);

    let stopped = as_postgres(&mercado_topology::pg_bin("pg_ctl"))
        .arg("-D")
        .arg(replica_dir(&topology))
        .args(["-m", "fast", "-w", "stop"])
        .status()?;
    ensure!(stopped.success(), "pg_ctl stop of the replica failed");

    // At once, before the background checks have noticed: a read the replica fails runs again
    // on the primary, so none of them may fail.
    let mut ok = 0;
    let mut failures = Vec::new();
    for n in 0..60 {
        // no x-read-after-lsn: a fresh client, which would read the replica if it were up
        let fresh = Api::new(topology.balancer_url())?;
        let path = if n % 2 == 0 {
            format!("/products/{product}")
        } else {
            format!("/users/{}", seller.id)
        };
        let answer = fresh.send(fresh.get(&path, "")).await?;
        if answer.status == StatusCode::OK {
            ok += 1;
        } else {
            failures.push((answer.status, answer.body));
        }
    }
    // a write's answer still carries an LSN, and the read after it still sees it
    let order_stock = api
        .send(api.post(
            "/products",
            &seller.token,
            &json!({"sku": unique("AFTER"), "name": "After the replica", "price": "1", "stock": 3}),
        ))
        .await?
        .expect(StatusCode::CREATED)?;
    let id = order_stock["id"].as_i64().context("a product id")?;
    let read_back = api.send(api.get(&format!("/products/{id}"), "")).await?;

    // every process's background check says so, within its interval and timeout (0.5 s + 1 s)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut warned =
        processes_that_logged_since(&fallbacks_before, &topology.log_lines_with(fallbacks));
    while warned < usize::from(APPS) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        warned =
            processes_that_logged_since(&fallbacks_before, &topology.log_lines_with(fallbacks));
    }
    println!(
        "replica stopped: {ok} of 60 reads answered 200 from the moment it stopped; a write read back at once: {}; \
         {warned} of {APPS} processes logged the fallback at WARN",
        read_back.status
    );
    let heal = topology.heal().await;
    ensure!(ok == 60, "reads failed with the replica down: {failures:?}");
    ensure!(read_back.status == StatusCode::OK);
    ensure!(
        warned == usize::from(APPS),
        "only {warned} of {APPS} processes logged the fallback within 10 s"
    );
    heal?;
    Ok(())
}

/// How many processes logged more lines than `before` (both from [`Topology::log_lines_with`]).
fn processes_that_logged_since(before: &[usize], now: &[usize]) -> usize {
    before.iter().zip(now).filter(|(b, n)| n > b).count()
}

/// What the health guard logs when its probe cannot open a fresh connection.
const PROBE_FAILED: &str = "a fresh connection to the database failed";

#[tokio::test]
#[ignore = "needs the scripts/cluster topology; scripts/topology-test runs it (alone, it drops every connection through PgBouncer)"]
async fn after_pgbouncer_drops_every_connection_the_processes_recover_and_stay_up_past_the_bound()
-> anyhow::Result<()> {
    let topology = Topology::from_env()?;
    let api = Api::new(topology.balancer_url())?;
    let seller = api.register(&unique("seller")).await?;
    let product = api.product(&seller, &unique("KILLED"), "2", 5).await?;
    let probe_failures_before = topology.log_lines_with(PROBE_FAILED);
    // what the retry loop logs when a statement met a dead connection and runs again
    let reconnected = "running it again on a fresh connection";
    let trouble_before = topology.log_lines_with(reconnected);

    // Every client and server connection of the database dropped at once, then let in again:
    // each process's pooled connections are dead, and the first statements on them fail.
    topology
        .pgbouncer_admin(&["KILL mercado", "RESUME mercado"])
        .await?;
    let resumed = std::time::Instant::now();

    // Past the guard's bound (the acquire timeout, 5 s): a guard whose probe could not connect
    // would be failing every request fast by then.
    let settled = Duration::from_secs(1);
    let (mut early, mut early_failed, mut late, mut failures) = (0, 0, 0, Vec::new());
    while resumed.elapsed() < Duration::from_secs(8) {
        let sent_at = resumed.elapsed();
        let answer = api
            .send(api.get(&format!("/products/{product}"), ""))
            .await?;
        if sent_at < settled {
            early += 1;
            early_failed += usize::from(answer.status != StatusCode::OK);
        } else {
            late += 1;
            if answer.status != StatusCode::OK {
                failures.push((sent_at, answer.status, answer.body));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let write = api
        .send(api.post(
            "/products",
            &seller.token,
            &json!({"sku": unique("AFTERKILL"), "name": "After the kill", "price": "1", "stock": 1}),
        ))
        .await?;
    let rotation = topology.in_rotation().await?;
    let probe_failures = processes_that_logged_since(
        &probe_failures_before,
        &topology.log_lines_with(PROBE_FAILED),
    );
    let troubled =
        processes_that_logged_since(&trouble_before, &topology.log_lines_with(reconnected));
    println!(
        "PgBouncer KILL + RESUME: {troubled} of {APPS} processes saw a dead connection; {late} reads \
         from 1 s to 8 s after, {} failed (in the first second, not judged: {early_failed} of {early}); \
         a write after: \
         {}; {probe_failures} processes' health probes failed; in rotation: {rotation:?}",
        failures.len(),
        write.status
    );
    let heal = topology.heal().await;
    ensure!(
        troubled > 0,
        "no process saw a dead connection: the kill tested nothing"
    );
    ensure!(
        probe_failures == 0,
        "a health probe could not connect through PgBouncer"
    );
    ensure!(
        failures.is_empty(),
        "reads failed after the kill: {failures:?}"
    );
    ensure!(
        write.status == StatusCode::CREATED,
        "the write after the kill failed: {write:?}"
    );
    ensure!(
        rotation.len() == usize::from(APPS),
        "not every process is in rotation: {rotation:?}"
    );
    heal?;
    Ok(())
}

/// Runs `sql` on the replica as the superuser.
async fn on_replica(topology: &Topology, sql: &'static str) -> anyhow::Result<()> {
    let mut replica = topology.replica().await?;
    sqlx::query(sql).execute(&mut replica).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the scripts/cluster topology; scripts/topology-test runs it (alone, it pauses the replica's replay)"]
async fn a_replica_lagging_beyond_the_bound_gets_no_reads_and_every_read_stays_fresh()
-> anyhow::Result<()> {
    let topology = Topology::from_env()?;
    let api = Api::new(topology.balancer_url())?;
    let seller = api.register(&unique("seller")).await?;

    on_replica(&topology, "SELECT pg_wal_replay_pause()").await?;
    // Writes keep the primary moving while the replica stands still; each is read back at once
    // by a fresh client without the header (which a healthy replica would serve), and by the
    // writer with it. Past the 5 s bound both must come from the primary.
    let outcome = async {
        let started = std::time::Instant::now();
        let (mut stale_fresh, mut stale_own, mut rounds, mut fresh_after_bound) = (0, 0, 0, 0);
        let mut price = 100_u64;
        while started.elapsed() < Duration::from_secs(8) {
            price += 1;
            let sku = unique("LAGW");
            let written = api
                .send(api.post(
                    "/products",
                    &seller.token,
                    &json!({"sku": sku, "name": "lag", "price": format!("{price}"), "stock": 1}),
                ))
                .await?
                .expect(StatusCode::CREATED)?;
            let id = written["id"].as_i64().context("a product id")?;
            let own = api.send(api.get(&format!("/products/{id}"), "")).await?;
            if own.status != StatusCode::OK {
                stale_own += 1;
            }
            let fresh = Api::new(topology.balancer_url())?;
            let other = fresh
                .send(fresh.get(&format!("/products/{id}"), ""))
                .await?;
            let past_bound = started.elapsed() > Duration::from_secs(6);
            if other.status != StatusCode::OK {
                if past_bound {
                    stale_fresh += 1;
                }
            } else if past_bound {
                fresh_after_bound += 1;
            }
            rounds += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok((rounds, stale_own, stale_fresh, fresh_after_bound))
    }
    .await;
    // always resume, whatever happened
    let resumed = on_replica(&topology, "SELECT pg_wal_replay_resume()").await;
    let (rounds, stale_own, stale_fresh, fresh_after_bound) = outcome?;
    resumed?;

    let lag_warnings = (1..=APPS)
        .map(|n| {
            std::fs::read_to_string(topology.cluster_dir.join(format!("logs/mercado-{n}.log")))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("serves no reads until it recovers") && l.contains("lag:"))
                .count()
        })
        .filter(|&count| count > 0)
        .count();
    println!(
        "replica replay paused 8 s under writes: {rounds} writes; read back with the LSN: {} of {rounds} seen; by fresh clients without it after the 5 s bound (+1 s): {fresh_after_bound} seen, {stale_fresh} stale; {lag_warnings} of {APPS} processes logged the replica as lagging",
        rounds - stale_own
    );
    ensure!(
        stale_own == 0,
        "{stale_own} own writes not seen with their LSN"
    );
    ensure!(
        stale_fresh == 0,
        "{stale_fresh} reads served stale past the lag bound"
    );
    ensure!(fresh_after_bound > 0, "no read after the bound");
    ensure!(
        lag_warnings == usize::from(APPS),
        "not every process logged the lag"
    );
    Ok(())
}
