//! Capped exponential backoff with jitter, bounded by the agent's overall deadline.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use super::log::Log;
use super::vault::VaultError;

/// First retry delay; doubled per attempt up to [`MAX_DELAY`].
pub const INITIAL_DELAY: Duration = Duration::from_millis(200);
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// Upper bound of one HTTP request, so one hung call cannot eat the whole deadline.
pub const MAX_REQUEST_TIME: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    total: Duration,
}

/// Longest deadline taken as given; a larger one from the spec is capped to it.
const MAX_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);

impl Deadline {
    pub fn after(total: Duration) -> Deadline {
        let total = total.min(MAX_DEADLINE);
        Deadline {
            at: Instant::now() + total,
            total,
        }
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub fn total(&self) -> Duration {
        self.total
    }

    /// The time one request may take: the rest of the deadline, capped, never zero.
    pub fn request_timeout(&self) -> Duration {
        self.remaining()
            .min(MAX_REQUEST_TIME)
            .max(Duration::from_millis(500))
    }
}

/// How a retried operation ended when it did not succeed.
#[derive(Debug)]
pub enum GaveUp {
    /// A failure that retrying cannot fix.
    Permanent(VaultError),
    /// Transient failures until the deadline passed.
    Deadline { attempts: u32, last: VaultError },
}

/// Delay before retry number `attempt` (1-based): half of the capped exponential delay
/// plus a random part of the other half, so many pods starting at once spread out.
pub fn backoff(attempt: u32) -> Duration {
    let exp = INITIAL_DELAY.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(MAX_DELAY);
    let half = capped / 2;
    let jitter = random_u64() % (half.as_millis() as u64 + 1);
    half + Duration::from_millis(jitter)
}

/// A random number from the standard library's per-process hash keys; jitter needs no more.
pub(crate) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    hasher.finish()
}

/// Runs `op` until it succeeds, fails permanently, or the deadline passes. Each retry is
/// logged as one `warn` line with `fields` plus the attempt, the delay and the error.
pub async fn retry<T, F, Fut>(
    deadline: &Deadline,
    log: &Log,
    step: &str,
    fields: &[(&str, &dyn std::fmt::Display)],
    mut op: F,
) -> Result<T, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, VaultError>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let err = match op().await {
            Ok(value) => return Ok(value),
            Err(err) if !err.is_transient() => return Err(GaveUp::Permanent(err)),
            Err(err) => err,
        };
        let remaining = deadline.remaining();
        if remaining.is_zero() {
            return Err(GaveUp::Deadline {
                attempts: attempt,
                last: err,
            });
        }
        let delay = backoff(attempt).min(remaining);
        let mut all: Vec<(&str, &dyn std::fmt::Display)> = fields.to_vec();
        let delay_ms = delay.as_millis();
        all.push(("attempt", &attempt));
        all.push(("retry_in_ms", &delay_ms));
        all.push(("error", &err));
        log.warn(step, "transient failure, retrying", &all);
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..40 {
            let d = backoff(attempt);
            let exp = INITIAL_DELAY.saturating_mul(1 << (attempt - 1).min(16));
            let cap = exp.min(MAX_DELAY);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(1) <= INITIAL_DELAY);
        assert!(backoff(30) >= MAX_DELAY / 2);
    }

    #[test]
    fn huge_deadline_is_capped() {
        let d = Deadline::after(Duration::from_secs(u64::MAX));
        assert_eq!(d.total(), MAX_DEADLINE);
    }

    #[test]
    fn jitter_varies() {
        let delays: std::collections::BTreeSet<_> = (0..20).map(|_| backoff(10)).collect();
        assert!(delays.len() > 1);
    }
}
