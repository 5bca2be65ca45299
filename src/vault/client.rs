//! A read-only Vault client for `check` and `policy`, over the shared HTTP layer
//! ([`super::http`]): the same redirect policy, answer cap and error texts as the agent.
//! vaultrs supplies the KV v2 metadata endpoint; raw requests cover what it lacks or reads
//! differently (`sys/internal/ui/mounts`, `sys/policies/acl/<name>`, auth roles with all
//! their fields, secrets read without keeping their values).
//!
//! Every request is counted and takes a permit of a semaphore, so callers may start any
//! number of lookups at once and at most `concurrency` are in flight. Transient failures
//! (5xx, 429, no answer) are retried with backoff, honouring `Retry-After`, within a
//! deadline per lookup. Secret bodies are received into zeroizing memory and only their
//! key names are kept.

use super::http::{Answer, Connection, Request, VaultError, VaultHttp};
pub use super::kv::VersionState;
use super::kv::{version_state, Kv2Read, ReadAnswer};
use super::mounts::MountTable;
use super::retry::{retry, Deadline, GaveUp};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use vaultrs::api::kv2::requests::ReadSecretMetadataRequest;
use zeroize::Zeroizing;

/// How long one lookup may take, retries included.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(10);
/// Larger answers are refused rather than buffered.
const MAX_BODY: usize = 32 << 20;

/// How to reach Vault, from the Vault CLI's environment variables.
pub struct VaultEnv {
    pub address: String,
    pub token: Zeroizing<String>,
    pub namespace: Option<String>,
    pub ca_cert: Option<String>,
}

impl VaultEnv {
    /// `VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_NAMESPACE` (else `default_namespace`),
    /// `VAULT_CACERT`. `None` without `VAULT_ADDR`.
    pub fn from_env(
        lookup: &dyn Fn(&str) -> Option<String>,
        default_namespace: Option<&str>,
    ) -> Option<VaultEnv> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        Some(VaultEnv {
            address: get("VAULT_ADDR")?,
            token: Zeroizing::new(get("VAULT_TOKEN").unwrap_or_default()),
            namespace: get("VAULT_NAMESPACE").or_else(|| default_namespace.map(str::to_string)),
            ca_cert: get("VAULT_CACERT"),
        })
    }
}

/// The outcome of one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch<T> {
    Found(T),
    NotFound,
    /// 403: the token may not read it.
    Denied(String),
    /// Anything else: a server error, a broken connection, an unexpected answer.
    Failed(String),
}

/// A KV secret as read for a check: which keys it has, or why there is no data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretState {
    Present(BTreeSet<String>),
    /// KV v2: the version read (the latest, or the pinned one) is soft-deleted.
    Deleted(u64),
    /// KV v2: the version read is destroyed.
    Destroyed(u64),
}

/// A KV v2 secret's versions, from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub current: u64,
    pub versions: BTreeMap<u64, VersionState>,
}

pub struct VaultApi {
    http: VaultHttp,
    requests: AtomicUsize,
    permits: Semaphore,
}

impl VaultApi {
    pub fn new(env: VaultEnv, concurrency: usize) -> Result<VaultApi, String> {
        let conn = Connection {
            address: env.address,
            namespace: env.namespace,
            ca_cert_file: env.ca_cert,
            tls_server_name: None,
        };
        let mut http = VaultHttp::new(&conn, MAX_BODY)
            .map_err(|e| e.to_string().replace("Vault address", "VAULT_ADDR"))?;
        http.set_token(env.token)
            .map_err(|e| format!("VAULT_TOKEN: {e}"))?;
        Ok(VaultApi {
            http,
            requests: AtomicUsize::new(0),
            permits: Semaphore::new(concurrency.max(1)),
        })
    }

    /// HTTP requests made so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// Runs one request, holding a permit, again while Vault answers with a transient
    /// status (429, 5xx) within the lookup's deadline. No answer at all fails at once:
    /// `check` runs where a person or CI waits for it.
    async fn with_retries<T, F, Fut>(&self, op: F) -> Result<T, VaultError>
    where
        F: Fn(Duration) -> Fut,
        Fut: std::future::Future<Output = Result<T, VaultError>>,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| VaultError::permanent("the request limiter was closed".to_string()))?;
        let deadline = Deadline::after(LOOKUP_DEADLINE);
        retry(
            &deadline,
            |_, _, _| {},
            |timeout| {
                self.requests.fetch_add(1, Ordering::Relaxed);
                let answer = op(timeout);
                async move {
                    answer.await.map_err(|e| match e.status {
                        Some(_) => e,
                        None => e.without_retry(),
                    })
                }
            },
        )
        .await
        .map_err(|gave_up| match gave_up {
            GaveUp::Permanent(e) => e,
            GaveUp::Deadline { attempts, last } => VaultError::permanent(format!(
                "{last} (gave up after {attempts} attempts in {}s)",
                LOOKUP_DEADLINE.as_secs()
            )),
        })
    }

    /// `GET /v1/<path>[?<query>]` → the answer, whatever its status, once the status is
    /// not transient (or the lookup's deadline passed).
    async fn get(&self, path: &str, query: &str) -> Result<Answer, String> {
        let answer = self
            .with_retries(|timeout| async move {
                let mut request = Request::get(path, timeout);
                request.query = (!query.is_empty()).then(|| query.to_owned());
                let answer = self.http.send(request, None).await?;
                if super::http::status_is_transient(answer.status) {
                    return Err(answer.error());
                }
                Ok(answer)
            })
            .await;
        answer.map_err(|e| match e.status {
            Some(status) => format!(
                "Vault at {} answered {status} to GET /v1/{path}: {}",
                self.http.address(),
                e.detail
            ),
            None => format!(
                "cannot reach Vault at {} (GET /v1/{path}): {e}",
                self.http.address()
            ),
        })
    }

    /// A raw lookup: `Found(body)` on 2xx, else the status classified.
    async fn fetch(&self, path: &str, query: &str) -> Fetch<Zeroizing<Vec<u8>>> {
        match self.get(path, query).await {
            Ok(answer) => classify(answer, path),
            Err(e) => Fetch::Failed(e),
        }
    }

    /// Every mount the token can see (`GET sys/internal/ui/mounts`). This is the first
    /// call: `Err` means nothing can be checked (unreachable, sealed, bad token).
    pub async fn mounts(&self) -> Result<MountTable, String> {
        let answer = self.get("sys/internal/ui/mounts", "").await?;
        let address = self.http.address();
        let errors = answer.error().detail;
        match answer.status {
            200 => MountTable::from_ui_mounts(&answer.body),
            403 => Err(format!(
                "Vault at {address} refused the token (403 {errors}): VAULT_TOKEN is missing, invalid or expired"
            )),
            s => Err(format!(
                "Vault at {address} answered {s} to GET /v1/sys/internal/ui/mounts: {errors}"
            )),
        }
    }

    /// Reads a KV secret at its API path (KV v1 path, or KV v2 `data/` path with
    /// `version`) and keeps only its key names.
    pub async fn secret(
        &self,
        api_path: &str,
        kv2: bool,
        version: Option<u64>,
    ) -> Fetch<SecretState> {
        let query = version.map(|v| format!("version={v}")).unwrap_or_default();
        let answer = match self.get(api_path, &query).await {
            Ok(answer) => answer,
            Err(e) => return Fetch::Failed(e),
        };
        type Keys = HashMap<String, IgnoredAny>;
        if kv2 {
            // A deleted or destroyed version answers 404 with its metadata.
            let parsed = serde_json::from_slice::<ReadAnswer<Kv2Read<Keys>>>(&answer.body)
                .ok()
                .and_then(|b| b.data);
            match (answer.status, parsed) {
                (200, Some(Kv2Read { data: Some(d), .. })) => {
                    Fetch::Found(SecretState::Present(d.into_keys().collect()))
                }
                (
                    200 | 404,
                    Some(Kv2Read {
                        data: None,
                        metadata: Some(m),
                    }),
                ) => match m.state() {
                    VersionState::Destroyed => Fetch::Found(SecretState::Destroyed(m.version)),
                    VersionState::Deleted => Fetch::Found(SecretState::Deleted(m.version)),
                    VersionState::Live => Fetch::NotFound,
                },
                _ => failure(&answer, api_path),
            }
        } else {
            match (
                answer.status,
                serde_json::from_slice::<ReadAnswer<Keys>>(&answer.body),
            ) {
                (200, Ok(ReadAnswer { data: Some(d), .. })) => {
                    Fetch::Found(SecretState::Present(d.into_keys().collect()))
                }
                _ => failure(&answer, api_path),
            }
        }
    }

    /// The names under a path (`LIST`, sent as `GET ?list=true` as the Vault CLI does it):
    /// secrets, and folders ending in `/`. `NotFound` when nothing is there.
    pub async fn list(&self, path: &str) -> Fetch<Vec<String>> {
        #[derive(Deserialize)]
        struct Keys {
            keys: Vec<String>,
        }
        self.fetch(path, "list=true").await.and_then(|body| {
            match serde_json::from_slice::<ReadAnswer<Keys>>(&body) {
                Ok(ReadAnswer {
                    data: Some(Keys { keys }),
                    ..
                }) => Fetch::Found(keys),
                _ => Fetch::Failed(format!("unexpected answer from LIST /v1/{path}")),
            }
        })
    }

    /// A KV v2 secret's versions (vaultrs's metadata endpoint, sent through the shared
    /// layer); `mount` with or without `/`.
    pub async fn kv2_versions(&self, mount: &str, path: &str) -> Fetch<Versions> {
        let endpoint = ReadSecretMetadataRequest {
            mount: mount.trim_end_matches('/').to_owned(),
            path: path.to_owned(),
        };
        let answer = self
            .with_retries(|timeout| self.http.call(&endpoint, timeout))
            .await;
        match answer.map(|a| a.data) {
            Ok(Some(meta)) => {
                let versions = meta
                    .versions
                    .iter()
                    .filter_map(|(v, m)| {
                        Some((
                            v.parse().ok()?,
                            version_state(m.destroyed, &m.deletion_time),
                        ))
                    })
                    .collect();
                Fetch::Found(Versions {
                    current: meta.current_version,
                    versions,
                })
            }
            Ok(None) => Fetch::Failed(format!(
                "no metadata in the answer for {mount}metadata/{path}"
            )),
            Err(e) if e.status == Some(404) => Fetch::NotFound,
            Err(e) if e.status == Some(403) => {
                Fetch::Denied(format!("403 on {mount}metadata/{path}: {}", e.detail))
            }
            Err(e) => Fetch::Failed(format!("reading the metadata of {mount}{path}: {e}")),
        }
    }

    /// An auth role's configuration (`GET <auth_path>/role/<name>`), every field kept.
    pub async fn role(&self, auth_path: &str, name: &str) -> Fetch<serde_json::Value> {
        let path = format!("{}/role/{name}", auth_path.trim_matches('/'));
        self.fetch(&path, "")
            .await
            .and_then(|body| data_of(&body, &path))
    }

    /// The `data` of any answer (`GET <path>`), e.g. a PKI role.
    pub async fn data(&self, path: &str) -> Fetch<serde_json::Value> {
        self.fetch(path, "")
            .await
            .and_then(|body| data_of(&body, path))
    }

    /// An ACL policy's text (`GET sys/policies/acl/<name>`).
    pub async fn policy(&self, name: &str) -> Fetch<String> {
        let path = format!("sys/policies/acl/{name}");
        self.fetch(&path, "")
            .await
            .and_then(|body| match data_of(&body, &path) {
                Fetch::Found(data) => match data.get("policy").and_then(|p| p.as_str()) {
                    Some(text) => Fetch::Found(text.to_string()),
                    None => Fetch::Failed(format!("no policy text in GET /v1/{path}")),
                },
                Fetch::NotFound => Fetch::NotFound,
                Fetch::Denied(e) => Fetch::Denied(e),
                Fetch::Failed(e) => Fetch::Failed(e),
            })
    }
}

impl<T> Fetch<T> {
    fn and_then<U>(self, f: impl FnOnce(T) -> Fetch<U>) -> Fetch<U> {
        match self {
            Fetch::Found(t) => f(t),
            Fetch::NotFound => Fetch::NotFound,
            Fetch::Denied(e) => Fetch::Denied(e),
            Fetch::Failed(e) => Fetch::Failed(e),
        }
    }
}

/// A status that brought no usable answer (a 2xx here means an unexpected body).
fn failure<T>(answer: &Answer, path: &str) -> Fetch<T> {
    let errors = || match answer.error().detail {
        e if e.is_empty() => "no error message".to_owned(),
        e => e,
    };
    match answer.status {
        404 => Fetch::NotFound,
        403 => Fetch::Denied(format!("403 on {path}: {}", errors())),
        200..=299 => Fetch::Failed(format!("unexpected answer from GET /v1/{path}")),
        s => Fetch::Failed(format!("{s} on {path}: {}", errors())),
    }
}

fn classify(answer: Answer, path: &str) -> Fetch<Zeroizing<Vec<u8>>> {
    match answer.status {
        200..=299 => Fetch::Found(answer.body),
        _ => failure(&answer, path),
    }
}

/// The `data` object of an answer.
fn data_of(body: &[u8], path: &str) -> Fetch<serde_json::Value> {
    #[derive(Deserialize)]
    struct Body {
        data: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(Body {
            data: Some(data @ serde_json::Value::Object(_)),
        }) => Fetch::Found(data),
        _ => Fetch::Failed(format!("unexpected answer from GET /v1/{path}")),
    }
}
