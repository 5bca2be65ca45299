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
