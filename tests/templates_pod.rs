//! Templates end to end (SPEC 1.4): a manifest through `secretstore render`, then the
//! rendered pod run the way the kubelet runs it (tests/support/pod.rs: the agent as the
//! init container, then the app containers under `secretstore exec`), against a real
//! OpenBao (KV v2, transit, PKI with an intermediate CA, the database engine on a real
//! PostgreSQL). What the apps read is compared byte for byte with what the templates say;
//! OpenBao's audit log (values hashed) counts the reads. Templates that reach for files or
//! env are refused at render; a missing key fails the pod start, naming config, alias and
//! key. Live mode: a template's file follows its source, and is not rewritten when an
//! unrelated key changes. No secret value may appear in any log or output.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use serde_json::{json, Value};
use support::jwt::{JwtRole, ServiceAccountIssuer};
use support::openbao::OpenBao;
use support::output::{describe, text};
use support::pod::{agent_binary, KubeletPod};
use support::postgres::Postgres;
use support::sidecar::{start_sidecar, wait_until, Running};
use tempfile::TempDir;

const NAMESPACE: &str = "shop";
const SERVICE_ACCOUNT: &str = "web";
const AUDIENCE: &str = "vault";
const AUTH_MOUNT: &str = "kubernetes";
const SECRETS_VOLUME: &str = "secretstore-secrets";

/// A password with every character that breaks a URL's user info when not encoded.
const DB_PASSWORD: &str = "p@ss: w0rd!";
const DB_PASSWORD_URLENCODED: &str = "p%40ss%3A%20w0rd%21";
const MQ_PASSWORD: &str = "mq-pw-3e1a";
const API_KEY: &str = "pay-key-77f0";
/// The connection-string template of the KV tests, and what it gives.
const URL_TEMPLATE: &str =
    "postgresql://${ db.username }:${ db.password | urlencode }@db.shop:5432/shop?sslmode=require";
const URL: &str = "postgresql://shop:p%40ss%3A%20w0rd%21@db.shop:5432/shop?sslmode=require";

struct Lab {
    vault: OpenBao,
    issuer: ServiceAccountIssuer,
    audit: PathBuf,
    _dir: TempDir,
}

impl Lab {
    /// OpenBao with a hashed file audit log, KV v2 at `secret/`, `jwt` auth at
    /// `auth/kubernetes` and role `web` (bound to shop/web) whose policy grants what the
    /// pods of these tests read and write.
    fn start() -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("secretstore-templates-")
            .tempdir()
            .expect("tempdir");
        let audit = dir.path().join("audit.log");
        let vault = OpenBao::start_with_audit(&audit);
        vault.put_policy(
            "web",
            r#"
path "secret/data/shop/*" { capabilities = ["read"] }
path "database/creds/app" { capabilities = ["read"] }
path "transit/decrypt/app" { capabilities = ["update"] }
path "pki_int/issue/web" { capabilities = ["update"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
"#,
        );
        let issuer = ServiceAccountIssuer::new();
        vault.enable_jwt_auth(AUTH_MOUNT, &issuer);
        vault.write_jwt_role(
            AUTH_MOUNT,
            "web",
            &JwtRole::service_account(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE, &["web"]),
        );
        Lab {
            vault,
            issuer,
            audit,
            _dir: dir,
        }
    }

    /// The KV secrets of the connection-string and properties examples.
    fn write_shop_secrets(&self) {
        self.vault.kv2_put(
            "secret",
            "shop/db",
            &json!({"username": "shop", "password": DB_PASSWORD}),
        );
        self.vault
            .kv2_put("secret", "shop/rabbitmq", &json!({"password": MQ_PASSWORD}));
        self.vault
            .kv2_put("secret", "shop/payments", &json!({"api-key": API_KEY}));
    }

    /// How many reads of `path` (its API path, e.g. `secret/data/shop/db`) OpenBao
    /// answered, from the audit log.
    fn reads_of(&self, path: &str) -> usize {
        let log = std::fs::read_to_string(&self.audit).expect("audit log");
        log.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| {
                entry["type"] == "response"
                    && entry["request"]["path"] == path
                    && entry["request"]["operation"] == "read"
            })
            .count()
    }
}

/// A file secret annotation line: `filesecret-config-<suffix>` with `config` as compact
/// JSON in a single-quoted YAML scalar.
fn config(suffix: &str, config: &Value) -> String {
    let json = serde_json::to_string(config).expect("json");
    format!(
        "        vault.secretstore.rafay.dev/filesecret-config-{suffix}: '{}'",
        json.replace('\'', "''")
    )
}

/// A Deployment with the given pod annotations (lines) and containers (YAML list items).
fn manifest(annotations: &[String], containers: &[String]) -> String {
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
        vault.secretstore.rafay.dev/role: web
{}
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
{}"#,
        annotations.join("\n"),
        containers.concat()
    )
}

/// A container running `command`, with `/out` mounted and these env values.
fn container(name: &str, command: &[&str], env: &[(&str, &str)]) -> String {
    let mut text = format!(
        "      - name: {name}\n        image: app\n        command: {}\n        volumeMounts:\n        - {{name: out, mountPath: /out}}\n",
        serde_json::to_string(command).expect("json")
    );
    if !env.is_empty() {
        text.push_str("        env:\n");
        for (name, value) in env {
            text.push_str(&format!(
                "        - {{name: {name}, value: {}}}\n",
                serde_json::to_string(value).expect("json")
            ));
        }
    }
    text
}

/// A shell app.
fn sh(name: &str, script: &str, env: &[(&str, &str)]) -> String {
    container(name, &["/bin/sh", "-c", script], env)
}

/// A Python app.
fn python(name: &str, code: &str, env: &[(&str, &str)]) -> String {
    container(name, &["/usr/bin/python3", "-c", code], env)
}

/// Runs `secretstore <command> web.yaml` (render for Kubernetes 1.30 with this Vault)
/// in a directory holding `manifest` as `web.yaml`, with `env` added.
fn run_on_manifest(
    command: &str,
    vault_addr: Option<&str>,
    manifest: &str,
    env: &[(&str, &str)],
) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("web.yaml"), manifest).expect("write manifest");
    let mut cmd = support::secretstore();
    cmd.current_dir(dir.path())
        .env_remove("KUBE_VERSION")
        .env("SECRETSTORE_AUDIENCE", AUDIENCE)
        .envs(env.iter().copied())
        .arg(command);
    if command == "render" {
        cmd.args(["--kube-version", "1.30"]);
    }
    if let Some(addr) = vault_addr {
        cmd.args(["--vault-addr", addr]);
    }
    cmd.arg("web.yaml").output().expect("run secretstore")
}

/// Renders `manifest`; returns the rendered pod spec and render's whole output.
fn render(lab: &Lab, manifest: &str) -> (Value, String) {
    let output = run_on_manifest("render", Some(lab.vault.addr()), manifest, &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = text(&output.stdout);
    let doc: Value = yaml_serde::from_str(&stdout).expect("rendered YAML");
    let all = format!("{stdout}{}", text(&output.stderr));
    (doc["spec"]["template"]["spec"].clone(), all)
}

fn pod(lab: &Lab, spec: &Value) -> KubeletPod {
    KubeletPod::new(
        spec,
        NAMESPACE,
        &lab.issuer,
        &[],
        Path::new(&agent_binary()),
    )
}

/// Runs the agent, then every app container in order; each must succeed. Returns their
/// logs (stdout and stderr), the agent's first.
fn run_pod(pod: &KubeletPod) -> Vec<String> {
    let (name, agent) = pod.init_containers().remove(0);
    assert_eq!(name, "secretstore-agent");
    let output = agent.run();
    assert!(output.status.success(), "agent: {}", describe(&output));
    let mut logs = vec![describe(&output)];
    for (name, app) in pod.containers() {
        let output = app.run();
        assert!(
            output.status.success(),
            "container {name}: {}",
            describe(&output)
        );
        logs.push(describe(&output));
    }
    logs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `mountPath` of every volume mount of every container of the spec.
fn mount_paths(spec: &Value) -> Vec<(String, String)> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|field| spec[*field].as_array().into_iter().flatten())
        .flat_map(|c| {
            let name = c["name"].as_str().unwrap_or_default().to_owned();
            c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |m| {
                    (
                        name.clone(),
                        m["mountPath"].as_str().unwrap_or_default().to_owned(),
                    )
                })
        })
        .collect()
}

/// The agent spec render wrote into the init container (`SECRETSTORE_SPEC`).
fn agent_spec(spec: &Value) -> Value {
    let env = spec["initContainers"][0]["env"]
        .as_array()
        .expect("agent env");
    let value = env
        .iter()
        .find(|e| e["name"] == "SECRETSTORE_SPEC")
        .and_then(|e| e["value"].as_str())
        .expect("SECRETSTORE_SPEC");
    // What the agent reads: the kubelet's `$(VAR)` expansion turns render's `$$` into `$`.
    let value = support::pod::expand(value, &Default::default());
    serde_json::from_str(&value).expect("agent spec JSON")
}

/// A connection string with a password holding `@ : space !`, urlencoded by a template:
/// byte for byte in a mounted file; the same string as `DATABASE_URL` through
/// `secretstore:file:` from a config with `"containers": []` (mounted nowhere), read by a
/// Python app; a file of a config mounted into one container as an env value of another;
/// a properties file mixing three secrets; `$${`, `$(POD_NAME)` and `$$` kept as text. One
/// read of the database secret serves all.
#[test]
fn connection_string_in_a_file_and_as_an_env_value_byte_exact() {
    let lab = Lab::start();
    lab.write_shop_secrets();
    let properties = "spring.datasource.username=${ db.username }\nspring.datasource.password=${ db.password }\nspring.rabbitmq.password=${ mq.password }\npayments.api-key=${ api[\"api-key\"] }\n";
    let annotations = [
        config(
            "db-file",
            &json!({"secretFileName": "database-url", "volumeMountPath": "/etc/db",
                    "containers": ["app"], "sources": {"db": "secret/shop/db"},
                    "template": URL_TEMPLATE}),
        ),
        config(
            "db-env",
            &json!({"secretFileName": "url", "volumeMountPath": "/etc/db-env",
                    "containers": [], "sources": {"db": "secret/shop/db"},
                    "template": URL_TEMPLATE}),
        ),
        config(
            "props",
            &json!({"secretFileName": "application.properties", "volumeMountPath": "/config",
                    "containers": ["app"],
                    "sources": {"db": "secret/shop/db", "mq": "secret/shop/rabbitmq",
                                "api": "secret/shop/payments"},
                    "template": properties}),
        ),
        // `$${` is a literal `${`; `$(POD_NAME)` and `$$` in a template are text, which the
        // kubelet's `$(VAR)` expansion of the agent's env must not touch.
        config(
            "literal",
            &json!({"secretFileName": "literal", "volumeMountPath": "/etc/literal",
                    "containers": ["app"], "sources": {"db": "secret/shop/db"},
                    "template": "$${HOME} $(POD_NAME) $$x ${ db.username }"}),
        ),
    ];
    let app = r#"import os
def put(name, data):
    with open("/out/" + name, "wb") as f:
        f.write(data)
put("env", os.environb[b"DATABASE_URL"])
put("file", open("/etc/db/database-url", "rb").read())
put("props", open("/config/application.properties", "rb").read())
put("literal", open("/etc/literal/literal", "rb").read())
put("env-config-mounted", str(os.path.exists("/etc/db-env")).encode())
"#;
    let worker = r#"import os
with open("/out/worker-env", "wb") as f:
    f.write(os.environb[b"DATABASE_URL"])
with open("/out/worker-file-mounted", "w") as f:
    f.write(str(os.path.exists("/etc/db")))
"#;
    let manifest = manifest(
        &annotations,
        &[
            python(
                "app",
                app,
                &[("DATABASE_URL", "secretstore:file:db-env/url")],
            ),
            python(
                "worker",
                worker,
                &[("DATABASE_URL", "secretstore:file:db-file/database-url")],
            ),
        ],
    );
    let (spec, render_output) = render(&lab, &manifest);
    let mounts = mount_paths(&spec);
    assert!(
        !mounts
            .iter()
            .any(|(_, path)| path.starts_with("/etc/db-env")),
        "a config with \"containers\": [] is mounted nowhere: {mounts:?}"
    );
    assert!(
        !mounts
            .iter()
            .any(|(name, path)| name == "worker" && path.starts_with("/etc/db")),
        "{mounts:?}"
    );
    let agent = agent_spec(&spec);
    assert!(
        agent["templates"]
            .as_array()
            .expect("templates")
            .iter()
            .any(|t| t["text"] == URL_TEMPLATE),
        "the template, as written, in the agent spec: {agent}"
    );

    let pod = pod(&lab, &spec);
    let logs = run_pod(&pod);
    let out = pod.volume("out");
    assert_eq!(read(&out.join("file")), URL, "the file, byte for byte");
    assert_eq!(read(&out.join("env")), URL, "the env value, byte for byte");
    assert_eq!(
        read(&out.join("worker-env")),
        URL,
        "from a file not mounted there"
    );
    assert_eq!(read(&out.join("env-config-mounted")), "False");
    assert_eq!(read(&out.join("worker-file-mounted")), "False");
    assert_eq!(
        read(&out.join("props")),
        format!(
            "spring.datasource.username=shop\nspring.datasource.password={DB_PASSWORD}\nspring.rabbitmq.password={MQ_PASSWORD}\npayments.api-key={API_KEY}\n"
        )
    );
    assert_eq!(read(&out.join("literal")), "${HOME} $(POD_NAME) $$x shop");
    assert_eq!(
        lab.reads_of("secret/data/shop/db"),
        1,
        "one answer per distinct request"
    );
    let secrets = [DB_PASSWORD, DB_PASSWORD_URLENCODED, MQ_PASSWORD, API_KEY];
    support::assert_no_secret(&render_output, &secrets);
    for log in &logs {
        support::assert_no_secret(log, &secrets);
    }
}

/// `secretstore:file:` of files that are not templates: a key's raw value (a `files`
/// entry of a config mounted nowhere) and a whole secret in `env` format, each equal to
/// what the same config writes as a mounted file.
#[test]
fn env_values_from_key_files_and_whole_secret_files() {
    let lab = Lab::start();
    lab.write_shop_secrets();
    let whole = |containers: Value| {
        json!({"vaultSecretRef": "secret/shop/db", "secretFileName": "db.env", "format": "env",
               "volumeMountPath": "/etc/whole", "containers": containers})
    };
    let annotations = [
        config(
            "kv",
            &json!({"vaultSecretRef": "secret/shop/db", "containers": [],
                    "files": {"password": "password", "user": {"key": "username", "mode": "0400"}}}),
        ),
        config("whole", &whole(json!([]))),
        config("whole-file", &whole(json!(["app"]))),
    ];
    let app = r#"import os
def put(name, data):
    with open("/out/" + name, "wb") as f:
        f.write(data)
put("pw", os.environb[b"PW"])
put("user", os.environb[b"DB_USER"])
put("whole-env", os.environb[b"WHOLE"])
put("whole-file", open("/etc/whole/db.env", "rb").read())
"#;
    let manifest = manifest(
        &annotations,
        &[python(
            "app",
            app,
            &[
                ("PW", "secretstore:file:kv/password"),
                ("DB_USER", "secretstore:file:kv/user"),
                ("WHOLE", "secretstore:file:whole/db.env"),
            ],
        )],
    );
    let (spec, render_output) = render(&lab, &manifest);
    let pod = pod(&lab, &spec);
    let logs = run_pod(&pod);
    let out = pod.volume("out");
    assert_eq!(read(&out.join("pw")), DB_PASSWORD);
    assert_eq!(read(&out.join("user")), "shop");
    let file = read(&out.join("whole-file"));
    assert!(file.contains("username="), "an env-format file");
    assert_eq!(
        read(&out.join("whole-env")),
        file,
        "the env value is the file's content"
    );
    assert_eq!(lab.reads_of("secret/data/shop/db"), 1);
    support::assert_no_secret(&render_output, &[DB_PASSWORD]);
    for log in &logs {
        support::assert_no_secret(log, &[DB_PASSWORD]);
    }
}

/// A template over a dynamic PostgreSQL lease builds `DATABASE_URL`, which the app uses
/// to connect; an env reference to the same lease gives the same user: one read of
/// `database/creds/app` (one lease) serves both.
#[test]
fn database_url_from_a_dynamic_lease_connects_and_shares_the_lease() {
    let lab = Lab::start();
    let pg = Postgres::start();
    pg.attach_to_vault(&lab.vault, "database", "app", "1h");
    let template = format!(
        "postgresql://${{ db.username }}:${{ db.password | urlencode }}@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port()
    );
    let annotations = [config(
        "db",
        &json!({"secretFileName": "url", "volumeMountPath": "/etc/db",
                "sources": {"db": "database/creds/app"}, "template": template}),
    )];
    let script = format!(
        "cat /etc/db/url > /out/url && printf '%s' \"$DB_USER\" > /out/env-user && PGCONNECT_TIMEOUT=10 {} -X -At -d \"$(cat /etc/db/url)\" -c 'select current_user' > /out/whoami",
        pg.bin().join("psql").display()
    );
    let manifest = manifest(
        &annotations,
        &[sh(
            "app",
            &script,
            &[("DB_USER", "secretstore:vault:database/creds/app#username")],
        )],
    );
    let (spec, _) = render(&lab, &manifest);
    let pod = pod(&lab, &spec);
    let logs = run_pod(&pod);
    let out = pod.volume("out");
    let url = read(&out.join("url"));
    let rest = url
        .strip_prefix("postgresql://")
        .unwrap_or_else(|| panic!("not a connection string ({} bytes)", url.len()));
    let (user_info, host) = rest.split_once('@').expect("user info");
    assert_eq!(
        host,
        format!("127.0.0.1:{}/postgres?sslmode=disable", pg.port())
    );
    let (user, password) = user_info.split_once(':').expect("user:password");
    let password = percent_encoding::percent_decode_str(password)
        .decode_utf8()
        .expect("UTF-8 password")
        .into_owned();
    assert!(!user.is_empty() && !password.is_empty());
    assert_eq!(
        read(&out.join("env-user")),
        user,
        "the env value is the file's user"
    );
    assert_eq!(
        read(&out.join("whoami")).trim(),
        user,
        "connected as the lease's user"
    );
    assert_eq!(
        lab.reads_of("database/creds/app"),
        1,
        "one read of the dynamic path for the template and the env reference"
    );
    let (status, leases) = lab
        .vault
        .request("LIST", "sys/leases/lookup/database/creds/app", None);
    assert_eq!(status, 200, "{leases}");
    assert_eq!(leases["data"]["keys"].as_array().map(Vec::len), Some(1));
    for log in &logs {
        support::assert_no_secret(log, &[&password, &url]);
    }
}

/// A transit decryption (an issued answer, params in the source) through `b64decode`:
/// the plaintext, byte for byte, its trailing newline included.
#[test]
fn transit_decrypt_through_b64decode() {
    let lab = Lab::start();
    lab.vault
        .enable_secrets_engine("transit", "transit", &json!({}));
    lab.vault.post_json("transit/keys/app", &json!({}));
    let plaintext = "tränsit: s3cret @ wörd!\n";
    let b64 = base64::engine::general_purpose::STANDARD.encode(plaintext);
    let answer = lab
        .vault
        .post_json("transit/encrypt/app", &json!({"plaintext": b64}));
    let ciphertext = answer["data"]["ciphertext"].as_str().expect("ciphertext");
    let annotations = [config(
        "plain",
        &json!({"secretFileName": "plain.txt", "volumeMountPath": "/etc/plain",
                "sources": {"t": {"path": "transit/decrypt/app",
                                  "params": {"ciphertext": ciphertext}}},
                "template": "${ t.plaintext | b64decode }"}),
    )];
    let manifest = manifest(
        &annotations,
        &[sh("app", "cat /etc/plain/plain.txt > /out/plain", &[])],
    );
    let (spec, _) = render(&lab, &manifest);
    let pod = pod(&lab, &spec);
    let logs = run_pod(&pod);
    assert_eq!(read(&pod.volume("out").join("plain")), plaintext);
    for log in &logs {
        support::assert_no_secret(log, &[plaintext.trim_end(), &b64]);
    }
}

/// PEM blocks of `text`, each as its DER bytes.
fn pem_blocks(text: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
        .map(|pem| {
            let pem = pem.expect("a PEM block");
            pem.parse_x509().expect("an X.509 certificate");
            pem.contents
        })
        .collect()
}

fn openssl(args: &[&str], input: &str) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input.as_bytes())
        .expect("write to openssl");
    let output = child.wait_with_output().expect("openssl output");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        describe(&output)
    );
    text(&output.stdout)
}

/// A certificate followed by its chain, from `pki_int/issue/web` (an intermediate under a
/// root): `${ secret.certificate }\n${ secret.ca_chain | join("\n") }\n` in a `files`
/// entry beside the key from the same answer. The file parses back as three PEM
/// certificates (leaf, intermediate, root) that verify, and the key is the leaf's.
#[test]
fn certificate_chain_from_pki_issue_parses_back_as_pem() {
    let lab = Lab::start();
    let vault = &lab.vault;
    vault.enable_secrets_engine("pki", "pki", &json!({"config": {"max_lease_ttl": "2h"}}));
    let root = vault.post_json(
        "pki/root/generate/internal",
        &json!({"common_name": "secretstore test root", "ttl": "2h", "key_type": "ec"}),
    )["data"]["certificate"]
        .as_str()
        .expect("root")
        .to_owned();
    vault.enable_secrets_engine(
        "pki_int",
        "pki",
        &json!({"config": {"max_lease_ttl": "2h"}}),
    );
    let csr = vault.post_json(
        "pki_int/intermediate/generate/internal",
        &json!({"common_name": "secretstore test intermediate", "key_type": "ec"}),
    )["data"]["csr"]
        .as_str()
        .expect("csr")
        .to_owned();
    let intermediate = vault.post_json(
        "pki/root/sign-intermediate",
        &json!({"csr": csr, "ttl": "1h"}),
    )["data"]["certificate"]
        .as_str()
        .expect("intermediate")
        .to_owned();
    vault.post_json(
        "pki_int/intermediate/set-signed",
        &json!({"certificate": format!("{intermediate}\n{root}")}),
    );
    vault.post_json(
        "pki_int/roles/web",
        &json!({"allowed_domains": ["web.shop.svc"], "allow_bare_domains": true,
                "max_ttl": "1h", "key_type": "ec", "not_before_duration": "1s"}),
    );
    let annotations = [config(
        "tls",
        &json!({"vaultSecretRef": "pki_int/issue/web",
                "params": {"common_name": "web.shop.svc", "ttl": "30m"},
                "volumeMountPath": "/etc/tls",
                "files": {"tls.crt": {"template": "${ secret.certificate }\n${ secret.ca_chain | join(\"\\n\") }\n"},
                          "tls.key": {"key": "private_key", "mode": "0440"}}}),
    )];
    let manifest = manifest(
        &annotations,
        &[sh(
            "app",
            "cat /etc/tls/tls.crt > /out/crt && cat /etc/tls/tls.key > /out/key",
            &[],
        )],
    );
    let (spec, _) = render(&lab, &manifest);
    let pod = pod(&lab, &spec);
    let logs = run_pod(&pod);
    let out = pod.volume("out");
    let crt = read(&out.join("crt"));
    let key = read(&out.join("key"));
    let blocks = pem_blocks(&crt);
    assert_eq!(blocks.len(), 3, "leaf, intermediate, root");
    assert_eq!(
        blocks[1],
        pem_blocks(&intermediate)[0],
        "then the intermediate"
    );
    assert_eq!(blocks[2], pem_blocks(&root)[0], "then the root");
    // Exactly the template's text: the leaf, a newline, the chain joined by newlines, a
    // final newline.
    let end = "-----END CERTIFICATE-----";
    let leaf = &crt[..crt.find(end).expect("a certificate") + end.len()];
    assert_eq!(crt, format!("{leaf}\n{intermediate}\n{root}\n"));
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, pem) in [("root.pem", &root), ("int.pem", &intermediate)] {
        std::fs::write(dir.path().join(name), pem).expect("write pem");
    }
    let verified = openssl(
        &[
            "verify",
            "-CAfile",
            &dir.path().join("root.pem").display().to_string(),
            "-untrusted",
            &dir.path().join("int.pem").display().to_string(),
        ],
        leaf,
    );
    assert!(verified.trim_end().ends_with("OK"), "{verified}");
    let shown = openssl(&["x509", "-noout", "-subject"], leaf);
    assert!(shown.contains("web.shop.svc"), "{shown}");
    assert_eq!(
        openssl(&["x509", "-noout", "-pubkey"], leaf),
        openssl(&["pkey", "-pubout"], &key),
        "the key is the leaf's"
    );
    let key_body = key.lines().nth(1).expect("key body");
    for log in &logs {
        support::assert_no_secret(log, &[&key, key_body]);
    }
}

/// A key the KV secret does not have fails the pod start (the agent exits non-zero, so
/// the kubelet never starts the app) with a message naming the config, the alias and the
/// key, and no value.
#[test]
fn missing_key_fails_the_pod_start_naming_config_alias_and_key() {
    let lab = Lab::start();
    lab.write_shop_secrets();
    let annotations = [config(
        "db",
        &json!({"secretFileName": "url", "volumeMountPath": "/etc/db",
                "sources": {"db": "secret/shop/db"},
                "template": "postgresql://${ db.username }:${ db.pasword | urlencode }@db.shop/shop"}),
    )];
    let manifest = manifest(&annotations, &[sh("app", "cat /etc/db/url", &[])]);
    let (spec, render_output) = render(&lab, &manifest);
    let pod = pod(&lab, &spec);
    let (_, agent) = pod.init_containers().remove(0);
    let output = agent.run();
    assert!(!output.status.success(), "{}", describe(&output));
    let log = describe(&output);
    for needle in ["filesecret-config-db/url", "`db`", "`pasword`"] {
        assert!(log.contains(needle), "the message names {needle}:\n{log}");
    }
    let secrets = [DB_PASSWORD, DB_PASSWORD_URLENCODED];
    support::assert_no_secret(&log, &secrets);
    support::assert_no_secret(&render_output, &secrets);
    // Nothing half-written for the app to find.
    let written: Vec<PathBuf> = walkdir::WalkDir::new(pod.volume(SECRETS_VOLUME))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    for file in &written {
        let content = std::fs::read(file).unwrap_or_default();
        support::assert_no_secret(&String::from_utf8_lossy(&content), &secrets);
    }
}

/// Templates that try to read a file or an env var (or call a function, import, or
/// reach the engine's globals) are refused by render and lint, exit 1, located at the
/// annotation's line and a column inside the offending `${ }` or `{% %}`, with nothing of
/// /etc/passwd or the environment in the output.
#[test]
fn templates_reaching_for_files_or_env_are_refused_at_render() {
    const CANARY: &str = "canary-value-5e2b";
    let tricks = [
        "${ env.TEMPLATE_CANARY }",
        "${ env[\"HOME\"] }",
        "{% include \"/etc/passwd\" %}",
        "{% import \"/etc/passwd\" as p %}",
        "{% extends \"/etc/passwd\" %}",
        "{% set x = db.password %}",
        "${ range(100000) }",
        "${ lookup(\"file\", \"/etc/passwd\") }",
        "${ db.password | attr(\"__class__\") }",
        "${ db.password | include }",
        "${ namespace() }",
        "${ debug() }",
        "${ self }",
        "${ loop.index }",
    ];
    for trick in tricks {
        let template = format!("before {trick} after");
        let annotation = config(
            "1",
            &json!({"secretFileName": "f", "volumeMountPath": "/etc/f",
                    "sources": {"db": "secret/shop/db"}, "template": template}),
        );
        let manifest = manifest(std::slice::from_ref(&annotation), &[sh("app", "true", &[])]);
        let line = manifest
            .lines()
            .position(|l| l.contains("filesecret-config-1"))
            .expect("annotation line")
            + 1;
        // The trick's columns in the annotation's line, as JSON wrote it.
        let written = serde_json::to_string(trick).expect("json");
        let written = &written[1..written.len() - 1];
        let start = annotation.find(written).expect("trick in the line") + 1;
        let end = start + written.len();
        for command in ["render", "lint"] {
            let output = run_on_manifest(
                command,
                (command == "render").then_some("http://127.0.0.1:1"),
                &manifest,
                &[("TEMPLATE_CANARY", CANARY)],
            );
            let what = format!("{command} of {trick}: {}", describe(&output));
            assert_eq!(output.status.code(), Some(1), "{what}");
            if command == "render" {
                assert!(output.stdout.is_empty(), "{what}");
            }
            let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
            assert!(all.contains("error[SS"), "{what}");
            let prefix = format!("web.yaml:{line}:");
            let located = all
                .match_indices(&prefix)
                .filter_map(|(at, _)| {
                    let rest = &all[at + prefix.len()..];
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse::<usize>().ok()
                })
                .collect::<Vec<_>>();
            assert!(
                located.iter().any(|col| (start..end).contains(col)),
                "{command} locates {trick} at line {line}, columns {start}..{end}: {located:?}\n{what}"
            );
            support::assert_no_secret(&all, &[CANARY, "root:x:0:0", "/usr/sbin/nologin"]);
        }
    }
}

/// The one path in the secrets volume named `name` that a container's mount shows (not
/// one inside a `..data`-style directory; the agent's layout is its own business).
fn find_file(volume: &Path, name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = walkdir::WalkDir::new(volume)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name() == name)
        .map(|e| e.into_path())
        .filter(|p| {
            !p.strip_prefix(volume)
                .expect("inside the volume")
                .components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with(".."))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {name} in {}: {found:?}",
        volume.display()
    );
    found.remove(0)
}

/// `(inode, mtime)` of a file, through symlinks: a rewrite (atomic rename) changes both.
fn identity(path: &Path) -> (u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).expect("stat");
    (meta.ino(), meta.modified().expect("mtime"))
}

/// Live mode: a template is evaluated again when its source changes, and its file is
/// written (and the app signalled) only when its output changed. A change of a key the
/// template does not use rewrites nothing and signals nothing; a change of a key it uses
/// reaches the file and the app gets SIGHUP after it.
#[test]
fn live_template_follows_its_source_and_skips_unrelated_changes() {
    let lab = Lab::start();
    let put = |password: &str, unrelated: &str| {
        lab.vault.kv2_put(
            "secret",
            "shop/db",
            &json!({"username": "shop", "password": password, "unrelated": unrelated}),
        );
    };
    put("pw-ONE-41c7", "u-ONE");
    let annotations = [
        "        vault.secretstore.rafay.dev/refresh: 1s".to_owned(),
        "        vault.secretstore.rafay.dev/on-change: signal:SIGHUP".to_owned(),
        config(
            "props",
            &json!({"secretFileName": "db.properties", "volumeMountPath": "/etc/db",
                    "containers": ["app"], "sources": {"db": "secret/shop/db"},
                    "template": "user=${ db.username }\npassword=${ db.password }\n"}),
        ),
        // The same secret's unrelated key, in a file of another container: when it shows
        // the new value, the sidecar has read the new version.
        config(
            "probe",
            &json!({"vaultSecretRef": "secret/shop/db#unrelated", "secretFileName": "unrelated",
                    "volumeMountPath": "/etc/probe", "containers": ["other"]}),
        ),
    ];
    let script = r#"trap 'echo "HUP $(sed -n s/^password=//p /etc/db/db.properties)" >> /out/events' HUP
echo "start $(sed -n s/^password=//p /etc/db/db.properties)" >> /out/events
while :; do sleep 0.05; done"#;
    let manifest = manifest(
        &annotations,
        &[sh("app", script, &[]), sh("other", "sleep 1000", &[])],
    );
    let (spec, _) = render(&lab, &manifest);
    assert_eq!(spec["initContainers"][0]["restartPolicy"], "Always");
    let pod = pod(&lab, &spec);
    let sidecar = start_sidecar(&pod, &spec);
    let volume = pod.volume(SECRETS_VOLUME);
    let props = find_file(volume, "db.properties");
    let probe = find_file(volume, "unrelated");
    assert_eq!(read(&props), "user=shop\npassword=pw-ONE-41c7\n");
    let app = Running::start(&pod.containers().remove(0).1);
    let events = pod.volume("out").join("events");
    let events_seen = || {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    wait_until(
        30,
        "the app to start",
        || events_seen().len() == 1,
        || app.log(),
    );
    assert_eq!(events_seen(), ["start pw-ONE-41c7"]);
    let before = identity(&props);

    // An unrelated key changes: the sidecar reads the new version (the probe file shows
    // it), evaluates the template again, and leaves its file alone.
    put("pw-ONE-41c7", "u-TWO");
    wait_until(
        30,
        "the new version to be read",
        || std::fs::read_to_string(&probe).ok().as_deref() == Some("u-TWO"),
        || sidecar.log(),
    );
    // Two more refresh rounds (1 s each) for a late write to show.
    let refreshed = |log: &str| log.matches("msg=\"secrets refreshed\"").count();
    let rounds = refreshed(&sidecar.log());
    wait_until(
        30,
        "two more refreshes",
        || refreshed(&sidecar.log()) >= rounds + 2,
        || sidecar.log(),
    );
    assert_eq!(
        identity(&props),
        before,
        "the template's file is not rewritten"
    );
    assert_eq!(read(&props), "user=shop\npassword=pw-ONE-41c7\n");
    assert_eq!(
        events_seen(),
        ["start pw-ONE-41c7"],
        "no signal without a change"
    );

    // A key the template uses changes: the file, then the signal.
    put("pw-TWO-9b3d", "u-TWO");
    wait_until(
        30,
        "SIGHUP after the template's file changed",
        || events_seen().len() == 2,
        || format!("{}\n{}", sidecar.log(), app.log()),
    );
    assert_eq!(events_seen(), ["start pw-ONE-41c7", "HUP pw-TWO-9b3d"]);
    assert_eq!(read(&props), "user=shop\npassword=pw-TWO-9b3d\n");

    app.signal(libc::SIGTERM);
    let (_, app_log) = app.wait();
    let log = sidecar.stop();
    for text in [&log, &app_log] {
        support::assert_no_secret(text, &["pw-ONE-41c7", "pw-TWO-9b3d"]);
    }
}

/// Live mode with `on-change: restart`: an env value from a template
/// (`secretstore:file:` of a config mounted nowhere) follows its source, the app restarted
/// with the new value; a change of a key the template does not use restarts nothing.
#[test]
fn live_env_value_from_a_template_restarts_the_app_only_when_it_changes() {
    let lab = Lab::start();
    let put = |password: &str, unrelated: &str| {
        lab.vault.kv2_put(
            "secret",
            "shop/db",
            &json!({"username": "shop", "password": password, "unrelated": unrelated}),
        );
    };
    put("pw-ONE-7c1d", "u-ONE");
    let annotations = [
        "        vault.secretstore.rafay.dev/refresh: 1s".to_owned(),
        "        vault.secretstore.rafay.dev/on-change: restart".to_owned(),
        config(
            "url",
            &json!({"secretFileName": "url", "containers": [],
                    "sources": {"db": "secret/shop/db"},
                    "template": "postgresql://${ db.username }:${ db.password | urlencode }@db/shop"}),
        ),
        config(
            "probe",
            &json!({"vaultSecretRef": "secret/shop/db#unrelated", "secretFileName": "unrelated",
                    "volumeMountPath": "/etc/probe", "containers": ["other"]}),
        ),
    ];
    // The kubelet turns `$$$$` into `$$`.
    let script = r#"trap 'exit 0' TERM
echo "start $$$$ $DATABASE_URL" >> /out/events
while :; do sleep 0.05; done"#;
    let manifest = manifest(
        &annotations,
        &[
            sh(
                "app",
                script,
                &[("DATABASE_URL", "secretstore:file:url/url")],
            ),
            sh("other", "sleep 1000", &[]),
        ],
    );
    let (spec, _) = render(&lab, &manifest);
    let pod = pod(&lab, &spec);
    let sidecar = start_sidecar(&pod, &spec);
    let probe = find_file(pod.volume(SECRETS_VOLUME), "unrelated");
    let app = Running::start(&pod.containers().remove(0).1);
    let events = pod.volume("out").join("events");
    let events_seen = || {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    wait_until(
        30,
        "the app to start",
        || events_seen().len() == 1,
        || app.log(),
    );
    assert_eq!(events_seen()[0][2], "postgresql://shop:pw-ONE-7c1d@db/shop");

    put("pw-ONE-7c1d", "u-TWO");
    wait_until(
        30,
        "the new version to be read",
        || std::fs::read_to_string(&probe).ok().as_deref() == Some("u-TWO"),
        || sidecar.log(),
    );
    let refreshed = |log: &str| log.matches("msg=\"secrets refreshed\"").count();
    let rounds = refreshed(&sidecar.log());
    wait_until(
        30,
        "two more refreshes",
        || refreshed(&sidecar.log()) >= rounds + 2,
        || sidecar.log(),
    );
    assert_eq!(events_seen().len(), 1, "no restart without a change");

    put("pw-TWO-0e8a", "u-TWO");
    wait_until(
        30,
        "the restart",
        || events_seen().len() == 2,
        || format!("{}\n{}", sidecar.log(), app.log()),
    );
    let seen = events_seen();
    assert_eq!(seen[1][2], "postgresql://shop:pw-TWO-0e8a@db/shop");
    assert_ne!(seen[0][1], seen[1][1], "a new app process");

    app.signal(libc::SIGTERM);
    let (_, app_log) = app.wait();
    let log = sidecar.stop();
    for text in [&log, &app_log] {
        support::assert_no_secret(text, &["pw-ONE-7c1d", "pw-TWO-0e8a"]);
    }
}
