//! The live sidecar's Prometheus metrics (SPEC 2.1.9): render declares the port only when
//! metrics are asked for (the configuration's `agent.metrics.port` or the pod's
//! `metrics-port` annotation) and only in live mode, and leaves every other output as it
//! was; a live sidecar run the way the kubelet runs it, against a real OpenBao and
//! PostgreSQL, serves `GET /metrics`, whose every family, label and value is checked,
//! with errors counted after its secret is deleted, and no secret value anywhere.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::jwt::{JwtRole, ServiceAccountIssuer};
use support::openbao::OpenBao;
use support::output::text;
use support::pod::{agent_binary, KubeletPod};
use support::postgres::Postgres;
use support::sidecar::{start_sidecar, wait_until};

const PORT_NAME: &str = "secretstore-met";

/// A Deployment whose pod template has `annotations` (besides the opt-in and role) and
/// one app container; `ports` is the app container's `ports` list, if any.
fn manifest(annotations: &str, ports: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
      annotations:
        rafay.dev/secretstore: vault
        vault.secretstore.rafay.dev/role: app
        vault.secretstore.rafay.dev/filesecret-config-1: '{{"vaultSecretRef": "secret/shop/cfg#key", "secretFileName": "key", "volumeMountPath": "/etc/cfg"}}'
{annotations}
    spec:
      serviceAccountName: app
      containers:
      - name: app
        image: busybox
        command: ["/bin/sh", "-c", "sleep 1000"]
{ports}"#
    )
}

fn run(args: &[&str], env: &[(&str, &str)], manifest: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, manifest).expect("write manifest");
    let mut command = support::secretstore();
    command.env_remove("KUBE_VERSION").args(args).arg(&file);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run secretstore")
}

fn config(dir: &Path, yaml: &str) -> String {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path.to_string_lossy().into_owned()
}

/// The rendered agent container, and the `live` part of its spec.
fn agent(output: &Output) -> (Value, Value) {
    assert!(output.status.success(), "{}", text(&output.stderr));
    let doc: Value = yaml_serde::from_str(&text(&output.stdout)).expect("rendered YAML");
    let agent = doc["spec"]["template"]["spec"]["initContainers"][0].clone();
    let spec: Value =
        serde_json::from_str(agent["env"][0]["value"].as_str().expect("spec")).expect("spec JSON");
    (agent, spec["live"].clone())
}

#[test]
fn render_declares_the_port_only_when_asked_and_only_in_live_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refresh = "        vault.secretstore.rafay.dev/refresh: 5m";
    let live_with_port =
        format!("{refresh}\n        vault.secretstore.rafay.dev/metrics-port: \"9102\"");

    // Live mode without metrics: no port, and no metrics_port in the spec.
    let plain = run(&["render"], &[], &manifest(refresh, ""));
    let (container, live) = agent(&plain);
    assert!(container.get("ports").is_none(), "{container}");
    assert!(live.get("metrics_port").is_none(), "{live}");

    // The annotation, or the configuration: the port, named, in the container and the spec.
    let configured = config(dir.path(), "agent:\n  metrics:\n    port: 9102\n");
    let by_annotation = run(&["render"], &[], &manifest(&live_with_port, ""));
    let by_config = run(
        &["render", "--config", &configured],
        &[],
        &manifest(refresh, ""),
    );
    for output in [&by_annotation, &by_config] {
        let (container, live) = agent(output);
        assert_eq!(
            container["ports"],
            json!([{"name": PORT_NAME, "containerPort": 9102, "protocol": "TCP"}])
        );
        assert_eq!(live["metrics_port"], 9102);
    }
    insta::assert_snapshot!("render_with_metrics_port", text(&by_annotation.stdout));

    // The annotation overrides the configuration; `off` turns metrics off for the pod.
    let other = format!("{refresh}\n        vault.secretstore.rafay.dev/metrics-port: \"9300\"");
    let (container, _) = agent(&run(
        &["render", "--config", &configured],
        &[],
        &manifest(&other, ""),
    ));
    assert_eq!(container["ports"][0]["containerPort"], 9300);
    let off = format!("{refresh}\n        vault.secretstore.rafay.dev/metrics-port: \"off\"");
    let without = run(
        &["render", "--config", &configured],
        &[],
        &manifest(&off, ""),
    );
    assert_eq!(
        text(&without.stdout),
        text(&run(&["render"], &[], &manifest(&off, "")).stdout)
    );
    assert!(agent(&without).0.get("ports").is_none());

    // Not live: the configured port changes nothing, byte for byte.
    let one_shot = run(&["render"], &[], &manifest("", ""));
    let one_shot_configured = run(&["render", "--config", &configured], &[], &manifest("", ""));
    assert!(one_shot.status.success(), "{}", text(&one_shot.stderr));
    assert_eq!(one_shot.stdout, one_shot_configured.stdout);
    assert!(!text(&one_shot.stdout).contains(PORT_NAME));
}

#[test]
fn bad_ports_are_reported_where_they_are_written() {
    let refresh = "        vault.secretstore.rafay.dev/refresh: 5m";
    for bad in ["http", "65536", "-1", "9102/TCP"] {
        let annotations =
            format!("{refresh}\n        vault.secretstore.rafay.dev/metrics-port: \"{bad}\"");
        let output = run(&["render"], &[], &manifest(&annotations, ""));
        assert_eq!(output.status.code(), Some(1), "{bad}");
        assert!(output.stdout.is_empty());
        let err = text(&output.stderr);
        assert!(err.contains("SS106"), "{err}");
        assert!(
            err.contains("web.yaml:17:"),
            "{bad}: the annotation's line\n{err}"
        );
        assert!(err.contains("not a port number"), "{err}");
    }
    // A typo in the key: a did-you-mean.
    let typo = format!("{refresh}\n        vault.secretstore.rafay.dev/metrics-prot: \"9102\"");
    let output = run(&["render"], &[], &manifest(&typo, ""));
    assert_eq!(output.status.code(), Some(1));
    let err = text(&output.stderr);
    assert!(err.contains("SS103"), "{err}");
    assert!(
        err.contains("vault.secretstore.rafay.dev/metrics-port"),
        "{err}"
    );

    // A port an app container already declares: they share the pod's network.
    let taken = format!("{refresh}\n        vault.secretstore.rafay.dev/metrics-port: \"8080\"");
    let ports = "        ports:\n        - containerPort: 8080\n";
    let output = run(&["render"], &[], &manifest(&taken, ports));
    assert_eq!(output.status.code(), Some(1));
    let err = text(&output.stderr);
    assert!(
        err.contains("SS106") && err.contains("container `app`"),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let configured = config(dir.path(), "agent:\n  metrics:\n    port: 8080\n");
    let output = run(
        &["render", "--config", &configured],
        &[],
        &manifest(refresh, ports),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("agent.metrics.port"));
    let zero = config(dir.path(), "agent:\n  metrics:\n    port: 0\n");
    let output = run(&["render", "--config", &zero], &[], &manifest(refresh, ""));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("agent.metrics.port"));
}

#[test]
fn lint_warns_about_metrics_without_live_mode() {
    let annotations = "        vault.secretstore.rafay.dev/metrics-port: \"9102\"";
    let output = run(&["lint"], &[], &manifest(annotations, ""));
    let out = text(&output.stdout) + &text(&output.stderr);
    assert!(out.contains("SS207"), "{out}");
    assert!(out.contains("metrics-port"), "{out}");
    let live = format!("        vault.secretstore.rafay.dev/refresh: 5m\n{annotations}");
    let output = run(&["lint"], &[], &manifest(&live, ""));
    assert!(output.status.success(), "{}", text(&output.stdout));
    // render itself accepts it, without a port.
    let (container, _) = agent(&run(&["render"], &[], &manifest(annotations, "")));
    assert!(container.get("ports").is_none());
}

// --- The sidecar against OpenBao ---------------------------------------------------

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// One scrape: the status, Content-Type and body of `GET <path>` on the port.
fn get(port: u16, method: &str, path: &str) -> (u16, String, String) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build(),
    );
    let url = format!("http://127.0.0.1:{port}{path}");
    let response = match method {
        "GET" => agent.get(&url).call(),
        _ => agent.post(&url).send(""),
    }
    .expect("the metrics endpoint answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.into_body().read_to_string().expect("body");
    (status, content_type, body)
}

/// The samples of a Prometheus text exposition: name → (labels → value); and the
/// families' types from `# TYPE`.
struct Scrape {
    samples: BTreeMap<String, BTreeMap<String, f64>>,
    types: BTreeMap<String, String>,
    text: String,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample: series value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
            samples
                .entry(name.to_owned())
                .or_default()
                .insert(labels.to_owned(), value);
        }
        Scrape {
            samples,
            types,
            text: text.to_owned(),
        }
    }

    fn value(&self, name: &str, labels: &str) -> f64 {
        *self
            .samples
            .get(name)
            .and_then(|s| s.get(labels))
            .unwrap_or_else(|| panic!("no sample {name}{{{labels}}} in\n{}", self.text))
    }
}

fn scrape(port: u16) -> Scrape {
    let (status, content_type, body) = get(port, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(&body)
}

#[test]
fn the_sidecar_serves_its_metrics_against_openbao() {
    let vault = OpenBao::start();
    vault.put_policy(
        "app",
        r#"
path "secret/data/shop/*" { capabilities = ["read"] }
path "database/creds/app" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
"#,
    );
    let issuer = ServiceAccountIssuer::new();
    vault.enable_jwt_auth("kubernetes", &issuer);
    let mut role = JwtRole::service_account("shop", "app", "vault", &["app"]);
    role.token_ttl = "1h".to_owned();
    vault.write_jwt_role("kubernetes", "app", &role);
    let pg = Postgres::start();
    pg.attach_to_vault(&vault, "database", "app", "10m");
    vault.kv2_put("secret", "shop/cfg", &json!({"key": "cfg-VALUE-7f3a"}));

    let port = support::free_port();
    let annotations = format!(
        "        vault.secretstore.rafay.dev/refresh: 1s\n        vault.secretstore.rafay.dev/metrics-port: \"{port}\"\n        vault.secretstore.rafay.dev/filesecret-config-2: '{{\"vaultSecretRef\": \"database/creds/app\", \"secretFileName\": \"creds\", \"volumeMountPath\": \"/etc/db\", \"format\": \"properties\"}}'"
    );
    let rendered = run(
        &[
            "render",
            "--kube-version",
            "1.30",
            "--vault-addr",
            vault.addr(),
        ],
        &[("SECRETSTORE_AUDIENCE", "vault")],
        &manifest(&annotations, ""),
    );
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    let doc: Value = yaml_serde::from_str(&text(&rendered.stdout)).expect("YAML");
    let spec = doc["spec"]["template"]["spec"].clone();
    assert_eq!(spec["initContainers"][0]["ports"][0]["containerPort"], port);

    let started = now();
    let pod = KubeletPod::new(&spec, "shop", &issuer, &[], Path::new(&agent_binary()));
    let sidecar = start_sidecar(&pod, &spec);
    let creds =
        std::fs::read_to_string(pod.volume("secretstore-secrets").join("files/app/1/creds"))
            .expect("database credentials written");
    let password = creds
        .lines()
        .find_map(|l| l.strip_prefix("password="))
        .expect("a password")
        .to_owned();

    // Every family, with its type, and plausible values.
    wait_until(
        30,
        "two refreshes",
        || scrape(port).value("secretstore_secret_reads_total", "path=\"secret/shop/cfg\"") >= 3.0,
        || sidecar.log(),
    );
    let first = scrape(port);
    for (family, kind) in [
        ("secretstore_build_info", "gauge"),
        ("secretstore_refresh_interval_seconds", "gauge"),
        ("secretstore_secret_last_success_timestamp_seconds", "gauge"),
        ("secretstore_secret_reads_total", "counter"),
        ("secretstore_refresh_errors_total", "counter"),
        ("secretstore_token_expiry_timestamp_seconds", "gauge"),
        ("secretstore_token_ttl_seconds", "gauge"),
        ("secretstore_lease_expiry_timestamp_seconds", "gauge"),
        ("secretstore_lease_ttl_seconds", "gauge"),
        ("secretstore_files_written_total", "counter"),
        ("secretstore_vault_requests_total", "counter"),
    ] {
        assert_eq!(
            first.types.get(family).map(String::as_str),
            Some(kind),
            "{family} in\n{}",
            first.text
        );
    }
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(first.value("secretstore_build_info", &version), 1.0);
    assert_eq!(first.value("secretstore_refresh_interval_seconds", ""), 1.0);
    let scraped_at = now();
    for path in ["secret/shop/cfg", "database/creds/app"] {
        let label = format!("path=\"{path}\"");
        let last = first.value("secretstore_secret_last_success_timestamp_seconds", &label);
        assert!(
            last >= started - 1.0 && last <= scraped_at + 1.0,
            "{path}: {last}"
        );
        assert_eq!(first.value("secretstore_refresh_errors_total", &label), 0.0);
    }
    let token_expiry = first.value("secretstore_token_expiry_timestamp_seconds", "");
    assert!(
        token_expiry > scraped_at + 3000.0 && token_expiry < scraped_at + 3601.0,
        "a 1h token: {token_expiry} at {scraped_at}"
    );
    assert_eq!(first.value("secretstore_token_ttl_seconds", ""), 3600.0);
    let lease = "path=\"database/creds/app\"";
    let lease_expiry = first.value("secretstore_lease_expiry_timestamp_seconds", lease);
    assert!(
        lease_expiry > scraped_at + 500.0 && lease_expiry < scraped_at + 601.0,
        "a 10m lease: {lease_expiry} at {scraped_at}"
    );
    assert_eq!(first.value("secretstore_lease_ttl_seconds", lease), 600.0);
    assert!(
        first
            .samples
            .get("secretstore_lease_expiry_timestamp_seconds")
            .map(BTreeMap::len)
            == Some(1),
        "a KV secret has no lease"
    );
    // The certificate families appear with the first certificate; this pod has none.
    for family in [
        "secretstore_certificate_expiry_timestamp_seconds",
        "secretstore_certificate_ttl_seconds",
    ] {
        assert!(!first.text.contains(family), "{}", first.text);
    }
    assert_eq!(first.value("secretstore_files_written_total", ""), 2.0);
    assert!(first.value("secretstore_vault_requests_total", "") >= 5.0);

    // Only /metrics, only GET and HEAD.
    assert_eq!(get(port, "GET", "/").0, 404);
    assert_eq!(get(port, "GET", "/metrics/../secret").0, 404);
    assert_eq!(get(port, "POST", "/metrics").0, 405);

    // The secret is deleted: each refresh counts an error, its last success stays.
    let (status, _) = vault.request("DELETE", "secret/metadata/shop/cfg", None);
    assert_eq!(status, 204);
    let deleted = now();
    wait_until(
        30,
        "refresh errors",
        || {
            scrape(port).value(
                "secretstore_refresh_errors_total",
                "path=\"secret/shop/cfg\"",
            ) >= 2.0
        },
        || sidecar.log(),
    );
    let failing = scrape(port);
    let label = "path=\"secret/shop/cfg\"";
    assert!(
        failing.value("secretstore_secret_last_success_timestamp_seconds", label) <= deleted + 1.0
    );
    let db_success = failing.value(
        "secretstore_secret_last_success_timestamp_seconds",
        "path=\"database/creds/app\"",
    );
    assert!(db_success >= started - 1.0);
    assert_eq!(
        failing.value(
            "secretstore_refresh_errors_total",
            "path=\"database/creds/app\""
        ),
        0.0
    );
    assert!(
        failing.value("secretstore_vault_requests_total", "")
            > first.value("secretstore_vault_requests_total", "")
    );

    let log = sidecar.stop();
    assert!(log.contains("serving Prometheus metrics"), "{log}");
    for output in [&first.text, &failing.text, &log] {
        support::assert_no_secret(output, &["cfg-VALUE-7f3a", &password]);
    }
}
