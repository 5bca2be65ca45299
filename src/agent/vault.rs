//! The agent's Vault client: one reqwest client (CA, TLS server name, timeouts) shared by
//! vaultrs (login, revoke-self) and raw calls for what vaultrs lacks or hides (mount
//! discovery through `sys/internal/ui/mounts`, reads that keep the lease and hold the body
//! in zeroizing memory).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::value::RawValue;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettings};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use super::format::SecretData;
use super::retry::MAX_REQUEST_TIME;
use crate::spec::VaultConnection;
use crate::vault::mounts::{Engine, Mount};

/// A failed Vault call: the HTTP status when there was one, whether retrying can help,
/// and Vault's own error text (which never holds a secret value).
#[derive(Debug, Clone)]
pub struct VaultError {
    pub status: Option<u16>,
    transient: bool,
    pub detail: String,
    /// The server's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl VaultError {
    fn http(status: u16, detail: String) -> VaultError {
        VaultError {
            status: Some(status),
            transient: status_is_transient(status),
            detail,
            retry_after: None,
        }
    }

    fn permanent(detail: String) -> VaultError {
        VaultError {
            status: None,
            transient: false,
            detail,
            retry_after: None,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// A 503, for tests of retry timing.
    #[cfg(test)]
    pub(crate) fn test_transient() -> VaultError {
        VaultError::http(503, String::new())
    }

    fn from_reqwest(err: &reqwest::Error) -> VaultError {
        let detail = error_chain(err);
        let tls = tls_failure(err);
        let transient = !tls
            && !err.is_builder()
            && (err.is_connect() || err.is_timeout() || err.is_request() || err.is_body());
        VaultError {
            status: err.status().map(|s| s.as_u16()),
            transient,
            detail: if tls {
                format!("{detail} (TLS: check the CA certificate and the TLS server name)")
            } else {
                detail
            },
            retry_after: None,
        }
    }

    fn from_vaultrs(err: ClientError) -> VaultError {
        match err {
            ClientError::APIError { code, errors } => VaultError::http(code, join_errors(&errors)),
            ClientError::RestClientError { source } => match source {
                rustify::errors::ClientError::RequestError { source, .. } => {
                    match source.downcast_ref::<reqwest::Error>() {
                        Some(e) => VaultError::from_reqwest(e),
                        None => VaultError::permanent(format!("{source:#}")),
                    }
                }
                rustify::errors::ClientError::ServerResponseError { code, .. } => {
                    VaultError::http(code, String::new())
                }
                other => VaultError::permanent(error_chain(&other)),
            },
            other => VaultError::permanent(error_chain(&other)),
        }
    }
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, self.detail.is_empty()) {
            (Some(code), true) => write!(f, "HTTP {code}"),
            (Some(code), false) => write!(f, "HTTP {code}: {}", self.detail),
            (None, _) => f.write_str(&self.detail),
        }
    }
}

/// 5xx covers sealed (503), standby and not-yet-initialised servers; 429 is rate limiting
/// (and a standby's health answer); 412 is Vault Enterprise's "not yet replicated".
fn status_is_transient(status: u16) -> bool {
    status == 429 || status == 412 || (500..=599).contains(&status)
}

fn join_errors(errors: &[String]) -> String {
    let parts: Vec<&str> = errors
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .collect();
    parts.join("; ").replace("\n\t* ", " ").replace('\n', " ")
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// rustls reports certificate and handshake failures as `InvalidData` I/O errors, which
/// hyper wraps in other I/O errors (reached through `get_ref`, not `source`).
fn tls_failure(err: &reqwest::Error) -> bool {
    fn invalid_data(e: &(dyn std::error::Error + 'static)) -> bool {
        match e.downcast_ref::<std::io::Error>() {
            Some(io) if io.kind() == std::io::ErrorKind::InvalidData => true,
            Some(io) => io.get_ref().is_some_and(|inner| invalid_data(inner)),
            None => false,
        }
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if invalid_data(e) {
            return true;
        }
        source = e.source();
    }
    false
}

/// A secret as read: its data map, and whether it holds a lease that must outlive the
/// agent's token.
pub struct Fetched {
    pub data: SecretData,
    pub leased: bool,
    pub lease: Option<Lease>,
}

/// The lease of a dynamic secret.
#[derive(Debug, Clone)]
pub struct Lease {
    pub id: String,
    /// Seconds.
    pub duration: u64,
    pub renewable: bool,
}

/// A token as the login (or a renewal) gave it.
pub struct TokenGrant {
    pub token: Zeroizing<String>,
    /// Seconds.
    pub ttl: u64,
    pub renewable: bool,
}

pub struct Vault {
    http: reqwest::Client,
    /// `<address>/v1/`, with the host replaced by the TLS server name when one is set.
    api: Url,
    namespace: Option<String>,
    token: Zeroizing<String>,
    sdk: VaultClient,
}

/// Connects to the configured address while TLS verifies (and SNI sends) the configured
/// server name: the URL carries the server name, this resolver dials the real host.
struct DialAddress {
    server_name: String,
    host: String,
}

impl Resolve for DialAddress {
    fn resolve(&self, name: Name) -> Resolving {
        let host = if name.as_str().eq_ignore_ascii_case(&self.server_name) {
            self.host.clone()
        } else {
            name.as_str().to_owned()
        };
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let addrs: Addrs = Box::new(addrs.collect::<Vec<_>>().into_iter());
            Ok(addrs)
        })
    }
}

impl Vault {
    /// Builds the client. Fails (permanently) on an unusable address or CA file.
    pub fn new(conn: &VaultConnection) -> Result<Vault, VaultError> {
        let mut address = Url::parse(conn.address.trim_end_matches('/')).map_err(|e| {
            VaultError::permanent(format!(
                "Vault address {:?} is not a URL: {e}",
                conn.address
            ))
        })?;
        if !matches!(address.scheme(), "http" | "https") || address.host_str().is_none() {
            return Err(VaultError::permanent(format!(
                "Vault address {:?} must be an http:// or https:// URL with a host",
                conn.address
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(MAX_REQUEST_TIME)
            .redirect(reqwest::redirect::Policy::limited(3));
        if let Some(file) = &conn.ca_cert_file {
            let pem = std::fs::read(file).map_err(|e| {
                VaultError::permanent(format!("cannot read the CA certificate file {file}: {e}"))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                VaultError::permanent(format!(
                    "the CA certificate file {file} is not a PEM bundle: {e}"
                ))
            })?;
            if certs.is_empty() {
                return Err(VaultError::permanent(format!(
                    "the CA certificate file {file} holds no PEM certificate"
                )));
            }
            builder = builder.tls_certs_only(certs);
        } else if address.scheme() == "http" {
            // No TLS: do not load (or require) the system's CA store, which minimal images lack.
            builder = builder.tls_certs_only(Vec::new());
        }
        if let Some(server_name) = conn.tls_server_name.as_deref().filter(|s| !s.is_empty()) {
            let host = address
                .host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            if !host.eq_ignore_ascii_case(server_name) {
                address.set_host(Some(server_name)).map_err(|e| {
                    VaultError::permanent(format!(
                        "TLS server name {server_name:?} is not a host name: {e}"
                    ))
                })?;
                builder = builder.dns_resolver(Arc::new(DialAddress {
                    server_name: server_name.to_owned(),
                    host,
                }));
            }
        }
        let http = builder.build().map_err(|e| {
            VaultError::permanent(format!(
                "cannot set up the HTTPS client: {}: without a CA certificate in the configuration, the agent trusts the system CA store (SSL_CERT_FILE, /etc/ssl/certs)",
                error_chain(&e)
            ))
        })?;
        let base = address.as_str().trim_end_matches('/').to_owned();
        let api = Url::parse(&format!("{base}/v1/"))
            .map_err(|e| VaultError::permanent(format!("Vault address {base:?}: {e}")))?;
        let namespace = conn.namespace.clone().filter(|n| !n.is_empty());
        let sdk = VaultClient {
            http: rustify::clients::reqwest::Client::new(&base, http.clone()),
            middle: EndpointMiddleware {
                token: String::new(),
                version: "v1".to_owned(),
                wrap: None,
                namespace: namespace.clone(),
            },
            settings: VaultClientSettings {
                address,
                ca_certs: conn.ca_cert_file.iter().cloned().collect(),
                identity: None,
                timeout: Some(MAX_REQUEST_TIME),
                token: String::new(),
                verify: true,
                version: 1,
                wrapping: false,
                namespace: namespace.clone(),
                proxy: None,
            },
        };
        Ok(Vault {
            http,
            api,
            namespace,
            token: Zeroizing::new(String::new()),
            sdk,
        })
    }

    /// Logs in at `<auth_path>/login` with `{role, jwt}` (the Kubernetes and JWT auth
    /// methods take the same call). Returns the token and its TTL in seconds.
    pub async fn login(
        &self,
        auth_path: &str,
        role: &str,
        jwt: &str,
    ) -> Result<(Zeroizing<String>, u64), VaultError> {
        self.login_grant(auth_path, role, jwt)
            .await
            .map(|grant| (grant.token, grant.ttl))
    }

    /// [`Vault::login`], also saying whether the token can be renewed.
    pub async fn login_grant(
        &self,
        auth_path: &str,
        role: &str,
        jwt: &str,
    ) -> Result<TokenGrant, VaultError> {
        let mount = auth_path
            .trim_matches('/')
            .strip_prefix("auth/")
            .unwrap_or(auth_path.trim_matches('/'));
        let auth = vaultrs::auth::kubernetes::login(&self.sdk, mount, role, jwt)
            .await
            .map_err(VaultError::from_vaultrs)?;
        Ok(TokenGrant {
            token: Zeroizing::new(auth.client_token),
            ttl: auth.lease_duration,
            renewable: auth.renewable,
        })
    }

    /// Renews the agent's own token; returns its new TTL and whether it stays renewable.
    pub async fn renew_self(&self, timeout: Duration) -> Result<(u64, bool), VaultError> {
        #[derive(Deserialize)]
        struct Auth {
            lease_duration: u64,
            #[serde(default)]
            renewable: bool,
        }
        #[derive(Deserialize)]
        struct Body {
            auth: Auth,
        }
        let body = self
            .send_json("auth/token/renew-self", &serde_json::json!({}), timeout)
            .await?;
        let parsed: Body = serde_json::from_slice(&body).map_err(|e| {
            VaultError::http(200, format!("unexpected answer from renew-self: {e}"))
        })?;
        Ok((parsed.auth.lease_duration, parsed.auth.renewable))
    }

    /// Renews a lease by `increment` seconds; returns the lease's new duration.
    pub async fn renew_lease(
        &self,
        lease_id: &str,
        increment: u64,
        timeout: Duration,
    ) -> Result<u64, VaultError> {
        #[derive(Deserialize)]
        struct Body {
            lease_duration: u64,
        }
        let request = serde_json::json!({"lease_id": lease_id, "increment": increment});
        let body = self
            .send_json("sys/leases/renew", &request, timeout)
            .await?;
        serde_json::from_slice::<Body>(&body)
            .map(|b| b.lease_duration)
            .map_err(|e| {
                VaultError::http(200, format!("unexpected answer from sys/leases/renew: {e}"))
            })
    }

    /// Revokes a lease (its credentials stop working at once).
    pub async fn revoke_lease(&self, lease_id: &str, timeout: Duration) -> Result<(), VaultError> {
        let request = serde_json::json!({"lease_id": lease_id});
        self.send_json("sys/leases/revoke", &request, timeout)
            .await
            .map(|_| ())
    }

    /// PUTs a JSON body; a non-2xx answer is an error carrying Vault's errors and
    /// `Retry-After`.
    async fn send_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let url = self.api.join(path).map_err(|e| {
            VaultError::permanent(format!("{path:?} does not make a valid URL: {e}"))
        })?;
        let mut req = self
            .http
            .put(url)
            .timeout(timeout)
            .header("X-Vault-Request", "true")
            .json(body);
        if !self.token.is_empty() {
            req = req.header("X-Vault-Token", self.token.as_str());
        }
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        let resp = req.send().await.map_err(|e| VaultError::from_reqwest(&e))?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let bytes = Zeroizing::new(
            resp.bytes()
                .await
                .map_err(|e| VaultError::from_reqwest(&e))?
                .to_vec(),
        );
        if !status.is_success() {
            let mut err = VaultError::http(status.as_u16(), api_errors(&bytes));
            err.retry_after = retry_after;
            return Err(err);
        }
        Ok(bytes)
    }

    /// Uses `token` for every later call.
    pub fn set_token(&mut self, token: Zeroizing<String>) {
        self.sdk.set_token(&token);
        self.token = token;
    }

    /// Revokes the agent's own token.
    pub async fn revoke_self(&self) -> Result<(), VaultError> {
        vaultrs::token::revoke_self(&self.sdk)
            .await
            .map_err(VaultError::from_vaultrs)
    }

    /// The mount that holds `path`, as the Vault CLI finds it. A server without the
    /// endpoint (404) is treated like the CLI does: a KV v1 (plain read) path.
    pub async fn mount_of(&self, path: &str, timeout: Duration) -> Result<Mount, VaultError> {
        let (status, body, _) = self
            .get(&format!("sys/internal/ui/mounts/{path}"), None, timeout)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(Mount {
                path: String::new(),
                engine: Engine::Kv1,
            });
        }
        if !status.is_success() {
            return Err(VaultError::http(status.as_u16(), api_errors(&body)));
        }
        Mount::from_ui_mount(&body).map_err(|e| {
            VaultError::http(
                status.as_u16(),
                format!("unexpected answer from sys/internal/ui/mounts/{path}: {e}"),
            )
        })
    }

    /// Reads an API path. For KV v2 (`kv2`), unwraps `data.data` and turns a 404 of a
    /// deleted or destroyed version into a message saying so.
    pub async fn read(
        &self,
        api_path: &str,
        version: Option<u64>,
        kv2: bool,
        timeout: Duration,
    ) -> Result<Fetched, VaultError> {
        #[derive(Deserialize)]
        struct Body<'a> {
            #[serde(default)]
            lease_id: String,
            #[serde(default)]
            lease_duration: u64,
            #[serde(default)]
            renewable: bool,
            #[serde(borrow)]
            data: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Kv2<'a> {
            #[serde(borrow)]
            data: Option<&'a RawValue>,
            metadata: Option<Kv2Metadata>,
        }
        #[derive(Deserialize)]
        struct Kv2Metadata {
            #[serde(default)]
            deletion_time: String,
            #[serde(default)]
            destroyed: bool,
            #[serde(default)]
            version: u64,
        }
        let query = version.map(|v| ("version", v.to_string()));
        let (status, body, retry_after) = self.get(api_path, query, timeout).await?;
        let parsed = serde_json::from_slice::<Body>(&body).ok();
        if !status.is_success() {
            let mut detail = api_errors(&body);
            if kv2 && status == StatusCode::NOT_FOUND {
                let meta = parsed
                    .as_ref()
                    .and_then(|b| b.data)
                    .and_then(|d| serde_json::from_str::<Kv2>(d.get()).ok())
                    .and_then(|k| k.metadata);
                if let Some(m) = meta {
                    detail = if m.destroyed {
                        format!("version {} is destroyed", m.version)
                    } else if !m.deletion_time.is_empty() {
                        format!("version {} was deleted at {}", m.version, m.deletion_time)
                    } else {
                        detail
                    };
                }
            }
            let mut err = VaultError::http(status.as_u16(), detail);
            err.retry_after = retry_after;
            return Err(err);
        }
        let body = parsed.ok_or_else(|| {
            VaultError::http(
                status.as_u16(),
                format!("the answer for {api_path} is not Vault JSON"),
            )
        })?;
        let data = match body.data {
            Some(d) if kv2 => serde_json::from_str::<Kv2>(d.get())
                .ok()
                .and_then(|k| k.data)
                .filter(|d| d.get() != "null"),
            other => other.filter(|d| d.get() != "null"),
        };
        let data = match data {
            Some(d) => serde_json::from_str::<SecretData>(d.get()).map_err(|_| {
                VaultError::http(
                    status.as_u16(),
                    format!("the data of {api_path} is not a JSON object of keys and values"),
                )
            })?,
            None => return Err(VaultError::http(404, "no data".to_owned())),
        };
        let lease = (!body.lease_id.is_empty()).then(|| Lease {
            id: body.lease_id.to_owned(),
            duration: body.lease_duration,
            renewable: body.renewable,
        });
        Ok(Fetched {
            data,
            leased: lease.is_some(),
            lease,
        })
    }

    async fn get(
        &self,
        path: &str,
        query: Option<(&str, String)>,
        timeout: Duration,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>, Option<Duration>), VaultError> {
        let mut url = self.api.join(path.trim_start_matches('/')).map_err(|e| {
            VaultError::permanent(format!("{path:?} does not make a valid URL: {e}"))
        })?;
        if let Some((k, v)) = query {
            url.query_pairs_mut().append_pair(k, &v);
        }
        let mut req = self
            .http
            .get(url)
            .timeout(timeout)
            .header("X-Vault-Request", "true");
        if !self.token.is_empty() {
            req = req.header("X-Vault-Token", self.token.as_str());
        }
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        let resp = req.send().await.map_err(|e| VaultError::from_reqwest(&e))?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| VaultError::from_reqwest(&e))?;
        Ok((status, Zeroizing::new(bytes.to_vec()), retry_after))
    }
}

/// `Retry-After` in seconds (the form Vault and proxies in front of it send), capped at
/// five minutes.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(300)))
}

fn api_errors(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    serde_json::from_slice::<Errors>(body)
        .map(|e| join_errors(&e.errors))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_statuses() {
        for s in [429, 412, 500, 502, 503, 504] {
            assert!(status_is_transient(s), "{s}");
        }
        for s in [400, 401, 403, 404, 405] {
            assert!(!status_is_transient(s), "{s}");
        }
    }

    #[test]
    fn vault_multierror_text_is_one_line() {
        let errors = vec!["1 error occurred:\n\t* permission denied\n\n".to_owned()];
        assert_eq!(join_errors(&errors), "1 error occurred: permission denied");
    }

    #[test]
    fn rejects_bad_addresses() {
        let conn = |address: &str| VaultConnection {
            address: address.to_owned(),
            auth_path: "auth/kubernetes".to_owned(),
            role: "r".to_owned(),
            namespace: None,
            ca_cert_file: None,
            tls_server_name: None,
            token_file: "/t".to_owned(),
        };
        assert!(Vault::new(&conn("vault:8200")).is_err());
        assert!(Vault::new(&conn("ftp://vault")).is_err());
        assert!(Vault::new(&conn("https://vault.example:8200/")).is_ok());
    }

    #[test]
    fn tls_server_name_replaces_the_url_host() {
        let conn = VaultConnection {
            address: "https://127.0.0.1:8200".to_owned(),
            auth_path: "auth/kubernetes".to_owned(),
            role: "r".to_owned(),
            namespace: Some("team".to_owned()),
            ca_cert_file: None,
            tls_server_name: Some("vault.example".to_owned()),
            token_file: "/t".to_owned(),
        };
        let v = Vault::new(&conn).map_err(|e| e.to_string()).unwrap();
        assert_eq!(v.api.as_str(), "https://vault.example:8200/v1/");
    }
}
