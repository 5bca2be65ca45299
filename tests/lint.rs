//! `secretstore lint` end to end: every rule with its exact position on YAML and JSON,
//! the four report formats (SARIF validated against the 2.1.0 schema), exit statuses,
//! directory walking and stdin.

mod support;

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::{repo_root, secretstore, venv_python};

fn lint(args: &[&str]) -> Output {
    secretstore()
        .arg("lint")
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("cannot run secretstore")
}

fn lint_stdin(args: &[&str], input: &str) -> Output {
    support::run_with_stdin(
        secretstore()
            .arg("lint")
            .args(args)
            .current_dir(repo_root()),
        input.as_bytes(),
    )
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json_report(args: &[&str]) -> (Value, i32) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let output = lint(&all);
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            stdout(&output),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (report, output.status.code().expect("exit code"))
}

/// `(code, line, column, field)` of every finding.
fn positions(report: &Value) -> Vec<(String, u64, u64, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap_or_default().to_string(),
                f["line"].as_u64().unwrap_or_default(),
                f["column"].as_u64().unwrap_or_default(),
                f["field"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn expected(list: &[(&str, u64, u64, &str)]) -> Vec<(String, u64, u64, String)> {
    list.iter()
        .map(|(c, l, col, f)| (c.to_string(), *l, *col, f.to_string()))
        .collect()
}

const FILE_KEY: &str = "metadata.annotations[vault.secretstore.rafay.dev/filesecret-config-1]";

#[test]
fn every_rule_at_its_position_in_yaml() {
    let (report, code) = json_report(&["testdata/lint/rules.yaml"]);
    assert_eq!(code, 1, "{report:#}");
    let file_key = format!("spec.template.{FILE_KEY}");
    assert_eq!(
        positions(&report),
        expected(&[
            ("SS201", 7, 5, "metadata.annotations[rafay.dev/secretstore]"),
            ("SS202", 31, 5, "spec.template.spec.serviceAccountName"),
            ("SS203", 47, 58, &file_key),
            (
                "SS204",
                68,
                9,
                "spec.template.metadata.labels[sidecar.istio.io/inject]"
            ),
            ("SS205", 95, 18, "spec.containers[0].env[1].value"),
            ("SS102", 102, 28, "metadata.annotations"),
            (
                "SS103",
                103,
                5,
                "metadata.annotations[vault.secretstore.rafay.dev/rol]"
            ),
        ])
    );
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(
        findings[1]["object"],
        serde_json::json!({"kind": "Job", "namespace": "jobs", "name": "no-service-account"})
    );
    assert!(findings[2]["message"]
        .as_str()
        .is_some_and(|m| m.contains("`api` (user 1000), `proxy` (user 101)")));
    assert!(findings[3]["help"]
        .as_str()
        .is_some_and(|h| h.contains("excludeOutboundPorts: \"8200\"")));
    assert!(findings[4]["message"]
        .as_str()
        .is_some_and(|m| m.contains("at the latest version here but at version 2 on line 93")));
    assert_eq!(
        findings[6]["help"],
        "did you mean `vault.secretstore.rafay.dev/role`?"
    );
    assert_eq!(
        report["summary"],
        serde_json::json!({"errors": 2, "warnings": 5})
    );
}

#[test]
fn every_rule_at_its_position_in_json() {
    let (report, code) = json_report(&["testdata/lint/rules.json"]);
    assert_eq!(code, 1, "{report:#}");
    let file_key = format!("items[2].spec.template.{FILE_KEY}");
    assert_eq!(
        positions(&report),
        expected(&[
            (
                "SS201",
                11,
                11,
                "items[0].metadata.annotations[rafay.dev/secretstore]"
            ),
            (
                "SS202",
                49,
                11,
                "items[1].spec.template.spec.serviceAccountName"
            ),
            ("SS203", 73, 66, &file_key),
            (
                "SS204",
                108,
                15,
                "items[3].spec.template.metadata.labels[sidecar.istio.io/inject]"
            ),
            ("SS205", 153, 26, "items[4].spec.containers[0].env[1].value"),
            ("SS102", 166, 36, "items[5].metadata.annotations"),
            (
                "SS103",
                167,
                11,
                "items[5].metadata.annotations[vault.secretstore.rafay.dev/rol]"
            ),
        ])
    );
}

#[test]
fn human_report_with_snippets() {
    let output = lint(&["testdata/lint/rules.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    insta::assert_snapshot!(stdout(&output));
}

#[test]
fn sarif_is_valid_sarif_2_1_0() {
    let chart = tempfile::tempdir().expect("temp dir");
    std::fs::write(chart.path().join("Chart.yaml"), "name: c\nversion: 0.1.0\n").expect("write");
    std::fs::create_dir(chart.path().join("templates")).expect("mkdir");
    std::fs::write(chart.path().join("templates/a.yaml"), "{{ .Values }}\n").expect("write");
    let chart_dir = chart.path().to_str().expect("utf-8 temp path");
    let output = lint(&[
        "--format",
        "sarif",
        "testdata/lint/rules.yaml",
        "testdata/lint/rules.json",
        chart_dir,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let sarif: Value = serde_json::from_slice(&output.stdout).expect("SARIF is JSON");
    let schema = repo_root().join("testdata/sarif/sarif-2.1.0-rtm.5.json");
    validate_json_schema(&schema, &output.stdout);

    let run = &sarif["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "secretstore");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    let rule_ids: Vec<&str> = driver["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(
        rule_ids,
        ["SS102", "SS103", "SS201", "SS202", "SS203", "SS204", "SS205"]
    );
    let results = run["results"].as_array().expect("results");
    assert_eq!(results.len(), 14);
    let first = &results[0];
    assert_eq!(first["ruleId"], "SS201");
    assert_eq!(first["level"], "warning");
    assert_eq!(
        rule_ids[first["ruleIndex"].as_u64().expect("index") as usize],
        "SS201"
    );
    let physical = &first["locations"][0]["physicalLocation"];
    assert_eq!(
        physical["artifactLocation"],
        serde_json::json!({"uri": "testdata/lint/rules.yaml", "uriBaseId": "%SRCROOT%"})
    );
    assert_eq!(
        physical["region"],
        serde_json::json!({"startLine": 7, "startColumn": 5})
    );
    let notes = &run["invocations"][0]["toolExecutionNotifications"];
    assert!(notes[0]["message"]["text"]
        .as_str()
        .is_some_and(|m| m.contains("skipped 1 Helm chart template file")));
}

/// Validates `instance` against a draft-04 JSON schema with Python's `jsonschema`.
fn validate_json_schema(schema: &Path, instance: &[u8]) {
    const VALIDATE: &str = r#"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
instance = json.load(sys.stdin)
errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(instance), key=lambda e: list(e.path))
for e in errors:
    print("/".join(map(str, e.path)), ":", e.message)
sys.exit(1 if errors else 0)
"#;
    let mut child = Command::new(venv_python())
        .args(["-c", VALIDATE])
        .arg(schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run python");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(instance)
        .expect("write");
    let output = child.wait_with_output().expect("python did not finish");
    assert!(
        output.status.success(),
        "not valid against {}:\n{}{}",
        schema.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn github_workflow_commands() {
    let output = lint(&["--format", "github", "testdata/lint/rules.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert!(
        lines[0].starts_with(
            "::warning file=testdata/lint/rules.yaml,line=7,col=5,title=SS201::Deployment keys-on-workload: "
        ),
        "{out}"
    );
    assert!(
        lines[6].starts_with("::error file=testdata/lint/rules.yaml,line=103,col=5,title=SS103::"),
        "{out}"
    );
    assert!(lines[6].ends_with("%0Ahelp: did you mean `vault.secretstore.rafay.dev/role`?"));
}

const CLEAN: &str = "apiVersion: v1
kind: Pod
metadata:
  name: ok
  annotations:
    rafay.dev/secretstore: vault
    vault.secretstore.rafay.dev/role: ok
spec:
  serviceAccountName: ok
  containers:
    - name: app
      image: app:1
      command: [/app]
      env:
        - name: TOKEN
          value: secretstore:vault:secret/app#token
";

#[test]
fn exit_statuses() {
    let clean = lint_stdin(&["-"], CLEAN);
    assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));
    assert_eq!(stdout(&clean), "secretstore lint: no findings\n");

    let warned = CLEAN.replace("  serviceAccountName: ok\n", "");
    let output = lint_stdin(&["-"], &warned);
    assert_eq!(output.status.code(), Some(0), "warnings alone pass");
    assert!(
        stdout(&output).contains("<stdin>:8:1"),
        "{}",
        stdout(&output)
    );
    let output = lint_stdin(&["--deny-warnings", "-"], &warned);
    assert_eq!(output.status.code(), Some(1));

    let broken = CLEAN.replace("role: ok", "rol: ok");
    assert_eq!(lint_stdin(&["-"], &broken).status.code(), Some(1));
    let output = lint_stdin(&["-"], "a: [unclosed\n# secretstore\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("error[SS001]"),
        "{}",
        stdout(&output)
    );

    // No objects at all is fine for lint (render refuses it).
    assert_eq!(lint_stdin(&["-"], "").status.code(), Some(0));
    assert_eq!(
        lint_stdin(&["-"], "# just a comment\n---\n").status.code(),
        Some(0)
    );

    let missing = lint(&["no/such/file.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no/such/file.yaml"));
    assert_eq!(lint(&["--format", "xml", "-"]).status.code(), Some(2));
}

#[test]
fn walks_directories() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let faulty = CLEAN.replace("role: ok", "rol: ok");
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("apps/a.yaml", &faulty);
    write("apps/b.yml", &faulty);
    write("apps/c.JSON", "{\"kind\": \"Pod\", \"metadata\": {\"name\": \"c\", \"annotations\": {\"rafay.dev/secretstore\": \"gcp\"}}}");
    write("apps/clean.yaml", CLEAN);
    write("apps/readme.txt", &faulty);
    write(".hidden/d.yaml", &faulty);
    write("apps/.git/e.yaml", &faulty);
    write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: chart\nversion: 0.1.0\n",
    );
    write("chart/values.yaml", "image: app\n");
    write(
        "chart/templates/deployment.yaml",
        "kind: Pod\nmetadata:\n  annotations:\n    rafay.dev/secretstore: {{ .Values.x }}\n",
    );
    write("chart/templates/sub/job.yaml", "{{- if .Values.job }}\n");
    write("notachart/templates/f.yaml", &faulty);

    let root_arg = root.to_str().expect("utf-8 temp path");
    let (report, code) = json_report(&[root_arg]);
    assert_eq!(code, 1);
    let mut files: Vec<String> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let file = f["file"].as_str().unwrap_or_default();
            let relative = Path::new(file).strip_prefix(root).expect("under root");
            format!(
                "{} {}",
                relative.display(),
                f["code"].as_str().unwrap_or_default()
            )
        })
        .collect();
    files.sort();
    let mut want: Vec<String> = [
        "apps/a.yaml SS103",
        "apps/a.yaml SS102",
        "apps/b.yml SS103",
        "apps/b.yml SS102",
        "apps/c.JSON SS101",
        "notachart/templates/f.yaml SS103",
        "notachart/templates/f.yaml SS102",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    want.sort();
    assert_eq!(files, want);
    let notes = report["notes"].as_array().expect("notes");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(
        notes[0]["file"],
        root.join("chart/templates").display().to_string()
    );
    assert!(notes[0]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("skipped 2 Helm chart template files")));

    // A chart template named on the command line (as pre-commit does) is skipped too.
    let template = root.join("chart/templates/deployment.yaml");
    let output = lint(&[template.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("skipped 1 Helm chart template file"));
}

/// SS208: a Deployment that gets a certificate without live mode is warned about, once per
/// config, at its configuration; a live StatefulSet with certificates is not.
#[test]
fn certificate_without_live_mode_in_a_long_running_workload() {
    let (report, code) = json_report(&["testdata/render/issued-pki-deployment.yaml"]);
    assert_eq!(code, 0, "warnings only: {report:#}");
    let tls =
        "spec.template.metadata.annotations[vault.secretstore.rafay.dev/filesecret-config-tls]";
    // SS203 too: the key (0400) is the agent user's, and the app runs as another.
    assert_eq!(
        positions(&report),
        expected(&[("SS203", 18, 11, tls), ("SS208", 18, 11, tls)])
    );
    let (report, code) = json_report(&["testdata/render/issued-pki-statefulset-live.yaml"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(positions(&report), expected(&[]), "{report:#}");
}
