//! The live sidecar's Prometheus metrics (SPEC 2.1.9), opt-in by port: per secret the
//! last successful refresh and the errors since start, the expiry of the token, of each
//! lease and of each certificate, and counts of reads, writes and Vault requests. Labels
//! are the secrets' paths as written in the manifest, never a value.
//!
//! The families are `prometheus-client`'s; [`Metrics`] is a cheap handle the refresh
//! loop sets them through (a no-op without a port). The endpoint runs on its own thread
//! with its own small runtime, so a slow or hostile scraper can never delay the refresh
//! loop: one request head of at most [`MAX_HEAD_BYTES`] is read (never a body), one
//! answer is written, and the connection is closed, all within [`CONNECTION_TIME`]; at
//! most [`MAX_CONNECTIONS`] are served at once.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::log::Log;
use crate::pod::agent_spec::{AgentSpec, LiveSpec};

/// The path the metrics are served at; every other path is 404.
pub const METRICS_PATH: &str = "/metrics";
/// The most of a request read: its request line and headers.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Everything one connection may take, from accept to close.
const CONNECTION_TIME: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 4;
/// The Content-Type of Prometheus's text format (0.0.4), served by default.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The Content-Type of OpenMetrics text, served to scrapers that ask for it.
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: String,
}

/// Unix time in whole seconds.
type Timestamp = Gauge;

/// The metric families, shared by the refresh loop (which sets them) and the endpoint
/// (which encodes them).
struct Families {
    last_success: Family<PathLabel, Timestamp>,
    reads: Family<PathLabel, Counter>,
    refresh_errors: Family<PathLabel, Counter>,
    token_expiry: Timestamp,
    token_ttl: Gauge,
    lease_expiry: Family<PathLabel, Timestamp>,
    lease_ttl: Family<PathLabel, Gauge>,
    certificate_expiry: Family<PathLabel, Timestamp>,
    certificate_ttl: Family<PathLabel, Gauge>,
    files_written: Counter,
    vault_requests: Counter,
}

impl Families {
    fn new(settings: &LiveSpec) -> (Families, Registry) {
        let families = Families {
            last_success: Family::default(),
            reads: Family::default(),
            refresh_errors: Family::default(),
            token_expiry: Timestamp::default(),
            token_ttl: Gauge::default(),
            lease_expiry: Family::default(),
            lease_ttl: Family::default(),
            certificate_expiry: Family::default(),
            certificate_ttl: Family::default(),
            files_written: Counter::default(),
            vault_requests: Counter::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "secretstore_build",
            "The secretstore agent's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let interval: Gauge = Gauge::default();
        interval.set(seconds(settings.refresh_seconds));
        registry.register(
            "secretstore_refresh_interval_seconds",
            "How often KV secrets are read again (plus up to 10 % jitter)",
            interval,
        );
        registry.register(
            "secretstore_secret_last_success_timestamp_seconds",
            "When the secret was last read from Vault with everything its files need (Unix time)",
            families.last_success.clone(),
        );
        registry.register(
            "secretstore_secret_reads",
            "Successful reads of the secret from Vault",
            families.reads.clone(),
        );
        registry.register(
            "secretstore_refresh_errors",
            "Failed reads, lease renewals and re-issues of the secret, and reads missing a key its files need",
            families.refresh_errors.clone(),
        );
        registry.register(
            "secretstore_token_expiry_timestamp_seconds",
            "When the sidecar's Vault token expires unless renewed (Unix time)",
            families.token_expiry.clone(),
        );
        registry.register(
            "secretstore_token_ttl_seconds",
            "The TTL of the sidecar's Vault token at its last login or renewal",
            families.token_ttl.clone(),
        );
        registry.register(
            "secretstore_lease_expiry_timestamp_seconds",
            "When the lease of a leased (dynamic) secret expires unless renewed (Unix time)",
            families.lease_expiry.clone(),
        );
        registry.register(
            "secretstore_lease_ttl_seconds",
            "The lease's TTL at its last read or renewal",
            families.lease_ttl.clone(),
        );
        registry.register(
            "secretstore_certificate_expiry_timestamp_seconds",
            "When the certificate last written for the path expires: its notAfter (Unix time)",
            families.certificate_expiry.clone(),
        );
        registry.register(
            "secretstore_certificate_ttl_seconds",
            "The certificate's whole lifetime, notAfter minus notBefore",
            families.certificate_ttl.clone(),
        );
        registry.register(
            "secretstore_files_written",
            "Files the sidecar wrote because their content changed",
            families.files_written.clone(),
        );
        registry.register(
            "secretstore_vault_requests",
            "HTTP requests the agent sent to Vault, retries included",
            families.vault_requests.clone(),
        );
        (families, registry)
    }
}

/// The refresh loop's handle on the metrics: each call records one event; without a
/// metrics port every call does nothing.
#[derive(Clone, Default)]
pub struct Metrics {
    families: Option<Arc<Families>>,
}

impl Metrics {
    /// Metrics that record nothing.
    pub fn off() -> Metrics {
        Metrics::default()
    }

    /// Starts the endpoint on the spec's metrics port, if any. A port that cannot be
    /// bound is logged and the sidecar runs on without metrics: they must never stop
    /// the secrets from being kept fresh.
    pub fn serve(spec: &AgentSpec, log: &Log) -> Metrics {
        let Some(settings) = &spec.live else {
            return Metrics::off();
        };
        let Some(port) = settings.metrics_port else {
            return Metrics::off();
        };
        let listener = match bind(port) {
            Ok(listener) => listener,
            Err(e) => {
                log.error(
                    "metrics",
                    "cannot serve metrics; the sidecar runs on without them",
                    &[("port", &port), ("error", &e)],
                );
                return Metrics::off();
            }
        };
        let (families, registry) = Families::new(settings);
        // Every path's counters start at 0, so `increase()` sees the first error.
        for read in &spec.secrets {
            drop(families.refresh_errors.get_or_create(&label(&read.path)));
            drop(families.reads.get_or_create(&label(&read.path)));
        }
        let families = Arc::new(families);
        let endpoint = Endpoint {
            registry,
            families: families.clone(),
            open: AtomicUsize::new(0),
        };
        let thread_log = log.clone();
        let started = std::thread::Builder::new()
            .name("metrics".to_owned())
            .spawn(move || endpoint.run(listener, &thread_log));
        if let Err(e) = started {
            log.error(
                "metrics",
                "cannot start the metrics thread; the sidecar runs on without metrics",
                &[("error", &e)],
            );
            return Metrics::off();
        }
        log.info(
            "metrics",
            "serving Prometheus metrics",
            &[("port", &port), ("path", &METRICS_PATH)],
        );
        Metrics {
            families: Some(families),
        }
    }

    /// Secret `path` was read and everything its files need was there.
    pub fn read_ok(&self, path: &str) {
        if let Some(f) = &self.families {
            let label = label(path);
            f.last_success.get_or_create(&label).set(unix_now());
            f.reads.get_or_create(&label).inc();
        }
    }

    /// Reading, renewing or re-issuing secret `path` failed, or a key its files need was
    /// missing.
    pub fn refresh_error(&self, path: &str) {
        if let Some(f) = &self.families {
            f.refresh_errors.get_or_create(&label(path)).inc();
        }
    }

    /// The token was granted (login) or renewed for `ttl_seconds`.
    pub fn token(&self, ttl_seconds: u64) {
        if let Some(f) = &self.families {
            f.token_expiry
                .set(unix_now().saturating_add(seconds(ttl_seconds)));
            f.token_ttl.set(seconds(ttl_seconds));
        }
    }

    /// The lease of secret `path` was granted or renewed for `ttl_seconds`.
    pub fn lease(&self, path: &str, ttl_seconds: u64) {
        if let Some(f) = &self.families {
            let label = label(path);
            f.lease_expiry
                .get_or_create(&label)
                .set(unix_now().saturating_add(seconds(ttl_seconds)));
            f.lease_ttl.get_or_create(&label).set(seconds(ttl_seconds));
        }
    }

    /// A certificate for `path` was written, valid from `not_before` to `not_after`
    /// (Unix seconds).
    pub fn certificate(&self, path: &str, not_before: i64, not_after: i64) {
        if let Some(f) = &self.families {
            let label = label(path);
            f.certificate_expiry.get_or_create(&label).set(not_after);
            f.certificate_ttl
                .get_or_create(&label)
                .set(not_after.saturating_sub(not_before));
        }
    }

    /// The sidecar wrote a changed file.
    pub fn file_written(&self) {
        if let Some(f) = &self.families {
            f.files_written.inc();
        }
    }
}

/// The label of a secret: its path as written, without a leading `/`.
fn label(path: &str) -> PathLabel {
    PathLabel {
        path: path.trim_start_matches('/').to_owned(),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| seconds(d.as_secs()))
}

fn seconds(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Binds every address of the pod (dual-stack where the pod has IPv6, IPv4 otherwise).
fn bind(port: u16) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
        .or_else(|_| {
            std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The endpoint: the registry it encodes and the connections it serves.
struct Endpoint {
    registry: Registry,
    families: Arc<Families>,
    open: AtomicUsize,
}

impl Endpoint {
    fn run(self, listener: std::net::TcpListener, log: &Log) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                return log.error(
                    "metrics",
                    "cannot start the metrics runtime; no metrics",
                    &[("error", &e)],
                )
            }
        };
        let endpoint = Arc::new(self);
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    return log.error(
                        "metrics",
                        "cannot listen for metrics; no metrics",
                        &[("error", &e)],
                    )
                }
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors, or a connection reset before it was accepted:
                    // wait a little rather than spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                if endpoint.open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    endpoint.open.fetch_sub(1, Ordering::AcqRel);
                    drop(stream);
                    continue;
                }
                let endpoint = endpoint.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CONNECTION_TIME, endpoint.answer(stream)).await;
                    endpoint.open.fetch_sub(1, Ordering::AcqRel);
                });
            }
        });
    }

    /// Reads one request head and writes one answer.
    async fn answer(&self, mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
        let mut head = Vec::with_capacity(512);
        let mut buf = [0u8; 1024];
        let end = loop {
            if let Some(end) = head_end(&head) {
                break end;
            }
            if head.len() >= MAX_HEAD_BYTES {
                let answer = Answer::text(431, "Request Header Fields Too Large", "");
                return answer.write(&mut stream).await;
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        };
        self.route(&head[..end]).write(&mut stream).await
    }

    /// What to answer to a request head.
    fn route(&self, head: &[u8]) -> Answer {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.lines();
        let mut parts = lines.next().unwrap_or_default().split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Answer::text(400, "Bad Request", "bad request\n");
        };
        if !version.starts_with("HTTP/1.") {
            return Answer::text(400, "Bad Request", "bad request\n");
        }
        if target.split('?').next() != Some(METRICS_PATH) {
            return Answer::text(404, "Not Found", "not found: the metrics are at /metrics\n");
        }
        if method != "GET" && method != "HEAD" {
            let mut answer = Answer::text(405, "Method Not Allowed", "");
            answer.allow = true;
            return answer;
        }
        let openmetrics = lines.any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("accept")
                    && value.contains("application/openmetrics-text")
            })
        });
        let mut answer = match self.encode(openmetrics) {
            Some((body, content_type)) => Answer {
                status: 200,
                reason: "OK",
                content_type,
                allow: false,
                body: body.into_bytes(),
                send_body: true,
            },
            None => Answer::text(500, "Internal Server Error", ""),
        };
        answer.send_body = method == "GET";
        answer
    }

    /// The metrics as Prometheus text (or OpenMetrics), with its Content-Type.
    fn encode(&self, openmetrics: bool) -> Option<(String, &'static str)> {
        self.families
            .vault_requests
            .inner()
            .store(crate::vault::http::requests_sent(), Ordering::Relaxed);
        let mut body = String::with_capacity(4096);
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut body, &self.registry).ok()?;
            Some((body, OPENMETRICS_TEXT))
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut body, &self.registry).ok()?;
            Some((body, PROMETHEUS_TEXT))
        }
    }
}

/// One HTTP answer; the connection is closed after it.
struct Answer {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    /// Adds `Allow: GET, HEAD` (to a 405).
    allow: bool,
    body: Vec<u8>,
    /// False for HEAD: the headers describe the body, which is not sent.
    send_body: bool,
}

impl Answer {
    fn text(status: u16, reason: &'static str, body: &str) -> Answer {
        Answer {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            allow: false,
            body: body.as_bytes().to_vec(),
            send_body: true,
        }
    }

    async fn write(&self, stream: &mut tokio::net::TcpStream) -> std::io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if self.allow {
            out.extend_from_slice(b"Allow: GET, HEAD\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if self.send_body {
            out.extend_from_slice(&self.body);
        }
        stream.write_all(&out).await?;
        stream.shutdown().await
    }
}

/// Where the request head ends (after its blank line), if it has.
fn head_end(head: &[u8]) -> Option<usize> {
    head.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| head.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        let settings = LiveSpec {
            refresh_seconds: 60,
            revoke_on_stop: true,
            metrics_port: Some(9102),
        };
        let (families, registry) = Families::new(&settings);
        Endpoint {
            registry,
            families: Arc::new(families),
            open: AtomicUsize::new(0),
        }
    }

    fn route(endpoint: &Endpoint, head: &str) -> Answer {
        endpoint.route(head.as_bytes())
    }

    #[test]
    fn serves_metrics_only_at_its_path() {
        let endpoint = endpoint();
        let metrics = Metrics {
            families: Some(endpoint.families.clone()),
        };
        metrics.read_ok("/secret/shop/db");
        metrics.refresh_error("secret/shop/db");
        metrics.token(3600);
        metrics.lease("database/creds/app", 300);
        metrics.certificate("pki/issue/web", 1_700_000_000, 1_700_086_400);
        metrics.file_written();
        let ok = route(&endpoint, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((ok.status, ok.content_type), (200, PROMETHEUS_TEXT));
        let text = String::from_utf8(ok.body).unwrap();
        for line in [
            "secretstore_refresh_errors_total{path=\"secret/shop/db\"} 1",
            "secretstore_secret_reads_total{path=\"secret/shop/db\"} 1",
            "secretstore_refresh_interval_seconds 60",
            "secretstore_lease_ttl_seconds{path=\"database/creds/app\"} 300",
            "secretstore_certificate_expiry_timestamp_seconds{path=\"pki/issue/web\"} 1700086400",
            "secretstore_certificate_ttl_seconds{path=\"pki/issue/web\"} 86400",
            "secretstore_token_ttl_seconds 3600",
            "secretstore_files_written_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(text.contains("secretstore_build_info{version=\""), "{text}");
        let with_query = route(&endpoint, "GET /metrics?x=1 HTTP/1.0\n\n");
        assert_eq!(with_query.status, 200);
        let open = route(
            &endpoint,
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
        );
        assert_eq!(open.content_type, OPENMETRICS_TEXT);
        assert!(String::from_utf8(open.body).unwrap().ends_with("# EOF\n"));
        let head = route(&endpoint, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.status == 200 && !head.send_body && !head.body.is_empty());
        for (request, status) in [
            ("GET / HTTP/1.1\r\n\r\n", 404),
            ("GET /metricsx HTTP/1.1\r\n\r\n", 404),
            ("GET /debug/pprof HTTP/1.1\r\n\r\n", 404),
            ("POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 405),
            ("GET /metrics\r\n\r\n", 400),
            ("GET /metrics SPDY/3\r\n\r\n", 400),
            ("\u{0}\u{1}\r\n\r\n", 400),
        ] {
            assert_eq!(route(&endpoint, request).status, status, "{request:?}");
        }
    }

    #[test]
    fn off_records_nothing_and_heads_end_at_the_blank_line() {
        let off = Metrics::off();
        off.read_ok("secret/a");
        off.token(1);
        assert!(off.families.is_none());
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
