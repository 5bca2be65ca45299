//! A read-only Vault client for `check` and `policy`: one reqwest client (CA, timeouts)
//! shared by vaultrs, where it has the call, and raw requests for what it lacks or reads
//! differently (`sys/internal/ui/mounts`, `sys/policies/acl/<name>`, auth roles with all
//! their fields, secrets read without keeping their values).
//!
//! Every request is counted and takes a permit of a semaphore, so callers may start any
//! number of lookups at once and at most `concurrency` are in flight. Secret bodies are
//! received into zeroizing memory and only their key names are kept.

use super::mounts::MountTable;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{VaultClient, VaultClientSettings};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    Live,
    Deleted,
    Destroyed,
}

/// A KV v2 secret's versions, from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub current: u64,
    pub versions: BTreeMap<u64, VersionState>,
}

pub struct VaultApi {
    http: reqwest::Client,
    /// `<address>/v1/`
    base: String,
    address: String,
    token: Zeroizing<String>,
    namespace: Option<String>,
    sdk: VaultClient,
    requests: AtomicUsize,
    permits: Semaphore,
}

impl VaultApi {
    pub fn new(env: VaultEnv, concurrency: usize) -> Result<VaultApi, String> {
        let address = env.address.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&address)
            .map_err(|e| format!("VAULT_ADDR `{address}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "VAULT_ADDR `{address}` must be an http:// or https:// URL with a host"
            ));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        if let Some(file) = &env.ca_cert {
            let pem =
                std::fs::read(file).map_err(|e| format!("cannot read VAULT_CACERT {file}: {e}"))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("VAULT_CACERT {file} is not a PEM bundle: {e}"))?;
            if certs.is_empty() {
                return Err(format!("VAULT_CACERT {file} holds no PEM certificate"));
            }
            builder = builder.tls_certs_only(certs);
        } else if url.scheme() == "http" {
            // No TLS: do not load (or require) the system's CA store.
            builder = builder.tls_certs_only(Vec::new());
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {}", error_chain(&e)))?;
        let sdk = VaultClient {
            http: rustify::clients::reqwest::Client::new(&address, http.clone()),
            middle: EndpointMiddleware {
                token: env.token.to_string(),
                version: "v1".into(),
                wrap: None,
                namespace: env.namespace.clone(),
            },
            settings: VaultClientSettings {
                address: url,
                ca_certs: env.ca_cert.iter().cloned().collect(),
                identity: None,
                timeout: Some(REQUEST_TIMEOUT),
                token: env.token.to_string(),
                verify: true,
                version: 1,
                wrapping: false,
                namespace: env.namespace.clone(),
                proxy: None,
            },
        };
        Ok(VaultApi {
            http,
            base: format!("{address}/v1/"),
            address,
            token: env.token,
            namespace: env.namespace,
            sdk,
            requests: AtomicUsize::new(0),
            permits: Semaphore::new(concurrency.max(1)),
        })
    }

    /// HTTP requests made so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// `GET /v1/<path>[?<query>]` → status and body (in zeroizing memory).
    async fn get(&self, path: &str, query: &str) -> Result<(u16, Zeroizing<Vec<u8>>), String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| "the request limiter was closed".to_string())?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut url = format!("{}{}", self.base, encode_path(path));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let mut request = self
            .http
            .get(&url)
            .header("X-Vault-Request", "true")
            .header("X-Vault-Token", self.token.as_str());
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        let mut response = request.send().await.map_err(|e| {
            format!(
                "cannot reach Vault at {}: {}",
                self.address,
                error_chain(&e)
            )
        })?;
        let status = response.status().as_u16();
        let body = read_body(&mut response).await.map_err(|e| {
            format!(
                "reading the answer to GET /v1/{path} from {}: {e}",
                self.address
            )
        })?;
        Ok((status, body))
    }

    /// A raw lookup: `Found(body)` on 2xx, else the status classified.
    async fn fetch(&self, path: &str, query: &str) -> Fetch<Zeroizing<Vec<u8>>> {
        match self.get(path, query).await {
            Ok((status, body)) => classify(status, body, path),
            Err(e) => Fetch::Failed(e),
        }
    }

    /// Every mount the token can see (`GET sys/internal/ui/mounts`). This is the first
    /// call: `Err` means nothing can be checked (unreachable, sealed, bad token).
    pub async fn mounts(&self) -> Result<MountTable, String> {
        let (status, body) = self.get("sys/internal/ui/mounts", "").await?;
        match status {
            200 => MountTable::from_ui_mounts(&body),
            403 => Err(format!(
                "Vault at {} refused the token (403 {}): VAULT_TOKEN is missing, invalid or expired",
                self.address,
                api_errors(&body)
            )),
            503 => Err(format!(
                "Vault at {} is sealed or not ready (503 {})",
                self.address,
                api_errors(&body)
            )),
            s => Err(format!(
                "Vault at {} answered {s} to GET /v1/sys/internal/ui/mounts: {}",
                self.address,
                api_errors(&body)
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
        let (status, body) = match self.get(api_path, &query).await {
            Ok(answer) => answer,
            Err(e) => return Fetch::Failed(e),
        };
        if kv2 {
            // A deleted or destroyed version answers 404 with its metadata.
            #[derive(Deserialize)]
            struct Body {
                data: Option<Kv2Data>,
            }
            #[derive(Deserialize)]
            struct Kv2Data {
                data: Option<HashMap<String, IgnoredAny>>,
                metadata: Option<Kv2Meta>,
            }
            #[derive(Deserialize)]
            struct Kv2Meta {
                #[serde(default)]
                deletion_time: String,
                #[serde(default)]
                destroyed: bool,
                #[serde(default)]
                version: u64,
            }
            let parsed = serde_json::from_slice::<Body>(&body)
                .ok()
                .and_then(|b| b.data);
            match (status, parsed) {
                (200, Some(Kv2Data { data: Some(d), .. })) => {
                    Fetch::Found(SecretState::Present(d.into_keys().collect()))
                }
                (
                    200 | 404,
                    Some(Kv2Data {
                        data: None,
                        metadata: Some(m),
                    }),
                ) => {
                    if m.destroyed {
                        Fetch::Found(SecretState::Destroyed(m.version))
                    } else if !m.deletion_time.is_empty() {
                        Fetch::Found(SecretState::Deleted(m.version))
                    } else {
                        Fetch::NotFound
                    }
                }
                (s, _) => failure(s, &body, api_path),
            }
        } else {
            #[derive(Deserialize)]
            struct Body {
                data: Option<HashMap<String, IgnoredAny>>,
            }
            match status {
                200 => match serde_json::from_slice::<Body>(&body) {
                    Ok(Body { data: Some(d) }) => {
                        Fetch::Found(SecretState::Present(d.into_keys().collect()))
                    }
                    _ => failure(status, &body, api_path),
                },
                s => failure(s, &body, api_path),
            }
        }
    }

    /// A KV v2 secret's versions (vaultrs `kv2::read_metadata`); `mount` with or without `/`.
    pub async fn kv2_versions(&self, mount: &str, path: &str) -> Fetch<Versions> {
        let permit = self.permits.acquire().await;
        if permit.is_err() {
            return Fetch::Failed("the request limiter was closed".into());
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        match vaultrs::kv2::read_metadata(&self.sdk, mount.trim_end_matches('/'), path).await {
            Ok(meta) => {
                let versions = meta
                    .versions
                    .iter()
                    .filter_map(|(v, m)| {
                        let state = if m.destroyed {
                            VersionState::Destroyed
                        } else if !m.deletion_time.is_empty() {
                            VersionState::Deleted
                        } else {
                            VersionState::Live
                        };
                        Some((v.parse().ok()?, state))
                    })
                    .collect();
                Fetch::Found(Versions {
                    current: meta.current_version,
                    versions,
                })
            }
            Err(ClientError::APIError { code: 404, .. }) => Fetch::NotFound,
            Err(ClientError::APIError { code: 403, errors }) => Fetch::Denied(format!(
                "403 on {mount}metadata/{path}: {}",
                errors.join("; ")
            )),
            Err(e) => Fetch::Failed(format!(
                "reading the metadata of {mount}{path}: {}",
                error_chain(&e)
            )),
        }
    }

    /// An auth role's configuration (`GET <auth_path>/role/<name>`), every field kept.
    pub async fn role(&self, auth_path: &str, name: &str) -> Fetch<serde_json::Value> {
        let path = format!("{}/role/{name}", auth_path.trim_matches('/'));
        self.fetch(&path, "")
            .await
            .and_then(|body| data_of(&body, &path))
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
fn failure<T>(status: u16, body: &[u8], path: &str) -> Fetch<T> {
    match status {
        404 => Fetch::NotFound,
        403 => Fetch::Denied(format!("403 on {path}: {}", api_errors(body))),
        200..=299 => Fetch::Failed(format!("unexpected answer from GET /v1/{path}")),
        s => Fetch::Failed(format!("{s} on {path}: {}", api_errors(body))),
    }
}

fn classify(status: u16, body: Zeroizing<Vec<u8>>, path: &str) -> Fetch<Zeroizing<Vec<u8>>> {
    match status {
        200..=299 => Fetch::Found(body),
        s => failure(s, &body, path),
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

/// The `errors` of a Vault error answer, joined; never the body of a success.
fn api_errors(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e.errors.join("; ").trim().to_string(),
        _ => "no error message".into(),
    }
}

/// Receives a body into zeroizing memory, growing it by copies whose old buffers are
/// zeroized on drop; refuses more than [`MAX_BODY`].
async fn read_body(response: &mut reqwest::Response) -> Result<Zeroizing<Vec<u8>>, String> {
    let hint = response.content_length().unwrap_or(0).min(MAX_BODY as u64) as usize;
    let mut body = Zeroizing::new(Vec::with_capacity(hint.max(1024)));
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        let needed = body.len() + chunk.len();
        if needed > MAX_BODY {
            return Err(format!("the answer is larger than {} MiB", MAX_BODY >> 20));
        }
        if needed > body.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(body.capacity() * 2)));
            bigger.extend_from_slice(&body);
            body = bigger;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Percent-encodes what cannot appear literally in a URL path (segments keep their `/`).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.trim_start_matches('/').bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_segment_safe() {
        assert_eq!(
            encode_path("/secret/data/a b?c%"),
            "secret/data/a%20b%3Fc%25"
        );
        assert_eq!(encode_path("kv/a-b_c.d~e"), "kv/a-b_c.d~e");
    }

    #[test]
    fn error_bodies_are_summarised() {
        assert_eq!(
            api_errors(br#"{"errors":["permission denied"]}"#),
            "permission denied"
        );
        assert_eq!(
            api_errors(br#"{"data":{"password":"x"}}"#),
            "no error message"
        );
    }
}
