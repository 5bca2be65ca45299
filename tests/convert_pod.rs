//! The proof that a conversion keeps what the pod reads: each source dialect's pod
//! (`testdata/convert/pod/`) is converted, rendered, and run container by container as
//! the kubelet would (tests/support/pod.rs) against a real OpenBao; what the app sees is
//! compared with what the original tool reads from the same OpenBao: `bao agent` itself
//! with the injector's templates, and, for bank-vaults and argocd-vault-plugin, their
//! documented reads (the path as written, the KV v2 `data` map unwrapped, `?version=`).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};
use support::jwt::{JwtRole, ServiceAccountIssuer};
use support::openbao::OpenBao;
use support::output::{describe, text};
use support::pod::KubeletPod;

const NAMESPACE: &str = "shop";
const SERVICE_ACCOUNT: &str = "app";
const AUDIENCE: &str = "vault";
const ROLE: &str = "app";

const DB_PW_V1: &str = "first-pw-§1";
const DB_PW_V2: &str = "second 'pw' $x";
const CONFIG_URL: &str = "https://shop.example/api?a=1&b=2";
const KV1_TOKEN: &str = "legacy-token-77";
const ENV_PASS: &str = "env-pass";
const VALUES: [&str; 5] = [DB_PW_V1, DB_PW_V2, CONFIG_URL, KV1_TOKEN, ENV_PASS];

struct Lab {
    vault: OpenBao,
    issuer: ServiceAccountIssuer,
}

fn lab() -> Lab {
    let vault = OpenBao::start();
    vault.enable_secrets_engine("kv1", "kv", &json!({ "options": { "version": "1" } }));
    vault.put_policy(
        "app",
        "path \"secret/data/shop/*\" { capabilities = [\"read\"] }\npath \"kv1/shop/*\" { capabilities = [\"read\"] }\n",
    );
    let issuer = ServiceAccountIssuer::new();
    vault.enable_jwt_auth("kubernetes", &issuer);
    vault.write_jwt_role(
        "kubernetes",
        ROLE,
        &JwtRole::service_account(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE, &["app"]),
    );
    vault.kv2_put(
        "secret",
        "shop/db",
        &json!({ "password": DB_PW_V1, "user": "shop-v1" }),
    );
    vault.kv2_put(
        "secret",
        "shop/db",
        &json!({ "password": DB_PW_V2, "user": "shop" }),
    );
    vault.kv2_put(
        "secret",
        "shop/config",
        &json!({ "url": CONFIG_URL, "retries": 3, "flags": { "beta": true } }),
    );
    vault.kv2_put(
        "secret",
        "shop/envfile",
        &json!({ "DB_USER": "shop", "DB_PASS": ENV_PASS }),
    );
    vault.put_json("kv1/shop/legacy", &json!({ "token": KV1_TOKEN }));
    Lab { vault, issuer }
}

fn assert_no_values(output: &Output) {
    support::assert_no_secret(&text(&output.stdout), &VALUES);
    support::assert_no_secret(&text(&output.stderr), &VALUES);
}

/// Converts (with `VAULT_ADDR` set when `live`, so that convert looks the mounts up),
/// lints and renders a fixture; runs the rendered pod; returns the converted stream and
/// the pod's `results` volume's files.
fn convert_render_run(
    lab: &Lab,
    fixture: &str,
    convert_args: &[&str],
    live: bool,
) -> (String, BTreeMap<String, String>) {
    let source = std::fs::read(
        support::repo_root()
            .join("testdata/convert/pod")
            .join(fixture),
    )
    .expect("fixture");
    let mut convert = support::secretstore();
    convert.arg("convert").args(convert_args);
    if live {
        convert.envs(lab.vault.env());
    }
    let converted = support::run_with_stdin(&mut convert, &source);
    assert_eq!(converted.status.code(), Some(0), "{}", describe(&converted));
    let mut lint = support::secretstore();
    lint.args(["lint", "-"]);
    let linted = support::run_with_stdin(&mut lint, &converted.stdout);
    assert_eq!(linted.status.code(), Some(0), "{}", describe(&linted));

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("secretstore.yaml");
    std::fs::write(
        &config,
        format!(
            "vault:\n  address: {}\n  audience: {AUDIENCE}\nagent:\n  timeout: 30s\n",
            lab.vault.addr()
        ),
    )
    .expect("write config");
    let mut render = support::secretstore();
    render.arg("render").arg("--config").arg(&config);
    let rendered = support::run_with_stdin(&mut render, &converted.stdout);
    assert!(rendered.status.success(), "{}", describe(&rendered));
    let doc: Value = yaml_serde::from_str(&text(&rendered.stdout)).expect("rendered YAML");
    let pod = KubeletPod::new(
        &doc["spec"]["template"]["spec"],
        NAMESPACE,
        &lab.issuer,
        &[],
        Path::new(env!("CARGO_BIN_EXE_secretstore")),
    );
    for (name, container) in pod.init_containers().into_iter().chain(pod.containers()) {
        let output = container.run();
        assert!(
            output.status.success(),
            "container {name}: {}",
            describe(&output)
        );
        assert_no_values(&output);
    }
    let results = pod.volume("results");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(results).expect("results") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.insert(name, std::fs::read_to_string(&path).expect("result file"));
    }
    (text(&converted.stdout), files)
}

fn env_file(content: &str) -> BTreeMap<String, String> {
    content
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The injector's templates, taken from the fixture's annotations.
fn injector_templates() -> Vec<(String, String)> {
    let fixture = std::fs::read_to_string(
        support::repo_root().join("testdata/convert/pod/vault-agent-injector.yaml"),
    )
    .expect("fixture");
    let doc: Value = yaml_serde::from_str(&fixture).expect("fixture YAML");
    let annotations = doc["spec"]["template"]["metadata"]["annotations"]
        .as_object()
        .expect("annotations");
    annotations
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("vault.hashicorp.com/agent-inject-template-")?;
            Some((name.to_owned(), v.as_str()?.to_owned()))
        })
        .collect()
}

/// Runs `bao agent` (auto-auth with the pod's JWT, one template per secret, exit after
/// rendering) and returns what it wrote, by secret name.
fn bao_agent(lab: &Lab, templates: &[(String, String)]) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwt = dir.path().join("jwt");
    std::fs::write(&jwt, lab.issuer.token(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE)).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut config = format!(
        "exit_after_auth = true\nvault {{\n  address = \"{}\"\n}}\nauto_auth {{\n  method \"jwt\" {{\n    mount_path = \"auth/kubernetes\"\n    config = {{\n      path = \"{}\"\n      role = \"{ROLE}\"\n      remove_jwt_after_reading = false\n    }}\n  }}\n}}\n",
        lab.vault.addr(),
        jwt.display()
    );
    for (i, (name, template)) in templates.iter().enumerate() {
        let source = dir.path().join(format!("{i}.tmpl"));
        std::fs::write(&source, template).unwrap();
        config.push_str(&format!(
            "template {{\n  source = \"{}\"\n  destination = \"{}\"\n}}\n",
            source.display(),
            out.join(name).display()
        ));
    }
    let config_file = dir.path().join("agent.hcl");
    std::fs::write(&config_file, config).unwrap();
    let mut command = std::process::Command::new(support::tool("bao"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("VAULT_") || name.starts_with("BAO_") {
            command.env_remove(&*name);
        }
    }
    let output = command
        .arg("agent")
        .arg(format!("-config={}", config_file.display()))
        .output()
        .expect("run bao agent");
    assert!(output.status.success(), "bao agent: {}", describe(&output));
    assert_no_values(&output);
    templates
        .iter()
        .map(|(name, _)| {
            let content = std::fs::read_to_string(out.join(name)).expect("agent output");
            (name.clone(), content)
        })
        .collect()
}

/// What bank-vaults and argocd-vault-plugin read: `GET <path>[?version=N]` as written,
/// the `data` map of a KV v2 answer unwrapped, then the key.
fn read_key(lab: &Lab, path: &str, key: &str, version: Option<u64>) -> String {
    let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
    let body = lab.vault.get_json(&format!("{path}{query}"));
    let data = &body["data"];
    let data = if data["data"].is_object() && data["metadata"].is_object() {
        &data["data"]
    } else {
        data
    };
    data[key].as_str().expect("string value").to_owned()
}

#[test]
fn converted_pods_read_what_the_original_tools_read() {
    let lab = lab();

    // Vault Agent Injector: the app's files against `bao agent` with the same templates,
    // byte for byte (a key raw as a reference; the others as templates evaluated by the
    // agent).
    let (converted, seen) = convert_render_run(&lab, "vault-agent-injector.yaml", &[], false);
    assert!(
        converted.contains("\"template\": \"${ secret | json }\""),
        "{converted}"
    );
    let agent = bao_agent(&lab, &injector_templates());
    // Two sources in one template, and a template of several lines (written as a block).
    assert!(
        converted.contains(
            "\"sources\": {\"secret\": \"secret/shop/db\", \"legacy\": \"kv1/shop/legacy\"}"
        ),
        "{converted}"
    );
    assert!(
        converted.contains("filesecret-config-app-conf: |\n"),
        "{converted}"
    );
    for file in [
        "db-password",
        "token",
        "config.json",
        "app.env",
        "db-url",
        "app.conf",
    ] {
        assert!(seen[file] == agent[file], "{file} differs from bao agent's");
    }
    assert_eq!(seen["db-password"], DB_PW_V2);
    assert_eq!(seen["token"], KV1_TOKEN);
    let json = |s: &str| serde_json::from_str::<Value>(s).expect("JSON file");
    assert_eq!(json(&seen["config.json"])["url"], CONFIG_URL);
    assert_eq!(env_file(&seen["app.env"])["DB_PASS"], ENV_PASS);

    // bank-vaults: each env value against the webhook's read.
    let (converted, seen) = convert_render_run(&lab, "bank-vaults.yaml", &[], true);
    // With the live Vault's mounts, KV v2 paths are written logically, KV v1 as they were.
    assert!(converted.contains("value: secretstore:vault:secret/shop/db#password\n"));
    assert!(converted.contains("value: secretstore:vault:secret/shop/db#password#1\n"));
    assert!(converted.contains("value: \"secretstore:vault:kv1/shop/legacy#token\"\n"));
    let env = env_file(&seen["env"]);
    assert_eq!(
        env["DB_PASSWORD"],
        read_key(&lab, "secret/data/shop/db", "password", None)
    );
    assert_eq!(
        env["DB_PASSWORD_V1"],
        read_key(&lab, "secret/data/shop/db", "password", Some(1))
    );
    assert_eq!(
        env["TOKEN"],
        read_key(&lab, "kv1/shop/legacy", "token", None)
    );
    assert_eq!(
        (env["DB_PASSWORD"].as_str(), env["DB_PASSWORD_V1"].as_str()),
        (DB_PW_V2, DB_PW_V1)
    );

    // argocd-vault-plugin: each placeholder against AVP's read (KV v2, the annotation's
    // path and version for `<key>`).
    let (converted, seen) =
        convert_render_run(&lab, "argocd-vault-plugin.yaml", &["--role", ROLE], false);
    assert!(converted.contains("value: secretstore:vault:secret/shop/db#user#2\n"));
    let env = env_file(&seen["env"]);
    assert_eq!(
        env["DB_PASSWORD_V1"],
        read_key(&lab, "secret/data/shop/db", "password", Some(1))
    );
    assert_eq!(
        env["DB_PASSWORD"],
        read_key(&lab, "secret/data/shop/db", "password", None)
    );
    assert_eq!(
        env["DB_USER"],
        read_key(&lab, "secret/data/shop/db", "user", Some(2))
    );
    assert_eq!(env["DB_USER"], "shop");
}
