//! `secretstore check` and `secretstore policy` against a real OpenBao: KV v1 and v2
//! mounts, a pki mount (a non-KV engine), a real `kubernetes` auth mount (configured with a
//! host and a CA; check never logs in) and a `jwt` auth mount trusting a test issuer.
//!
//! The clean workloads of testdata/check/clean.yaml pass; each workload of
//! testdata/check/faults*.yaml carries one planted fault, marked `# expect: CODE` on the
//! line its one finding must point at, and exactly those findings are reported.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::jwt::ServiceAccountIssuer;
use support::openbao::OpenBao;
use support::{assert_no_secret, repo_root, secretstore, tool};

/// Every secret value the world holds: none may appear in any output.
const SECRETS: &[&str] = &[
    "db-password-5f0e1c",
    "db-user-a81b2c",
    "db-password-old-77e3",
    "tls-key-0b9d4e",
    "tls-crt-c4f2aa",
    "queue-url-2d8e61",
    "legacy-token-9a3c5f",
    "s3-key-e1d7b0",
    "s3-secret-53c9d1",
    "level-config-8f2b7a",
    "old-v1-3c1e",
    "old-v2-91ad",
    "old-v3-6b0f",
    "gone-4e7d",
];

fn testdata(name: &str) -> PathBuf {
    repo_root().join("testdata/check").join(name)
}

/// Mounts, secrets and auth methods; roles and policies only when `with_roles`.
fn world(vault: &OpenBao, issuer: &ServiceAccountIssuer, with_roles: bool) {
    vault.kv2_put(
        "secret",
        "shop/db",
        &json!({"password": "db-password-old-77e3", "user": "db-user-a81b2c"}),
    );
    vault.kv2_put(
        "secret",
        "shop/db",
        &json!({"password": "db-password-5f0e1c", "user": "db-user-a81b2c"}),
    );
    vault.kv2_put(
        "secret",
        "shop/tls",
        &json!({"crt": "tls-crt-c4f2aa", "key": "tls-key-0b9d4e"}),
    );
    vault.kv2_put("secret", "shop/queue", &json!({"url": "queue-url-2d8e61"}));
    vault.kv2_put(
        "secret",
        "reports/s3",
        &json!({"key": "s3-key-e1d7b0", "secret": "s3-secret-53c9d1"}),
    );
    vault.kv2_put(
        "secret",
        "shared/config",
        &json!({"level": "level-config-8f2b7a"}),
    );
    for value in ["old-v1-3c1e", "old-v2-91ad", "old-v3-6b0f"] {
        vault.kv2_put("secret", "shop/old", &json!({ "k": value }));
    }
    vault.post_json("secret/delete/shop/old", &json!({"versions": [1]}));
    vault.put_json("secret/destroy/shop/old", &json!({"versions": [2]}));
    vault.kv2_put("secret", "shop/gone", &json!({"k": "gone-4e7d"}));
    vault.request("DELETE", "secret/data/shop/gone", None);

    vault.enable_secrets_engine("kv1", "kv", &json!({"options": {"version": "1"}}));
    vault.post_json("kv1/legacy/app", &json!({"token": "legacy-token-9a3c5f"}));

    vault.enable_secrets_engine("pki", "pki", &json!({}));
    let root = vault.post_json(
        "pki/root/generate/internal",
        &json!({"common_name": "kubernetes-ca", "ttl": "87600h"}),
    );
    let ca = root["data"]["certificate"]
        .as_str()
        .expect("pki root has a certificate");

    vault.post_json("sys/auth/kubernetes", &json!({"type": "kubernetes"}));
    vault.post_json(
        "auth/kubernetes/config",
        &json!({"kubernetes_host": "https://127.0.0.1:6443", "kubernetes_ca_cert": ca}),
    );
    vault.enable_jwt_auth("jwt", issuer);
    if with_roles {
        roles_and_policies(vault);
    }
}

fn roles_and_policies(vault: &OpenBao) {
    vault.put_policy(
        "shop-api",
        r#"path "secret/data/shop/*" { capabilities = ["read"] }
path "kv1/legacy/*" { capabilities = ["read", "list"] }"#,
    );
    vault.put_policy(
        "shop-worker",
        r#"path "secret/data/shop/queue" { capabilities = ["read"] }
path "kv1/legacy/app" { capabilities = ["read"] }"#,
    );
    vault.put_policy(
        "reports",
        r#"path "secret/data/reports/+" { capabilities = ["read"] }"#,
    );
    vault.put_policy(
        "shared",
        r#"path "secret/data/shared/config" { capabilities = ["read"] }
path "pki/cert/ca" { capabilities = ["read"] }"#,
    );
    let k8s = |name: &str, role: Value| {
        vault.post_json(&format!("auth/kubernetes/role/{name}"), &role);
    };
    let bound = |names: &[&str], namespaces: &[&str], policy: &str| {
        json!({
            "bound_service_account_names": names,
            "bound_service_account_namespaces": namespaces,
            "token_policies": [policy],
        })
    };
    k8s("shop-api", bound(&["api"], &["shop"], "shop-api"));
    k8s(
        "shop-worker",
        bound(&["worker-*"], &["shop"], "shop-worker"),
    );
    k8s("reports", bound(&["default"], &["rep*"], "reports"));
    k8s("shared", bound(&["*"], &["dev-*"], "shared"));
    let mut selected = bound(&["api"], &["shop"], "shop-api");
    selected["bound_service_account_namespace_selector"] =
        json!(r#"{"matchLabels":{"secrets":"allowed"}}"#);
    k8s("selected", selected);
    let mut audience = bound(&["api"], &["shop"], "shop-api");
    audience["audience"] = json!("vault");
    k8s("audience", audience);

    let jwt = |name: &str, mut role: Value, policy: &str| {
        role["user_claim"] = json!("sub");
        role["token_policies"] = json!([policy]);
        if role.get("role_type").is_none() {
            role["role_type"] = json!("jwt");
        }
        if role.get("bound_audiences").is_none() {
            role["bound_audiences"] = json!(["vault"]);
        }
        vault.post_json(&format!("auth/jwt/role/{name}"), &role);
    };
    jwt(
        "shop-api",
        json!({"bound_subject": "system:serviceaccount:shop:api"}),
        "shop-api",
    );
    jwt(
        "shop-worker",
        json!({"bound_claims_type": "glob", "bound_claims": {
            "/kubernetes.io/serviceaccount/name": "worker-*",
            "/kubernetes.io/namespace": "shop"}}),
        "shop-worker",
    );
    jwt(
        "reports",
        json!({"bound_claims": {
            "/kubernetes.io/namespace": ["reports"],
            "/kubernetes.io/serviceaccount/name": "default"}}),
        "reports",
    );
    jwt(
        "shared",
        json!({"bound_claims_type": "glob", "bound_claims": {"sub": "system:serviceaccount:dev-*:*"}}),
        "shared",
    );
    jwt(
        "oidc-role",
        json!({"role_type": "oidc", "allowed_redirect_uris": ["https://example.test/cb"]}),
        "shop-api",
    );
    jwt(
        "no-audiences",
        json!({"bound_subject": "system:serviceaccount:shop:api", "bound_audiences": []}),
        "shop-api",
    );
    jwt(
        "other-audience",
        json!({"bound_subject": "system:serviceaccount:shop:api", "bound_audiences": ["other"]}),
        "shop-api",
    );
    jwt(
        "pod-bound",
        json!({"bound_claims": {"/kubernetes.io/pod/name": "api-0"}}),
        "shop-api",
    );
}

/// Runs `secretstore <args>` with `env` (e.g. the Vault's), stdin empty.
fn run(args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let output = secretstore()
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("cannot run secretstore");
    let result = outcome(output);
    assert_no_secret(&format!("{}\n{}", result.1, result.2), SECRETS);
    result
}

fn outcome(output: Output) -> (i32, String, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn vault_env(vault: &OpenBao) -> Vec<(&'static str, String)> {
    vault
        .env()
        .into_iter()
        .filter(|(k, _)| k.starts_with("VAULT_"))
        .collect()
}

/// `check --format json` on `file` for `cluster`: exit status and (line, code) findings.
fn check_json(
    vault: &OpenBao,
    cluster: &str,
    file: &Path,
    extra: &[&str],
) -> (i32, BTreeSet<(usize, String)>, Value) {
    let config = testdata("config.yaml");
    let mut args = vec![
        "check",
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
        "--cluster",
        cluster,
    ];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    let (status, stdout, stderr) = run(&args, &vault_env(vault));
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

/// The `# expect: CODE` markers of a fault file: (line, code).
fn expected(file: &Path) -> BTreeSet<(usize, String)> {
    std::fs::read_to_string(file)
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
fn clean_workloads_pass_with_kubernetes_and_jwt_auth_and_really_log_in() {
    let vault = OpenBao::start();
    let issuer = ServiceAccountIssuer::new();
    world(&vault, &issuer, true);
    let clean = testdata("clean.yaml");
    for cluster in ["k8s", "jwt"] {
        let (status, findings, report) = check_json(&vault, cluster, &clean, &[]);
        assert_eq!(
            (status, &findings),
            (0, &BTreeSet::new()),
            "cluster {cluster}: {report:#}"
        );
    }
    // The human format says so too.
    let config = testdata("config.yaml");
    let (status, stdout, _) = run(
        &[
            "check",
            "--config",
            config.to_str().unwrap(),
            "--cluster",
            "k8s",
            clean.to_str().unwrap(),
        ],
        &vault_env(&vault),
    );
    assert_eq!(status, 0, "{stdout}");
    assert!(
        stdout.contains("secretstore check: no findings"),
        "{stdout}"
    );

    // What check approved works for real: each pod logs in with its service account's
    // token at the jwt mount and reads every path it uses.
    let pods = [
        (
            "shop",
            "api",
            "shop-api",
            &[
                "secret/data/shop/db",
                "secret/data/shop/tls",
                "kv1/legacy/app",
            ][..],
        ),
        (
            "shop",
            "worker-1",
            "shop-worker",
            &["secret/data/shop/queue", "kv1/legacy/app"][..],
        ),
        (
            "reports",
            "default",
            "reports",
            &["secret/data/reports/s3"][..],
        ),
        (
            "dev-team",
            "tool",
            "shared",
            &["secret/data/shared/config", "pki/cert/ca"][..],
        ),
    ];
    for (ns, sa, role, paths) in pods {
        let (status, login) = vault.jwt_login("jwt", role, &issuer.token(ns, sa, "vault"));
        assert_eq!(status, 200, "login {ns}/{sa} as {role}: {login}");
        let token = login["auth"]["client_token"].as_str().unwrap();
        for path in paths {
            let (status, body) = vault.request_as(token, "GET", path, None);
            assert_eq!(status, 200, "{ns}/{sa} reads {path}: {body}");
        }
    }
}

#[test]
fn each_planted_fault_is_reported_once_at_its_line() {
    let vault = OpenBao::start();
    let issuer = ServiceAccountIssuer::new();
    world(&vault, &issuer, true);
    for (cluster, file) in [("k8s", "faults.yaml"), ("jwt", "faults-jwt.yaml")] {
        let file = testdata(file);
        let want = expected(&file);
        assert!(want.len() >= 7, "markers of {}", file.display());
        let (status, got, report) = check_json(&vault, cluster, &file, &[]);
        assert_eq!(got, want, "cluster {cluster}: {report:#}");
        assert_eq!(status, 1, "{report:#}");
    }
}

#[test]
fn a_namespace_flag_stands_in_for_the_deploy_time_namespace() {
    let vault = OpenBao::start();
    let issuer = ServiceAccountIssuer::new();
    world(&vault, &issuer, true);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no-namespace.yaml");
    let clean = std::fs::read_to_string(testdata("clean.yaml")).unwrap();
    // The first workload (shop/api) without its namespace.
    std::fs::write(&file, clean.replacen("  namespace: shop\n", "", 1)).unwrap();
    let (status, findings, _) = check_json(&vault, "k8s", &file, &[]);
    assert_eq!(status, 0, "warnings do not fail");
    assert_eq!(
        findings.iter().map(|f| f.1.as_str()).collect::<Vec<_>>(),
        ["SS330"]
    );
    let (status, findings, _) = check_json(&vault, "k8s", &file, &["--namespace", "shop"]);
    assert_eq!((status, findings), (0, BTreeSet::new()));
    let (status, findings, _) = check_json(&vault, "k8s", &file, &["-n", "prod"]);
    assert_eq!(status, 1);
    assert_eq!(
        findings.iter().map(|f| f.1.as_str()).collect::<Vec<_>>(),
        ["SS312"]
    );
}

#[test]
fn identical_lookups_are_made_once() {
    let vault = OpenBao::start();
    let issuer = ServiceAccountIssuer::new();
    world(&vault, &issuer, true);
    let mut manifest = String::new();
    for i in 0..40 {
        manifest.push_str(&format!(
            r#"---
apiVersion: v1
kind: Pod
metadata:
  name: api-{i}
  namespace: shop
  annotations:
    rafay.dev/secretstore: vault
    vault.secretstore.rafay.dev/role: shop-api
    vault.secretstore.rafay.dev/filesecret-config-1: '{{"vaultSecretRef": "secret/shop/tls", "secretFileName": "tls", "volumeMountPath": "/tls"}}'
spec:
  serviceAccountName: api
  containers:
  - name: app
    image: app
    command: [/app]
    env:
    - name: password
      value: secretstore:vault:secret/shop/db
    - name: USER
      value: secretstore:vault:secret/data/shop/db#user
    - name: TOKEN
      value: secretstore:vault:kv1/legacy/app#token
"#
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.yaml");
    std::fs::write(&file, manifest).unwrap();
    let (status, stdout, stderr) = run(
        &["check", "--stats", file.to_str().unwrap()],
        &vault_env(&vault),
    );
    assert_eq!(status, 0, "{stdout}{stderr}");
    // 1 mount listing + 3 secrets (shop/db read once for both forms) + 1 role + 2
    // policies (shop-api, default).
    assert!(
        stderr.contains("40 pods, 160 references; lookups: 3 secrets, 1 roles, 2 policies, 0 metadata; 7 HTTP requests"),
        "{stderr}"
    );
}

#[test]
fn generated_policies_make_check_pass_and_grant_nothing_more() {
    let vault = OpenBao::start();
    let issuer = ServiceAccountIssuer::new();
    world(&vault, &issuer, false);
    let clean = testdata("clean.yaml");
    let config = testdata("config.yaml");
    let clean_arg = clean.to_str().unwrap();
    let config_arg = config.to_str().unwrap();
    let k8s = ["--config", config_arg, "--cluster", "k8s"];

    // Before: every role is missing.
    let (status, findings, _) = check_json(&vault, "k8s", &clean, &[]);
    assert_eq!(status, 1);
    assert!(findings.iter().all(|f| f.1 == "SS310"), "{findings:?}");

    // KV versions from the server, or from --kv-version, give the same policies.
    let policy = |extra: &[&str], env: &[(&str, String)]| {
        let mut args = vec!["policy"];
        args.extend_from_slice(&k8s);
        args.extend_from_slice(extra);
        args.push(clean_arg);
        let (status, stdout, stderr) = run(&args, env);
        assert_eq!(status, 0, "{stderr}");
        stdout
    };
    let online: Value =
        serde_json::from_str(&policy(&["--format", "json"], &vault_env(&vault))).unwrap();
    let offline: Value = serde_json::from_str(&policy(
        &[
            "--format",
            "json",
            "--kv-version",
            "kv1=1",
            "--kv-version",
            "pki=1",
        ],
        &[],
    ))
    .unwrap();
    assert_eq!(online, offline);
    let roles: Vec<&str> = online
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["reports", "shared", "shop-api", "shop-worker"]);
    assert_eq!(online[2]["policy_name"], "secretstore-shop-api");
    assert_eq!(online[2]["bound_service_account_names"], json!(["api"]));
    assert_eq!(
        online[2]["bound_service_account_namespaces"],
        json!(["shop"])
    );
    assert_eq!(online[2]["auth_path"], "auth/kubernetes");

    // Apply the vault-cli script with the real CLI (`vault` is `bao`).
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
    let (status, out, err) = outcome(child.wait_with_output().unwrap());
    assert_eq!(
        status, 0,
        "the vault-cli script failed:\n{script}\n{out}{err}"
    );

    // After: clean.
    let (status, findings, report) = check_json(&vault, "k8s", &clean, &[]);
    assert_eq!((status, &findings), (0, &BTreeSet::new()), "{report:#}");

    // Least privilege: `read` on exactly the used paths, nothing next to them.
    let used: &[(&str, &[&str])] = &[
        (
            "secretstore-shop-api",
            &[
                "secret/data/shop/db",
                "secret/data/shop/tls",
                "kv1/legacy/app",
            ],
        ),
        (
            "secretstore-shop-worker",
            &["secret/data/shop/queue", "kv1/legacy/app"],
        ),
        ("secretstore-reports", &["secret/data/reports/s3"]),
        (
            "secretstore-shared",
            &["secret/data/shared/config", "pki/cert/ca"],
        ),
    ];
    for (policy_name, paths) in used {
        let token = vault.create_token(&[policy_name]);
        let mut probes: Vec<(String, &str)> =
            paths.iter().map(|p| (p.to_string(), "read")).collect();
        for p in *paths {
            let (parent, leaf) = p.rsplit_once('/').unwrap();
            for neighbour in [
                format!("{p}2"),
                format!("{p}/x"),
                parent.to_string(),
                format!("{parent}/"),
                format!("{parent}/other"),
                format!("{parent}/{leaf}-x"),
                p.replacen("/data/", "/metadata/", 1),
                p.replacen("/data/", "/delete/", 1),
            ] {
                if !paths.contains(&neighbour.as_str()) {
                    probes.push((neighbour, "deny"));
                }
            }
        }
        let paths_json: Vec<&str> = probes.iter().map(|(p, _)| p.as_str()).collect();
        let answer = vault.post_json(
            "sys/capabilities",
            &json!({"token": token, "paths": paths_json}),
        );
        for (path, want) in &probes {
            assert_eq!(
                answer[path.as_str()],
                json!([want]),
                "{policy_name} on {path}: {answer}"
            );
        }
    }
}

#[test]
fn tls_with_vault_cacert() {
    let vault = OpenBao::start_tls();
    let issuer = ServiceAccountIssuer::new();
    world(&vault, &issuer, true);
    let clean = testdata("clean.yaml");
    let config = testdata("config.yaml");
    let args = [
        "check",
        "--config",
        config.to_str().unwrap(),
        "--cluster",
        "k8s",
        clean.to_str().unwrap(),
    ];
    let env = vault_env(&vault);
    assert!(env.iter().any(|(k, _)| *k == "VAULT_CACERT"));
    let (status, stdout, stderr) = run(&args, &env);
    assert_eq!(status, 0, "{stdout}{stderr}");
    let without_ca: Vec<_> = env
        .into_iter()
        .filter(|(k, _)| *k != "VAULT_CACERT")
        .collect();
    let (status, _, stderr) = run(&args, &without_ca);
    assert_eq!(status, 2);
    assert!(
        stderr.contains("could not check") && stderr.contains("certificate"),
        "{stderr}"
    );
}

#[test]
fn could_not_check_exits_2_with_a_clear_message() {
    let clean = testdata("clean.yaml");
    let clean_arg = clean.to_str().unwrap();
    let (status, _, stderr) = run(&["check", clean_arg], &[]);
    assert_eq!(status, 2);
    assert!(stderr.contains("VAULT_ADDR is not set"), "{stderr}");

    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let (status, _, stderr) = run(
        &["check", clean_arg],
        &[
            ("VAULT_ADDR", closed.clone()),
            ("VAULT_TOKEN", "root".into()),
        ],
    );
    assert_eq!(status, 2);
    assert!(
        stderr.contains(&format!("cannot reach Vault at {closed}")),
        "{stderr}"
    );

    let vault = OpenBao::start();
    let issuer = ServiceAccountIssuer::new();
    world(&vault, &issuer, true);
    let (status, _, stderr) = run(
        &["check", clean_arg],
        &[
            ("VAULT_ADDR", vault.addr().into()),
            ("VAULT_TOKEN", "not-a-token".into()),
        ],
    );
    assert_eq!(status, 2);
    assert!(stderr.contains("refused the token"), "{stderr}");

    // A token that may read the secrets but not the roles: the pods' bindings and
    // policies could not be checked.
    vault.put_policy(
        "secrets-only",
        r#"path "secret/data/*" { capabilities = ["read"] }
path "kv1/*" { capabilities = ["read"] }
path "pki/cert/ca" { capabilities = ["read"] }"#,
    );
    let limited = vault.create_token(&["secrets-only"]);
    let config = testdata("config.yaml");
    let (status, stdout, stderr) = run(
        &[
            "check",
            "--format",
            "json",
            "--config",
            config.to_str().unwrap(),
            "--cluster",
            "k8s",
            clean_arg,
        ],
        &[
            ("VAULT_ADDR", vault.addr().into()),
            ("VAULT_TOKEN", limited),
        ],
    );
    assert_eq!(status, 2, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let codes: BTreeSet<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, BTreeSet::from(["SS390"]), "{report:#}");

    vault.seal();
    let (status, _, stderr) = run(&["check", clean_arg], &vault_env(&vault));
    assert_eq!(status, 2);
    assert!(stderr.contains("sealed"), "{stderr}");
}

#[test]
fn vault_namespace_scopes_every_lookup() {
    let vault = OpenBao::start();
    vault.post_json("sys/namespaces/team", &json!({}));
    for args in [
        &[
            "secrets",
            "enable",
            "-ns=team",
            "-path=secret",
            "-version=2",
            "kv",
        ][..],
        &["kv", "put", "-ns=team", "secret/app", "k=team-secret-71c2"],
        &["auth", "enable", "-ns=team", "kubernetes"],
        &[
            "write",
            "-ns=team",
            "auth/kubernetes/role/app",
            "bound_service_account_names=api",
            "bound_service_account_namespaces=shop",
            "token_policies=app",
        ],
    ] {
        vault.bao_ok(args);
    }
    let policy = vault
        .bao_command(&["policy", "write", "-ns=team", "app", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(br#"path "secret/data/app" { capabilities = ["read"] }"#)?;
            child.wait()
        })
        .unwrap();
    assert!(policy.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pod.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: shop\n  annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: app\nspec:\n  serviceAccountName: api\n  containers:\n  - name: app\n    image: app\n    command: [/app]\n    env:\n    - name: K\n      value: secretstore:vault:secret/app#k\n",
    )
    .unwrap();
    let args = ["check", "--format", "json", file.to_str().unwrap()];
    let mut env = vault_env(&vault);
    let (status, stdout, _) = run(&args, &env);
    assert_eq!(status, 1, "outside the namespace: {stdout}");
    assert!(
        stdout.contains("SS303") && stdout.contains("SS310"),
        "{stdout}"
    );
    env.push(("VAULT_NAMESPACE", "team".into()));
    let (status, stdout, stderr) = run(&args, &env);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_no_secret(&stdout, &["team-secret-71c2"]);
}
