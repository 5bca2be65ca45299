//! One finding per input, whichever command reads it: render, lint, check and policy read
//! documents through one front-end and report render's findings at the same positions,
//! on the render test inputs and on malformed and deeply nested documents.

mod support;

use std::collections::BTreeSet;
use support::agent_run::TOKEN;
use support::fake_vault::{run_against, FakeVault, Reply};

/// A Vault with one KV mount that refuses every other lookup.
fn refusing_vault() -> FakeVault {
    FakeVault::start(|req, _| match req.path() {
        "/v1/sys/internal/ui/mounts" => Reply::json(200, r#"{"data":{"secret":{},"auth":{}}}"#),
        _ => Reply::json(403, r#"{"errors":["permission denied"]}"#),
    })
}

const NESTED_OPTED_IN: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: deep\n  annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: app\nspec:\n  containers: []\n  deep: @NEST@\n";

#[test]
fn render_lint_and_check_give_one_code_for_one_document() {
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let nested = NESTED_OPTED_IN.replace("@NEST@", &deep);
    let broken_unmarked = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n";
    let vault = refusing_vault();
    let dir = tempfile::tempdir().unwrap();
    for (name, text, code) in [
        ("nested", nested.as_str(), "SS002"),
        ("broken", "apiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n    rafay.dev/secretstore: vault\n  name: [x\n", "SS001"),
    ] {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, text).unwrap();
        for args in [
            vec!["render"],
            vec!["lint", "--format", "json"],
            vec!["check", "--format", "json"],
        ] {
            let (status, text) = run_against(&vault, &args, &file);
            assert_eq!(status, Some(1), "{args:?} on {name}: {text}");
            assert!(text.contains(code), "{args:?} on {name}: no {code}: {text}");
        }
    }
    // A document without the marker that cannot be parsed: render passes it through,
    // lint reports it.
    let file = dir.path().join("unmarked.yaml");
    std::fs::write(&file, broken_unmarked).unwrap();
    let render = support::secretstore()
        .args(["render", "--allow-empty"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(render.status.code(), Some(0));
    assert_eq!(render.stdout, broken_unmarked.as_bytes());
    let lint = support::secretstore()
        .args(["lint", "--format", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(lint.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&lint.stdout).contains("SS001"));
}

/// The `error[SS101]: FILE:LINE:COL: ...` lines of render's stderr, as (code, line, column).
fn render_errors(stderr: &str, file: &str) -> BTreeSet<(String, u64, u64)> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("error[")?;
            let (code, rest) = rest.split_once("]: ")?;
            let mut position = rest.strip_prefix(file)?.strip_prefix(':')?.split(':');
            let line = position.next()?.parse().ok()?;
            let column = position.next()?.parse().ok()?;
            Some((code.to_string(), line, column))
        })
        .collect()
}

/// A JSON report's errors with render's codes (SS0xx, SS1xx), as (code, line, column).
fn report_render_errors(stdout: &[u8]) -> BTreeSet<(String, u64, u64)> {
    let report: serde_json::Value = serde_json::from_slice(stdout).expect("a JSON report");
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
                f["column"].as_u64().unwrap(),
            )
        })
        .filter(|(code, _, _)| code.starts_with("SS0") || code.starts_with("SS1"))
        .collect()
}

/// Every input of `testdata/render` gives the same render errors, at the same positions,
/// in render, lint and check (planning's too: a container without a command is SS122 in
/// all three), and policy refuses every input render refuses.
#[test]
fn every_command_reports_what_render_refuses() {
    let vault = refusing_vault();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/render");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    files.sort();
    let mut refused = 0;
    let mut codes = BTreeSet::new();
    for file in &files {
        let name = file.display().to_string();
        let run = |args: &[&str]| {
            support::secretstore()
                .args(args)
                .arg(file)
                .env("VAULT_ADDR", vault.address())
                .env("VAULT_TOKEN", TOKEN)
                .output()
                .unwrap()
        };
        let render = run(&["render", "--allow-empty"]);
        let expected = render_errors(&String::from_utf8_lossy(&render.stderr), &name);
        assert_eq!(
            render.status.code() == Some(1),
            !expected.is_empty(),
            "{name}: render's status and its errors"
        );
        for command in ["lint", "check"] {
            let out = run(&[command, "--format", "json"]);
            assert_eq!(
                report_render_errors(&out.stdout),
                expected,
                "{name}: {command}'s render errors"
            );
        }
        codes.extend(expected.iter().map(|(code, _, _)| code.clone()));
        if !expected.is_empty() {
            refused += 1;
            let policy = run(&["policy"]);
            assert_eq!(
                policy.status.code(),
                Some(1),
                "{name}: policy accepts what render refuses"
            );
        }
    }
    assert!(
        refused >= 15,
        "only {refused} inputs of testdata/render are refused"
    );
    // Planning's findings, which scan once missed, are among them.
    for code in ["SS117", "SS122"] {
        assert!(
            codes.contains(code),
            "no input of testdata/render gives {code}: {codes:?}"
        );
    }
}
