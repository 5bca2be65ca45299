//! One real check per test fixture, so a broken environment shows up here first.

mod support;

use serde_json::json;
use support::helm::HelmHome;
use support::jwt::{JwtRole, ServiceAccountIssuer};
use support::k8s::validate_k8s;
use support::openbao::OpenBao;
use support::postgres::Postgres;
use support::{assert_no_secret, tool};

#[test]
fn openbao_kv2_write_then_read() {
    let vault = OpenBao::start();
    let version = vault.kv2_put(
        "secret",
        "shop/db",
        &json!({ "password": "s3cret", "port": 5432 }),
    );
    assert_eq!(version, 1);
    let read = vault.get_json("secret/data/shop/db");
    assert_eq!(
        read["data"]["data"],
        json!({ "password": "s3cret", "port": 5432 })
    );

    let cli = vault.bao_ok(&[
        "kv",
        "get",
        "-format=json",
        "-field=password",
        "secret/shop/db",
    ]);
    assert_eq!(cli.trim(), "\"s3cret\"");
}

#[test]
fn openbao_tls_needs_its_ca() {
    let vault = OpenBao::start_tls();
    assert!(vault.addr().starts_with("https://127.0.0.1:"));
    let ca = vault.ca_cert_path().expect("a TLS server has a CA");
    assert!(std::fs::read_to_string(ca).is_ok_and(|pem| pem.contains("BEGIN CERTIFICATE")));
    vault.kv2_put("secret", "tls", &json!({ "k": "v" }));
    // The CLI goes through the HTTPS address, trusting the CA from env().
    assert_eq!(
        vault
            .bao_ok(&["kv", "get", "-field=k", "secret/tls"])
            .trim(),
        "v"
    );
    let untrusted = vault
        .bao_command(&["kv", "get", "secret/tls"])
        .env_remove("VAULT_CACERT")
        .env_remove("BAO_CACERT")
        .output()
        .expect("run bao");
    assert!(!untrusted.status.success());
    assert!(String::from_utf8_lossy(&untrusted.stderr).contains("certificate"));
}

#[test]
fn secretstore_binary_runs_without_ambient_vault_env() {
    let output = support::secretstore()
        .arg("--help")
        .output()
        .expect("run secretstore");
    assert!(output.status.code().is_some());
}

#[test]
fn openbao_seal_then_unseal_keeps_data() {
    let vault = OpenBao::start();
    vault.kv2_put("secret", "app", &json!({ "k": "v" }));
    vault.seal();
    assert_eq!(vault.health_status(), 503);
    assert_eq!(vault.request("GET", "secret/data/app", None).0, 503);
    vault.unseal();
    assert_eq!(vault.get_json("secret/data/app")["data"]["data"]["k"], "v");
}

#[test]
fn jwt_login_with_service_account_token() {
    let vault = OpenBao::start();
    vault.put_policy(
        "shop-read",
        r#"path "secret/data/shop/*" { capabilities = ["read"] }"#,
    );
    let issuer = ServiceAccountIssuer::new();
    vault.enable_jwt_auth("kubernetes", &issuer);
    vault.write_jwt_role(
        "kubernetes",
        "shop",
        &JwtRole::service_account("shop", "api", "vault", &["shop-read"]),
    );

    let (status, login) =
        vault.jwt_login("kubernetes", "shop", &issuer.token("shop", "api", "vault"));
    assert_eq!(status, 200, "{login}");
    assert!(login["auth"]["policies"]
        .as_array()
        .is_some_and(|p| p.contains(&json!("shop-read"))));
    let token = login["auth"]["client_token"]
        .as_str()
        .expect("client_token");
    vault.kv2_put("secret", "shop/db", &json!({ "password": "x" }));
    assert_eq!(
        vault
            .request_as(token, "GET", "secret/data/shop/db", None)
            .0,
        200
    );
    assert_eq!(
        vault.request_as(token, "GET", "secret/data/other", None).0,
        403
    );

    // Bound to shop/api: another service account, audience or key is refused.
    let other_sa = issuer.token("shop", "worker", "vault");
    assert_eq!(vault.jwt_login("kubernetes", "shop", &other_sa).0, 400);
    let other_aud = issuer.token("shop", "api", "https://kubernetes.default.svc");
    assert_eq!(vault.jwt_login("kubernetes", "shop", &other_aud).0, 400);
    let forged = ServiceAccountIssuer::new().token("shop", "api", "vault");
    assert_eq!(vault.jwt_login("kubernetes", "shop", &forged).0, 400);
    let mut expired = issuer.service_account_claims("shop", "api", "vault");
    expired["exp"] = json!(expired["iat"].as_u64().expect("iat") - 600);
    assert_eq!(
        vault
            .jwt_login("kubernetes", "shop", &issuer.sign(&expired))
            .0,
        400
    );
}

#[test]
fn postgres_accepts_password_login_and_vault_issues_credentials() {
    let pg = Postgres::start();
    let output = pg.psql("select 40 + 2");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "42");
    assert!(!pg.psql_as("postgres", "wrong", "select 1").status.success());

    let vault = OpenBao::start();
    pg.attach_to_vault(&vault, "database", "app", "10m");
    let creds = vault.get_json("database/creds/app");
    assert!(creds["lease_id"]
        .as_str()
        .is_some_and(|l| l.starts_with("database/creds/app/")));
    let user = creds["data"]["username"].as_str().expect("username");
    let password = creds["data"]["password"].as_str().expect("password");
    let output = pg.psql_as(user, password, "select current_user");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), user);
}

#[test]
fn helm_and_kubectl_print_versions() {
    for (name, args, want) in [
        ("helm3", &["version", "--short"][..], "v3.17.2"),
        ("helm4", &["version", "--short"][..], "v4.1.4"),
        (
            "kubectl",
            &["version", "--client"][..],
            "Kustomize Version: v5.5",
        ),
    ] {
        let output = std::process::Command::new(tool(name))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains(want),
            "{name}: {stdout}"
        );
    }
}

#[test]
fn helm_home_is_isolated() {
    let home = HelmHome::new();
    let output = home
        .command("helm4")
        .args(["env"])
        .output()
        .expect("run helm4 env");
    let env = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    let data_home = home.path().join("data");
    assert!(
        env.contains(&format!("HELM_DATA_HOME=\"{}\"", data_home.display())),
        "{env}"
    );
}

#[test]
fn openbao_starts_on_a_given_port() {
    let port = support::free_port();
    let vault = OpenBao::start_on_port(port);
    assert_eq!(vault.addr(), format!("http://127.0.0.1:{port}"));
    assert_eq!(vault.health_status(), 200);
}

#[test]
fn assert_no_secret_masks_what_leaked() {
    assert_no_secret("all clear", &["hunter2"]);
    let panic =
        std::panic::catch_unwind(|| assert_no_secret("password=hunter2", &["x", "hunter2"]))
            .expect_err("a leak panics");
    let message = panic.downcast_ref::<String>().expect("message");
    assert!(
        message.contains("password=<SECRET #1>") && !message.contains("hunter2"),
        "{message}"
    );
}

#[test]
fn kubectl_kustomize_builds() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "namespace: shop\nresources: [cm.yaml]\n",
    )
    .expect("write kustomization");
    std::fs::write(
        dir.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {a: b}\n",
    )
    .expect("write cm");
    let output = std::process::Command::new(tool("kubectl"))
        .arg("kustomize")
        .arg(dir.path())
        .output()
        .expect("run kubectl kustomize");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("namespace: shop"), "{stdout}");
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
        - name: api
          image: example/api:1.0
          ports: [{containerPort: 8080}]
"#;

#[test]
fn validate_k8s_accepts_valid_and_rejects_invalid() {
    validate_k8s(DEPLOYMENT).expect("a valid Deployment");
    validate_k8s(&format!(
        "{DEPLOYMENT}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n"
    ))
    .expect("a valid stream");

    let unknown_field = DEPLOYMENT.replace(
        "image: example/api:1.0",
        "image: example/api:1.0\n          imagePolicy: x",
    );
    let err = validate_k8s(&unknown_field).expect_err("strict mode rejects unknown fields");
    assert!(err.contains("imagePolicy"), "{err}");

    let wrong_type = DEPLOYMENT.replace("containerPort: 8080", "containerPort: \"8080\"");
    assert!(validate_k8s(&wrong_type).is_err());

    // A List is validated item by item: one bad item fails it.
    let list = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "ok" } },
            { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "bad" }, "data": { "k": 1 } },
        ],
    });
    let err = validate_k8s(&list.to_string()).expect_err("List with a bad item");
    assert!(err.contains("configmap/bad"), "{err}");

    assert!(
        validate_k8s("# nothing\n").is_err(),
        "an empty stream is not valid"
    );
}
