//! Live mode (SPEC 2.1): after the first complete fetch the agent stays as the pod's native
//! sidecar. It keeps its token valid (renewal, then a new login with the current projected
//! service-account token), reads KV secrets again every interval with jitter, renews
//! leases and re-issues credentials before a lease or its max TTL runs out, writes only
//! changed files (atomically), keeps the last good files through any Vault fault, and on
//! SIGTERM revokes the pod's leases and its token.
//!
//! The Vault calls are the thin ones of [`super::vault::Vault`]; the schedule is here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::certificate::{self, Validity};
use super::format::{check_whole, Sink};
use super::log::Log;
use super::metrics::Metrics;
use super::templates::{Evaluated, Parsed};
use super::vault::{Fetched, Lease, TokenGrant, Vault, VaultError};
use super::{
    all_outputs, copy_binary, fetch_all, login, output_ready, plan_outputs, read_token,
    resolved_params, together_names, write, write_units, AgentError, Answers, Output, WriteUnit,
};
use crate::pod::agent_spec::{AgentSpec, Content, LiveSpec, MAX_HELD_BYTES, READY_FILE_NAME};
use crate::vault::http::Budget;
use crate::vault::retry::{backoff, delay_after, random_u64, Deadline, MAX_REQUEST_TIME};

/// Set by SIGTERM and SIGINT.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// How often a sleep looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Jitter added to each refresh interval: up to this fraction of it.
const JITTER_PERCENT: u64 = 10;
/// Time a Vault call may take while stopping (the kubelet's grace period is 30 s).
const STOP_REQUEST_TIME: Duration = Duration::from_secs(5);
/// For a token or lease without expiry.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// When a TTL of `seconds` is renewed: after two thirds of it (a TTL of any size, even
/// one no Vault sends, gives a time and never an overflow).
fn renew_after(seconds: u64) -> Duration {
    if seconds == 0 {
        return NEVER;
    }
    let millis = u64::try_from(u128::from(seconds) * 2000 / 3).unwrap_or(u64::MAX);
    Duration::from_millis(millis).clamp(Duration::from_millis(500), NEVER)
}

/// `interval` (at most [`NEVER`]) plus up to [`JITTER_PERCENT`] of it, so replicas spread out.
fn jittered(interval: Duration) -> Duration {
    let interval = interval.min(NEVER);
    let spread =
        u64::try_from(interval.as_millis() * u128::from(JITTER_PERCENT) / 100).unwrap_or(u64::MAX);
    interval.saturating_add(Duration::from_millis(
        random_u64() % spread.saturating_add(1),
    ))
}

/// `now` plus `delay`, at most [`NEVER`] ahead: durations from Vault or the spec never
/// overflow the clock.
fn after(now: Instant, delay: Duration) -> Instant {
    // A year past a monotonic clock reading always fits; `now` is the fallback of a
    // clock that cannot say so, never reached.
    now.checked_add(delay.min(NEVER)).unwrap_or(now)
}

/// The refresh interval of the spec: at least a second, so that a spec render did not
/// write (render refuses zero) cannot make the sidecar read Vault in a tight loop.
fn refresh_interval(settings: &LiveSpec) -> Duration {
    Duration::from_secs(settings.refresh_seconds.max(1))
}

/// Sleeps until `until`, or until a stop is requested.
async fn sleep_until(until: Instant) {
    while !stopping() {
        let now = Instant::now();
        if now >= until {
            return;
        }
        tokio::time::sleep(until.saturating_duration_since(now).min(STOP_POLL)).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenStep {
    Renew,
    Login,
}

struct TokenClock {
    step: TokenStep,
    due: Instant,
    /// The TTL a fresh login gives; a renewal that gives less has reached the max TTL.
    full_ttl: u64,
    attempt: u32,
}

impl TokenClock {
    fn after_login(grant: &TokenGrant) -> TokenClock {
        TokenClock {
            step: if grant.renewable {
                TokenStep::Renew
            } else {
                TokenStep::Login
            },
            due: after(Instant::now(), renew_after(grant.ttl)),
            full_ttl: grant.ttl,
            attempt: 0,
        }
    }
}

struct LeaseClock {
    lease: Lease,
    expires: Instant,
    due: Instant,
    /// Read new credentials at `due` instead of renewing.
    reissue: bool,
    attempt: u32,
}

impl LeaseClock {
    fn new(lease: Lease) -> LeaseClock {
        let now = Instant::now();
        LeaseClock {
            expires: after(now, Duration::from_secs(lease.duration)),
            due: after(now, renew_after(lease.duration)),
            reissue: !lease.renewable,
            lease,
            attempt: 0,
        }
    }
}

/// A certificate's schedule: issued again at `due` (see [`certificate::renewal_time`]).
struct CertClock {
    validity: Validity,
    due: Instant,
    attempt: u32,
}

/// The `Instant` of a Unix time.
fn instant_of(unix: i64) -> Instant {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let now = Instant::now();
    if unix >= now_unix {
        now + Duration::from_secs((unix - now_unix) as u64)
    } else {
        now.checked_sub(Duration::from_secs((now_unix - unix) as u64))
            .unwrap_or(now)
    }
}

struct Live<'a> {
    spec: &'a AgentSpec,
    /// The spec's templates, parsed.
    parsed: &'a Parsed,
    settings: &'a LiveSpec,
    log: &'a Log,
    vault: Arc<Vault>,
    secrets: Vec<Fetched>,
    /// Each template's output over the secrets as they are now, or why it has none (then
    /// its files keep their last good content).
    evaluated: Evaluated,
    /// What the secrets' data and the templates' outputs may take in memory.
    budget: Budget,
    /// Per secret: its lease, for leased secrets.
    leases: Vec<Option<LeaseClock>>,
    /// Per secret: its certificate's schedule, for certificates.
    certs: Vec<Option<CertClock>>,
    /// Leases replaced by re-issued ones, until they expire: revoked on stop.
    retired: Vec<(Lease, Instant)>,
    token: TokenClock,
    kv_due: Instant,
    kv_attempt: u32,
    metrics: Metrics,
}

/// Runs the sidecar: the first fetch (all or nothing, within the deadline, as the one-shot
/// agent), the ready marker for the startup probe, then the refresh loop until SIGTERM.
pub async fn run(
    spec: &AgentSpec,
    parsed: &Parsed,
    settings: &LiveSpec,
    log: &Log,
    deadline: Deadline,
    jwt: Zeroizing<String>,
) -> Result<(), AgentError> {
    let handler = request_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
    let metrics = Metrics::serve(spec, log);
    let conn = &spec.vault;
    let mut vault =
        Vault::new(conn).map_err(|e| AgentError::environment("connect", e.to_string()))?;
    let grant = login(&vault, conn, &jwt, &deadline, log).await?;
    drop(jwt);
    metrics.token(grant.ttl);
    let token = TokenClock::after_login(&grant);
    vault
        .set_token(grant.token)
        .map_err(|e| AgentError::environment("login", e.to_string()))?;
    let vault = Arc::new(vault);
    let secrets = fetch_all(spec, log, &deadline, &vault).await?;
    // The budget of the data held from now on: the first fetch's (which fit) and the
    // templates' outputs, then each new read and output in place of the old.
    let budget = Budget::new(MAX_HELD_BYTES);
    // The first fetch is all or nothing: the app starts only with every file in place.
    let (_, evaluated) = plan_outputs(spec, parsed, &secrets, &budget)?;
    for (read, fetched) in spec.secrets.iter().zip(&secrets) {
        metrics.read_ok(&read.path);
        if let Some(lease) = &fetched.lease {
            metrics.lease(&read.path, lease.duration);
        }
    }
    let leases = secrets
        .iter()
        .map(|s| s.lease.clone().map(LeaseClock::new))
        .collect();
    let certs = (0..secrets.len()).map(|_| None).collect();
    let mut live = Live {
        spec,
        parsed,
        settings,
        log,
        vault,
        secrets,
        evaluated,
        budget,
        leases,
        certs,
        retired: Vec::new(),
        token,
        kv_due: after(Instant::now(), jittered(refresh_interval(settings))),
        kv_attempt: 0,
        metrics,
    };
    live.write_changed()?;
    for index in 0..live.secrets.len() {
        live.schedule_certificate(index);
    }
    copy_binary(spec, log)?;
    let root = std::path::Path::new(&spec.secrets_root);
    let ready = root.join(READY_FILE_NAME);
    write::write_atomic(root, &ready, b"ready\n", 0o444).map_err(|e| {
        AgentError::environment("ready", format!("cannot write {}: {e}", ready.display()))
    })?;
    log.info(
        "ready",
        "first fetch written; keeping the secrets fresh",
        &[
            ("refresh_s", &settings.refresh_seconds),
            (
                "leases",
                &live.leases.iter().filter(|l| l.is_some()).count(),
            ),
        ],
    );
    live.run_loop().await;
    live.stop().await;
    Ok(())
}

impl Live<'_> {
    fn next_due(&self) -> Instant {
        self.leases
            .iter()
            .flatten()
            .map(|l| l.due)
            .chain(self.certs.iter().flatten().map(|c| c.due))
            .chain([self.token.due, self.kv_due])
            .min()
            .unwrap_or(self.kv_due)
    }

    async fn run_loop(&mut self) {
        while !stopping() {
            sleep_until(self.next_due()).await;
            if stopping() {
                break;
            }
            let now = Instant::now();
            if self.token.due <= now {
                self.refresh_token().await;
            }
            let due: Vec<usize> = (0..self.leases.len())
                .filter(|&i| self.leases[i].as_ref().is_some_and(|l| l.due <= now))
                .collect();
            for i in due {
                self.refresh_lease(i).await;
            }
            let due: Vec<usize> = (0..self.certs.len())
                .filter(|&i| self.certs[i].as_ref().is_some_and(|c| c.due <= now))
                .collect();
            for i in due {
                self.reissue_certificate(i).await;
            }
            if self.kv_due <= now {
                self.refresh_kv().await;
            }
        }
    }

    fn path(&self, index: usize) -> &str {
        &self.spec.secrets[index].path
    }

    /// Schedules the next issue of secret `index` when it is a certificate. This is the
    /// one place that knows a certificate's notAfter once it is on disk.
    fn schedule_certificate(&mut self, index: usize) {
        let Some(validity) = certificate::validity(&self.secrets[index].data) else {
            self.certs[index] = None;
            return;
        };
        let renew_before = self.spec.secrets[index].renew_before_seconds;
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let at = certificate::renewal_time(validity, renew_before, random_u64() % 1001, now_unix);
        let path = self.path(index).to_owned();
        self.metrics
            .certificate(&path, validity.not_before, validity.not_after);
        self.log.info(
            "certificate",
            "certificate in place",
            &[
                ("path", &path),
                ("not_before", &validity.not_before),
                ("not_after", &validity.not_after),
                ("renew_in_s", &(at - now_unix).max(0)),
            ],
        );
        // A leased certificate (`generate_lease`) follows its lease instead.
        self.certs[index] = self.leases[index].is_none().then(|| CertClock {
            validity,
            due: instant_of(at),
            attempt: 0,
        });
    }

    /// Issues certificate `index` again and writes its files together; on failure the
    /// current files stay, and the next try comes before the certificate expires.
    async fn reissue_certificate(&mut self, index: usize) {
        let path = self.path(index).to_owned();
        match self.reread(index).await {
            Ok(fetched) if certificate::validity(&fetched.data).is_some() => {
                self.replace(index, fetched);
                self.record_read(index);
                if let Err(e) = self.write_changed() {
                    self.log.error("write", &e.message, &[]);
                }
                self.schedule_certificate(index);
            }
            result => {
                let err = match result {
                    Err(err) => err,
                    Ok(unusable) => {
                        self.budget.release(unusable.held_bytes);
                        VaultError::permanent(
                            "the answer holds no certificate that parses".to_owned(),
                        )
                    }
                };
                self.metrics.refresh_error(&path);
                let Some(clock) = self.certs[index].as_mut() else {
                    return;
                };
                clock.attempt += 1;
                let left =
                    instant_of(clock.validity.not_after).saturating_duration_since(Instant::now());
                // Retries come before the certificate expires, however long the backoff.
                let delay = delay_after(clock.attempt, &err)
                    .min(left / 2)
                    .max(Duration::from_secs(1));
                clock.due = Instant::now() + delay;
                let (attempt, delay_ms, left_s) =
                    (clock.attempt, delay.as_millis(), left.as_secs());
                self.log.error(
                    "certificate",
                    "cannot issue the certificate again; the current files stay in place",
                    &[
                        ("path", &path),
                        ("attempt", &attempt),
                        ("retry_in_ms", &delay_ms),
                        ("cert_left_s", &left_s),
                        ("error", &err),
                    ],
                );
            }
        }
    }

    async fn refresh_token(&mut self) {
        let now = Instant::now();
        match self.token.step {
            TokenStep::Renew => match self.vault.renew_self(MAX_REQUEST_TIME).await {
                Ok((ttl, renewable)) => {
                    self.token.attempt = 0;
                    self.metrics.token(ttl);
                    if !renewable || ttl < self.token.full_ttl {
                        // The max TTL ends within one TTL: log in again now, so the
                        // leases re-read under the new token overlap the old ones longest.
                        self.token.step = TokenStep::Login;
                        self.token.due = now;
                        self.log.info(
                            "token",
                            "token renewed up to its max TTL; logging in again",
                            &[("token_ttl_s", &ttl)],
                        );
                    } else {
                        self.log
                            .info("token", "token renewed", &[("token_ttl_s", &ttl)]);
                        self.token.due = after(now, renew_after(ttl));
                    }
                }
                Err(err) if err.is_transient() => self.token_retry(&err, "renewal"),
                Err(err) => {
                    self.log.warn(
                        "token",
                        "token renewal refused; logging in again",
                        &[("error", &err)],
                    );
                    self.token.step = TokenStep::Login;
                    self.token.due = now;
                }
            },
            TokenStep::Login => self.relogin().await,
        }
    }

    fn token_retry(&mut self, err: &VaultError, what: &str) {
        self.token.attempt = self.token.attempt.saturating_add(1);
        let delay = delay_after(self.token.attempt, err);
        let delay_ms = delay.as_millis();
        self.log.warn(
            "token",
            &format!("token {what} failed; retrying"),
            &[
                ("attempt", &self.token.attempt),
                ("retry_in_ms", &delay_ms),
                ("error", err),
            ],
        );
        self.token.due = after(Instant::now(), delay);
    }

    /// Logs in with the projected token as it is now (the kubelet rotates it).
    async fn relogin(&mut self) {
        let conn = &self.spec.vault;
        let jwt = match read_token(&conn.token_file) {
            Ok(jwt) => jwt,
            Err(e) => {
                self.log.error("token", &e.message, &[]);
                self.token.attempt = self.token.attempt.saturating_add(1);
                self.token.due = after(Instant::now(), backoff(self.token.attempt));
                return;
            }
        };
        let grant = match self
            .vault
            .login_grant(&conn.auth_path, &conn.role, &jwt, MAX_REQUEST_TIME)
            .await
        {
            Ok(grant) => grant,
            Err(err) => return self.token_retry(&err, "login"),
        };
        drop(jwt);
        self.metrics.token(grant.ttl);
        self.token = TokenClock::after_login(&grant);
        let Some(vault) = Arc::get_mut(&mut self.vault) else {
            // Only the refresh loop holds the client between fetches.
            self.log
                .error("token", "the Vault client is in use; login retried", &[]);
            self.token.due = after(Instant::now(), backoff(1));
            return;
        };
        if let Err(e) = vault.set_token(grant.token) {
            self.log.error("token", &e.to_string(), &[]);
            self.token.due = after(Instant::now(), backoff(1));
            return;
        }
        self.log.info(
            "login",
            "logged in again",
            &[("role", &conn.role), ("token_ttl_s", &grant.ttl)],
        );
        // Leases belong to the token that created them and end with it: read new
        // credentials under the new token while the old one still lives.
        let now = Instant::now();
        for lease in self.leases.iter_mut().flatten() {
            lease.reissue = true;
            lease.due = now;
        }
    }

    async fn refresh_lease(&mut self, index: usize) {
        let Some(clock) = self.leases[index].as_ref() else {
            return;
        };
        if clock.reissue {
            return self.reissue(index).await;
        }
        let (id, increment) = (clock.lease.id.clone(), clock.lease.duration);
        let path = self.path(index).to_owned();
        let result = self
            .vault
            .renew_lease(&id, increment, MAX_REQUEST_TIME)
            .await;
        let now = Instant::now();
        let log = self.log;
        match &result {
            Ok(ttl) => self.metrics.lease(&path, *ttl),
            Err(_) => self.metrics.refresh_error(&path),
        }
        let Some(clock) = self.leases[index].as_mut() else {
            return;
        };
        match result {
            Ok(ttl) => {
                clock.attempt = 0;
                clock.expires = after(now, Duration::from_secs(ttl));
                if ttl < clock.lease.duration {
                    // Renewal no longer gives the full TTL: the max TTL ends before the
                    // next renewal would. New credentials now, while the old ones last.
                    clock.reissue = true;
                    clock.due = now;
                    log.info(
                        "lease",
                        "lease renewed up to its max TTL; reading new credentials",
                        &[("path", &path), ("lease_ttl_s", &ttl)],
                    );
                } else {
                    clock.due = after(now, renew_after(ttl));
                    log.info(
                        "lease",
                        "lease renewed",
                        &[("path", &path), ("lease_ttl_s", &ttl)],
                    );
                }
            }
            Err(err) if err.is_transient() => {
                clock.attempt = clock.attempt.saturating_add(1);
                let delay = delay_after(clock.attempt, &err);
                clock.due = after(now, delay);
                let delay_ms = delay.as_millis();
                log.warn(
                    "lease",
                    "lease renewal failed; retrying",
                    &[
                        ("path", &path),
                        ("attempt", &clock.attempt),
                        ("retry_in_ms", &delay_ms),
                        ("error", &err),
                    ],
                );
            }
            Err(err) => {
                clock.reissue = true;
                clock.due = now;
                log.warn(
                    "lease",
                    "lease renewal refused; reading new credentials",
                    &[("path", &path), ("error", &err)],
                );
            }
        }
    }

    /// Reads a leased secret again (new credentials, new lease) and writes what changed.
    async fn reissue(&mut self, index: usize) {
        let path = self.path(index).to_owned();
        let result = self.reread(index).await;
        let now = Instant::now();
        match result {
            Ok(fetched) => {
                let new_lease = fetched.lease.clone();
                self.replace(index, fetched);
                self.record_read(index);
                if let Some(lease) = &new_lease {
                    self.metrics.lease(&path, lease.duration);
                }
                if let Some(old) = self.leases[index].take() {
                    if old.expires > now {
                        self.retired.push((old.lease, old.expires));
                    }
                }
                self.retired.retain(|(_, expires)| *expires > now);
                self.leases[index] = new_lease.map(LeaseClock::new);
                let ttl = self.leases[index].as_ref().map_or(0, |l| l.lease.duration);
                self.log.info(
                    "lease",
                    "new credentials read",
                    &[("path", &path), ("lease_ttl_s", &ttl)],
                );
                if let Err(e) = self.write_changed() {
                    self.log.error("write", &e.message, &[]);
                }
            }
            Err(err) => {
                self.metrics.refresh_error(&path);
                let Some(clock) = self.leases[index].as_mut() else {
                    return;
                };
                clock.attempt = clock.attempt.saturating_add(1);
                let delay = delay_after(clock.attempt, &err);
                clock.due = after(now, delay);
                let delay_ms = delay.as_millis();
                let left_s = clock.expires.saturating_duration_since(now).as_secs();
                self.log.error(
                    "lease",
                    "cannot read new credentials; the current ones stay in place",
                    &[
                        ("path", &path),
                        ("attempt", &clock.attempt),
                        ("retry_in_ms", &delay_ms),
                        ("lease_left_s", &left_s),
                        ("error", &err),
                    ],
                );
            }
        }
    }

    /// Reads every KV (unleased) secret again and writes what changed. A failed read
    /// keeps that secret's last good value.
    async fn refresh_kv(&mut self) {
        let mut transient: Option<VaultError> = None;
        let mut read = 0;
        for index in 0..self.secrets.len() {
            // Leased secrets follow their leases, issued ones their own schedule.
            if self.secrets[index].lease.is_some() || self.spec.secrets[index].params.is_some() {
                continue;
            }
            match self.reread(index).await {
                Ok(fetched) => {
                    self.replace(index, fetched);
                    self.record_read(index);
                    read += 1;
                }
                Err(err) => {
                    let path = self.path(index).to_owned();
                    self.metrics.refresh_error(&path);
                    self.log.error(
                        "refresh",
                        "cannot read the secret; its files keep their last good content",
                        &[("path", &path), ("error", &err)],
                    );
                    if err.is_transient() {
                        transient = Some(err);
                    }
                }
            }
            if stopping() {
                return;
            }
        }
        let written = match self.write_changed() {
            Ok(n) => n,
            Err(e) => {
                self.log.error("write", &e.message, &[]);
                0
            }
        };
        let now = Instant::now();
        match transient {
            Some(err) => {
                self.kv_attempt = self.kv_attempt.saturating_add(1);
                let delay = delay_after(self.kv_attempt, &err).min(refresh_interval(self.settings));
                self.kv_due = after(now, delay);
            }
            None => {
                self.kv_attempt = 0;
                self.kv_due = after(now, jittered(refresh_interval(self.settings)));
            }
        }
        self.log.info(
            "refresh",
            "secrets refreshed",
            &[("read", &read), ("files_written", &written)],
        );
    }

    /// Reads secret `index` again where it was read first.
    async fn reread(&self, index: usize) -> Result<Fetched, VaultError> {
        let secret = &self.secrets[index];
        if let Some(params) =
            resolved_params(&self.spec.secrets[index]).map_err(VaultError::permanent)?
        {
            return self
                .vault
                .write(&secret.api_path, &params, MAX_REQUEST_TIME, &self.budget)
                .await;
        }
        self.vault
            .read(
                &secret.api_path,
                self.spec.secrets[index].version,
                secret.kv2,
                MAX_REQUEST_TIME,
                &self.budget,
            )
            .await
    }

    /// Records a new read of secret `index` in the metrics: a success when every file,
    /// env value and template that reads it can be written or evaluated from it, else an
    /// error (the old files stay, and `write_changed` logs why).
    fn record_read(&self, index: usize) {
        let data = &self.secrets[index].data;
        let files_ok = self
            .spec
            .files
            .iter()
            .filter(|f| f.secret == Some(index))
            .all(|f| match f.content() {
                Some(Content::Key { key, .. }) => data.contains_key(key),
                Some(Content::Whole { format, .. }) => check_whole(data, format).is_ok(),
                _ => false,
            });
        let env_ok = self
            .spec
            .env_files
            .iter()
            .flat_map(|e| &e.refs)
            .filter(|r| r.secret == Some(index))
            .all(|r| match r.content() {
                Some(Content::Key { key, .. }) => data.contains_key(key),
                Some(Content::Whole { format, .. }) => check_whole(data, format).is_ok(),
                _ => false,
            });
        let templates_ok = self.evaluated.ok_for(self.spec, index);
        if files_ok && env_ok && templates_ok {
            self.metrics.read_ok(self.path(index));
        } else {
            self.metrics.refresh_error(self.path(index));
        }
    }

    /// Puts a new read of secret `index` in place of the old, whose data leaves the
    /// budget, and evaluates again the templates that read it (an output that did not
    /// change writes no file: `write_changed` compares).
    fn replace(&mut self, index: usize, fetched: Fetched) {
        let old = std::mem::replace(&mut self.secrets[index], fetched);
        self.budget.release(old.held_bytes);
        drop(old);
        self.evaluated
            .reevaluate(self.spec, self.parsed, index, &self.secrets, &self.budget);
    }

    /// Writes each output whose content differs from its file (the files of a directory
    /// written together: all of them, as a new version, when any differs); an output that
    /// cannot be rendered (a key gone) keeps its old file. Returns how many files were
    /// written.
    fn write_changed(&self) -> Result<usize, AgentError> {
        let root = std::path::Path::new(&self.spec.secrets_root);
        let mut written = 0;
        let outputs = all_outputs(self.spec);
        for unit in write_units(self.spec, &outputs) {
            match unit {
                WriteUnit::One(out) => {
                    let Some(content) = self.rendered(out)? else {
                        continue;
                    };
                    let path_text = out.path(self.spec);
                    let path = std::path::Path::new(path_text);
                    if !differs(path, &content) {
                        continue;
                    }
                    write::write_atomic(root, path, &content, out.mode(self.spec)).map_err(
                        |e| {
                            AgentError::environment(
                                "write",
                                format!("cannot write {path_text}: {e}"),
                            )
                        },
                    )?;
                    self.log.info("write", out.what(), &[("path", &path_text)]);
                    self.metrics.file_written();
                    written += 1;
                }
                WriteUnit::Together { dir, files } => {
                    let mut contents = Vec::new();
                    for &i in &files {
                        match self.rendered(Output::File(i))? {
                            Some(content) => contents.push(content),
                            None => break,
                        }
                    }
                    if contents.len() < files.len() {
                        continue;
                    }
                    let changed = files.iter().zip(&contents).any(|(&i, content)| {
                        differs(std::path::Path::new(&self.spec.files[i].path), content)
                    });
                    if !changed {
                        continue;
                    }
                    let names = together_names(self.spec, &files);
                    write::write_together(root, std::path::Path::new(dir), &names, |k, file| {
                        std::io::Write::write_all(file, &contents[k])
                    })
                    .map_err(|e| {
                        AgentError::environment(
                            "write",
                            format!("cannot write the files of {dir}: {e}"),
                        )
                    })?;
                    self.log.info(
                        "write",
                        "file secrets written together",
                        &[("dir", &dir), ("files", &names.len())],
                    );
                    for _ in &files {
                        self.metrics.file_written();
                    }
                    written += files.len();
                }
            }
        }
        Ok(written)
    }

    /// The content of one output, or `None` (logged) when it cannot be rendered now.
    fn rendered(&self, out: Output) -> Result<Option<Zeroizing<Vec<u8>>>, AgentError> {
        let answers = Answers {
            fetched: &self.secrets,
            evaluated: &self.evaluated,
        };
        if let Err(e) = output_ready(self.spec, &answers, &out) {
            self.log.error(
                "refresh",
                &format!("{}; the old file stays in place", e.message),
                &[],
            );
            return Ok(None);
        }
        let mut content: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(4096));
        let mut sink = Sink::new(&mut *content);
        let rendered = out.write(self.spec, &answers, &mut sink);
        let finished = sink.finish();
        rendered?;
        finished.map_err(|e| AgentError::environment("render", e.to_string()))?;
        Ok(Some(content))
    }

    /// SIGTERM: revokes the pod's leases (unless `revoke-on-stop` is false) and the token.
    async fn stop(&mut self) {
        let now = Instant::now();
        let mut leases: Vec<(String, Lease)> = Vec::new();
        for (i, clock) in self.leases.iter().enumerate() {
            if let Some(c) = clock {
                leases.push((self.spec.secrets[i].path.clone(), c.lease.clone()));
            }
        }
        for (lease, expires) in &self.retired {
            if *expires > now {
                leases.push(("(replaced credentials)".to_owned(), lease.clone()));
            }
        }
        self.log.info(
            "stop",
            "stopping",
            &[
                ("leases", &leases.len()),
                ("revoke_on_stop", &self.settings.revoke_on_stop),
            ],
        );
        if !self.settings.revoke_on_stop && !leases.is_empty() {
            // Revoking the token would revoke the leases it created.
            self.log.info(
                "revoke",
                "token and leases kept (revoke-on-stop is false); they expire with their TTLs",
                &[],
            );
            return;
        }
        for (path, lease) in &leases {
            match self.vault.revoke_lease(&lease.id, STOP_REQUEST_TIME).await {
                Ok(()) => self.log.info("revoke", "lease revoked", &[("path", path)]),
                Err(err) => self.log.warn(
                    "revoke",
                    "could not revoke a lease; it expires with its TTL",
                    &[("path", path), ("error", &err)],
                ),
            }
        }
        match self.vault.revoke_self(STOP_REQUEST_TIME).await {
            Ok(()) => self.log.info("revoke", "token revoked", &[]),
            Err(err) => self.log.warn(
                "revoke",
                "could not revoke the token; it expires with its TTL",
                &[("error", &err)],
            ),
        }
    }
}

/// Whether the file at `path` (through a `..data` link, if any) holds other than `content`.
fn differs(path: &std::path::Path, content: &[u8]) -> bool {
    let current = std::fs::read(path).ok().map(Zeroizing::new);
    current.as_deref().map(Vec::as_slice) != Some(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_two_thirds_and_jitter_bounded() {
        assert_eq!(renew_after(30), Duration::from_secs(20));
        assert_eq!(renew_after(0), NEVER);
        assert_eq!(renew_after(1), Duration::from_millis(666));
        for _ in 0..50 {
            let d = jittered(Duration::from_secs(100));
            assert!(d >= Duration::from_secs(100) && d <= Duration::from_secs(110));
        }
    }

    /// Durations no Vault sends, and a spec render never writes, still give a time: no
    /// overflow panic, no tight loop.
    #[test]
    fn extreme_durations_never_overflow() {
        let now = Instant::now();
        assert_eq!(renew_after(u64::MAX), NEVER);
        assert!(jittered(Duration::MAX) <= NEVER + NEVER / 10);
        assert_eq!(after(now, Duration::MAX), now + NEVER);
        assert_eq!(after(now, Duration::from_secs(u64::MAX)), now + NEVER);
        let clock = LeaseClock::new(Lease {
            id: "database/creds/app/x".into(),
            duration: u64::MAX,
            renewable: true,
        });
        assert_eq!(clock.expires, clock.due.max(clock.expires));
        let spec = |refresh_seconds| LiveSpec {
            refresh_seconds,
            revoke_on_stop: true,
            metrics_port: None,
        };
        assert_eq!(refresh_interval(&spec(0)), Duration::from_secs(1));
        assert_eq!(
            refresh_interval(&spec(u64::MAX)),
            Duration::from_secs(u64::MAX)
        );
        assert!(after(now, jittered(refresh_interval(&spec(u64::MAX)))) <= now + NEVER);
    }
}
