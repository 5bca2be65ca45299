//! Live mode end to end: a manifest through `secretstore render` (refresh, on-change), then
//! the rendered pod run the way the kubelet runs it (tests/support/pod.rs): the agent as a
//! native sidecar (started first, its startup probe polled until it passes, then left
//! running), the app containers under `secretstore exec`, against a real OpenBao and a
//! real PostgreSQL, with short TTLs. Waits are polls with generous bounds; nothing asserts
//! how fast something happens. No secret value may appear in any log.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::jwt::{JwtRole, ServiceAccountIssuer};
use support::openbao::OpenBao;
use support::output::{describe, text};
use support::pod::{agent_binary, Container, KubeletPod};
use support::postgres::Postgres;
use support::sidecar::{start_sidecar, wait_until, Running};

const NAMESPACE: &str = "shop";
const SERVICE_ACCOUNT: &str = "app";
const AUDIENCE: &str = "vault";
const AUTH_MOUNT: &str = "kubernetes";
const SECRETS_VOLUME: &str = "secretstore-secrets";

struct Lab {
    vault: OpenBao,
    issuer: ServiceAccountIssuer,
}

impl Lab {
    /// OpenBao with KV v2 at `secret/`, `jwt` auth at `auth/kubernetes`, and role `app`
    /// (bound to shop/app) with the policy `secretstore policy` writes for a live pod.
    fn start(token_ttl: &str, token_max_ttl: &str) -> Lab {
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
        vault.enable_jwt_auth(AUTH_MOUNT, &issuer);
        // The role as JwtRole::service_account writes it, with short token TTLs.
        let role = JwtRole::service_account(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE, &["app"]);
        vault.post_json(
            &format!("auth/{AUTH_MOUNT}/role/app"),
            &json!({
                "role_type": "jwt",
                "user_claim": role.user_claim,
                "bound_subject": role.bound_subject,
                "bound_claims": role.bound_claims,
                "bound_audiences": role.bound_audiences,
                "token_policies": role.token_policies,
                "token_ttl": token_ttl,
                "token_max_ttl": token_max_ttl,
            }),
        );
        Lab { vault, issuer }
    }

    fn token_accessors(&self) -> usize {
        let (_, body) = self.vault.request("LIST", "auth/token/accessors", None);
        body["data"]["keys"].as_array().map_or(0, Vec::len)
    }
}

/// A Deployment's pod template with the given annotations and one app container.
fn manifest(annotations: &str, container: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {NAMESPACE}
spec:
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
      annotations:
        rafay.dev/secretstore: vault
        vault.secretstore.rafay.dev/role: app
{annotations}
    spec:
      serviceAccountName: {SERVICE_ACCOUNT}
      securityContext:
        runAsUser: 1000
        runAsGroup: 1000
        fsGroup: 2000
      volumes:
      - name: out
        emptyDir: {{}}
      containers:
{container}
"#
    )
}

/// The app: a shell script, as the container's `command`, with `/out` mounted.
fn app(script: &str, env: &[(&str, &str)]) -> String {
    let mut text = format!(
        "      - name: app\n        image: busybox\n        command: [\"/bin/sh\", \"-c\", {}]\n        volumeMounts:\n        - {{name: out, mountPath: /out}}\n",
        serde_json::to_string(script).expect("json string")
    );
    if !env.is_empty() {
        text.push_str("        env:\n");
        for (name, value) in env {
            text.push_str(&format!("        - {{name: {name}, value: \"{value}\"}}\n"));
        }
    }
    text
}

/// Renders `manifest` for this Vault and Kubernetes 1.30; returns the pod spec.
fn render(lab: &Lab, manifest: &str) -> Value {
    render_with(lab, manifest, &[])
}

/// [`render`] with more environment variables for render.
fn render_with(lab: &Lab, manifest: &str, env: &[(&str, &str)]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, manifest).expect("write manifest");
    let output = support::secretstore()
        .envs(env.iter().copied())
        .env_remove("KUBE_VERSION")
        .env("SECRETSTORE_AUDIENCE", AUDIENCE)
        .args([
            "render",
            "--kube-version",
            "1.30",
            "--vault-addr",
            lab.vault.addr(),
        ])
        .arg(&file)
        .output()
        .expect("run render");
    assert!(output.status.success(), "{}", describe(&output));
    let doc: Value = yaml_serde::from_str(&text(&output.stdout)).expect("rendered YAML");
    let spec = doc["spec"]["template"]["spec"].clone();
    assert_eq!(spec["initContainers"][0]["restartPolicy"], "Always");
    spec
}

fn app_container(pod: &KubeletPod) -> Container {
    pod.containers().remove(0).1
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn secret_file(pod: &KubeletPod, sub_path: &str) -> PathBuf {
    pod.volume(SECRETS_VOLUME).join(sub_path)
}

/// A KV change reaches the app's file within the interval (and never as an empty or
/// partial file); `signal:SIGHUP` arrives after the change and only then; SIGTERM stops
/// the app and then the sidecar, which revokes its token.
#[test]
fn kv_change_reaches_the_file_then_sighup() {
    let lab = Lab::start("1h", "24h");
    lab.vault
        .kv2_put("secret", "shop/tls", &json!({"cert": "cert-ONE-91c2"}));
    let script = r#"trap 'echo "HUP $(cat /etc/tls/cert)" >> /out/events' HUP
echo "start $(cat /etc/tls/cert)" >> /out/events
while :; do sleep 0.05; done"#;
    let spec = render(
        &lab,
        &manifest(
            "        vault.secretstore.rafay.dev/refresh: 1s\n        vault.secretstore.rafay.dev/on-change: signal:SIGHUP\n        vault.secretstore.rafay.dev/filesecret-config-1: '{\"vaultSecretRef\": \"secret/shop/tls#cert\", \"secretFileName\": \"cert\", \"volumeMountPath\": \"/etc/tls\"}'",
            &app(script, &[]),
        ),
    );
    let pod = KubeletPod::new(
        &spec,
        NAMESPACE,
        &lab.issuer,
        &[],
        Path::new(&agent_binary()),
    );
    let accessors = lab.token_accessors();
    let sidecar = start_sidecar(&pod, &spec);
    let file = secret_file(&pod, "files/app/0/cert");
    assert_eq!(
        std::fs::read_to_string(&file).expect("cert"),
        "cert-ONE-91c2"
    );
    let app = Running::start(&app_container(&pod));
    let events = pod.volume("out").join("events");
    wait_until(
        30,
        "the app to start",
        || lines(&events).len() == 1,
        || app.log(),
    );
    assert_eq!(lines(&events), ["start cert-ONE-91c2"]);
    // Several refreshes of an unchanged secret: no write, so no signal.
    let written = std::fs::metadata(&file)
        .expect("stat")
        .modified()
        .expect("mtime");
    wait_until(
        30,
        "three refreshes",
        || sidecar.log().matches("msg=\"secrets refreshed\"").count() >= 3,
        || sidecar.log(),
    );
    assert_eq!(
        lines(&events),
        ["start cert-ONE-91c2"],
        "no signal without a change"
    );
    assert_eq!(
        std::fs::metadata(&file)
            .expect("stat")
            .modified()
            .expect("mtime"),
        written,
        "an unchanged value is not written"
    );

    // A reader that never sees an empty or partial file while the value changes.
    let reader_file = file.clone();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let content = std::fs::read_to_string(&reader_file).expect("the file is always there");
            if seen.last() != Some(&content) {
                seen.push(content.clone());
            }
            if content == "cert-TWO-5d7e" || Instant::now() > deadline {
                return seen;
            }
        }
    });
    lab.vault
        .kv2_put("secret", "shop/tls", &json!({"cert": "cert-TWO-5d7e"}));
    let seen = reader.join().expect("reader");
    assert_eq!(seen, ["cert-ONE-91c2", "cert-TWO-5d7e"]);
    wait_until(30, "SIGHUP", || lines(&events).len() == 2, || app.log());
    assert_eq!(lines(&events), ["start cert-ONE-91c2", "HUP cert-TWO-5d7e"]);

    // The pod stops: the app first, then the sidecar.
    app.signal(libc::SIGTERM);
    let (status, app_log) = app.wait();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{app_log}");
    sidecar.signal(libc::SIGTERM);
    let (status, log) = sidecar.wait();
    assert!(status.success(), "{log}");
    assert!(log.contains("msg=\"token revoked\""), "{log}");
    assert_eq!(
        lab.token_accessors(),
        accessors,
        "the sidecar's token is gone"
    );
    for text in [&log, &app_log] {
        support::assert_no_secret(text, &["cert-ONE-91c2", "cert-TWO-5d7e"]);
    }
}

/// `SECRETSTORE_LOG_FORMAT=json` at render: the sidecar and the app's `exec` each log one
/// JSON object per line, with the logfmt fields, and never a value.
#[test]
fn json_logs_of_the_sidecar_and_exec_parse_and_carry_no_value() {
    let lab = Lab::start("1h", "24h");
    lab.vault
        .kv2_put("secret", "shop/tls", &json!({"cert": "cert-ONE-7a1f"}));
    let script = r#"trap 'echo HUP >> /out/events' HUP
echo start >> /out/events
while :; do sleep 0.05; done"#;
    let spec = render_with(
        &lab,
        &manifest(
            "        vault.secretstore.rafay.dev/refresh: 1s\n        vault.secretstore.rafay.dev/on-change: signal:SIGHUP\n        vault.secretstore.rafay.dev/filesecret-config-1: '{\"vaultSecretRef\": \"secret/shop/tls#cert\", \"secretFileName\": \"cert\", \"volumeMountPath\": \"/etc/tls\"}'",
            &app(script, &[]),
        ),
        &[("SECRETSTORE_LOG_FORMAT", "json")],
    );
    let pod = KubeletPod::new(
        &spec,
        NAMESPACE,
        &lab.issuer,
        &[],
        Path::new(&agent_binary()),
    );
    let sidecar = start_sidecar(&pod, &spec);
    let app = Running::start(&app_container(&pod));
    let events = pod.volume("out").join("events");
    wait_until(
        30,
        "the app to start",
        || lines(&events).len() == 1,
        || app.log(),
    );
    lab.vault
        .kv2_put("secret", "shop/tls", &json!({"cert": "cert-TWO-3c9e"}));
    wait_until(30, "SIGHUP", || lines(&events).len() == 2, || app.log());
    app.signal(libc::SIGTERM);
    let (status, app_log) = app.wait();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{app_log}");
    sidecar.signal(libc::SIGTERM);
    let (status, log) = sidecar.wait();
    assert!(status.success(), "{log}");
    for (text, component, step) in [(&log, "agent", "ready"), (&app_log, "exec", "notify")] {
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        for line in &lines {
            for key in ["ts", "level", "component", "step", "msg"] {
                assert!(line[key].is_string(), "{key} in {line}");
            }
            assert_eq!(line["component"], component, "{line}");
        }
        assert!(lines.iter().any(|l| l["step"] == step), "{text}");
        support::assert_no_secret(text, &["cert-ONE-7a1f", "cert-TWO-3c9e"]);
    }
}

/// `restart`: the app is stopped and started again with the new env value.
#[test]
fn restart_gives_the_app_the_new_env_value() {
    let lab = Lab::start("1h", "24h");
    lab.vault
        .kv2_put("secret", "shop/api", &json!({"token": "tok-ONE-aa01"}));
    // The kubelet turns `$$$$` into `$$`.
    let script = r#"trap 'exit 0' TERM
echo "start $$$$ $API_TOKEN" >> /out/events
while :; do sleep 0.05; done"#;
    let spec = render(
        &lab,
        &manifest(
            "        vault.secretstore.rafay.dev/refresh: 1s\n        vault.secretstore.rafay.dev/on-change: restart",
            &app(script, &[("API_TOKEN", "secretstore:vault:secret/shop/api#token")]),
        ),
    );
    let pod = KubeletPod::new(
        &spec,
        NAMESPACE,
        &lab.issuer,
        &[],
        Path::new(&agent_binary()),
    );
    let sidecar = start_sidecar(&pod, &spec);
    let app = Running::start(&app_container(&pod));
    let events = pod.volume("out").join("events");
    wait_until(
        30,
        "the app to start",
        || lines(&events).len() == 1,
        || app.log(),
    );
    lab.vault
        .kv2_put("secret", "shop/api", &json!({"token": "tok-TWO-bb02"}));
    wait_until(
        30,
        "the restart",
        || lines(&events).len() == 2,
        || app.log(),
    );
    let events = lines(&events);
    let first: Vec<&str> = events[0].split(' ').collect();
    let second: Vec<&str> = events[1].split(' ').collect();
    assert_eq!(first[2], "tok-ONE-aa01");
    assert_eq!(second[2], "tok-TWO-bb02");
    assert_ne!(first[1], second[1], "a new app process");
    app.signal(libc::SIGTERM);
    let (status, app_log) = app.wait();
    assert_eq!(status.code(), Some(0), "{app_log}");
    sidecar.signal(libc::SIGTERM);
    let (status, log) = sidecar.wait();
    assert!(status.success(), "{log}");
    for text in [&log, &app_log] {
        support::assert_no_secret(text, &["tok-ONE-aa01", "tok-TWO-bb02"]);
    }
}

/// Vault sealed for several seconds: every file stays in place, refresh resumes after.
/// A key deleted from the secret is logged as an error and its file is kept.
#[test]
fn sealed_vault_keeps_the_files_and_refresh_resumes() {
    let lab = Lab::start("1h", "24h");
    lab.vault
        .kv2_put("secret", "shop/cfg", &json!({"key": "key-ONE-c3"}));
    let spec = render(
        &lab,
        &manifest(
            "        vault.secretstore.rafay.dev/refresh: 1s\n        vault.secretstore.rafay.dev/filesecret-config-1: '{\"vaultSecretRef\": \"secret/shop/cfg#key\", \"secretFileName\": \"key\", \"volumeMountPath\": \"/etc/cfg\"}'",
            &app("sleep 1000", &[]),
        ),
    );
    let pod = KubeletPod::new(
        &spec,
        NAMESPACE,
        &lab.issuer,
        &[],
        Path::new(&agent_binary()),
    );
    let sidecar = start_sidecar(&pod, &spec);
    let file = secret_file(&pod, "files/app/0/key");
    lab.vault.seal();
    wait_until(
        30,
        "two failed refreshes",
        || {
            sidecar
                .log()
                .matches("keep their last good content")
                .count()
                >= 2
        },
        || sidecar.log(),
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("file kept"),
        "key-ONE-c3"
    );
    lab.vault.unseal();
    lab.vault
        .kv2_put("secret", "shop/cfg", &json!({"key": "key-TWO-d4"}));
    wait_until(
        30,
        "the new value after unsealing",
        || std::fs::read_to_string(&file).ok().as_deref() == Some("key-TWO-d4"),
        || sidecar.log(),
    );
    // A key that disappears is an error in the log, and the old file stays.
    lab.vault
        .kv2_put("secret", "shop/cfg", &json!({"other": "x"}));
    wait_until(
        30,
        "the missing key to be reported",
        || sidecar.log().contains("has no key"),
        || sidecar.log(),
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("file kept"),
        "key-TWO-d4"
    );
    sidecar.signal(libc::SIGTERM);
    let (status, log) = sidecar.wait();
    assert!(status.success(), "{log}");
    assert!(log.contains("sealed") || log.contains("HTTP 503"), "{log}");
    assert!(log.contains("level=error"), "{log}");
    support::assert_no_secret(&log, &["key-ONE-c3", "key-TWO-d4"]);
}

/// Dynamic database credentials with a short lease and max TTL, and a token whose TTL
/// is shorter than the test and whose projected service-account token is rotated (the
/// first one expires): the lease is renewed, then new credentials are issued before the
/// max TTL; the app connects successfully throughout; the token is renewed and, at its max
/// TTL, a new login uses the rotated service-account token. SIGTERM revokes the leases:
/// the database roles are gone. Then, as a Job: the app exits and the sidecar stops.
///
/// The sidecar renews at two thirds of a TTL and re-issues when a renewal comes back
/// short, so the old credentials outlive the switch by at least a third of their TTL: 9 s
/// TTLs give every step 3 s of margin on a loaded machine (4 s gave 1.3 s, and flaked).
/// Timeline: lease renewed at 6 s, cut short at 12 s (max 17 s: 5 s left) and re-issued;
/// token renewed at 6 s and 12 s, cut short at 18 s (max 24 s: 6 s left), a new login,
/// every lease re-issued under it.
#[test]
fn database_leases_and_token_stay_valid_then_are_revoked() {
    // Every renewal comes at two thirds of a TTL of 8 s or more, and the max TTLs end a
    // renewal step after one: at least 2.6 s of margin for each step, however loaded the
    // machine.
    let lab = Lab::start("8s", "32s");
    let pg = Postgres::start();
    pg.attach_to_vault(&lab.vault, "database", "app", "1h");
    lab.vault.post_json(
        "database/roles/app",
        &json!({
            "db_name": "postgres",
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
            ],
            "default_ttl": "8s",
            "max_ttl": "20s",
        }),
    );
    let psql = pg.bin().join("psql");
    // Connects with the current credentials every 200 ms, recording each outcome, until
    // the test creates /out/stop. The file is read once per connection: two reads could
    // straddle a rotation and pair one lease's user with the next one's password.
    let script = format!(
        r#"while [ ! -e /out/stop ]; do
  c=$(cat /etc/db/creds)
  u=$(printf '%s\n' "$c" | sed -n 's/^username=//p'); p=$(printf '%s\n' "$c" | sed -n 's/^password=//p')
  if PGPASSWORD="$p" PGCONNECT_TIMEOUT=5 {} -X -At -h 127.0.0.1 -p {} -U "$u" -d postgres -c 'select 1' >/dev/null 2>>/out/psql.err; then echo "ok $u" >> /out/events; else echo "FAIL $u" >> /out/events; fi
  sleep 0.2
done"#,
        psql.display(),
        pg.port()
    );
    let spec = render(
        &lab,
        &manifest(
            "        vault.secretstore.rafay.dev/refresh: 30s\n        vault.secretstore.rafay.dev/filesecret-config-1: '{\"vaultSecretRef\": \"database/creds/app\", \"secretFileName\": \"creds\", \"volumeMountPath\": \"/etc/db\", \"format\": \"properties\"}'",
            &app(&script, &[]),
        ),
    );
    // The first service-account token expires in 8 s; the kubelet has rotated the file by then.
    let pod = KubeletPod::new(
        &spec,
        NAMESPACE,
        &lab.issuer,
        &[],
        Path::new(&agent_binary()),
    );
    let token_file = pod.volume("secretstore-token").join("token");
    let mut claims = lab
        .issuer
        .service_account_claims(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE);
    claims["exp"] = Value::from(claims["iat"].as_u64().expect("iat") + 8);
    write_keeping_mode(&token_file, &lab.issuer.sign(&claims));
    let sidecar = start_sidecar(&pod, &spec);
    write_keeping_mode(
        &token_file,
        &lab.issuer.token(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE),
    );
    let app = Running::start(&app_container(&pod));
    let events = pod.volume("out").join("events");
    wait_until(
        60,
        "a renewed lease, new credentials, a renewed token and a new login",
        || {
            let log = sidecar.log();
            log.contains("msg=\"lease renewed\"")
                && log.contains("lease renewed up to its max TTL; reading new credentials")
                && log.contains("msg=\"new credentials read\"")
                && log.contains("msg=\"token renewed\"")
                && log.contains("msg=\"logged in again\"")
        },
        || sidecar.log(),
    );
    // Connections go on past the end of the old token, whose leases end with it.
    let after_login = lines(&events).len();
    wait_until(
        60,
        "20 more connections",
        || lines(&events).len() >= after_login + 20,
        || sidecar.log(),
    );
    std::fs::write(pod.volume("out").join("stop"), "").expect("stop the app");
    let (status, app_log) = app.wait();
    assert!(status.success(), "{app_log}");
    let outcomes = lines(&events);
    assert!(outcomes.len() >= 20, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|l| l.starts_with("ok ")),
        "every connection succeeded: {outcomes:?}\n{}\n{}",
        std::fs::read_to_string(pod.volume("out").join("psql.err")).unwrap_or_default(),
        sidecar.log()
    );
    let mut users: Vec<String> = outcomes.iter().map(|l| l[3..].to_owned()).collect();
    users.dedup();
    assert!(
        users.len() >= 3,
        "credentials were re-issued twice: {users:?}\n{}",
        sidecar.log()
    );

    // The Job's app container has exited: the kubelet stops the sidecar.
    let current = users.last().expect("a user").clone();
    sidecar.signal(libc::SIGTERM);
    let (status, log) = sidecar.wait();
    assert!(status.success(), "{log}");
    assert!(log.contains("msg=\"lease revoked\""), "{log}");
    assert!(log.contains("msg=\"token revoked\""), "{log}");
    let roles = pg.psql(&format!(
        "select count(*) from pg_roles where rolname = '{current}'"
    ));
    assert_eq!(text(&roles.stdout).trim(), "0", "{}", describe(&roles));
    let password = std::fs::read_to_string(secret_file(&pod, "files/app/0/creds")).expect("creds");
    let secrets: Vec<&str> = password
        .lines()
        .filter_map(|l| l.strip_prefix("password="))
        .collect();
    support::assert_no_secret(&log, &secrets);
}

/// Replaces a file's content, keeping its owner and mode (the kubelet's rotation).
fn write_keeping_mode(path: &Path, content: &str) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).expect("stat");
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).expect("write");
    std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid())).expect("chown");
    std::fs::set_permissions(&tmp, meta.permissions()).expect("chmod");
    std::fs::rename(&tmp, path).expect("rename");
}
