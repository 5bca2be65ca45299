//! A real OpenBao dev server (in-memory, unsealed, root token `root`) on a free
//! loopback port, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::process::ServerProcess;
use super::{free_port, tool};

const ROOT_TOKEN: &str = "root";
const START_ATTEMPTS: usize = 5;

pub struct OpenBao {
    server: ServerProcess,
    /// What clients under test use: plain HTTP, or HTTPS for [`OpenBao::start_tls`].
    addr: String,
    /// Plain-HTTP listener the fixture's own helpers use (the same as `addr` without TLS).
    api_addr: String,
    ca_cert: Option<PathBuf>,
    unseal_key: String,
    http: ureq::Agent,
    _dir: TempDir,
}

impl OpenBao {
    /// Starts a dev server and waits until `sys/health` reports it active. KV v2 is
    /// mounted at `secret/`, as in every dev server.
    pub fn start() -> OpenBao {
        Self::start_with(None, false, None)
    }

    /// A dev server that logs every request and answer, values unhashed, to `file` (a
    /// file audit device with `log_raw`; OpenBao configures audit devices only in its
    /// configuration file). For tests that need the answer another client got.
    pub fn start_with_raw_audit(file: &Path) -> OpenBao {
        Self::start_with(None, false, Some(&audit_config(file, true)))
    }

    /// A dev server that logs every request and answer to `file` with values HMAC-hashed
    /// (a file audit device as OpenBao configures it by default): paths and operations in
    /// clear, no secret. For tests that count what a client read.
    pub fn start_with_audit(file: &Path) -> OpenBao {
        Self::start_with(None, false, Some(&audit_config(file, false)))
    }

    /// Starts a dev server whose client address is HTTPS, with a certificate for
    /// 127.0.0.1 and localhost signed by a fresh CA ([`Self::ca_cert_path`]). The
    /// fixture's own helpers use a second, plain listener on loopback.
    pub fn start_tls() -> OpenBao {
        Self::start_with(None, true, None)
    }

    /// Starts on this port (e.g. one a client was already told to use, to test that it
    /// retries while the server is not up yet). Panics if the port is taken.
    pub fn start_on_port(port: u16) -> OpenBao {
        Self::start_with(Some(port), false, None)
    }

    fn start_with(fixed_port: Option<u16>, tls: bool, extra_config: Option<&str>) -> OpenBao {
        let dir = tempfile::Builder::new()
            .prefix("secretstore-openbao-")
            .tempdir()
            .expect("cannot create temp dir");
        let http = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .allow_non_standard_methods(true)
                .timeout_global(Some(Duration::from_secs(30)))
                .build(),
        );
        let mut failures = Vec::new();
        for attempt in 0..START_ATTEMPTS {
            let port = fixed_port.unwrap_or_else(free_port);
            let mut command = Command::new(tool("bao"));
            command
                .args(["server", "-dev", "-dev-no-store-token"])
                .arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
                .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
                .env("HOME", dir.path())
                .env_remove("VAULT_ADDR")
                .env_remove("BAO_ADDR");
            if let Some(extra) = extra_config {
                let config = dir.path().join(format!("extra-{attempt}.hcl"));
                std::fs::write(&config, extra).expect("cannot write server config");
                command.arg(format!("-config={}", config.display()));
            }
            let (addr, api_addr, ca_cert) = if tls {
                let api_port = free_port();
                let config = dir.path().join(format!("plain-listener-{attempt}.hcl"));
                std::fs::write(
                    &config,
                    format!(
                        "listener \"tcp\" {{\n  address = \"127.0.0.1:{api_port}\"\n  tls_disable = true\n}}\n"
                    ),
                )
                .expect("cannot write listener config");
                command
                    .arg("-dev-tls")
                    .arg(format!("-dev-tls-cert-dir={}", dir.path().display()))
                    .arg(format!("-config={}", config.display()));
                (
                    format!("https://127.0.0.1:{port}"),
                    format!("http://127.0.0.1:{api_port}"),
                    Some(dir.path().join("vault-ca.pem")),
                )
            } else {
                let addr = format!("http://127.0.0.1:{port}");
                (addr.clone(), addr, None)
            };
            let log_path = dir.path().join(format!("bao-{attempt}.log"));
            let mut server =
                ServerProcess::spawn("bao server -dev", command, &log_path, libc::SIGTERM);
            let health = format!("{api_addr}/v1/sys/health");
            let ready = server.wait_until(Duration::from_secs(60), |server| {
                let healthy = http
                    .get(&health)
                    .call()
                    .map(|r| r.status().as_u16() == 200)
                    .unwrap_or(false);
                // The banner with the unseal key is printed once setup is complete.
                healthy.then(|| unseal_key_in(&server.log())).flatten()
            });
            match ready {
                Ok(unseal_key) => {
                    return OpenBao {
                        server,
                        addr,
                        api_addr,
                        ca_cert,
                        unseal_key,
                        http,
                        _dir: dir,
                    }
                }
                // Lost the port to another process: try another one.
                Err(log) if fixed_port.is_none() && log.contains("address already in use") => {
                    failures.push(log)
                }
                Err(log) => panic!("{log}"),
            }
        }
        panic!(
            "OpenBao could not bind a port in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    /// The address for clients under test: `http://127.0.0.1:<port>`, or
    /// `https://127.0.0.1:<port>` for [`Self::start_tls`].
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The CA certificate (PEM file) that signed a TLS server's certificate.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// The root token.
    pub fn token(&self) -> &str {
        ROOT_TOKEN
    }

    /// The environment a Vault client needs to reach this server with the root token:
    /// `VAULT_ADDR`, `VAULT_TOKEN`, their `BAO_` twins, and `VAULT_CACERT`/`BAO_CACERT`
    /// for a TLS server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("VAULT_ADDR", self.addr.clone()),
            ("VAULT_TOKEN", ROOT_TOKEN.to_owned()),
            ("BAO_ADDR", self.addr.clone()),
            ("BAO_TOKEN", ROOT_TOKEN.to_owned()),
        ];
        if let Some(ca) = &self.ca_cert {
            env.push(("VAULT_CACERT", ca.display().to_string()));
            env.push(("BAO_CACERT", ca.display().to_string()));
        }
        env
    }

    /// A `bao` CLI command aimed at this server with the root token ([`Self::env`] set,
    /// other `VAULT_*`/`BAO_*` variables of the test's environment removed).
    pub fn bao_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(tool("bao"));
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("VAULT_") || name.starts_with("BAO_") {
                command.env_remove(&*name);
            }
        }
        command.args(args).envs(self.env());
        command
    }

    /// Runs the `bao` CLI against this server; the caller checks the status.
    pub fn bao(&self, args: &[&str]) -> Output {
        self.bao_command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run bao {args:?}: {e}"))
    }

    /// Runs the `bao` CLI and returns its stdout; panics (with stderr) on failure.
    pub fn bao_ok(&self, args: &[&str]) -> String {
        let output = self.bao(args);
        assert!(
            output.status.success(),
            "bao {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A raw API call `METHOD /v1/<path>` with `token` (`""`: none); returns the status and the JSON
    /// body (`Value::Null` when empty). `method` may be non-standard, e.g. `LIST`.
    pub fn request_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = format!("{}/v1/{}", self.api_addr, path.trim_start_matches('/'));
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Content-Type", "application/json");
        if !token.is_empty() {
            request = request.header("X-Vault-Token", token);
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let response = self
            .http
            .run(request.body(body).expect("invalid request"))
            .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {url}: cannot read body: {e}"));
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}"))
        };
        (status, json)
    }

    /// [`Self::request_as`] with the root token.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.request_as(ROOT_TOKEN, method, path, body)
    }

    fn request_ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, json) = self.request(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} /v1/{path} returned {status}: {json}"
        );
        json
    }

    /// `GET /v1/<path>` as root; panics unless 2xx.
    pub fn get_json(&self, path: &str) -> Value {
        self.request_ok("GET", path, None)
    }

    /// `PUT /v1/<path>` as root; panics unless 2xx.
    pub fn put_json(&self, path: &str, body: &Value) -> Value {
        self.request_ok("PUT", path, Some(body))
    }

    /// `POST /v1/<path>` as root; panics unless 2xx.
    pub fn post_json(&self, path: &str, body: &Value) -> Value {
        self.request_ok("POST", path, Some(body))
    }

    /// Writes a KV v2 secret at `<mount>/data/<path>`; returns its new version.
    pub fn kv2_put(&self, mount: &str, path: &str, data: &Value) -> u64 {
        let response = self.post_json(
            &format!("{mount}/data/{path}"),
            &serde_json::json!({ "data": data }),
        );
        response["data"]["version"]
            .as_u64()
            .expect("KV v2 write returned no version")
    }

    /// Mounts an engine: `enable_secrets_engine("kv1", "kv", &json!({"options": {"version": "1"}}))`.
    pub fn enable_secrets_engine(&self, path: &str, engine: &str, config: &Value) {
        let mut body = config.clone();
        body["type"] = Value::from(engine);
        self.post_json(&format!("sys/mounts/{path}"), &body);
    }

    /// Writes an ACL policy (HCL).
    pub fn put_policy(&self, name: &str, hcl: &str) {
        self.put_json(
            &format!("sys/policies/acl/{name}"),
            &serde_json::json!({ "policy": hcl }),
        );
    }

    /// Creates a token with these policies (and no default policy); returns it.
    pub fn create_token(&self, policies: &[&str]) -> String {
        let response = self.post_json(
            "auth/token/create",
            &serde_json::json!({ "policies": policies, "no_default_policy": true, "ttl": "1h" }),
        );
        response["auth"]["client_token"]
            .as_str()
            .expect("token create returned no client_token")
            .to_owned()
    }

    /// Seals the server: every request then fails with 503 until [`Self::unseal`].
    pub fn seal(&self) {
        self.put_json("sys/seal", &Value::Null);
    }

    /// Unseals with the dev server's single key share, then waits until it is active.
    pub fn unseal(&self) {
        let response = self.put_json("sys/unseal", &serde_json::json!({ "key": self.unseal_key }));
        assert_eq!(
            response["sealed"],
            Value::Bool(false),
            "still sealed after unseal: {response}"
        );
        for _ in 0..200 {
            if self.health_status() == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("OpenBao not active after unseal; log:\n{}", self.log());
    }

    /// Status of `GET /v1/sys/health`: 200 active, 503 sealed.
    pub fn health_status(&self) -> u16 {
        self.request("GET", "sys/health", None).0
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// The server's process id (e.g. to stop it mid-test).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}

/// A file audit device writing to `file`, values in clear with `raw`.
fn audit_config(file: &Path, raw: bool) -> String {
    let name = if raw { "raw" } else { "hashed" };
    format!(
        "audit \"file\" \"{name}\" {{\n  options {{\n    file_path = \"{}\"\n    log_raw = \"{raw}\"\n  }}\n}}\n",
        file.display()
    )
}

fn unseal_key_in(log: &str) -> Option<String> {
    log.lines()
        .find_map(|line| line.trim().strip_prefix("Unseal Key: "))
        .map(|key| key.trim().to_owned())
}
