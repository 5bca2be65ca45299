//! The one HTTP layer between secretstore and Vault, used by the agent and by `check`.
//!
//! It owns everything that decides where credentials go and how much a server can make us
//! hold: the client (CA bundle, TLS server name), the redirect policy, the header values,
//! the per-request timeout the caller derives from its deadline, the cap on an answer's
//! size, `Retry-After`, and the classification of failures. vaultrs supplies endpoint
//! definitions and response types; its requests are sent through this layer too, so no
//! call escapes the policy.
//!
//! Redirects: at most one, and only to the same scheme, host and port (the Vault CLI
//! follows one too). reqwest drops `Authorization` and cookies on a cross-origin
//! redirect but not `X-Vault-Token`, and would re-post a login's `{role, jwt}` on a 307:
//! so a redirect anywhere else is refused, never followed.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use zeroize::Zeroizing;

pub use super::address::{has_dot_segment, is_header_safe, redacted_address};

/// Longest wait a `Retry-After` may ask for; a larger one is taken as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Time to open a connection, within the request's own timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach Vault.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub address: String,
    pub namespace: Option<String>,
    /// PEM bundle to trust instead of the system store.
    pub ca_cert_file: Option<String>,
    /// Name TLS verifies (and SNI sends) instead of the address's host.
    pub tls_server_name: Option<String>,
}

/// A failed Vault call: the HTTP status when there was one, whether retrying can help,
/// how long the server asked us to wait, and a message that never holds a secret value.
#[derive(Debug, Clone)]
pub struct VaultError {
    pub status: Option<u16>,
    transient: bool,
    /// The server's `Retry-After`, capped at [`MAX_RETRY_AFTER`].
    pub retry_after: Option<Duration>,
    pub detail: String,
}

impl VaultError {
    pub fn http(status: u16, detail: String) -> VaultError {
        VaultError {
            status: Some(status),
            transient: status_is_transient(status),
            retry_after: None,
            detail,
        }
    }

    pub fn permanent(detail: String) -> VaultError {
        VaultError {
            status: None,
            transient: false,
            retry_after: None,
            detail,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The same error, not to be retried.
    pub fn without_retry(mut self) -> VaultError {
        self.transient = false;
        self
    }

    fn from_reqwest(err: reqwest::Error) -> VaultError {
        // The URL is ours and may carry the path of a secret, never a value; it is dropped
        // anyway so that no message depends on that.
        let err = err.without_url();
        let tls = tls_failure(&err);
        let transient = !tls
            && !err.is_builder()
            && !err.is_redirect()
            && (err.is_connect() || err.is_timeout() || err.is_request() || err.is_body());
        let detail = error_chain(&err);
        VaultError {
            status: err.status().map(|s| s.as_u16()),
            transient,
            retry_after: None,
            detail: if tls {
                format!("{detail} (TLS: check the CA certificate and the TLS server name)")
            } else if err.is_timeout() {
                format!("{detail} (no answer in time)")
            } else {
                detail
            },
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
pub fn status_is_transient(status: u16) -> bool {
    status == 429 || status == 412 || (500..=599).contains(&status)
}

/// Bytes held on behalf of one caller across requests (answers being received, data
/// kept), so that many answers at once cannot add up past a limit.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `n` bytes; false (taking nothing) when that would pass the limit.
    pub fn try_charge(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    pub fn release(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }
}

/// An answer with any status: the body in zeroizing memory.
pub struct Answer {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
    retry_after: Option<Duration>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error this answer stands for: its status, Vault's `errors`, `Retry-After`.
    pub fn error(&self) -> VaultError {
        let mut err = VaultError::http(self.status, api_errors(&self.body));
        err.retry_after = self.retry_after;
        err
    }

    /// The body as JSON of type `T`, or an error naming the request.
    pub fn json<'a, T: Deserialize<'a>>(&'a self, what: &str) -> Result<T, VaultError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            VaultError::http(
                self.status,
                format!(
                    "the answer to {what} is not the JSON Vault sends ({:?} error at column {})",
                    e.classify(),
                    e.column()
                ),
            )
        })
    }
}

/// One request to send.
pub struct Request<'a> {
    pub method: Method,
    /// API path below `/v1/`, as Vault names it; each segment is percent-encoded.
    pub path: &'a str,
    pub query: Option<String>,
    pub body: Option<Zeroizing<Vec<u8>>>,
    /// The whole request, connection included, must finish within this.
    pub timeout: Duration,
}

impl<'a> Request<'a> {
    pub fn get(path: &'a str, timeout: Duration) -> Request<'a> {
        Request {
            method: Method::GET,
            path,
            query: None,
            body: None,
            timeout,
        }
    }

    pub fn post(path: &'a str, body: Zeroizing<Vec<u8>>, timeout: Duration) -> Request<'a> {
        Request {
            method: Method::POST,
            path,
            query: None,
            body: Some(body),
            timeout,
        }
    }
}

pub struct VaultHttp {
    client: reqwest::Client,
    /// `<address>/v1/`, with the host replaced by the TLS server name when one is set.
    api: Url,
    /// The address as configured, for messages.
    address: String,
    namespace: Option<HeaderValue>,
    token: Option<Zeroizing<String>>,
    max_answer: usize,
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

/// Scheme, host and port: what must stay the same for a redirect to be followed.
fn origin(url: &Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_owned(),
        url.host_str().map(str::to_ascii_lowercase),
        url.port_or_known_default(),
    )
}

fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(origin);
        if attempt.previous().len() == 1 && first == Some(origin(attempt.url())) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// Requests this process has sent to Vault (every attempt), for the sidecar's metrics.
static REQUESTS_SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many requests this process has sent to Vault so far, retries included.
pub fn requests_sent() -> u64 {
    REQUESTS_SENT.load(std::sync::atomic::Ordering::Relaxed)
}

impl VaultHttp {
    /// Builds the client. Fails (permanently) on an unusable address, namespace, CA file or
    /// TLS server name. `max_answer` caps the size of any one answer's body.
    pub fn new(conn: &Connection, max_answer: usize) -> Result<VaultHttp, VaultError> {
        let shown = redacted_address(&conn.address);
        let mut address = Url::parse(conn.address.trim_end_matches('/')).map_err(|e| {
            VaultError::permanent(format!("Vault address {shown:?} is not a URL: {e}"))
        })?;
        if !matches!(address.scheme(), "http" | "https") || address.host_str().is_none() {
            return Err(VaultError::permanent(format!(
                "Vault address {shown:?} must be an http:// or https:// URL with a host"
            )));
        }
        if !address.username().is_empty() || address.password().is_some() {
            return Err(VaultError::permanent(format!(
                "Vault address {shown:?} carries a user name or password: Vault authenticates with tokens, so remove the `user:password@` part"
            )));
        }
        if address.query().is_some() || address.fragment().is_some() {
            return Err(VaultError::permanent(format!(
                "Vault address {shown:?} has a query or fragment: give scheme, host, port and an optional path prefix only"
            )));
        }
        let namespace = match conn.namespace.as_deref().filter(|n| !n.is_empty()) {
            Some(ns) if !is_header_safe(ns) => {
                return Err(VaultError::permanent(format!(
                    "Vault namespace {ns:?} holds a line break or another control character, which cannot be sent in the X-Vault-Namespace header: fix vault.namespace"
                )))
            }
            Some(ns) => Some(HeaderValue::from_str(ns).map_err(|e| {
                VaultError::permanent(format!("Vault namespace {ns:?}: {e}"))
            })?),
            None => None,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(redirect_policy());
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
        let client = builder.build().map_err(|e| {
            VaultError::permanent(format!(
                "cannot set up the HTTPS client: {}: without a CA certificate in the configuration, the system CA store is trusted (SSL_CERT_FILE, /etc/ssl/certs)",
                error_chain(&e)
            ))
        })?;
        let base = address.as_str().trim_end_matches('/').to_owned();
        let api = Url::parse(&format!("{base}/v1/"))
            .map_err(|e| VaultError::permanent(format!("Vault address {shown:?}: {e}")))?;
        Ok(VaultHttp {
            client,
            api,
            address: shown,
            namespace,
            token: None,
            max_answer,
        })
    }

    /// The address for messages (without any user name or password).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The cap on one answer's body.
    pub fn max_answer(&self) -> usize {
        self.max_answer
    }

    /// Uses `token` for every later call. A token that cannot be a header value is
    /// refused (a server cannot have issued it).
    pub fn set_token(&mut self, token: Zeroizing<String>) -> Result<(), VaultError> {
        if !is_header_safe(&token) {
            return Err(VaultError::permanent(
                "the Vault token holds characters that cannot be sent in a header".to_owned(),
            ));
        }
        self.token = (!token.is_empty()).then_some(token);
        Ok(())
    }

    /// `<api>/<path>` with each segment percent-encoded. `.` and `..` segments are refused:
    /// a URL resolves them, so they would reach outside the path as written.
    pub fn url(&self, path: &str, query: Option<&str>) -> Result<Url, VaultError> {
        let mut url = self.api.clone();
        {
            let mut segments = url.path_segments_mut().map_err(|()| {
                VaultError::permanent(format!(
                    "the Vault address {} cannot take a path",
                    self.address
                ))
            })?;
            segments.pop_if_empty();
            for segment in path.trim_start_matches('/').split('/') {
                if segment == "." || segment == ".." {
                    return Err(VaultError::permanent(format!(
                        "the Vault path {path:?} has a `{segment}` segment: write the path without `.` or `..`"
                    )));
                }
                segments.push(segment);
            }
        }
        url.set_query(query);
        Ok(url)
    }

    /// Sends one request and receives its answer, whatever the status. Fails on no
    /// answer, a refused redirect, an answer over the size cap, or one that would pass
    /// `budget` (the bytes stay charged to it until the caller releases them).
    pub async fn send(
        &self,
        request: Request<'_>,
        budget: Option<&Budget>,
    ) -> Result<Answer, VaultError> {
        let what = format!(
            "{} /v1/{}",
            request.method,
            request.path.trim_start_matches('/')
        );
        let url = self.url(request.path, request.query.as_deref())?;
        let mut builder = self
            .client
            .request(request.method, url)
            .timeout(request.timeout)
            .header("X-Vault-Request", "true");
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(token).map_err(|_| {
                VaultError::permanent("the Vault token cannot be sent in a header".to_owned())
            })?;
            value.set_sensitive(true);
            builder = builder.header("X-Vault-Token", value);
        }
        if let Some(ns) = &self.namespace {
            builder = builder.header("X-Vault-Namespace", ns.clone());
        }
        if let Some(body) = request.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let send = async {
            REQUESTS_SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut response = builder.send().await.map_err(VaultError::from_reqwest)?;
            let status = response.status().as_u16();
            if response.status().is_redirection() {
                return Err(self.refused_redirect(&what, status, &response));
            }
            let retry_after = retry_after(&response);
            let body = self.receive(&mut response, &what, budget).await?;
            Ok(Answer {
                status,
                body,
                retry_after,
            })
        };
        // reqwest's timeout covers the body too; this also bounds the budget wait.
        match tokio::time::timeout(request.timeout, send).await {
            Ok(result) => result,
            Err(_) => Err(VaultError {
                status: None,
                transient: true,
                retry_after: None,
                detail: format!(
                    "{what}: no complete answer within {:.1}s",
                    request.timeout.as_secs_f64()
                ),
            }),
        }
    }

    /// Sends a vaultrs endpoint through this layer and parses its answer: the wrapper
    /// (`data`, `auth`, `lease_id`, ...) with `E::Response` as `data`. Non-2xx is an error.
    pub async fn call<E>(
        &self,
        endpoint: &E,
        timeout: Duration,
    ) -> Result<vaultrs::api::EndpointResult<E::Response>, VaultError>
    where
        E: rustify::Endpoint,
        E::Response: DeserializeOwned,
    {
        let built = endpoint
            .request("http://vault.invalid/")
            .map_err(|e| VaultError::permanent(format!("cannot build the request: {e}")))?;
        let method = Method::from_bytes(built.method().as_str().as_bytes())
            .map_err(|e| VaultError::permanent(format!("unusable request method: {e}")))?;
        let path = built.uri().path().to_owned();
        let path = percent_decode(&path);
        let query = built.uri().query().map(str::to_owned);
        let (_, body) = built.into_parts();
        let body = Zeroizing::new(body);
        let request = Request {
            method,
            path: path.trim_start_matches('/'),
            query,
            body: (!body.is_empty()).then_some(body),
            timeout,
        };
        let what = format!("{} /v1/{}", request.method, request.path);
        let answer = self.send(request, None).await?;
        if !answer.is_success() {
            return Err(answer.error());
        }
        answer.json(&what)
    }

    fn refused_redirect(
        &self,
        what: &str,
        status: u16,
        response: &reqwest::Response,
    ) -> VaultError {
        let target = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| response.url().join(l).ok())
            .map(|u| {
                let (scheme, host, port) = origin(&u);
                match port {
                    Some(p) => format!("{scheme}://{}:{p}", host.unwrap_or_default()),
                    None => format!("{scheme}://{}", host.unwrap_or_default()),
                }
            })
            .unwrap_or_else(|| "an unreadable location".to_owned());
        VaultError::permanent(format!(
            "Vault at {} answered {what} with a redirect ({status}) to {target}: secretstore follows one redirect to the same scheme, host and port only, so that tokens and login credentials never go elsewhere; point the Vault address at the server that answers (the active node, or a load balancer in front of it)",
            self.address
        ))
    }

    /// Receives a body into zeroizing memory, refusing more than the answer cap or the
    /// budget. Growing copies the bytes into a new buffer and zeroizes the old one.
    async fn receive(
        &self,
        response: &mut reqwest::Response,
        what: &str,
        budget: Option<&Budget>,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let too_large = |limit: usize| {
            VaultError::permanent(format!(
                "the answer to {what} is larger than {} MiB, the most secretstore takes from Vault in one answer: keep secrets small (Vault's own storage limits an entry to 1 MiB by default) or split the secret",
                limit >> 20
            ))
        };
        let over_budget = |limit: usize| {
            VaultError::permanent(format!(
                "receiving the answer to {what} would hold more than {} MiB of secrets at once, the agent's limit for one pod: split the secrets over several pods or make them smaller",
                limit >> 20
            ))
        };
        let expected = response.content_length().unwrap_or(0);
        if expected > self.max_answer as u64 {
            return Err(too_large(self.max_answer));
        }
        let mut charged = 0usize;
        let charge = |n: usize, charged: &mut usize| -> Result<(), VaultError> {
            if let Some(b) = budget {
                if !b.try_charge(n) {
                    return Err(over_budget(b.limit()));
                }
                *charged += n;
            }
            Ok(())
        };
        let result = async {
            let initial = (expected as usize).max(1024);
            charge(initial, &mut charged)?;
            let mut body = Zeroizing::new(Vec::with_capacity(initial));
            while let Some(chunk) = response.chunk().await.map_err(VaultError::from_reqwest)? {
                let needed = body.len() + chunk.len();
                if needed > self.max_answer {
                    return Err(too_large(self.max_answer));
                }
                if needed > body.capacity() {
                    let capacity = needed.max(body.capacity() * 2).min(self.max_answer);
                    charge(capacity, &mut charged)?;
                    let mut bigger = Zeroizing::new(Vec::with_capacity(capacity));
                    bigger.extend_from_slice(&body);
                    let old = body.capacity();
                    body = bigger;
                    if let Some(b) = budget {
                        b.release(old);
                        charged -= old;
                    }
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        }
        .await;
        if let (Some(b), Ok(body)) = (budget, &result) {
            // Keep what the body holds charged; hand back any slack.
            let keep = body.capacity();
            b.release(charged.saturating_sub(keep));
        } else if let Some(b) = budget {
            b.release(charged);
        }
        result
    }
}

/// `Retry-After` in seconds (what Vault sends), capped.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

fn percent_decode(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

/// The `errors` of a Vault error answer, joined on one line; never the body of a success.
pub fn api_errors(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    serde_json::from_slice::<Errors>(body)
        .map(|e| join_errors(&e.errors))
        .unwrap_or_default()
}

fn join_errors(errors: &[String]) -> String {
    let parts: Vec<&str> = errors
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .collect();
    parts.join("; ").replace("\n\t* ", " ").replace('\n', " ")
}

/// An error and its sources on one line, each source once.
pub fn error_chain(err: &dyn std::error::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(address: &str) -> Connection {
        Connection {
            address: address.to_owned(),
            ..Connection::default()
        }
    }

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
        assert_eq!(
            api_errors(br#"{"errors":["permission denied"]}"#),
            "permission denied"
        );
        assert_eq!(api_errors(br#"{"data":{"password":"x"}}"#), "");
    }

    #[test]
    fn rejects_bad_addresses_without_echoing_a_password() {
        assert!(VaultHttp::new(&conn("vault:8200"), 1).is_err());
        assert!(VaultHttp::new(&conn("ftp://vault"), 1).is_err());
        assert!(VaultHttp::new(&conn("https://vault.example:8200/"), 1).is_ok());
        let err = VaultHttp::new(&conn("https://user:hunter2@vault.example"), 1)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("user name or password"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(
            redacted_address("https://user:hunter2@vault.example:8200"),
            "https://vault.example:8200"
        );
    }

    #[test]
    fn header_unsafe_namespace_is_refused() {
        let mut c = conn("http://127.0.0.1:1");
        c.namespace = Some("team\nx".to_owned());
        let err = VaultHttp::new(&c, 1).err().unwrap().to_string();
        assert!(err.contains("namespace"), "{err}");
        assert!(is_header_safe("team-a/b c"));
        assert!(!is_header_safe("a\tb"));
        assert!(!is_header_safe("é"));
    }

    #[test]
    fn tls_server_name_replaces_the_url_host() {
        let mut c = conn("https://127.0.0.1:8200");
        c.tls_server_name = Some("vault.example".to_owned());
        let v = VaultHttp::new(&c, 1).map_err(|e| e.to_string()).unwrap();
        assert_eq!(v.api.as_str(), "https://vault.example:8200/v1/");
    }

    #[test]
    fn urls_encode_segments_and_refuse_dot_segments() {
        let v = VaultHttp::new(&conn("http://127.0.0.1:8200/prefix/"), 1).unwrap();
        assert_eq!(
            v.url("/secret/data/a b?c%", Some("version=2"))
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8200/prefix/v1/secret/data/a%20b%3Fc%25?version=2"
        );
        for bad in ["secret/data/../../sys/health", "secret/./x", "secret/.."] {
            assert!(v.url(bad, None).is_err(), "{bad}");
        }
        // An encoded dot segment is an ordinary name once its `%` is encoded.
        assert_eq!(
            v.url("secret/%2e%2e/x", None).unwrap().path(),
            "/prefix/v1/secret/%252e%252e/x"
        );
    }

    #[test]
    fn budget_refuses_past_its_limit() {
        let b = Budget::new(10);
        assert!(b.try_charge(6));
        assert!(!b.try_charge(5));
        b.release(6);
        assert!(b.try_charge(10));
    }

    #[test]
    fn endpoint_paths_decode() {
        assert_eq!(percent_decode("/auth/k8s%20x/login"), "/auth/k8s x/login");
    }
}
