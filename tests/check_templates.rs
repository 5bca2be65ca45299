//! `secretstore check` and `secretstore policy` on templates (SPEC 1.4) against a real
//! OpenBao: every key a template reads from a KV source (v1, v2, a pinned version) is in
//! the secret; the role may read every source it reads and update every source with
//! params; and `policy` grants exactly that.
//!
//! testdata/check/templates-clean.yaml passes; each file secret of
//! testdata/check/templates-faults.yaml carries one planted fault, marked `# expect: CODE`
//! on the line its one finding must point at.

mod support;

use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use support::openbao::OpenBao;
use support::{assert_no_secret, repo_root, secretstore, tool};

/// Every secret value the world holds: none may appear in any output.
const SECRETS: &[&str] = &[
    "db-password-5f0e1c",
    "db-password-v1-a0c3",
    "db-user-a81b2c",
    "db-host-7c1d09",
    "api-token-e3b8f4",
    "legacy-token-9a3c5f",
    "legacy-url-41d6ab",
    "s3-key-e1d7b0",
];

fn testdata(name: &str) -> PathBuf {
    repo_root().join("testdata/check").join(name)
}

/// The path as the tests pass it: relative to the repository, so reports are stable.
fn relative(name: &str) -> String {
    format!("testdata/check/{name}")
}

/// KV v2 at secret/ (secret/shop/db has `host` from version 2 on), KV v1 at kv1/, pki at
/// pki/ (roles `web` and `api` for names under shop.svc), kubernetes auth; with
/// `with_roles`, role `shop-api` (service account `api` in `shop`) whose policy reads
/// secret/data/shop/*, kv1/legacy/*, pki/cert/ca and updates pki/issue/web only.
fn world(vault: &OpenBao, with_roles: bool) {
    vault.kv2_put(
        "secret",
        "shop/db",
        &json!({"password": "db-password-v1-a0c3", "user": "db-user-a81b2c"}),
    );
    vault.kv2_put(
        "secret",
        "shop/db",
        &json!({"password": "db-password-5f0e1c", "user": "db-user-a81b2c", "host": "db-host-7c1d09"}),
    );
    vault.kv2_put("secret", "shop/api", &json!({"token": "api-token-e3b8f4"}));
    vault.kv2_put("secret", "reports/s3", &json!({"key": "s3-key-e1d7b0"}));
    vault.enable_secrets_engine("kv1", "kv", &json!({"options": {"version": "1"}}));
    vault.post_json(
        "kv1/legacy/app",
        &json!({"token": "legacy-token-9a3c5f", "url": "legacy-url-41d6ab"}),
    );
    vault.enable_secrets_engine("pki", "pki", &json!({}));
    let root = vault.post_json(
        "pki/root/generate/internal",
        &json!({"common_name": "shop-ca", "ttl": "87600h"}),
    );
    let ca = root["data"]["certificate"]
        .as_str()
        .expect("pki root has a certificate")
        .to_owned();
    for role in ["web", "api"] {
        vault.post_json(
            &format!("pki/roles/{role}"),
            &json!({"allowed_domains": ["shop.svc"], "allow_subdomains": true, "max_ttl": "1h"}),
        );
    }
    vault.post_json("sys/auth/kubernetes", &json!({"type": "kubernetes"}));
    vault.post_json(
        "auth/kubernetes/config",
        &json!({"kubernetes_host": "https://127.0.0.1:6443", "kubernetes_ca_cert": ca}),
    );
    if with_roles {
        vault.put_policy(
            "shop-api",
            r#"path "secret/data/shop/*" { capabilities = ["read"] }
path "kv1/legacy/*" { capabilities = ["read"] }
path "pki/cert/ca" { capabilities = ["read"] }
path "pki/issue/web" { capabilities = ["update"] }"#,
        );
        vault.post_json(
            "auth/kubernetes/role/shop-api",
            &json!({
                "bound_service_account_names": ["api"],
                "bound_service_account_namespaces": ["shop"],
                "token_policies": ["shop-api"],
            }),
        );
    }
}

fn vault_env(vault: &OpenBao) -> Vec<(&'static str, String)> {
    vault
        .env()
        .into_iter()
        .filter(|(k, _)| k.starts_with("VAULT_"))
        .collect()
}

/// Runs `secretstore <args>` in the repository with `env`: status, stdout, stderr; no
/// secret value in either.
fn run(args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let output = secretstore()
        .current_dir(repo_root())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("cannot run secretstore");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_no_secret(&format!("{stdout}\n{stderr}"), SECRETS);
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

/// `check` on testdata/check/`name` with the kubernetes auth of testdata/check/config.yaml,
/// in `format`.
fn check(vault: &OpenBao, name: &str, format: &str) -> (i32, String, String) {
    let file = relative(name);
    run(
        &[
            "check",
            "--format",
            format,
            "--config",
            "testdata/check/config.yaml",
            "--cluster",
            "k8s",
            &file,
        ],
        &vault_env(vault),
    )
}

/// `check --format json`: status, (line, code) of each finding in order, the report.
fn check_json(vault: &OpenBao, name: &str) -> (i32, Vec<(usize, String)>, Value) {
    let (status, stdout, stderr) = check(vault, name, "json");
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("check printed no JSON ({e}):\n{stdout}\n{stderr}"));
    let findings = report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|f| {
            (
                f["line"].as_u64().unwrap() as usize,
                f["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (status, findings, report)
}

/// The `# expect: CODE` markers of a fault file: (line, code), in order.
fn expected(name: &str) -> Vec<(usize, String)> {
    std::fs::read_to_string(testdata(name))
        .unwrap()
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let code = line.split("# expect: ").nth(1)?.trim();
            let is_code = code.len() == 5
                && code.starts_with("SS")
                && code[2..].bytes().all(|b| b.is_ascii_digit());
            is_code.then(|| (i + 1, code.to_string()))
        })
        .collect()
}

#[test]
fn templates_reading_existing_keys_pass() {
    let vault = OpenBao::start();
    world(&vault, true);
    let (status, findings, report) = check_json(&vault, "templates-clean.yaml");
    assert_eq!((status, findings), (0, Vec::new()), "{report:#}");
}

#[test]
fn each_planted_template_fault_is_reported_once_at_its_line() {
    let vault = OpenBao::start();
    world(&vault, true);
    let want = expected("templates-faults.yaml");
    assert_eq!(want.len(), 10, "markers of templates-faults.yaml");
    let (status, got, report) = check_json(&vault, "templates-faults.yaml");
    assert_eq!(got, want, "{report:#}");
    assert_eq!(status, 1, "{report:#}");

    // The template error is the one lint reports, at the same line and column.
    let at = |report: &Value| -> Vec<(u64, u64, String)> {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "SS125")
            .map(|f| {
                let n = |k: &str| f[k].as_u64().unwrap();
                (
                    n("line"),
                    n("column"),
                    f["message"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let (_, lint, _) = run(
        &[
            "lint",
            "--format",
            "json",
            &relative("templates-faults.yaml"),
        ],
        &[],
    );
    let lint: Value = serde_json::from_str(&lint).expect("lint's JSON report");
    assert_eq!(at(&report), at(&lint), "{report:#}\n{lint:#}");

    // A missing key names the config, the file, the alias and the key, and lists the
    // keys the secret has (names only).
    let messages: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "SS304")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    for (needles, what) in [
        (
            &[
                "filesecret-config-1",
                "`creds`",
                "`db.pasword`",
                "`password`, `user`",
            ][..],
            "KV v2",
        ),
        (
            &[
                "filesecret-config-2",
                "`token`",
                "`legacy.tokn`",
                "`token`, `url`",
            ],
            "KV v1",
        ),
        (
            &["filesecret-config-3", "`host`", "`old.host`", "version 1"],
            "pinned version",
        ),
        (
            &[
                "filesecret-config-4",
                "`a`, `b`",
                "`secret.tokn`",
                "`token`",
            ],
            "vaultSecretRef",
        ),
    ] {
        assert!(
            messages
                .iter()
                .any(|m| needles.iter().all(|n| m.contains(n))),
            "{what}: no SS304 message with {needles:?}: {messages:#?}"
        );
    }
}

/// The human report of the faults, with its source snippets.
#[test]
fn human_report_of_template_faults() {
    let vault = OpenBao::start();
    world(&vault, true);
    let (status, stdout, _) = check(&vault, "templates-faults.yaml", "human");
    assert_eq!(status, 1, "{stdout}");
    insta::assert_snapshot!("check-templates-faults", stdout);
}

/// An env reference and a template source naming one secret are one read.
#[test]
fn a_template_source_and_an_env_reference_share_one_read() {
    let vault = OpenBao::start();
    world(&vault, true);
    let (status, _, stderr) = run(
        &[
            "check",
            "--stats",
            "--config",
            "testdata/check/config.yaml",
            "--cluster",
            "k8s",
            &relative("templates-clean.yaml"),
        ],
        &vault_env(&vault),
    );
    assert_eq!(status, 0, "{stderr}");
    // secret/shop/db (env ref and source `db`), secret/shop/db at version 1,
    // secret/shop/api and kv1/legacy/app; pki paths are not read.
    assert!(
        stderr.contains("lookups: 4 secrets, 1 roles, 2 policies, 0 metadata"),
        "{stderr}"
    );
}

/// `policy` grants `read` on the sources a template reads and `update` on those with
/// params, deduplicated with the other references; applied, check passes; and it grants
/// nothing next to them.
#[test]
fn generated_policies_cover_template_sources_and_make_check_pass() {
    let vault = OpenBao::start();
    world(&vault, false);
    let clean = relative("templates-clean.yaml");
    let k8s = ["--config", "testdata/check/config.yaml", "--cluster", "k8s"];
    let policy = |extra: &[&str], env: &[(&str, String)]| {
        let mut args = vec!["policy"];
        args.extend_from_slice(&k8s);
        args.extend_from_slice(extra);
        args.push(&clean);
        let (status, stdout, stderr) = run(&args, env);
        assert_eq!(status, 0, "{stderr}");
        stdout
    };
    // Offline, with the mounts' versions as flags, it is what the server's mounts give.
    let offline = policy(&["--kv-version", "kv1=1", "--kv-version", "pki=1"], &[]);
    insta::assert_snapshot!("policy-templates", offline);
    assert_eq!(policy(&[], &vault_env(&vault)), offline);

    let script = policy(&["--format", "vault-cli"], &vault_env(&vault));
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(tool("bao"), bin.path().join("vault")).unwrap();
    let mut child = Command::new("sh")
        .envs(vault.env())
        .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the vault-cli script failed:\n{script}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let (status, findings, report) = check_json(&vault, "templates-clean.yaml");
    assert_eq!((status, findings), (0, Vec::new()), "{report:#}");

    let token = vault.create_token(&["secretstore-shop-api"]);
    let probes = [
        ("secret/data/shop/db", "read"),
        ("secret/data/shop/api", "read"),
        ("kv1/legacy/app", "read"),
        ("pki/cert/ca", "read"),
        ("pki/issue/web", "update"),
        ("secret/data/shop/other", "deny"),
        ("secret/metadata/shop/db", "deny"),
        ("kv1/legacy/other", "deny"),
        ("pki/issue/api", "deny"),
        ("pki/sign/web", "deny"),
    ];
    let paths: Vec<&str> = probes.iter().map(|(p, _)| *p).collect();
    let answer = vault.post_json("sys/capabilities", &json!({"token": token, "paths": paths}));
    for (path, want) in probes {
        assert_eq!(answer[path], json!([want]), "{path}: {answer}");
    }
}
