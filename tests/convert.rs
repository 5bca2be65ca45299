//! `secretstore convert` over `testdata/convert/`: the exact output text and report of
//! each case (insta snapshots), the exact locations of what is left, byte fidelity for
//! everything not converted, lint on the converted output, files rewritten in place, and
//! `--check`.

mod support;

use std::process::Output;

/// The role argocd-vault-plugin's pods get (`--role`): AVP itself names none.
const ROLE: &str = "payments";

fn convert_stdin(case: &str, args: &[&str]) -> Output {
    let bytes = std::fs::read(support::repo_root().join(case)).expect("case readable");
    let mut command = support::secretstore();
    command.arg("convert").args(args);
    support::run_with_stdin(&mut command, &bytes)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

const CASES: [&str; 8] = [
    "testdata/convert/vault-agent-injector/helm-stream.yaml",
    "testdata/convert/vault-agent-injector/flow-style-pod.yaml",
    "testdata/convert/bank-vaults/deployment.json",
    "testdata/convert/vault-agent-injector/unconvertible.yaml",
    "testdata/convert/bank-vaults/helm-stream.yaml",
    "testdata/convert/bank-vaults/unconvertible.yaml",
    "testdata/convert/argocd-vault-plugin/helm-stream.yaml",
    "testdata/convert/argocd-vault-plugin/unconvertible.yaml",
];

/// The converted stream, then the report, exactly.
#[test]
fn snapshots_of_output_and_report() {
    for case in CASES {
        let output = convert_stdin(case, &["--role", ROLE]);
        let snapshot = format!(
            "exit status: {:?}\n--- stdout\n{}--- stderr\n{}",
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr)
        );
        let name = case
            .trim_start_matches("testdata/convert/")
            .replace('/', "__");
        insta::with_settings!({snapshot_path => "snapshots/convert", prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_snapshot!(name, snapshot);
        });
    }
}

/// (code, line, column, field) of each finding of a JSON report.
fn findings(report: &[u8]) -> Vec<(String, String, u64, u64, String)> {
    let json: serde_json::Value = serde_json::from_slice(report).expect("JSON report");
    json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap_or_default().to_owned(),
                f["severity"].as_str().unwrap_or_default().to_owned(),
                f["line"].as_u64().unwrap_or_default(),
                f["column"].as_u64().unwrap_or_default(),
                f["field"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn finding(
    code: &str,
    severity: &str,
    line: u64,
    column: u64,
    field: &str,
) -> (String, String, u64, u64, String) {
    (
        code.to_owned(),
        severity.to_owned(),
        line,
        column,
        field.to_owned(),
    )
}

#[test]
fn what_is_left_is_reported_at_its_exact_location() {
    let injector = convert_stdin(
        "testdata/convert/vault-agent-injector/unconvertible.yaml",
        &["--format", "json"],
    );
    assert_eq!(injector.status.code(), Some(1));
    let a = "spec.template.metadata.annotations";
    assert_eq!(
        findings(&injector.stderr),
        [
            finding(
                "SS605",
                "error",
                16,
                40,
                &format!("{a}[vault.hashicorp.com/auth-path]")
            ),
            finding(
                "SS601",
                "error",
                23,
                9,
                &format!("{a}[vault.hashicorp.com/agent-inject-command-stripe]")
            ),
            finding(
                "SS602",
                "error",
                19,
                11,
                &format!("{a}[vault.hashicorp.com/agent-inject-template-db]")
            ),
            finding(
                "SS602",
                "error",
                22,
                57,
                &format!("{a}[vault.hashicorp.com/agent-inject-secret-stripe]")
            ),
            finding("SS606", "error", 36, 5, "metadata.annotations"),
        ]
    );

    let bank_vaults = convert_stdin(
        "testdata/convert/bank-vaults/unconvertible.yaml",
        &["--format", "json"],
    );
    assert_eq!(bank_vaults.status.code(), Some(1));
    let c = "spec.template.spec.containers[0]";
    assert_eq!(
        findings(&bank_vaults.stderr),
        [
            finding("SS603", "error", 20, 18, &format!("{c}.env[0].value")),
            finding("SS603", "error", 22, 18, &format!("{c}.env[1].value")),
            finding(
                "SS601",
                "error",
                13,
                9,
                &format!("{a}[vault.security.banzaicloud.io/vault-skip-verify]")
            ),
            finding("SS607", "error", 16, 9, c),
        ]
    );

    let avp = convert_stdin(
        "testdata/convert/argocd-vault-plugin/unconvertible.yaml",
        &["--format", "json", "--role", ROLE],
    );
    assert_eq!(avp.status.code(), Some(1));
    assert_eq!(
        findings(&avp.stderr),
        [
            finding("SS604", "error", 18, 37, &format!("{c}.args[1]")),
            finding("SS604", "error", 21, 34, &format!("{c}.env[0].value")),
            finding("SS603", "error", 23, 18, &format!("{c}.env[1].value")),
        ]
    );
    let secret = convert_stdin(
        "testdata/convert/argocd-vault-plugin/helm-stream.yaml",
        &["--format", "json", "--role", ROLE],
    );
    assert_eq!(
        findings(&secret.stderr),
        [
            finding("SS604", "error", 11, 12, "stringData.api-key"),
            finding("SS604", "error", 12, 19, "stringData.webhook-secret"),
        ]
    );
    // What is left is left byte for byte.
    for (output, case) in [
        (&injector, "vault-agent-injector/unconvertible.yaml"),
        (&bank_vaults, "bank-vaults/unconvertible.yaml"),
        (&avp, "argocd-vault-plugin/unconvertible.yaml"),
    ] {
        let original =
            std::fs::read(support::repo_root().join("testdata/convert").join(case)).unwrap();
        assert_eq!(output.stdout, original, "{case}");
    }
}

/// Every document that is not converted comes out byte for byte; the converted pods
/// pass lint; converting again changes nothing.
#[test]
fn fidelity_lint_and_fixed_point() {
    for case in CASES {
        let original = std::fs::read(support::repo_root().join(case)).unwrap();
        let output = convert_stdin(case, &["--role", ROLE]);
        let converted = output.stdout.clone();
        let before = split_documents(&original);
        let after = split_documents(&converted);
        assert_eq!(before.len(), after.len(), "{case}: document count");
        for (b, a) in before.iter().zip(&after) {
            let touched = b.contains("vault.hashicorp.com/")
                || b.contains("banzaicloud")
                || b.contains("vault:")
                || b.contains('<');
            if !touched {
                assert_eq!(b, a, "{case}: an untouched document changed");
            }
        }
        let mut lint = support::secretstore();
        lint.args(["lint", "-"]);
        let linted = support::run_with_stdin(&mut lint, &converted);
        assert_eq!(
            linted.status.code(),
            Some(0),
            "{case}: lint of the converted output:\n{}",
            text(&linted.stdout)
        );
        let mut again = support::secretstore();
        again.args(["convert", "--role", ROLE]);
        let twice = support::run_with_stdin(&mut again, &converted);
        assert_eq!(twice.stdout, converted, "{case}: converting twice");
        assert_eq!(twice.status.code(), output.status.code(), "{case}");
    }
}

fn split_documents(bytes: &[u8]) -> Vec<String> {
    secretstore::render::stream::split(bytes)
        .iter()
        .map(|d| text(&bytes[d.start..d.end]))
        .collect()
}

#[test]
fn files_are_rewritten_in_place_and_check_reports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = |case: &str| {
        let to = dir.path().join(case.replace('/', "-"));
        std::fs::copy(
            support::repo_root().join("testdata/convert").join(case),
            &to,
        )
        .expect("copy case");
        to
    };
    let convertible = copy("bank-vaults/helm-stream.yaml");
    let left = copy("bank-vaults/unconvertible.yaml");
    let original_left = std::fs::read(&left).unwrap();
    let original = std::fs::read(&convertible).unwrap();

    let check = support::secretstore()
        .args(["convert", "--check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "{}", text(&check.stdout));
    assert!(text(&check.stdout).contains("would convert 2 pod templates"));
    assert_eq!(
        std::fs::read(&convertible).unwrap(),
        original,
        "--check wrote"
    );

    let run = support::secretstore()
        .args(["convert", "--format", "github"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "the unconvertible file is left");
    let report = text(&run.stdout);
    assert!(
        report.contains(&format!(
            "::error file={},line=20,col=18,title=SS603::",
            left.display()
        )),
        "{report}"
    );
    assert!(run.stderr.is_empty(), "{}", text(&run.stderr));
    let stdin_converted = convert_stdin("testdata/convert/bank-vaults/helm-stream.yaml", &[]);
    assert_eq!(std::fs::read(&convertible).unwrap(), stdin_converted.stdout);
    assert_eq!(std::fs::read(&left).unwrap(), original_left);

    let recheck = support::secretstore()
        .args(["convert", "--check"])
        .arg(&convertible)
        .output()
        .unwrap();
    assert_eq!(recheck.status.code(), Some(0), "{}", text(&recheck.stdout));
    assert!(text(&recheck.stdout).ends_with("secretstore convert: no findings\n"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["convert", "--kv-version", "secret=3"],
        vec!["convert", "-", "x.yaml"],
        vec!["convert", "/no/such/dir"],
    ] {
        let output = support::secretstore().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn known_kv_version_turns_bank_vaults_paths_logical() {
    let plain = convert_stdin("testdata/convert/bank-vaults/helm-stream.yaml", &[]);
    assert!(text(&plain.stdout).contains("secretstore:vault:secret/data/orders/db#password#1"));
    let known = convert_stdin(
        "testdata/convert/bank-vaults/helm-stream.yaml",
        &["--kv-version", "secret=2", "--kv-version", "kv1=1"],
    );
    let out = text(&known.stdout);
    assert!(out.contains("value: secretstore:vault:secret/orders/db#password#1\n"));
    assert!(out.contains("'secretstore:vault:kv1/orders/partner#token'"));
}

/// A comment after an annotation convert rewrites stays: the role's moves to the new role
/// annotation, another's stays on a line of its own.
#[test]
fn comments_on_rewritten_annotation_lines_are_kept() {
    let input = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    vault.hashicorp.com/agent-inject: "true"  # injected by vault-k8s
    vault.hashicorp.com/agent-pre-populate-only: "true"
    vault.hashicorp.com/role: "web"   # keep-me
    vault.hashicorp.com/agent-inject-secret-db: "secret/data/web/db"
    vault.hashicorp.com/agent-inject-template-db: |
      {{- with secret "secret/data/web/db" -}}{{ .Data.data.password }}{{- end -}}
spec:
  containers:
    - name: web
      image: web:1
"#;
    let mut command = support::secretstore();
    command.arg("convert");
    let output = support::run_with_stdin(&mut command, input.as_bytes());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    rafay.dev/secretstore: vault
    vault.secretstore.rafay.dev/role: web   # keep-me
    vault.secretstore.rafay.dev/filesecret-config-db: '{"vaultSecretRef": "secret/web/db#password", "secretFileName": "db", "volumeMountPath": "/vault/secrets"}'
    # injected by vault-k8s
spec:
  containers:
    - name: web
      image: web:1
"#
    );
}

/// An injector template with a construct convert does not translate is reported at that
/// construct, inside the annotation's block scalar.
#[test]
fn an_untranslated_template_construct_is_located() {
    let input = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    vault.hashicorp.com/agent-inject: "true"
    vault.hashicorp.com/role: web
    vault.hashicorp.com/agent-inject-secret-cfg: "secret/data/web/cfg"
    vault.hashicorp.com/agent-inject-template-cfg: |
      {{- with secret "secret/data/web/cfg" -}}
      user={{ .Data.data.user }}
      {{ if .Data.data.debug }}debug=1{{ end }}
      {{- end -}}
spec:
  containers:
    - name: web
      image: web:1
"#;
    let mut command = support::secretstore();
    command.args(["convert", "--format", "json"]);
    let output = support::run_with_stdin(&mut command, input.as_bytes());
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stderr).expect("JSON");
    let finding = &report["findings"][0];
    assert_eq!(finding["code"], "SS602", "{report}");
    assert_eq!(
        (finding["line"].as_u64(), finding["column"].as_u64()),
        (Some(12), Some(7)),
        "{report}"
    );
    assert!(
        finding["message"]
            .as_str()
            .is_some_and(|m| m.contains("`{{ if .Data.data.debug }}`: `if` is not translated")),
        "{report}"
    );
}
