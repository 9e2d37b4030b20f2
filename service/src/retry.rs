//! Running a whole transaction again when it certainly changed nothing.
//!
//! Two kinds of failure leave nothing applied and may simply run again — the *whole*
//! transaction, re-reading what it read, since the world changed:
//!
//! * the database aborted it to stay consistent: a serialization failure (40001), a deadlock
//!   victim (40P01), SQLite's file busy ([`ServiceError::is_retryable`]). These are retried a
//!   bounded number of times ([`RetryPolicy::max_attempts`]);
//! * the connection was lost before COMMIT was sent ([`ServiceError::ConnectionLost`]): the
//!   server restarted, crashed or killed the backend. The next attempt takes a fresh connection
//!   (waiting for one, up to the pool's acquire timeout, while the server comes back). These are
//!   retried for as long as [`RetryPolicy::reconnect_within`] allows since the first loss —
//!   a bound in time, not in attempts, since a pool may hand out several dead connections in a
//!   row — and never once [`crate::health`] knows the database is down. Only for reads and for
//!   writes that commit through [`crate::db::commit`] and ask for it
//!   ([`RetryPolicy::reconnecting`]): a write that calls `txn.commit()` itself cannot tell a
//!   loss during its COMMIT from one before it.
//!
//! A connection lost *during* COMMIT ([`ServiceError::CommitOutcomeUnknown`]) is different: the
//! transaction may have committed. [`with_retry`], for writes, never runs it again;
//! [`with_retry_idempotent`] does, for operations that are safe to repeat — reads, and an order,
//! deposit or transfer with an idempotency key, whose second run finds the row the first one
//! committed.
//!
//! Between attempts the loop sleeps with exponential backoff and "full jitter" (a random delay
//! between zero and the backoff ceiling), which spreads out the transactions that collided so
//! that they do not collide again in step. Each retry is logged at WARN with its attempt and
//! cause. Everything else — a constraint violation, a business refusal — would fail the same
//! way every time and is returned at once.
//!
//! The loop is hand-written rather than taken from a retry crate because the policy is a few
//! dozen lines, and because the decision "retry or not" is the service's own error
//! classification.

use std::{future::Future, time::Duration};

// tokio's clock: the same as std's, but one that tests can pause.
use tokio::time::Instant;

use rand::Rng;

use crate::{ServiceError, health};

/// How often, and how patiently, to run a transaction again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all for contention failures, the first included; at least 1.
    pub max_attempts: u32,
    /// The backoff ceiling before the second attempt; it doubles for each later one.
    pub base_delay: Duration,
    /// No backoff ceiling grows past this.
    pub max_delay: Duration,
    /// Whether a write whose connection was lost before COMMIT runs again, and for how long
    /// since the first loss. `None` (the default) for a write that commits with
    /// `txn.commit()`: it cannot tell a loss before COMMIT from one during it, so it must not
    /// run again. `Some` ([`RetryPolicy::reconnecting`]) for one that commits through
    /// [`crate::db::commit`], which reports a loss during COMMIT apart. Reads
    /// ([`with_retry_idempotent`]) always run again. Inside a request the database health
    /// guard's bound replaces the duration (the pool's acquire timeout, see [`crate::health`]),
    /// so that both speak of one bound.
    pub reconnect_within: Option<Duration>,
}

/// How long lost connections are retried when neither the policy nor a guard says.
pub const RECONNECT_WITHIN: Duration = Duration::from_secs(5);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(500),
            reconnect_within: None,
        }
    }
}

impl RetryPolicy {
    /// The default policy, for a write that commits through [`crate::db::commit`]: a
    /// connection lost before COMMIT runs it again, for up to [`RECONNECT_WITHIN`] (or the
    /// guard's bound).
    pub fn reconnecting() -> RetryPolicy {
        RetryPolicy {
            reconnect_within: Some(RECONNECT_WITHIN),
            ..RetryPolicy::default()
        }
    }

    /// The longest sleep after failed attempt number `attempt` (1-based):
    /// `min(max_delay, base_delay × 2^(attempt − 1))`.
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1_u32 << doublings)
            .min(self.max_delay)
    }

    /// A random sleep in `0..=backoff_ceiling(attempt)` ("full jitter").
    pub fn jittered_delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.backoff_ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }
}

/// Whether the operation may be repeated even when it may already have committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// A write: a commit of unknown outcome is returned, never run again.
    OnlyIfNothingApplied,
    /// A read, or a write that finds its own earlier commit: a commit of unknown outcome is
    /// run again like a connection lost before COMMIT.
    EvenAfterCommit,
}

/// Runs `op` — a whole transaction, begun and committed inside it — until it succeeds or fails
/// in a way that running it again cannot help or is not allowed to; then returns its last
/// result. Contention is retried up to `policy.max_attempts` times; a connection lost before
/// COMMIT for up to `policy.reconnect_within`; a commit of unknown outcome never (see
/// [`with_retry_idempotent`]). Each retry is logged at WARN.
pub async fn with_retry<T, F, Fut>(policy: RetryPolicy, op: F) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    run(policy, Repeat::OnlyIfNothingApplied, op).await
}

/// [`with_retry`] for an operation that is safe to run twice: a read, or a write that
/// recognises its own earlier commit (an order with an idempotency key). A connection lost
/// during COMMIT is retried like one lost before it.
pub async fn with_retry_idempotent<T, F, Fut>(policy: RetryPolicy, op: F) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    run(policy, Repeat::EvenAfterCommit, op).await
}

async fn run<T, F, Fut>(policy: RetryPolicy, repeat: Repeat, mut op: F) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let may_reconnect = repeat == Repeat::EvenAfterCommit || policy.reconnect_within.is_some();
    let reconnect_within = health::current_bound()
        .or(policy.reconnect_within)
        .unwrap_or(RECONNECT_WITHIN);
    let mut attempt = 1;
    let mut contended = 1;
    let mut first_loss: Option<Instant> = None;
    loop {
        // Each run is its own attempt: the statements of one that fails and is run again are
        // marked retried, so the N+1 detector never takes the retry for a repeated query.
        let (outcome, this_attempt) = sql_observe::attempt(op()).await;
        let error = match outcome {
            Ok(value) => {
                if first_loss.is_some() {
                    tracing::info!(attempt, "ran again on a fresh connection, and succeeded");
                }
                return Ok(value);
            }
            Err(error) => error,
        };
        if error.is_connectivity() {
            health::report_trouble();
        }
        let lost = may_reconnect
            && (error.is_connection_lost()
                || (repeat == Repeat::EvenAfterCommit
                    && matches!(error, ServiceError::CommitOutcomeUnknown(_))));
        let reason = if error.is_retryable() && contended < max_attempts {
            contended += 1;
            "transaction aborted by the database; running it again"
        } else if lost {
            let since = *first_loss.get_or_insert_with(Instant::now);
            if since.elapsed() >= reconnect_within || health::is_down() {
                tracing::warn!(
                    attempt,
                    lost_for_ms = since.elapsed().as_millis() as u64,
                    error = %error,
                    cause = ?std::error::Error::source(&error).map(ToString::to_string),
                    "connection lost again; giving up, the database has been unreachable too long"
                );
                return Err(error);
            }
            "connection lost before the outcome was known to matter; running it again on a \
             fresh connection"
        } else {
            return Err(error);
        };
        this_attempt.mark_retried();
        // The thread-local generator is not `Send`; it is dropped before the await.
        let delay = policy.jittered_delay(attempt, &mut rand::rng());
        tracing::warn!(
            attempt,
            max_attempts,
            delay_ms = delay.as_millis() as u64,
            error = %error,
            cause = ?std::error::Error::source(&error).map(ToString::to_string),
            "{reason}"
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use sea_orm::DbErr;

    use super::*;

    const NO_WAIT: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        reconnect_within: Some(Duration::from_secs(5)),
    };

    fn contended() -> ServiceError {
        ServiceError::Contended(DbErr::Custom("could not serialize access".into()))
    }

    #[tokio::test]
    async fn a_retryable_failure_is_tried_again_up_to_the_attempt_limit() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = with_retry(NO_WAIT, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(contended())
        })
        .await;
        assert!(matches!(result, Err(ServiceError::Contended(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_retry_that_succeeds_returns_its_value() {
        let calls = AtomicU32::new(0);
        let result = with_retry(NO_WAIT, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(contended()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    fn lost() -> ServiceError {
        ServiceError::ConnectionLost(DbErr::Custom("terminating connection (57P01)".into()))
    }

    fn unknown() -> ServiceError {
        ServiceError::CommitOutcomeUnknown(DbErr::Custom("broken pipe during COMMIT".into()))
    }

    #[tokio::test]
    async fn a_connection_lost_before_commit_runs_again_more_often_than_the_attempt_limit() {
        let calls = AtomicU32::new(0);
        let result = with_retry(NO_WAIT, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                // A pool may hand out several dead connections in a row.
                0..8 => Err(lost()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 8);
    }

    #[tokio::test]
    async fn a_write_that_commits_without_db_commit_is_not_run_again_after_a_lost_connection() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            reconnect_within: None,
            ..NO_WAIT
        };
        let result: Result<(), _> = with_retry(policy, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(lost())
        })
        .await;
        assert!(matches!(result, Err(ServiceError::ConnectionLost(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_write_whose_commit_outcome_is_unknown_is_never_run_again() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = with_retry(NO_WAIT, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(unknown())
        })
        .await;
        assert!(matches!(result, Err(ServiceError::CommitOutcomeUnknown(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_idempotent_operation_whose_commit_outcome_is_unknown_runs_again() {
        let calls = AtomicU32::new(0);
        let result = with_retry_idempotent(NO_WAIT, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(unknown()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 1);
    }

    // Paused time: the clock jumps through the backoff sleeps.
    #[tokio::test(start_paused = true)]
    async fn connection_loss_retries_stop_once_the_reconnect_bound_has_passed() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(100),
            reconnect_within: Some(Duration::from_secs(1)),
            ..RetryPolicy::default()
        };
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = with_retry(policy, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            // Each attempt waits for a connection a while before losing it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err(lost())
        })
        .await;
        assert!(matches!(result, Err(ServiceError::ConnectionLost(_))));
        assert!(calls.load(Ordering::SeqCst) > 1, "it was retried");
        // The first attempt, the bound, and the one attempt that began inside it.
        assert!(started.elapsed() <= Duration::from_millis(300 + 1000 + 100 + 300));
    }

    #[tokio::test]
    async fn a_failure_that_is_not_retryable_is_returned_at_once() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = with_retry(NO_WAIT, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ServiceError::EmailTaken)
        })
        .await;
        assert!(matches!(result, Err(ServiceError::EmailTaken)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_policy_of_zero_attempts_still_runs_once() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_attempts: 0,
            ..NO_WAIT
        };
        let _: Result<(), _> = with_retry(policy, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(contended())
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_backoff_ceiling_doubles_per_attempt_and_stops_at_the_maximum() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<_> = (1..=8)
            .map(|attempt| policy.backoff_ceiling(attempt).as_millis())
            .collect();
        assert_eq!(ceilings, [10, 20, 40, 80, 160, 320, 500, 500]);
        assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn a_jittered_delay_stays_between_zero_and_the_ceiling_and_varies() {
        let policy = RetryPolicy::default();
        let mut rng = rand::rng();
        for attempt in 1..=6 {
            let ceiling = policy.backoff_ceiling(attempt);
            let delays: Vec<_> = (0..200)
                .map(|_| policy.jittered_delay(attempt, &mut rng))
                .collect();
            assert!(delays.iter().all(|delay| *delay <= ceiling), "{attempt}");
            let distinct: std::collections::HashSet<_> = delays.iter().collect();
            assert!(distinct.len() > 1, "full jitter draws different delays");
        }
    }
}
