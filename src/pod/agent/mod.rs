//! `secretstore agent`: the init container. Logs in to Vault with the pod's projected
//! service-account token, reads each distinct secret once, writes the file secrets and one
//! env file per wrapped container, copies its own executable for `exec`, then exits.

pub mod certificate;
pub mod format;
pub mod live;
pub mod log;
pub mod metrics;
pub mod templates;
pub mod vault;
pub mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zeroize::Zeroizing;

use self::format::{
    check_whole, write_raw, write_whole, FormatError, SecretData, SecretValue, Sink,
};
use self::log::Log;
use self::templates::{Evaluated, Parsed};
use self::vault::{Fetched, TokenGrant, Vault, VaultError};
use crate::pod::agent_spec::{
    resolve_params, AgentSpec, Content, FileFormat, Params, SecretRead, FILE_REF_PREFIX,
    MAX_HELD_BYTES, POD_VARIABLES, READY_FILE, SPEC_ENV, TOKEN_DIR,
};
use crate::vault::http::{has_dot_segment, is_header_safe, redacted_address, Budget};
use crate::vault::mounts::{self, Engine, Mount, MountTable};
use crate::vault::retry::{retry, Deadline, GaveUp, MAX_REQUEST_TIME};

/// How many secrets are read at the same time.
pub const MAX_CONCURRENT_READS: usize = 8;
/// The least time given to revoking the token, even once the deadline has passed.
const REVOKE_GRACE: Duration = Duration::from_secs(1);
/// Mode of the env files: readable by the app container whatever user it runs as; only
/// the container's own sub-path of the volume is mounted into it.
pub const ENV_FILE_MODE: u32 = 0o444;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Vault or the data said no (refused login, 403, 404, missing key or version):
    /// retrying will not help until someone changes Vault or the manifest.
    Refused,
    /// The agent could not do its job: bad spec, unreadable token, Vault unreachable
    /// until the deadline, a write failed.
    Environment,
}

#[derive(Debug)]
pub struct AgentError {
    pub kind: FailureKind,
    pub step: &'static str,
    pub message: String,
}

impl AgentError {
    fn refused(step: &'static str, message: String) -> AgentError {
        AgentError {
            kind: FailureKind::Refused,
            step,
            message,
        }
    }

    fn environment(step: &'static str, message: String) -> AgentError {
        AgentError {
            kind: FailureKind::Environment,
            step,
            message,
        }
    }

    /// 1 when Vault or the data refused, 2 when the environment failed.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            FailureKind::Refused => 1,
            FailureKind::Environment => 2,
        }
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `secretstore agent --ready`, the live sidecar's startup probe: 0 once the first
/// complete fetch is written, else 1.
pub fn ready() -> i32 {
    i32::from(!Path::new(READY_FILE).exists())
}

/// Entry point of `secretstore agent`: reads the spec from [`SPEC_ENV`], runs, logs the
/// outcome, and returns the process exit status.
pub fn run_from_env() -> i32 {
    let log = Log::new("agent");
    let spec = match std::env::var(SPEC_ENV) {
        Ok(text) => AgentSpec::from_json(&text).map_err(|e| AgentError::environment("spec", e)),
        Err(_) => Err(AgentError::environment(
            "spec",
            format!(
                "{SPEC_ENV} is not set: `secretstore agent` runs as the init container that `secretstore render` adds, which sets it"
            ),
        )),
    };
    match spec.and_then(|spec| run(&spec, &log)) {
        Ok(()) => 0,
        Err(e) => {
            log.error(e.step, &e.message, &[("exit_code", &e.exit_code())]);
            e.exit_code()
        }
    }
}

/// Does everything the spec says, or nothing visible: files are written only after every
/// secret has been read and every key found.
pub fn run(spec: &AgentSpec, log: &Log) -> Result<(), AgentError> {
    let parsed = validate(spec).map_err(|e| AgentError::environment("spec", e))?;
    log.info(
        "start",
        "agent starting",
        &[
            ("version", &env!("CARGO_PKG_VERSION")),
            ("vault", &redacted_address(&spec.vault.address)),
            ("auth_path", &spec.vault.auth_path),
            ("role", &spec.vault.role),
            ("secrets", &spec.secrets.len()),
            ("templates", &spec.templates.len()),
            ("files", &spec.files.len()),
            ("env_files", &spec.env_files.len()),
            ("timeout_s", &spec.timeout_seconds),
        ],
    );
    let deadline = Deadline::after(Duration::from_secs(spec.timeout_seconds));
    let jwt = read_token(&spec.vault.token_file)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AgentError::environment("start", format!("cannot start the runtime: {e}")))?;
    if let Some(settings) = &spec.live {
        return runtime.block_on(live::run(spec, &parsed, settings, log, deadline, jwt));
    }
    runtime.block_on(run_async(spec, &parsed, log, deadline, jwt))?;
    log.info("done", "all secrets written", &[]);
    Ok(())
}

fn read_token(file: &str) -> Result<Zeroizing<String>, AgentError> {
    let fail = |what: String| {
        AgentError::environment(
            "token",
            format!(
                "cannot use the service account token {file}: {what}: the init container needs the projected serviceAccountToken volume at {TOKEN_DIR} that render adds; check that the pod spec still has it"
            ),
        )
    };
    let bytes = Zeroizing::new(std::fs::read(file).map_err(|e| fail(e.to_string()))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| fail("not UTF-8 text".to_owned()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(fail("the file is empty".to_owned()));
    }
    Ok(Zeroizing::new(token.to_owned()))
}

async fn run_async(
    spec: &AgentSpec,
    parsed: &Parsed,
    log: &Log,
    deadline: Deadline,
    jwt: Zeroizing<String>,
) -> Result<(), AgentError> {
    let conn = &spec.vault;
    let mut vault =
        Vault::new(conn).map_err(|e| AgentError::environment("connect", e.to_string()))?;
    let grant = login(&vault, conn, &jwt, &deadline, log).await?;
    drop(jwt);
    let ttl = grant.ttl;
    vault
        .set_token(grant.token)
        .map_err(|e| AgentError::environment("login", e.to_string()))?;

    let vault = Arc::new(vault);
    let outcome = fetch_and_write(spec, parsed, log, &deadline, &vault).await;
    let leased = matches!(&outcome, Ok(true));
    if leased {
        log.info(
            "revoke",
            "token kept: a leased secret was read, and revoking the token would revoke its lease",
            &[("token_ttl_s", &ttl)],
        );
    } else {
        // Past the deadline the token is still worth a short try: it expires with its TTL
        // otherwise.
        let timeout = deadline.remaining().clamp(REVOKE_GRACE, MAX_REQUEST_TIME);
        match vault.revoke_self(timeout).await {
            Ok(()) => log.info("revoke", "token revoked", &[]),
            Err(e) => log.warn(
                "revoke",
                "could not revoke the token; it expires with its TTL",
                &[("error", &e)],
            ),
        }
    }
    outcome.map(|_| ())
}

/// Logs in with the service-account token `jwt`, retrying transient failures until the
/// deadline.
async fn login(
    vault: &Vault,
    conn: &crate::pod::agent_spec::VaultConnection,
    jwt: &str,
    deadline: &Deadline,
    log: &Log,
) -> Result<TokenGrant, AgentError> {
    let fields: [(&str, &dyn fmt::Display); 2] =
        [("auth_path", &conn.auth_path), ("role", &conn.role)];
    let grant = retry(deadline, retrying(log, "login", &fields), |timeout| {
        vault.login_grant(&conn.auth_path, &conn.role, jwt, timeout)
    })
    .await
    .map_err(|gave_up| match gave_up {
        GaveUp::Permanent(err) if err.status.is_none_or(|s| s < 300) => unreachable("login", &err, vault.address()),
        GaveUp::Permanent(err) => AgentError::refused(
            "login",
            format!(
                "Vault refused the login of role {:?} at {}/login: {err}: check that role {:?} exists on auth path {:?}, that it is bound to this pod's service account and namespace, and that the token audience matches the role",
                conn.role, conn.auth_path, conn.role, conn.auth_path
            ),
        ),
        GaveUp::Deadline { attempts, last } => deadline_error("login", deadline, attempts, &last, vault.address()),
    })?;
    log.info(
        "login",
        "logged in",
        &[
            ("auth_path", &conn.auth_path),
            ("role", &conn.role),
            ("token_ttl_s", &grant.ttl),
        ],
    );
    Ok(grant)
}

/// Reads, checks and writes everything. Returns whether a leased secret was read.
async fn fetch_and_write(
    spec: &AgentSpec,
    parsed: &Parsed,
    log: &Log,
    deadline: &Deadline,
    vault: &Arc<Vault>,
) -> Result<bool, AgentError> {
    let fetched = fetch_all(spec, log, deadline, vault).await?;
    let leased = fetched.iter().any(|f| f.leased);
    // Every template evaluated, every key found and every format possible before the
    // first file is written.
    let budget = Budget::new(MAX_HELD_BYTES);
    let (outputs, evaluated) = plan_outputs(spec, parsed, &fetched, &budget)?;
    let answers = Answers {
        fetched: &fetched,
        evaluated: &evaluated,
    };
    for unit in write_units(spec, &outputs) {
        match unit {
            WriteUnit::One(out) => write_one(spec, &answers, out, log)?,
            WriteUnit::Together { dir, files } => {
                write_dir_together(spec, &answers, dir, &files, log)?
            }
        }
    }
    copy_binary(spec, log)?;
    Ok(leased)
}

/// Writes one file (a file secret or an env file), its content streamed into it.
fn write_one(
    spec: &AgentSpec,
    answers: &Answers<'_>,
    out: Output,
    log: &Log,
) -> Result<(), AgentError> {
    let path = Path::new(out.path(spec));
    let mut rendered = Ok(());
    write::write_atomic_in(
        Path::new(&spec.secrets_root),
        path,
        out.mode(spec),
        |file| {
            let mut sink = Sink::new(file);
            rendered = out.write(spec, answers, &mut sink);
            sink.finish()
        },
    )
    .map_err(|e| {
        AgentError::environment(
            "write",
            format!(
                "cannot write {}: {e}: is the secrets volume mounted read-write?",
                out.path(spec)
            ),
        )
    })?;
    rendered?;
    log.info(
        "write",
        out.what(),
        &[
            ("path", &out.path(spec)),
            ("mode", &format_args!("{:04o}", out.mode(spec))),
        ],
    );
    Ok(())
}

/// Writes the file secrets of directory `dir` together, as one version.
fn write_dir_together(
    spec: &AgentSpec,
    answers: &Answers<'_>,
    dir: &str,
    files: &[usize],
    log: &Log,
) -> Result<(), AgentError> {
    let names = together_names(spec, files);
    let mut rendered = Ok(());
    write::write_together(
        Path::new(&spec.secrets_root),
        Path::new(dir),
        &names,
        |k, file| {
            let mut sink = Sink::new(file);
            if let Err(e) = Output::File(files[k]).write(spec, answers, &mut sink) {
                rendered = Err(e);
            }
            sink.finish()
        },
    )
    .map_err(|e| {
        AgentError::environment(
            "write",
            format!(
                "cannot write the files of {dir}: {e}: is the secrets volume mounted read-write?"
            ),
        )
    })?;
    rendered?;
    log.info(
        "write",
        "file secrets written together",
        &[("dir", &dir), ("files", &names.len())],
    );
    Ok(())
}

/// Copies this executable for `exec`, when the spec asks.
fn copy_binary(spec: &AgentSpec, log: &Log) -> Result<(), AgentError> {
    if let Some(dest) = &spec.copy_binary_to {
        let bytes = write::copy_own_executable(Path::new(&spec.bin_root), Path::new(dest))
            .map_err(|e| {
                AgentError::environment(
                    "copy",
                    format!("cannot copy the secretstore executable to {dest}: {e}: is the bin volume mounted read-write?"),
                )
            })?;
        log.info(
            "copy",
            "executable copied for exec",
            &[("path", dest), ("bytes", &bytes), ("mode", &"0555")],
        );
    }
    Ok(())
}

/// Reads every secret of the spec, at most [`MAX_CONCURRENT_READS`] at a time. The first
/// permanent failure stops the others.
async fn fetch_all(
    spec: &AgentSpec,
    log: &Log,
    deadline: &Deadline,
    vault: &Arc<Vault>,
) -> Result<Vec<Fetched>, AgentError> {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_READS));
    let budget = Arc::new(Budget::new(MAX_HELD_BYTES));
    let mounts: Arc<MountCache> = Arc::default();
    // One thread: the tasks are I/O-bound, and local tasks may hold log fields across awaits.
    let local = tokio::task::LocalSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, read) in spec.secrets.iter().enumerate() {
        let job = FetchJob {
            index,
            read: read.clone(),
            refs: references_of(spec, index),
            role: spec.vault.role.clone(),
            address: vault.address().to_owned(),
        };
        let (vault, mounts, limit, log, deadline, budget) = (
            vault.clone(),
            mounts.clone(),
            limit.clone(),
            log.clone(),
            *deadline,
            budget.clone(),
        );
        tasks.spawn_local_on(
            async move {
                let _permit = limit.acquire_owned().await;
                let fetched = job.run(&vault, &mounts, &log, &deadline, &budget).await;
                (job.index, fetched)
            },
            &local,
        );
    }
    let mut results: Vec<Option<Fetched>> = (0..spec.secrets.len()).map(|_| None).collect();
    local
        .run_until(async {
            while let Some(joined) = tasks.join_next().await {
                let (index, fetched) = joined.map_err(|e| {
                    AgentError::environment("read", format!("a read task failed: {e}"))
                })?;
                results[index] = Some(fetched?);
            }
            Ok::<(), AgentError>(())
        })
        .await?;
    results
        .into_iter()
        .map(|r| {
            r.ok_or_else(|| AgentError::environment("read", "a read did not finish".to_owned()))
        })
        .collect()
}

struct FetchJob {
    index: usize,
    read: SecretRead,
    refs: String,
    role: String,
    address: String,
}

impl FetchJob {
    async fn run(
        &self,
        vault: &Vault,
        mounts: &MountCache,
        log: &Log,
        deadline: &Deadline,
        budget: &Budget,
    ) -> Result<Fetched, AgentError> {
        let path = self.read.path.trim_start_matches('/');
        if self.read.params.is_some() {
            return self.issue(vault, log, deadline, budget, path).await;
        }
        let mount = self.mount(vault, mounts, log, deadline, path).await?;
        let api = api_path(path, &mount, self.read.version)
            .map_err(|e| AgentError::refused("read", format!("{}: {e}", self.refs)))?;
        let kv2 = mount.engine == Engine::Kv2;
        let fields: [(&str, &dyn fmt::Display); 1] = [("path", &path)];
        let fetched = retry(deadline, retrying(log, "read", &fields), |timeout| {
            vault.read(&api, self.read.version, kv2, timeout, budget)
        })
        .await
        .map_err(|gave_up| match gave_up {
            GaveUp::Permanent(err) if err.status.is_none_or(|s| s < 300) => {
                unreachable("read", &err, &self.address)
            }
            GaveUp::Permanent(err) => self.read_refused(&api, &err),
            GaveUp::Deadline { attempts, last } => {
                deadline_error("read", deadline, attempts, &last, &self.address)
            }
        })?;
        let version: &dyn fmt::Display = match &self.read.version {
            Some(v) => v,
            None => &"latest",
        };
        log.info(
            "read",
            "secret read",
            &[
                ("path", &path),
                ("api_path", &api),
                ("version", version),
                ("keys", &fetched.data.len()),
                ("leased", &fetched.leased),
            ],
        );
        Ok(fetched)
    }

    /// A write that issues a secret: its params (pod variables resolved) sent to the path
    /// as written, no mount lookup needed.
    async fn issue(
        &self,
        vault: &Vault,
        log: &Log,
        deadline: &Deadline,
        budget: &Budget,
        path: &str,
    ) -> Result<Fetched, AgentError> {
        let params = resolved_params(&self.read)
            .map_err(|e| AgentError::environment("issue", format!("{}: {e}", self.refs)))?
            .unwrap_or_default();
        let fields: [(&str, &dyn fmt::Display); 1] = [("path", &path)];
        let fetched = retry(deadline, retrying(log, "issue", &fields), |timeout| {
            vault.write(path, &params, timeout, budget)
        })
        .await
        .map_err(|gave_up| match gave_up {
            GaveUp::Permanent(err) if err.status.is_none_or(|s| s < 300) => {
                unreachable("issue", &err, &self.address)
            }
            GaveUp::Permanent(err) => {
                let what = match err.status {
                    Some(403) => format!(
                        "permission denied writing to {path:?} ({err}): the policies of role {:?} must grant \"update\" on {path:?}",
                        self.role
                    ),
                    _ => format!(
                        "Vault refused the write to {path:?}: {err}: check the params (for PKI, that the role allows the names and ttl asked for; `secretstore check` tells)"
                    ),
                };
                AgentError::refused("issue", format!("{}: {what}", self.refs))
            }
            GaveUp::Deadline { attempts, last } => {
                deadline_error("issue", deadline, attempts, &last, &self.address)
            }
        })?;
        let not_after = certificate::validity(&fetched.data).map(|v| v.not_after);
        let not_after: &dyn fmt::Display = match &not_after {
            Some(t) => t,
            None => &"-",
        };
        log.info(
            "issue",
            "secret issued",
            &[
                ("path", &path),
                ("keys", &fetched.data.len()),
                ("leased", &fetched.leased),
                ("cert_not_after", not_after),
            ],
        );
        Ok(fetched)
    }

    async fn mount(
        &self,
        vault: &Vault,
        mounts: &MountCache,
        log: &Log,
        deadline: &Deadline,
        path: &str,
    ) -> Result<Mount, AgentError> {
        if let Some(mount) = mounts.find(path) {
            return Ok(mount);
        }
        let turn = mounts.turn_for(path);
        let _turn = turn.lock().await;
        if let Some(mount) = mounts.find(path) {
            return Ok(mount);
        }
        let fields: [(&str, &dyn fmt::Display); 1] = [("path", &path)];
        let mount = retry(deadline, retrying(log, "mount", &fields), |timeout| {
            vault.mount_of(path, timeout)
        })
        .await
        .map_err(|gave_up| match gave_up {
            GaveUp::Permanent(err) if err.status.is_none_or(|s| s < 300) => {
                unreachable("mount", &err, &self.address)
            }
            GaveUp::Permanent(err) if err.status == Some(403) => AgentError::refused(
                "mount",
                format!(
                    "{}: permission denied finding the mount of {path:?} ({err}): the policies of role {:?} must grant read on the secret's path, and the path must start with an existing secrets engine mount",
                    self.refs, self.role
                ),
            ),
            GaveUp::Permanent(err) => AgentError::refused(
                "mount",
                format!("{}: cannot find the mount of {path:?}: {err}", self.refs),
            ),
            GaveUp::Deadline { attempts, last } => {
                deadline_error("mount", deadline, attempts, &last, &self.address)
            }
        })?;
        let (engine, kv): (&str, &dyn fmt::Display) = match &mount.engine {
            Engine::Kv1 => ("kv", &1),
            Engine::Kv2 => ("kv", &2),
            Engine::Other(engine) => (engine, &"-"),
        };
        log.info(
            "mount",
            "mount found",
            &[
                ("path", &path),
                ("mount", &mount.path),
                ("engine", &engine),
                ("kv_version", kv),
            ],
        );
        lock(&mounts.known).insert(mount.clone());
        Ok(mount)
    }

    fn read_refused(&self, api: &str, err: &VaultError) -> AgentError {
        let what = match (err.status, self.read.version) {
            (Some(403), _) => format!(
                "permission denied reading {api:?} ({err}): the policies of role {:?} must grant \"read\" on {api:?}",
                self.role
            ),
            (Some(404), Some(v)) => format!(
                "version {v} of {:?} cannot be read ({err}): check that the version exists and was not deleted or destroyed (`vault kv metadata get`)",
                self.read.path
            ),
            (Some(404), None) => format!(
                "no secret at {api:?} ({err}): check the path, and for KV v2 that the latest version is not deleted"
            ),
            _ => format!("Vault refused reading {api:?}: {err}"),
        };
        AgentError::refused("read", format!("{}: {what}", self.refs))
    }
}

/// Mounts found so far. Lookups for paths with the same first segment take turns, so
/// that `secret/a` and `secret/b` cost one `sys/internal/ui/mounts` call, not two.
#[derive(Default)]
struct MountCache {
    known: Mutex<MountTable>,
    turns: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl MountCache {
    fn find(&self, path: &str) -> Option<Mount> {
        lock(&self.known).find(path).cloned()
    }

    fn turn_for(&self, path: &str) -> Arc<tokio::sync::Mutex<()>> {
        let first = path.split('/').next().unwrap_or_default().to_owned();
        lock(&self.turns).entry(first).or_default().clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A failure that retrying cannot fix and that is no refusal: no usable HTTP answer (TLS,
/// a bad address, a refused redirect, an answer too large or not Vault's JSON).
fn unreachable(step: &'static str, err: &VaultError, address: &str) -> AgentError {
    AgentError::environment(step, format!("cannot talk to Vault at {address}: {err}"))
}

fn deadline_error(
    step: &'static str,
    deadline: &Deadline,
    attempts: u32,
    last: &VaultError,
    address: &str,
) -> AgentError {
    AgentError::environment(
        step,
        format!(
            "gave up after {attempts} attempts in {:.1}s (timeout {}s): {last}: check that Vault at {address} is reachable from the pod and unsealed, or raise the agent timeout",
            deadline.elapsed().as_secs_f64(),
            deadline.total().as_secs()
        ),
    )
}

/// Logs each retry as one `warn` line with `fields` plus the attempt, the delay and the
/// error.
fn retrying<'a>(
    log: &'a Log,
    step: &'a str,
    fields: &'a [(&'a str, &'a dyn fmt::Display)],
) -> impl FnMut(u32, Duration, &VaultError) + 'a {
    move |attempt, delay, err| {
        let mut all: Vec<(&str, &dyn fmt::Display)> = fields.to_vec();
        let delay_ms = delay.as_millis();
        all.push(("attempt", &attempt));
        all.push(("retry_in_ms", &delay_ms));
        all.push(("error", err));
        log.warn(step, "transient failure, retrying", &all);
    }
}

/// A write's params with the pod variables taken from the agent's environment (render
/// wires them from the downward API); `None` for a read.
pub fn resolved_params(read: &SecretRead) -> Result<Option<Params>, String> {
    read.params
        .as_ref()
        .map(|p| resolve_params(p, &|i| std::env::var(POD_VARIABLES[i].1).ok()))
        .transpose()
}

/// The references that use secret `index`, for error messages: `ref1, ref2`.
fn references_of(spec: &AgentSpec, index: usize) -> String {
    let mut refs = BTreeSet::new();
    for f in spec.files.iter().filter(|f| f.secret == Some(index)) {
        refs.insert(f.reference.as_str());
    }
    for r in spec
        .env_files
        .iter()
        .flat_map(|e| &e.refs)
        .filter(|r| r.secret == Some(index))
    {
        refs.insert(r.reference.as_str());
    }
    for t in spec
        .templates
        .iter()
        .filter(|t| t.sources.values().any(|s| *s == index))
    {
        refs.insert(t.name.as_str());
    }
    if refs.is_empty() {
        return format!("secret {:?}", spec.secrets[index].path);
    }
    refs.into_iter().collect::<Vec<_>>().join(", ")
}

/// The API path to read for a path as written, given its mount (see [`mounts::target`]).
/// A `#version` pins a KV v2 version, so any other mount refuses it.
pub fn api_path(path: &str, mount: &Mount, version: Option<u64>) -> Result<String, String> {
    if version.is_some() && mount.engine != Engine::Kv2 {
        return Err(format!(
            "#version pins a KV v2 version, but {:?} is a {} mount: remove the version",
            mount.path, mount.engine
        ));
    }
    mounts::target(path, mount).map(|t| t.api_path)
}

/// One file to write: a file secret (index into the spec's files), or a container's env
/// file (index into its env files). Its content is written straight into the file.
#[derive(Debug, Clone, Copy)]
enum Output {
    File(usize),
    Env(usize),
}

/// What outputs are written from: the secrets' answers and the templates' outputs.
#[derive(Clone, Copy)]
struct Answers<'a> {
    fetched: &'a [Fetched],
    evaluated: &'a Evaluated,
}

impl Output {
    fn write(
        &self,
        spec: &AgentSpec,
        answers: &Answers<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<(), AgentError> {
        let fetched = answers.fetched;
        match *self {
            Output::File(i) => {
                let file = &spec.files[i];
                match file.content() {
                    Some(Content::Key { secret, key }) => {
                        if let Some(value) = fetched[secret].data.get(key) {
                            write_raw(value, sink)
                                .map_err(|e| AgentError::environment("write", e.to_string()))?;
                        }
                        Ok(())
                    }
                    Some(Content::Whole { secret, format }) => {
                        write_whole(&fetched[secret].data, format, sink).map_err(|e| {
                            AgentError::refused("render", format!("{}: {e}", file.reference))
                        })
                    }
                    Some(Content::Template(t)) => {
                        let text = answers
                            .evaluated
                            .get(t)
                            .map_err(|e| AgentError::refused("render", e))?;
                        std::io::Write::write_all(sink, text.as_bytes())
                            .map_err(|e| AgentError::environment("write", e.to_string()))
                    }
                    None => Err(no_content(&file.reference)),
                }
            }
            Output::Env(i) => {
                let env = &spec.env_files[i];
                let held: Vec<(&str, EnvValue<'_>)> = env
                    .refs
                    .iter()
                    .map(|r| Ok((r.reference.as_str(), env_value(spec, answers, r)?)))
                    .collect::<Result<_, AgentError>>()?;
                let values: BTreeMap<&str, &str> =
                    held.iter().map(|(r, v)| (*r, v.as_str())).collect();
                serde_json::to_writer(sink, &values).map_err(|e| {
                    AgentError::environment("render", format!("cannot encode the env file: {e}"))
                })
            }
        }
    }

    fn mode(&self, spec: &AgentSpec) -> u32 {
        match *self {
            Output::File(i) => spec.files[i].mode,
            Output::Env(_) => ENV_FILE_MODE,
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Output::File(_) => "file secret written",
            Output::Env(_) => "env file written",
        }
    }

    fn path<'s>(&self, spec: &'s AgentSpec) -> &'s str {
        match *self {
            Output::File(i) => &spec.files[i].path,
            Output::Env(i) => &spec.env_files[i].path,
        }
    }
}

/// What is written in one step: one file, or every file of a directory whose files are
/// written together (a directory with a file of a `files` config).
enum WriteUnit<'s> {
    One(Output),
    Together { dir: &'s str, files: Vec<usize> },
}

/// The outputs as write units, in order: each together-directory where its first file is.
fn write_units<'s>(spec: &'s AgentSpec, outputs: &[Output]) -> Vec<WriteUnit<'s>> {
    let parent = |path: &'s str| path.rsplit_once('/').map_or(path, |(d, _)| d);
    let together: BTreeSet<&str> = spec
        .files
        .iter()
        .filter(|f| f.together)
        .map(|f| parent(&f.path))
        .collect();
    let mut units: Vec<WriteUnit> = Vec::new();
    for out in outputs {
        match *out {
            Output::File(i) if together.contains(parent(&spec.files[i].path)) => {
                let dir = parent(&spec.files[i].path);
                let existing = units.iter_mut().find_map(|u| match u {
                    WriteUnit::Together { dir: d, files } if *d == dir => Some(files),
                    _ => None,
                });
                match existing {
                    Some(files) => files.push(i),
                    None => units.push(WriteUnit::Together {
                        dir,
                        files: vec![i],
                    }),
                }
            }
            other => units.push(WriteUnit::One(other)),
        }
    }
    units
}

/// The names and modes of files written together.
fn together_names<'s>(spec: &'s AgentSpec, files: &[usize]) -> Vec<(&'s str, u32)> {
    files
        .iter()
        .map(|&i| {
            let f = &spec.files[i];
            (
                f.path.rsplit_once('/').map_or(f.path.as_str(), |(_, n)| n),
                f.mode,
            )
        })
        .collect()
}

/// A value of an env file: a secret's own string, or text made for it (a whole secret in
/// a format, a list written as a file's lines, a template's output).
enum EnvValue<'a> {
    Borrowed(&'a str),
    Made(Zeroizing<String>),
}

impl EnvValue<'_> {
    fn as_str(&self) -> &str {
        match self {
            EnvValue::Borrowed(s) => s,
            EnvValue::Made(s) => s,
        }
    }
}

/// The value of env reference `r`. A `secretstore:file:` reference is the file's content:
/// a key's value as its raw file holds it (a list one item per line), a whole secret in
/// its format, or a template's output.
fn env_value<'a>(
    spec: &AgentSpec,
    answers: &Answers<'a>,
    r: &crate::pod::agent_spec::EnvRef,
) -> Result<EnvValue<'a>, AgentError> {
    match r.content() {
        Some(Content::Key { secret, key }) => {
            let Some(value) = answers.fetched[secret].data.get(key) else {
                let data = &answers.fetched[secret].data;
                return Err(missing_key(
                    &r.reference,
                    &spec.secrets[secret].path,
                    key,
                    data,
                ));
            };
            let is_list = matches!(value, SecretValue::Json(j) if j.starts_with('['));
            if r.reference.starts_with(FILE_REF_PREFIX) && is_list {
                let mut bytes = Zeroizing::new(Vec::new());
                write_raw(value, &mut *bytes)
                    .map_err(|e| AgentError::environment("render", e.to_string()))?;
                Ok(EnvValue::Made(text_of(bytes, &r.reference)?))
            } else {
                Ok(EnvValue::Borrowed(value.as_text()))
            }
        }
        Some(Content::Whole { secret, format }) => {
            let mut bytes = Zeroizing::new(Vec::new());
            let mut sink = Sink::new(&mut *bytes);
            let written = write_whole(&answers.fetched[secret].data, format, &mut sink);
            let finished = sink.finish();
            written.map_err(|e| AgentError::refused("render", format!("{}: {e}", r.reference)))?;
            finished.map_err(|e| AgentError::environment("render", e.to_string()))?;
            Ok(EnvValue::Made(text_of(bytes, &r.reference)?))
        }
        Some(Content::Template(t)) => {
            let text = answers
                .evaluated
                .get(t)
                .map_err(|e| AgentError::refused("render", e))?;
            Ok(EnvValue::Made(Zeroizing::new(text.to_owned())))
        }
        None => Err(no_content(&r.reference)),
    }
}

/// Bytes made from secret strings as text (they are UTF-8; the bytes are wiped either way).
fn text_of(
    mut bytes: Zeroizing<Vec<u8>>,
    reference: &str,
) -> Result<Zeroizing<String>, AgentError> {
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err(AgentError::refused(
                "render",
                format!("{reference}: the value is not UTF-8 text"),
            ))
        }
    }
}

/// A spec entry whose fields do not say one content (the spec check refuses these).
fn no_content(reference: &str) -> AgentError {
    AgentError::environment(
        "spec",
        format!("{reference}: the spec does not say what it holds"),
    )
}

fn missing_key(reference: &str, path: &str, key: &str, data: &SecretData) -> AgentError {
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    AgentError::refused(
        "render",
        format!(
            "{reference}: secret {path:?} has no key {key:?} (its keys: {}): check the #key part of the reference, or the env var name when there is none, and the secret's content",
            if keys.is_empty() { "none".to_owned() } else { keys.join(", ") }
        ),
    )
}

/// What to write, once every template is evaluated, every key known to be there and
/// every format possible; the templates' outputs are charged to `budget`.
fn plan_outputs(
    spec: &AgentSpec,
    parsed: &Parsed,
    fetched: &[Fetched],
    budget: &Budget,
) -> Result<(Vec<Output>, Evaluated), AgentError> {
    budget.try_charge(fetched.iter().map(|f| f.held_bytes).sum());
    let evaluated = Evaluated::evaluate(spec, parsed, fetched, budget);
    if let Some(failure) = evaluated.first_failure() {
        return Err(AgentError::refused("render", failure.message.clone()));
    }
    let outputs = all_outputs(spec);
    let answers = Answers {
        fetched,
        evaluated: &evaluated,
    };
    for out in &outputs {
        output_ready(spec, &answers, out)?;
    }
    Ok((outputs, evaluated))
}

/// Every file and env file of the spec.
fn all_outputs(spec: &AgentSpec) -> Vec<Output> {
    (0..spec.files.len())
        .map(Output::File)
        .chain((0..spec.env_files.len()).map(Output::Env))
        .collect()
}

/// Whether what `out` holds can be written: its keys there, its format possible, its
/// templates evaluated.
fn output_ready(spec: &AgentSpec, answers: &Answers<'_>, out: &Output) -> Result<(), AgentError> {
    match *out {
        Output::File(i) => {
            let file = &spec.files[i];
            content_ready(spec, answers, &file.reference, file.content())
        }
        Output::Env(i) => spec.env_files[i]
            .refs
            .iter()
            .try_for_each(|r| content_ready(spec, answers, &r.reference, r.content())),
    }
}

fn content_ready(
    spec: &AgentSpec,
    answers: &Answers<'_>,
    reference: &str,
    content: Option<Content<'_>>,
) -> Result<(), AgentError> {
    match content {
        Some(Content::Key { secret, key }) => {
            let data = &answers.fetched[secret].data;
            if data.contains_key(key) {
                Ok(())
            } else {
                let path = &spec.secrets[secret].path;
                Err(missing_key(reference, path, key, data))
            }
        }
        Some(Content::Whole { secret, format }) => {
            check_whole(&answers.fetched[secret].data, format)
                .map_err(|e| AgentError::refused("render", format!("{reference}: {e}")))
        }
        Some(Content::Template(t)) => answers
            .evaluated
            .get(t)
            .map(|_| ())
            .map_err(|e| AgentError::refused("render", e)),
        None => Err(no_content(reference)),
    }
}

/// Checks what render guarantees, so a hand-written or corrupted spec fails clearly
/// before anything is fetched; returns the templates, parsed.
fn validate(spec: &AgentSpec) -> Result<Parsed, String> {
    let conn = &spec.vault;
    if conn.role.trim().is_empty() {
        return Err("the spec names no Vault role".to_owned());
    }
    if conn.auth_path.trim_matches('/').is_empty() {
        return Err("the spec names no Vault auth path".to_owned());
    }
    for (field, value) in [("role", &conn.role), ("auth_path", &conn.auth_path)] {
        if !is_header_safe(value) {
            return Err(format!(
                "the spec's Vault {field} {value:?} holds a line break or another control character"
            ));
        }
    }
    if has_dot_segment(&conn.auth_path) {
        return Err(format!(
            "the spec's Vault auth path {:?} has a `.` or `..` segment",
            conn.auth_path
        ));
    }
    let roots = [
        ("secrets_root", &spec.secrets_root),
        ("bin_root", &spec.bin_root),
    ];
    for (field, root) in roots {
        write::check_path(root).map_err(|e| format!("{field} {e}"))?;
    }
    if write::inside(&spec.secrets_root, &spec.bin_root).is_some()
        || write::inside(&spec.bin_root, &spec.secrets_root).is_some()
        || spec.secrets_root == spec.bin_root
    {
        return Err(format!(
            "the secrets volume {} and the bin volume {} overlap",
            spec.secrets_root, spec.bin_root
        ));
    }
    for root in [&spec.secrets_root, &spec.bin_root] {
        if conn.token_file == *root || write::inside(root, &conn.token_file).is_some() {
            return Err(format!(
                "the service account token {} is inside the volume {root} the agent writes to",
                conn.token_file
            ));
        }
    }
    // The agent writes nothing over its own executable, wherever it runs from.
    let own = std::fs::read_link("/proc/self/exe").ok();
    let is_forbidden = |path: &str| {
        path == conn.token_file || own.as_deref().is_some_and(|exe| Path::new(path) == exe)
    };
    if let Some((i, _)) = spec
        .secrets
        .iter()
        .enumerate()
        .find(|(_, s)| s.path.trim_matches('/').is_empty())
    {
        return Err(format!("secret {i} of the spec has an empty path"));
    }
    for s in &spec.secrets {
        let mut strings = Vec::new();
        for (k, v) in s.params.iter().flatten() {
            crate::pod::agent_spec::param_strings(v, k.clone(), &mut strings);
        }
        for (field, text) in strings {
            crate::pod::agent_spec::parse_param(text)
                .map_err(|(_, e)| format!("secret {:?}, params.{field}: {e}", s.path))?;
        }
    }
    let n = spec.secrets.len();
    let mut paths = BTreeSet::new();
    for f in &spec.files {
        if let Some(secret) = f.secret.filter(|s| *s >= n) {
            return Err(format!("file {} points at secret {secret} of {n}", f.path));
        }
        check_output(&spec.secrets_root, &f.path, "file path", &is_forbidden)?;
        if f.mode > 0o777 {
            return Err(format!("file {} has mode {:o}, above 0777", f.path, f.mode));
        }
        check_content(
            f.content(),
            (f.secret, f.key.is_some(), Some(f.format), f.template),
            spec,
        )
        .map_err(|e| format!("file {}: {e}", f.path))?;
        if !paths.insert(f.path.as_str()) {
            return Err(format!("the spec writes {} twice", f.path));
        }
        if f.path
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with(".."))
        {
            return Err(format!(
                "file {}: a name starting with `..` is the agent's own (`..data`)",
                f.path
            ));
        }
    }
    for e in &spec.env_files {
        check_output(&spec.secrets_root, &e.path, "env file path", &is_forbidden)?;
        if let Some(r) = e.refs.iter().find(|r| r.secret.is_some_and(|s| s >= n)) {
            return Err(format!(
                "env ref {} points at secret {:?} of {n}",
                r.reference, r.secret
            ));
        }
        for r in &e.refs {
            check_content(
                r.content(),
                (r.secret, r.key.is_some(), r.format, r.template),
                spec,
            )
            .map_err(|e| format!("env ref {}: {e}", r.reference))?;
        }
        if !paths.insert(e.path.as_str()) {
            return Err(format!("the spec writes {} twice", e.path));
        }
    }
    if let Some(dest) = &spec.copy_binary_to {
        check_output(&spec.bin_root, dest, "copy_binary_to", &is_forbidden)?;
    }
    templates::parse_all(spec)
}

/// A file's or env ref's content: one thing, which exists. `fields` are its secret,
/// whether it names a key, its format and its template, for saying what is wrong.
fn check_content(
    content: Option<Content<'_>>,
    fields: (Option<usize>, bool, Option<FileFormat>, Option<usize>),
    spec: &AgentSpec,
) -> Result<(), String> {
    let templates = spec.templates.len();
    match (content, fields) {
        (Some(Content::Template(t)), _) if t >= templates => {
            Err(format!("it points at template {t} of {templates}"))
        }
        (Some(_), _) => Ok(()),
        (None, (secret, key, format, Some(_)))
            if secret.is_some() || key || format.is_some_and(|f| f != FileFormat::Raw) =>
        {
            Err(
                "a template's output is written as it is: it names no secret, key or format"
                    .to_owned(),
            )
        }
        (None, (None, _, _, None)) => Err("it names neither a secret nor a template".to_owned()),
        (None, (Some(_), true, Some(format), None)) => {
            Err(FormatError::KeyNeedsRaw(format).to_string())
        }
        (None, (Some(_), false, _, None)) => Err(FormatError::RawNeedsKey.to_string()),
        (None, _) => Err("its fields do not say what it holds".to_owned()),
    }
}

/// An output path: plain, inside `root`, and not a file the agent must never write.
fn check_output(
    root: &str,
    path: &str,
    what: &str,
    is_forbidden: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    write::check_path(path).map_err(|e| format!("{what} {e}"))?;
    if write::inside(root, path).is_none() {
        return Err(format!(
            "{what} {path:?} is outside the volume {root} the spec names"
        ));
    }
    if is_forbidden(path) {
        return Err(format!(
            "{what} {path:?} is the service account token or the agent's own executable"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(path: &str, engine: Engine) -> Mount {
        Mount {
            path: path.to_owned(),
            engine,
        }
    }

    #[test]
    fn kv2_paths_in_both_forms() {
        let m = mount("secret/", Engine::Kv2);
        assert_eq!(
            api_path("secret/shop/db", &m, None).unwrap(),
            "secret/data/shop/db"
        );
        assert_eq!(
            api_path("/secret/data/shop/db", &m, Some(3)).unwrap(),
            "secret/data/shop/db"
        );
        assert!(api_path("secret", &m, None).is_err());
        assert!(api_path("secret/data", &m, None).is_err());
        let deep = mount("team/kv/", Engine::Kv2);
        assert_eq!(
            api_path("team/kv/app", &deep, None).unwrap(),
            "team/kv/data/app"
        );
    }

    #[test]
    fn other_paths_read_as_written() {
        let kv1 = mount("kv/", Engine::Kv1);
        assert_eq!(api_path("kv/data/x", &kv1, None).unwrap(), "kv/data/x");
        let db = mount("database/", Engine::Other("database".to_owned()));
        assert_eq!(
            api_path("/database/creds/app", &db, None).unwrap(),
            "database/creds/app"
        );
        assert!(api_path("database/", &db, None).is_err());
        let err = api_path("database/creds/app", &db, Some(2)).unwrap_err();
        assert!(err.contains("`database` mount"), "{err}");
        assert!(api_path("kv/x", &kv1, Some(1))
            .unwrap_err()
            .contains("KV v1"));
    }

    fn spec_json() -> String {
        r#"{"v":1,"vault":{"address":"http://127.0.0.1:1","auth_path":"auth/kubernetes","role":"app","token_file":"/nonexistent/token"},
            "timeout_seconds":1,"secrets":[{"path":"secret/a"}],
            "files":[{"secret":0,"key":"k","format":"raw","mode":292,"path":"/secretstore/secrets/files/app/0/k","reference":"secret/a#k"}],
            "env_files":[{"container":"app","path":"/secretstore/secrets/env/app/env.json","refs":[{"reference":"secretstore:vault:secret/a#k","secret":0,"key":"k"}]}]}"#
            .to_owned()
    }

    #[test]
    fn validates_spec() {
        let spec = AgentSpec::from_json(&spec_json()).unwrap();
        validate(&spec).unwrap();
        let mut bad = spec.clone();
        bad.files[0].secret = Some(1);
        assert!(validate(&bad).is_err());
        let mut bad = spec.clone();
        bad.files[0].path = "/secretstore/secrets/../../etc/x".to_owned();
        assert!(validate(&bad).is_err());
        let mut bad = spec.clone();
        bad.files[0].format = FileFormat::Json;
        assert!(validate(&bad).unwrap_err().contains("raw"));
        let mut bad = spec.clone();
        bad.env_files[0].path = bad.files[0].path.clone();
        assert!(validate(&bad).unwrap_err().contains("twice"));
        let mut bad = spec.clone();
        bad.vault.role = String::new();
        assert!(validate(&bad).is_err());
        let mut bad = spec.clone();
        bad.vault.role = "app\nX-Evil: 1".to_owned();
        assert!(validate(&bad).unwrap_err().contains("role"));
        let mut bad = spec.clone();
        bad.files[0].path = "/etc/secretstore/x".to_owned();
        assert!(validate(&bad).unwrap_err().contains("outside the volume"));
        let mut bad = spec.clone();
        bad.files[0].path = "/secretstore/secrets/t".to_owned();
        bad.vault.token_file = "/secretstore/secrets/t".to_owned();
        assert!(validate(&bad).unwrap_err().contains("token"));
        let mut bad = spec.clone();
        bad.copy_binary_to = Some("/secretstore/secrets/secretstore".to_owned());
        assert!(validate(&bad).unwrap_err().contains("outside the volume"));
        let mut bad = spec.clone();
        bad.files[0].template = Some(0);
        assert!(validate(&bad).unwrap_err().contains("template"));
        let mut bad = spec.clone();
        bad.files[0].secret = None;
        bad.files[0].key = None;
        bad.files[0].template = Some(0);
        assert!(validate(&bad)
            .unwrap_err()
            .contains("points at template 0 of 0"));
        bad.templates.push(crate::pod::agent_spec::TemplateSpec {
            name: "filesecret-config-1/k".to_owned(),
            text: "${ a.k }".to_owned(),
            sources: [("a".to_owned(), 0)].into(),
        });
        assert_eq!(validate(&bad).unwrap().len(), 1);
        bad.templates[0].text = "{% include \"/etc/passwd\" %}".to_owned();
        assert!(validate(&bad)
            .unwrap_err()
            .starts_with("template filesecret-config-1/k: 1:"));
        let mut bad = spec.clone();
        bad.env_files[0].refs[0].secret = None;
        assert!(validate(&bad).unwrap_err().contains("neither"));
        let mut moved = spec;
        moved.secrets_root = "/tmp/pod/secrets".to_owned();
        assert!(validate(&moved).unwrap_err().contains("outside the volume"));
        moved.files[0].path = "/tmp/pod/secrets/files/app/0/k".to_owned();
        moved.env_files[0].path = "/tmp/pod/secrets/env/app/env.json".to_owned();
        validate(&moved).unwrap();
    }

    #[test]
    fn unreadable_token_is_an_environment_error() {
        let spec = AgentSpec::from_json(&spec_json()).unwrap();
        let err = run(&spec, &Log::new("test")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.message.contains("/nonexistent/token"),
            "{}",
            err.message
        );
    }

    #[test]
    fn references_listed_for_errors() {
        let spec = AgentSpec::from_json(&spec_json()).unwrap();
        assert_eq!(
            references_of(&spec, 0),
            "secret/a#k, secretstore:vault:secret/a#k"
        );
    }
}
