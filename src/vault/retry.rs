//! Retrying Vault calls: capped exponential backoff with jitter, at least as long as the
//! server's `Retry-After`, bounded by the caller's overall deadline, which also bounds each
//! request's own timeout.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use super::http::VaultError;

/// First retry delay; doubled per attempt up to [`MAX_DELAY`].
pub const INITIAL_DELAY: Duration = Duration::from_millis(200);
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// Upper bound of one HTTP request, so one hung call cannot eat the whole deadline.
pub const MAX_REQUEST_TIME: Duration = Duration::from_secs(10);
/// Lower bound of one request's timeout near (or past) the deadline.
pub const MIN_REQUEST_TIME: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    at: Instant,
    total: Duration,
}

/// Longest deadline taken as given; a larger one from the spec is capped to it.
const MAX_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);

impl Deadline {
    pub fn after(total: Duration) -> Deadline {
        let total = total.min(MAX_DEADLINE);
        let start = Instant::now();
        Deadline {
            start,
            at: start + total,
            total,
        }
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub fn total(&self) -> Duration {
        self.total
    }

    /// The time one request may take: the rest of the deadline, capped at
    /// [`MAX_REQUEST_TIME`], and at least [`MIN_REQUEST_TIME`] so that a request started
    /// just before the deadline can still be answered.
    pub fn request_timeout(&self) -> Duration {
        self.remaining().min(MAX_REQUEST_TIME).max(MIN_REQUEST_TIME)
    }

    /// Time since the deadline was set.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
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

/// The wait before retry number `attempt` after `err`: the backoff, or the server's
/// `Retry-After` when that is longer.
pub fn delay_after(attempt: u32, err: &VaultError) -> Duration {
    backoff(attempt).max(err.retry_after.unwrap_or_default())
}

/// Runs `op` (given the timeout its request may take) until it succeeds, fails
/// permanently, or the deadline passes. `on_retry(attempt, delay, error)` is told of each
/// retry before its wait.
pub async fn retry<T, F, Fut>(
    deadline: &Deadline,
    mut on_retry: impl FnMut(u32, Duration, &VaultError),
    mut op: F,
) -> Result<T, GaveUp>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<T, VaultError>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let err = match op(deadline.request_timeout()).await {
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
        let delay = delay_after(attempt, &err).min(remaining);
        on_retry(attempt, delay, &err);
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
    fn retry_after_lengthens_the_wait() {
        let mut err = VaultError::http(429, String::new());
        assert!(delay_after(1, &err) <= INITIAL_DELAY);
        err.retry_after = Some(Duration::from_secs(3));
        assert_eq!(delay_after(1, &err), Duration::from_secs(3));
        assert!(delay_after(20, &err) >= Duration::from_secs(3));
    }

    #[test]
    fn jitter_varies() {
        let delays: std::collections::BTreeSet<_> = (0..20).map(|_| backoff(10)).collect();
        assert!(delays.len() > 1);
    }
}
