//! `secretstore agent`: the init container. Logs in to Vault with the pod's projected
//! service-account token, reads each distinct secret once, writes the file secrets and one
//! env file per wrapped container, copies its own executable for `exec`, then exits.

pub mod format;
pub mod live;
pub mod log;
pub mod retry;
pub mod vault;
pub mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zeroize::Zeroizing;

use self::format::{render_whole, FormatError, SecretData};
use self::log::Log;
use self::retry::{retry, Deadline, GaveUp};
use self::vault::{Fetched, TokenGrant, Vault, VaultError};
use crate::spec::{AgentSpec, FileFormat, SecretRead, READY_FILE, SPEC_ENV, TOKEN_DIR};
use crate::vault::mounts::{self, Engine, Mount, MountTable};

/// How many secrets are read at the same time.
pub const MAX_CONCURRENT_READS: usize = 8;
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
    validate(spec).map_err(|e| AgentError::environment("spec", e))?;
    log.info(
        "start",
        "agent starting",
        &[
            ("version", &env!("CARGO_PKG_VERSION")),
            ("vault", &spec.vault.address),
            ("auth_path", &spec.vault.auth_path),
            ("role", &spec.vault.role),
            ("secrets", &spec.secrets.len()),
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
        return runtime.block_on(live::run(spec, settings, log, deadline, jwt));
    }
    runtime.block_on(run_async(spec, log, deadline, jwt))?;
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
    vault.set_token(grant.token);

    let vault = Arc::new(vault);
    let outcome = fetch_and_write(spec, log, &deadline, &vault).await;
    let leased = matches!(&outcome, Ok(true));
    if leased {
        log.info(
            "revoke",
            "token kept: a leased secret was read, and revoking the token would revoke its lease",
            &[("token_ttl_s", &ttl)],
        );
    } else {
        match vault.revoke_self().await {
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
    conn: &crate::spec::VaultConnection,
    jwt: &str,
    deadline: &Deadline,
    log: &Log,
) -> Result<TokenGrant, AgentError> {
    let fields: [(&str, &dyn fmt::Display); 2] =
        [("auth_path", &conn.auth_path), ("role", &conn.role)];
    let grant = retry(deadline, log, "login", &fields, || {
        vault.login_grant(&conn.auth_path, &conn.role, jwt)
    })
    .await
    .map_err(|gave_up| match gave_up {
        GaveUp::Permanent(err) if err.status.is_none() => unreachable("login", &err, &conn.address),
        GaveUp::Permanent(err) => AgentError::refused(
            "login",
            format!(
                "Vault refused the login of role {:?} at {}/login: {err}: check that role {:?} exists on auth path {:?}, that it is bound to this pod's service account and namespace, and that the token audience matches the role",
                conn.role, conn.auth_path, conn.role, conn.auth_path
            ),
        ),
        GaveUp::Deadline { attempts, last } => deadline_error("login", deadline, attempts, &last, &conn.address),
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

/// Reads, renders and writes everything. Returns whether a leased secret was read.
async fn fetch_and_write(
    spec: &AgentSpec,
    log: &Log,
    deadline: &Deadline,
    vault: &Arc<Vault>,
) -> Result<bool, AgentError> {
    let fetched = fetch_all(spec, log, deadline, vault).await?;
    let leased = fetched.iter().any(|f| f.fetched.leased);
    let outputs = render_outputs(spec, &fetched)?;
    write_outputs(&outputs, log)?;
    copy_binary(spec, log)?;
    Ok(leased)
}

/// Writes every output, each atomically.
fn write_outputs(outputs: &[Output], log: &Log) -> Result<(), AgentError> {
    for out in outputs {
        write::write_atomic(Path::new(&out.path), &out.contents, out.mode).map_err(|e| {
            AgentError::environment(
                "write",
                format!(
                    "cannot write {}: {e}: is the secrets volume mounted read-write?",
                    out.path
                ),
            )
        })?;
        log.info(
            "write",
            out.what,
            &[
                ("path", &out.path),
                ("mode", &format_args!("{:04o}", out.mode)),
            ],
        );
    }
    Ok(())
}

/// Copies this executable for `exec`, when the spec asks.
fn copy_binary(spec: &AgentSpec, log: &Log) -> Result<(), AgentError> {
    if let Some(dest) = &spec.copy_binary_to {
        let bytes = write::copy_own_executable(Path::new(dest)).map_err(|e| {
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
) -> Result<Vec<ReadSecret>, AgentError> {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_READS));
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
            address: spec.vault.address.clone(),
        };
        let (vault, mounts, limit, log, deadline) = (
            vault.clone(),
            mounts.clone(),
            limit.clone(),
            log.clone(),
            *deadline,
        );
        tasks.spawn_local_on(
            async move {
                let _permit = limit.acquire_owned().await;
                let fetched = job.run(&vault, &mounts, &log, &deadline).await;
                (job.index, fetched)
            },
            &local,
        );
    }
    let mut results: Vec<Option<ReadSecret>> = (0..spec.secrets.len()).map(|_| None).collect();
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

/// A secret as read, and where from (live mode reads it there again).
struct ReadSecret {
    fetched: Fetched,
    api: String,
    kv2: bool,
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
    ) -> Result<ReadSecret, AgentError> {
        let path = self.read.path.trim_start_matches('/');
        let mount = self.mount(vault, mounts, log, deadline, path).await?;
        let api = api_path(path, &mount, self.read.version)
            .map_err(|e| AgentError::refused("read", format!("{}: {e}", self.refs)))?;
        let kv2 = mount.engine == Engine::Kv2;
        let fields: [(&str, &dyn fmt::Display); 1] = [("path", &path)];
        let fetched = retry(deadline, log, "read", &fields, || {
            vault.read(&api, self.read.version, kv2, deadline.request_timeout())
        })
        .await
        .map_err(|gave_up| match gave_up {
            GaveUp::Permanent(err) if err.status.is_none() => {
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
        Ok(ReadSecret { fetched, api, kv2 })
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
        let mount = retry(deadline, log, "mount", &fields, || {
            vault.mount_of(path, deadline.request_timeout())
        })
        .await
        .map_err(|gave_up| match gave_up {
            GaveUp::Permanent(err) if err.status.is_none() => {
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

/// A failure with no HTTP answer that retrying cannot fix (TLS, a bad address).
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
            "gave up after {attempts} attempts in {}s: {last}: check that Vault at {address} is reachable from the pod and unsealed, or raise the agent timeout",
            deadline.total().as_secs()
        ),
    )
}

/// The references that use secret `index`, for error messages: `ref1, ref2`.
fn references_of(spec: &AgentSpec, index: usize) -> String {
    let mut refs = BTreeSet::new();
    for f in spec.files.iter().filter(|f| f.secret == index) {
        refs.insert(f.reference.as_str());
    }
    for r in spec
        .env_files
        .iter()
        .flat_map(|e| &e.refs)
        .filter(|r| r.secret == index)
    {
        refs.insert(r.reference.as_str());
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

/// One file to write: a file secret, or a container's env file.
struct Output {
    path: String,
    contents: Zeroizing<Vec<u8>>,
    mode: u32,
    what: &'static str,
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

fn render_outputs(spec: &AgentSpec, fetched: &[ReadSecret]) -> Result<Vec<Output>, AgentError> {
    each_output(spec, fetched).into_iter().collect()
}

/// Every output of the spec, rendered from the secrets as read, each on its own (live
/// mode keeps the old file of one that fails).
fn each_output(spec: &AgentSpec, fetched: &[ReadSecret]) -> Vec<Result<Output, AgentError>> {
    let mut outputs = Vec::new();
    for file in &spec.files {
        let data = &fetched[file.secret].fetched.data;
        let path = &spec.secrets[file.secret].path;
        let contents = match &file.key {
            Some(key) => data
                .get(key)
                .ok_or_else(|| missing_key(&file.reference, path, key, data))
                .map(|value| Zeroizing::new(value.as_text().as_bytes().to_vec())),
            None => render_whole(data, file.format)
                .map_err(|e| AgentError::refused("render", format!("{}: {e}", file.reference))),
        };
        outputs.push(contents.map(|contents| Output {
            path: file.path.clone(),
            contents,
            mode: file.mode,
            what: "file secret written",
        }));
    }
    for env in &spec.env_files {
        outputs.push(env_file(spec, env, fetched));
    }
    outputs
}

fn env_file(
    spec: &AgentSpec,
    env: &crate::spec::EnvFileOutput,
    fetched: &[ReadSecret],
) -> Result<Output, AgentError> {
    let mut values: BTreeMap<&str, &str> = BTreeMap::new();
    for r in &env.refs {
        let data = &fetched[r.secret].fetched.data;
        let value = data
            .get(&r.key)
            .ok_or_else(|| missing_key(&r.reference, &spec.secrets[r.secret].path, &r.key, data))?;
        values.insert(&r.reference, value.as_text());
    }
    let size: usize = values.iter().map(|(k, v)| k.len() + 2 * v.len() + 8).sum();
    let mut contents = Zeroizing::new(Vec::with_capacity(size * 3 + 8));
    serde_json::to_writer(&mut *contents, &values).map_err(|e| {
        AgentError::environment("render", format!("cannot encode the env file: {e}"))
    })?;
    Ok(Output {
        path: env.path.clone(),
        contents,
        mode: ENV_FILE_MODE,
        what: "env file written",
    })
}

/// Checks what render guarantees, so a hand-written or corrupted spec fails clearly
/// before anything is fetched.
fn validate(spec: &AgentSpec) -> Result<(), String> {
    let conn = &spec.vault;
    if conn.role.trim().is_empty() {
        return Err("the spec names no Vault role".to_owned());
    }
    if conn.auth_path.trim_matches('/').is_empty() {
        return Err("the spec names no Vault auth path".to_owned());
    }
    if let Some((i, _)) = spec
        .secrets
        .iter()
        .enumerate()
        .find(|(_, s)| s.path.trim_matches('/').is_empty())
    {
        return Err(format!("secret {i} of the spec has an empty path"));
    }
    let n = spec.secrets.len();
    let mut paths = BTreeSet::new();
    for f in &spec.files {
        if f.secret >= n {
            return Err(format!(
                "file {} points at secret {} of {n}",
                f.path, f.secret
            ));
        }
        write::check_path(&f.path).map_err(|e| format!("file path {e}"))?;
        if f.mode > 0o777 {
            return Err(format!("file {} has mode {:o}, above 0777", f.path, f.mode));
        }
        match (&f.key, f.format) {
            (Some(_), FileFormat::Raw)
            | (
                None,
                FileFormat::Json | FileFormat::Yaml | FileFormat::Env | FileFormat::Properties,
            ) => {}
            (Some(_), other) => {
                return Err(format!(
                    "file {}: {}",
                    f.path,
                    FormatError::KeyNeedsRaw(other)
                ))
            }
            (None, FileFormat::Raw) => {
                return Err(format!("file {}: {}", f.path, FormatError::RawNeedsKey))
            }
        }
        if !paths.insert(f.path.as_str()) {
            return Err(format!("the spec writes {} twice", f.path));
        }
    }
    for e in &spec.env_files {
        write::check_path(&e.path).map_err(|err| format!("env file path {err}"))?;
        if let Some(r) = e.refs.iter().find(|r| r.secret >= n) {
            return Err(format!(
                "env ref {} points at secret {} of {n}",
                r.reference, r.secret
            ));
        }
        if !paths.insert(e.path.as_str()) {
            return Err(format!("the spec writes {} twice", e.path));
        }
    }
    if let Some(dest) = &spec.copy_binary_to {
        write::check_path(dest).map_err(|e| format!("copy_binary_to {e}"))?;
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
        bad.files[0].secret = 1;
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
        let mut bad = spec;
        bad.vault.role = String::new();
        assert!(validate(&bad).is_err());
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
