//! Running a whole transaction again when the database aborted it to stay consistent.
//!
//! PostgreSQL may abort a transaction with a serialization failure (40001) or pick it as a
//! deadlock victim (40P01), and SQLite may report its file busy; each time, nothing was applied
//! and the *whole* transaction may simply run again — re-reading what it read, since the world
//! changed. [`with_retry`] does that a bounded number of times, sleeping between attempts with
//! exponential backoff and "full jitter" (a random delay between zero and the backoff ceiling),
//! which spreads out the transactions that collided so that they do not collide again in step.
//! Only [`ServiceError::is_retryable`] errors are retried: a constraint violation or a business
//! refusal would fail the same way every time.
//!
//! The loop is hand-written rather than taken from a retry crate because the policy is a dozen
//! lines, and because the decision "retry or not" is the service's own error classification.

use std::{future::Future, time::Duration};

use rand::Rng;

use crate::ServiceError;

/// How often, and how patiently, to run a transaction again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; at least 1.
    pub max_attempts: u32,
    /// The backoff ceiling before the second attempt; it doubles for each later one.
    pub base_delay: Duration,
    /// No backoff ceiling grows past this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
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

/// Runs `op` — a whole transaction, begun and committed inside it — until it succeeds, fails
/// with an error that is not retryable, or has been tried `policy.max_attempts` times; then
/// returns its last result. Each retry is logged at WARN.
pub async fn with_retry<T, F, Fut>(policy: RetryPolicy, mut op: F) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        match op().await {
            Err(error) if error.is_retryable() && attempt < max_attempts => {
                // The thread-local generator is not `Send`; it is dropped before the await.
                let delay = policy.jittered_delay(attempt, &mut rand::rng());
                tracing::warn!(
                    attempt,
                    max_attempts,
                    delay_ms = delay.as_millis() as u64,
                    error = %error,
                    cause = ?std::error::Error::source(&error).map(ToString::to_string),
                    "transaction aborted by the database; running it again"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            result => return result,
        }
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
