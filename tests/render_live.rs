//! Live mode through the command line: the target Kubernetes version from the flag and
//! the environment (ours, its Argo CD form, Argo CD's own KUBE_VERSION), the refusal
//! below 1.29 naming the pod, and `policy` granting the lease endpoints to live pods that
//! read leased secrets.

mod support;

use std::process::Output;

/// Command-line flags and environment variables of one render.
type Invocation<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

fn render(args: &[&str], env: &[(&str, &str)], case: &str) -> Output {
    let mut command = support::secretstore();
    command.env_remove("KUBE_VERSION").arg("render").args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .arg(support::repo_root().join("testdata/render").join(case))
        .output()
        .expect("run secretstore render")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn live_mode_is_refused_below_kubernetes_1_29_naming_the_pod() {
    let refused: [Invocation; 4] = [
        (&["--kube-version", "1.28"], &[]),
        (&[], &[("SECRETSTORE_KUBE_VERSION", "v1.27.3")]),
        (&[], &[("ARGOCD_ENV_SECRETSTORE_KUBE_VERSION", "1.28")]),
        (&[], &[("KUBE_VERSION", "1.28")]),
    ];
    for (args, env) in refused {
        let output = render(args, env, "live-job.yaml");
        assert_eq!(output.status.code(), Some(1), "{args:?} {env:?}");
        assert!(output.stdout.is_empty());
        let text = stderr(&output);
        assert!(text.contains("SS131"), "{text}");
        assert!(text.contains("Job shop/migrate"), "{text}");
        assert!(text.contains("1.29"), "{text}");
    }
    // Ours beats Argo CD's; 1.29 and an unknown version are accepted.
    let accepted: [Invocation; 4] = [
        (&["--kube-version", "1.29"], &[("KUBE_VERSION", "1.28")]),
        (
            &[],
            &[
                ("SECRETSTORE_KUBE_VERSION", "1.30"),
                ("KUBE_VERSION", "1.28"),
            ],
        ),
        (&[], &[("KUBE_VERSION", "1.33+")]),
        (&[], &[]),
    ];
    let expected = render(&[], &[], "live-job.yaml").stdout;
    for (args, env) in accepted {
        let output = render(args, env, "live-job.yaml");
        assert!(
            output.status.success(),
            "{args:?} {env:?}: {}",
            stderr(&output)
        );
        assert_eq!(output.stdout, expected);
    }
    // A pod that is not live does not care about the version.
    let old = render(&["--kube-version", "1.20"], &[], "kind-job.yaml");
    assert!(old.status.success(), "{}", stderr(&old));
    assert_eq!(old.stdout, render(&[], &[], "kind-job.yaml").stdout);
    let bad = render(&["--kube-version", "latest"], &[], "kind-job.yaml");
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

/// Argo CD sets KUBE_VERSION from what the cluster reports: one that is not a version is
/// ignored with a warning unless a pod needs it for live mode (then SS131 names the pod).
/// A version given to secretstore itself stays strict.
#[test]
fn an_unreadable_argo_cd_kube_version_is_ignored_unless_live_mode_needs_it() {
    let odd = [("KUBE_VERSION", "vX.Y-custom")];
    let expected = render(&[], &[], "kind-job.yaml").stdout;
    let output = render(&[], &odd, "kind-job.yaml");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(output.stdout, expected);
    let text = stderr(&output);
    assert!(
        text.starts_with("secretstore: warning: ignoring KUBE_VERSION \"vX.Y-custom\""),
        "{text}"
    );
    let lint = support::secretstore()
        .env("KUBE_VERSION", "vX.Y-custom")
        .arg("lint")
        .arg(support::repo_root().join("testdata/render/kind-job.yaml"))
        .output()
        .expect("run secretstore lint");
    assert_eq!(lint.status.code(), Some(0), "{}", stderr(&lint));

    let live = render(&[], &odd, "live-job.yaml");
    assert_eq!(live.status.code(), Some(1), "{}", stderr(&live));
    assert!(live.stdout.is_empty());
    let text = stderr(&live);
    assert!(text.contains("SS131"), "{text}");
    assert!(text.contains("Job shop/migrate"), "{text}");
    assert!(
        text.contains("KUBE_VERSION \"vX.Y-custom\" is not a Kubernetes version"),
        "{text}"
    );
    // Ours, when given, decides.
    let ours = render(&["--kube-version", "1.30"], &odd, "live-job.yaml");
    assert!(ours.status.success(), "{}", stderr(&ours));

    for (args, env) in [
        (&["--kube-version", "latest"][..], &[][..]),
        (&[][..], &[("SECRETSTORE_KUBE_VERSION", "latest")][..]),
    ] {
        let bad = render(args, env, "kind-job.yaml");
        assert_eq!(
            bad.status.code(),
            Some(2),
            "{args:?} {env:?}: {}",
            stderr(&bad)
        );
    }
}

#[test]
fn policy_grants_lease_renewal_and_revocation_to_live_pods_with_leases() {
    let policy = |case: &str| {
        let output = support::secretstore()
            .args(["policy", "--kv-version", "database=0"])
            .arg(support::repo_root().join("testdata/render").join(case))
            .output()
            .expect("run secretstore policy");
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let live = policy("live-job.yaml");
    assert!(live.contains("path \"database/creds/migrate\""), "{live}");
    for path in ["sys/leases/renew", "sys/leases/revoke"] {
        assert!(
            live.contains(&format!(
                "path \"{path}\" {{\n  capabilities = [\"update\"]\n}}"
            )),
            "{live}"
        );
    }
    // Live, but KV only: nothing to renew.
    let kv_only = policy("live-cronjob.yaml");
    assert!(!kv_only.contains("sys/leases"), "{kv_only}");
}

/// `check` against a real OpenBao: a live pod reading a leased (database) path needs
/// `update` on sys/leases/renew and sys/leases/revoke (SS321), a one-shot pod does not.
#[test]
fn check_verifies_the_role_grants_lease_renewal_and_revocation() {
    use support::jwt::{JwtRole, ServiceAccountIssuer};
    let vault = support::openbao::OpenBao::start();
    vault.enable_secrets_engine("database", "database", &serde_json::json!({}));
    let issuer = ServiceAccountIssuer::new();
    vault.enable_jwt_auth("kubernetes", &issuer);
    vault.write_jwt_role(
        "kubernetes",
        "app",
        &JwtRole::service_account("shop", "app", "vault", &["app"]),
    );
    let read_only = "path \"database/creds/app\" { capabilities = [\"read\"] }\n";
    vault.put_policy("app", read_only);
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = |refresh: &str| {
        let file = dir.path().join(format!("pod-{refresh}.yaml"));
        std::fs::write(
            &file,
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: shop\n  annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: app\n    vault.secretstore.rafay.dev/refresh: \"{refresh}\"\nspec:\n  serviceAccountName: app\n  containers:\n  - name: app\n    image: app\n    command: [app]\n    env:\n    - name: DB_PASSWORD\n      value: secretstore:vault:database/creds/app#password\n"
            ),
        )
        .expect("write manifest");
        file
    };
    let check = |file: &std::path::Path| {
        let output = support::secretstore()
            .args(["check", "--format", "json"])
            .env("SECRETSTORE_AUDIENCE", "vault")
            .arg(file)
            .envs(
                vault
                    .env()
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("VAULT_")),
            )
            .output()
            .expect("run secretstore check");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", stderr(&output)));
        let codes: Vec<String> = report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| f["code"].as_str().expect("code").to_owned())
            .collect();
        (output.status.code(), codes, report)
    };
    let live = manifest("5m");
    let (status, codes, report) = check(&live);
    assert_eq!(status, Some(1), "{report}");
    // Vault's `default` policy grants sys/leases/renew; revoke is missing.
    let findings = report["findings"].as_array().expect("findings");
    let leases: Vec<&serde_json::Value> =
        findings.iter().filter(|f| f["code"] == "SS321").collect();
    assert_eq!(leases.len(), 1, "{report}");
    assert!(
        leases[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`sys/leases/revoke`")),
        "{report}"
    );
    assert!(codes.iter().any(|c| c == "SS321"));
    let (_, codes, report) = check(&manifest("off"));
    assert!(!codes.iter().any(|c| c == "SS321"), "{report}");
    vault.put_policy(
        "app",
        &format!(
            "{read_only}path \"sys/leases/renew\" {{ capabilities = [\"update\"] }}\npath \"sys/leases/revoke\" {{ capabilities = [\"update\"] }}\n"
        ),
    );
    let (_, codes, report) = check(&live);
    assert!(!codes.iter().any(|c| c == "SS321"), "{report}");
}

#[test]
fn json_log_format_is_passed_to_the_agent_and_every_wrapped_container_only_when_set() {
    let default = render(&[], &[], "live-deployment.yaml");
    assert!(default.status.success(), "{}", stderr(&default));
    let default = String::from_utf8(default.stdout).expect("utf-8");
    assert!(!default.contains("SECRETSTORE_LOG_FORMAT"), "{default}");
    let config = tempfile::NamedTempFile::new().expect("config");
    std::fs::write(config.path(), "agent:\n  logFormat: json\n").expect("write config");
    let config_path = config.path().display().to_string();
    let logfmt = render(
        &[],
        &[("SECRETSTORE_LOG_FORMAT", "logfmt")],
        "live-deployment.yaml",
    );
    assert_eq!(String::from_utf8_lossy(&logfmt.stdout), default);
    let invocations: [Invocation; 3] = [
        (&["--config", &config_path], &[]),
        (&[], &[("SECRETSTORE_LOG_FORMAT", "json")]),
        (&[], &[("ARGOCD_ENV_SECRETSTORE_LOG_FORMAT", "json")]),
    ];
    for (args, env) in invocations {
        let output = render(args, env, "live-deployment.yaml");
        assert!(output.status.success(), "{}", stderr(&output));
        let json = String::from_utf8(output.stdout).expect("utf-8");
        let doc: serde_json::Value = yaml_serde::from_str(&json).expect("rendered YAML");
        let spec = &doc["spec"]["template"]["spec"];
        let env_of = |c: &serde_json::Value| -> Vec<(String, String)> {
            c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap_or_default().to_owned(),
                        e["value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        };
        let agent = &spec["initContainers"][0];
        assert_eq!(agent["name"], "secretstore-agent");
        let wanted = ("SECRETSTORE_LOG_FORMAT".to_owned(), "json".to_owned());
        assert!(env_of(agent).contains(&wanted), "{json}");
        let mut wrapped = 0;
        for c in spec["containers"].as_array().expect("containers") {
            let is_wrapped = c["command"][1] == "exec";
            assert_eq!(env_of(c).contains(&wanted), is_wrapped, "{c}");
            wrapped += usize::from(is_wrapped);
        }
        assert!(wrapped > 0, "{json}");
    }
    let bad = render(
        &[],
        &[("SECRETSTORE_LOG_FORMAT", "xml")],
        "live-deployment.yaml",
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("SECRETSTORE_LOG_FORMAT"),
        "{}",
        stderr(&bad)
    );
}
