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

const CASES: [&str; 9] = [
    "testdata/convert/vault-agent-injector/helm-stream.yaml",
    "testdata/convert/vault-agent-injector/templates.yaml",
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
            // The `if` inside the template, not the annotation.
            finding(
                "SS602",
                "error",
                27,
                16,
                &format!("{a}[vault.hashicorp.com/agent-inject-template-flags]")
            ),
            finding(
                "SS602",
                "error",
                22,
                57,
                &format!("{a}[vault.hashicorp.com/agent-inject-secret-stripe]")
            ),
            finding("SS606", "error", 41, 5, "metadata.annotations"),
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

/// Runs `convert --format json` over `paths`: (exit status, (code, source) of each
/// finding, each note's text).
fn convert_files(
    args: &[&str],
    paths: &[&std::path::Path],
) -> (Option<i32>, Vec<(String, String)>, Vec<String>) {
    let out = support::secretstore()
        .args(["convert", "--format", "json"])
        .args(args)
        .args(paths)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    let findings = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["file"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let notes = json["notes"]
        .as_array()
        .map(|n| {
            n.iter()
                .map(|n| {
                    format!(
                        "{}: {}",
                        n["file"].as_str().unwrap_or_default(),
                        n["message"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (out.status.code(), findings, notes)
}

/// A symbolic link and a file with two hard links are refused (SS610) and left exactly as
/// they were; the other files are still rewritten, keeping their mode, owner and group,
/// and the report names the files that were rewritten.
#[test]
fn in_place_rewrites_keep_links_owner_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("temp dir");
    let case =
        std::fs::read(support::repo_root().join("testdata/convert/bank-vaults/helm-stream.yaml"))
            .unwrap();
    let real = dir.path().join("real.yaml");
    std::fs::write(&real, &case).unwrap();
    let link = dir.path().join("link.yaml");
    std::os::unix::fs::symlink("real.yaml", &link).unwrap();
    let linked = dir.path().join("linked.yaml");
    std::fs::write(&linked, &case).unwrap();
    std::fs::hard_link(&linked, dir.path().join("linked-too.yaml")).unwrap();
    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, &case).unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o640)).unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        std::os::unix::fs::chown(&plain, Some(1000), Some(100)).unwrap();
    }
    let before = std::fs::metadata(&plain).unwrap();

    // --check reports what would be refused.
    let (status, findings, _) = convert_files(&["--check"], &[&link, &plain]);
    assert_eq!(status, Some(1));
    assert_eq!(
        findings,
        [("SS610".to_string(), link.display().to_string())]
    );

    let (status, findings, notes) = convert_files(&[], &[&link, &linked, &plain]);
    assert_eq!(status, Some(1), "refused files are something left");
    assert_eq!(
        findings,
        [
            ("SS610".to_string(), link.display().to_string()),
            ("SS610".to_string(), linked.display().to_string()),
        ]
    );
    assert_eq!(
        notes,
        [format!("{}: converted 2 pod templates", plain.display())]
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::path::Path::new("real.yaml")
    );
    assert_eq!(
        std::fs::read(&real).unwrap(),
        case,
        "the link's target is untouched"
    );
    assert_eq!(std::fs::read(&linked).unwrap(), case);
    assert_eq!(
        std::fs::metadata(&linked).unwrap().nlink(),
        2,
        "the hard links are not split"
    );
    let after = std::fs::metadata(&plain).unwrap();
    assert_ne!(
        std::fs::read(&plain).unwrap(),
        case,
        "the plain file is converted"
    );
    assert_eq!(after.mode() & 0o7777, 0o640);
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 5, "no temporary file is left: {names:?}");
}

/// (code, line, column, message) of one finding.
type Located = (String, u64, u64, String);

/// Converts `input` from stdin: (exit status, stdout, the findings of the JSON report).
fn convert_text(input: &str, args: &[&str]) -> (Option<i32>, String, Vec<Located>) {
    let mut command = support::secretstore();
    command.args(["convert", "--format", "json"]).args(args);
    let out = support::run_with_stdin(&mut command, input.as_bytes());
    let json: serde_json::Value = serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    let findings = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
                f["column"].as_u64().unwrap(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (out.status.code(), text(&out.stdout), findings)
}

const INJECTED_WITH_ROLE: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  annotations:
    vault.secretstore.rafay.dev/role: old
    vault.hashicorp.com/agent-inject: "true"
    vault.hashicorp.com/agent-pre-populate-only: "true"
    vault.hashicorp.com/role: web
    vault.hashicorp.com/agent-inject-secret-db: secret/data/web/db
    vault.hashicorp.com/agent-inject-template-db: '{{ with secret "secret/data/web/db" }}{{ .Data.data.password }}{{ end }}'
spec:
  serviceAccountName: web
  containers:
  - name: app
    image: app
    command: [app]
"#;

/// A pod that has this dialect's role already is not given a second one: it is left as it
/// is, and the role annotation's location is reported.
#[test]
fn a_second_role_is_refused() {
    let (status, out, findings) = convert_text(INJECTED_WITH_ROLE, &[]);
    assert_eq!(status, Some(1));
    assert_eq!(out, INJECTED_WITH_ROLE, "the pod is left as it was");
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(
        (findings[0].0.as_str(), findings[0].1, findings[0].2),
        ("SS606", 7, 5)
    );
    assert!(
        findings[0]
            .3
            .contains("already has `vault.secretstore.rafay.dev/role: old`"),
        "{findings:?}"
    );
    // Without it, the same pod converts.
    let without = INJECTED_WITH_ROLE.replace("    vault.secretstore.rafay.dev/role: old\n", "");
    let (status, out, _) = convert_text(&without, &[]);
    assert_eq!(status, Some(0));
    assert_eq!(
        out.matches("vault.secretstore.rafay.dev/role").count(),
        1,
        "{out}"
    );
}

/// `#` separates a reference's path, key and version, so a source key or path holding one
/// is refused at its own position.
#[test]
fn a_hash_in_a_source_key_or_path_is_refused() {
    // Read before as key `pass`, version 2.
    let avp = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    avp.kubernetes.io/path: secret/data/web\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: app\n        command: [app]\n        env:\n        - name: A\n          value: <pass#2>\n";
    let (status, out, findings) = convert_text(avp, &["--role", "web"]);
    assert_eq!(status, Some(1));
    assert_eq!(out, avp);
    assert_eq!(
        findings
            .iter()
            .map(|f| (f.0.as_str(), f.1, f.2))
            .collect::<Vec<_>>(),
        [("SS603", 16, 18)],
        "{findings:?}"
    );
    assert!(findings[0].3.contains("the key `pass#2`"), "{findings:?}");
    // An injector template reads its path through a source, which holds no `#`...
    let without_role =
        INJECTED_WITH_ROLE.replace("    vault.secretstore.rafay.dev/role: old\n", "");
    let injector = without_role.replace(
        "{{ with secret \"secret/data/web/db\" }}",
        "{{ with secret \"secret/data/web#2/db\" }}",
    );
    let (status, out, findings) = convert_text(&injector, &[]);
    assert_eq!(status, Some(1));
    assert_eq!(out, injector);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].0, "SS603");
    assert_eq!(
        (findings[0].1, findings[0].2),
        (11, 68),
        "the path inside the template"
    );
    assert!(
        findings[0]
            .3
            .contains("the path `secret/data/web#2/db` holds `#`"),
        "{findings:?}"
    );
    // ...but a key with one is read by a template.
    let key = without_role.replace(".Data.data.password", "index .Data.data \"pass#2\"");
    let (status, out, findings) = convert_text(&key, &[]);
    assert_eq!((status, findings), (Some(0), Vec::new()));
    assert!(
        out.contains(r#"'{"vaultSecretRef": "secret/web/db", "secretFileName": "db", "volumeMountPath": "/vault/secrets", "template": "${ secret[\"pass#2\"] }"}'"#),
        "{out}"
    );
}

/// A bare Pod whose placeholders take their path from its own `avp.kubernetes.io/path`:
/// its annotations are AVP's and the dialect's at once, and become the dialect's.
#[test]
fn a_bare_pod_with_only_an_avp_path_converts() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations:\n    avp.kubernetes.io/path: secret/data/web\nspec:\n  serviceAccountName: web\n  containers:\n  - name: app\n    image: app\n    command: [app]\n    env:\n    - name: PASSWORD\n      value: <password>\n";
    let (status, out, findings) = convert_text(pod, &["--role", "web"]);
    assert_eq!(status, Some(0), "{findings:?}");
    assert_eq!(
        out,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: web\nspec:\n  serviceAccountName: web\n  containers:\n  - name: app\n    image: app\n    command: [app]\n    env:\n    - name: PASSWORD\n      value: secretstore:vault:secret/web#password\n"
    );
    let mut render = support::secretstore();
    render.arg("render");
    let rendered = support::run_with_stdin(&mut render, out.as_bytes());
    assert_eq!(
        rendered.status.code(),
        Some(0),
        "{}",
        text(&rendered.stderr)
    );
}

/// A user who may replace a file in a directory but cannot give the new file the
/// original's owner gets SS610, and the file stays as it was (root's, here), rather
/// than a file that silently changed owner.
#[test]
fn an_owner_that_cannot_be_kept_is_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("NOT RUN: giving a file away needs root to set the test up");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let case =
        std::fs::read(support::repo_root().join("testdata/convert/bank-vaults/helm-stream.yaml"))
            .unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, &case).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_secretstore"))
        .env_remove("VAULT_ADDR")
        .args(["convert", "--format", "json"])
        .arg(&file)
        .output()
        .expect("setpriv runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("\"SS610\""), "{report}");
    assert!(report.contains("owner and group 0:0"), "{report}");
    assert_eq!(std::fs::read(&file).unwrap(), case);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file is left"
    );
}

/// Injector templates convert into configs with templates (SPEC 1.4) that render and lint
/// clean; a template of several lines is written as a block, one field per line.
#[test]
fn converted_templates_render_and_lint_clean() {
    let output = convert_stdin("testdata/convert/vault-agent-injector/templates.yaml", &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let converted = text(&output.stdout);
    assert!(
        converted.contains(
            "        vault.secretstore.rafay.dev/filesecret-config-range-properties: |\n          {\"vaultSecretRef\": \"secret/shop/props\",\n           \"secretFileName\": \"range-properties\",\n"
        ),
        "{converted}"
    );
    for args in [&["render"][..], &["lint", "-"]] {
        let mut command = support::secretstore();
        command.args(args);
        let checked = support::run_with_stdin(&mut command, converted.as_bytes());
        assert_eq!(
            checked.status.code(),
            Some(0),
            "{args:?} of the converted templates:\n{}{}",
            text(&checked.stdout),
            text(&checked.stderr)
        );
        let report = format!("{}{}", text(&checked.stdout), text(&checked.stderr));
        assert!(!report.contains("warning"), "{args:?}: {report}");
    }
}

/// A conversion that render would refuse is not written; the reason is reported at the
/// pod in the input (where the user can act), with its position in the unwritten output.
#[test]
fn a_conversion_render_refuses_is_reported_at_the_pod() {
    let input = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: first
data:
  a: b
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    vault.hashicorp.com/agent-inject: "true"
    vault.hashicorp.com/agent-pre-populate-only: "true"
    vault.hashicorp.com/role: web
    vault.hashicorp.com/agent-inject-secret-a: secret/data/web/a
    vault.hashicorp.com/agent-inject-template-a: '{{ with secret "secret/data/web/a" }}{{ .Data.data.k }}{{ end }}'
    vault.hashicorp.com/agent-inject-file-a: same
    vault.hashicorp.com/agent-inject-secret-b: secret/data/web/b
    vault.hashicorp.com/agent-inject-template-b: '{{ with secret "secret/data/web/b" }}x={{ .Data.data.k }}{{ end }}'
    vault.hashicorp.com/agent-inject-file-b: same
spec:
  containers:
    - name: web
      image: web:1
"#;
    let (status, out, findings) = convert_text(input, &[]);
    assert_eq!(status, Some(1));
    assert_eq!(out, input, "nothing is written");
    assert_eq!(
        findings
            .iter()
            .map(|f| (f.0.as_str(), f.1, f.2))
            .collect::<Vec<_>>(),
        [("SS116", 8, 1)],
        "{findings:?}"
    );
    assert!(
        findings[0].3.ends_with(
            "would get two files at `/vault/secrets/same` (also from filesecret-config-a) (line 16, column 54 of the converted output)"
        ),
        "{findings:?}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Hostile injector templates: convert never panics; a pod it converts renders (it
    /// checks that itself), holds the template's configs as JSON, and converts to
    /// itself again.
    #[test]
    fn hostile_injector_templates_convert_or_are_reported(
        body in "(\\PC|[{}$%#|.\"`()\n -]|\\.Data|\\.data|range |end|printf|index |toJSON|\\$k|:=){0,30}"
    ) {
        use secretstore::config::Settings;
        use secretstore::convert::{convert, Options};
        use secretstore::render::Input;
        let template = format!("{{{{ with secret \"kv/a\" }}}}{body}{{{{ end }}}}\n");
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    vault.hashicorp.com/agent-inject: \"true\"\n    vault.hashicorp.com/agent-pre-populate-only: \"true\"\n    vault.hashicorp.com/role: r\n    vault.hashicorp.com/agent-inject-secret-t: kv/a\n    vault.hashicorp.com/agent-inject-template-t: {}\nspec:\n  containers:\n  - name: c\n    image: i\n",
            serde_json::to_string(&template).unwrap()
        );
        let input = Input { name: "pod.yaml".into(), bytes: pod.into_bytes() };
        let outcome = convert(std::slice::from_ref(&input), &Settings::default(), &Options::default());
        match &outcome.outputs[0] {
            Some(bytes) => {
                let doc: serde_json::Value = yaml_serde::from_slice(bytes).expect("converted YAML");
                let config = doc["metadata"]["annotations"]["vault.secretstore.rafay.dev/filesecret-config-t"]
                    .as_str()
                    .expect("the config");
                let config: serde_json::Value = serde_json::from_str(config).expect("config JSON");
                proptest::prop_assert!(config["vaultSecretRef"].is_string(), "{config}");
                let again = convert(
                    &[Input { name: "pod.yaml".into(), bytes: bytes.clone() }],
                    &Settings::default(),
                    &Options::default(),
                );
                proptest::prop_assert!(again.outputs[0].is_none(), "converting twice changed it");
            }
            None => proptest::prop_assert!(
                outcome.diagnostics.iter().any(|d| d.severity == secretstore::diag::Severity::Error),
                "left without a reason"
            ),
        }
    }
}

/// A refused action that is also written before (a stray `{{ end }}` after a valid one)
/// is located at the refused one.
#[test]
fn a_refused_action_written_twice_is_located_at_the_refused_one() {
    let input = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations:\n    vault.hashicorp.com/agent-inject: \"true\"\n    vault.hashicorp.com/role: web\n    vault.hashicorp.com/agent-inject-secret-a: kv/a\n    vault.hashicorp.com/agent-inject-template-a: |\n      {{ with secret \"kv/a\" }}{{ .Data.k }}{{ end }}\n      {{ end }}\nspec:\n  containers:\n    - name: web\n      image: web:1\n";
    let (status, out, findings) = convert_text(input, &[]);
    assert_eq!(status, Some(1));
    assert_eq!(out, input);
    assert_eq!(
        findings
            .iter()
            .map(|f| (f.0.as_str(), f.1, f.2))
            .collect::<Vec<_>>(),
        [("SS602", 11, 7)],
        "{findings:?}"
    );
    assert!(
        findings[0].3.contains("`{{ end }}`: `end` closes nothing"),
        "{findings:?}"
    );
}
