//! `--format gitlab`: GitLab's code-quality report from `lint` (and `check`, which writes
//! through the same report): the exact report for a sample input, exactly the fields
//! GitLab reads with their types, and fingerprints that are unique in a report and stable
//! across runs and line moves.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use support::{repo_root, secretstore};

/// The sample: lint's rules (warnings), render's refusals of bad live-mode values
/// (errors), and a chart template lint skips (a note).
const SAMPLE: [&str; 3] = [
    "testdata/lint/rules.yaml",
    "./testdata/render/live-bad-values.yaml",
    "testdata/charts/shop-common/templates",
];

fn lint_gitlab(dir: &Path, paths: &[&str]) -> (String, Value) {
    let output = secretstore()
        .args(["lint", "--format", "gitlab"])
        .args(paths)
        .current_dir(dir)
        .output()
        .expect("run secretstore lint");
    // 1 with errors, 0 with warnings only.
    assert!(matches!(output.status.code(), Some(0 | 1)), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let report = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"));
    (text, report)
}

#[test]
fn report_of_the_sample() {
    let (text, _) = lint_gitlab(&repo_root(), &SAMPLE);
    insta::assert_snapshot!(text);
}

/// Every object has exactly the fields GitLab reads, of the types it reads them as.
#[test]
fn every_issue_has_exactly_the_fields_gitlab_reads() {
    let (_, report) = lint_gitlab(&repo_root(), &SAMPLE);
    let issues = report.as_array().expect("a JSON array");
    assert!(issues.len() > 5, "{report}");
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object().expect("an object").keys().cloned().collect()
    };
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| s.to_string()).collect() };
    let mut severities = BTreeSet::new();
    for issue in issues {
        assert_eq!(
            keys(issue),
            set(&[
                "check_name",
                "description",
                "fingerprint",
                "location",
                "severity"
            ]),
            "{issue}"
        );
        for field in ["check_name", "description", "fingerprint"] {
            assert!(
                issue[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field}: {issue}"
            );
        }
        let severity = issue["severity"].as_str().expect("severity is a string");
        assert!(
            ["info", "minor", "major", "critical", "blocker"].contains(&severity),
            "{issue}"
        );
        severities.insert(severity.to_owned());
        let location = &issue["location"];
        assert_eq!(keys(location), set(&["lines", "path"]), "{issue}");
        let path = location["path"].as_str().expect("path is a string");
        assert!(!path.starts_with('/') && !path.starts_with("./"), "{issue}");
        assert!(
            repo_root().join(path).exists(),
            "{path} is not relative to the root"
        );
        assert_eq!(keys(&location["lines"]), set(&["begin"]), "{issue}");
        assert!(
            location["lines"]["begin"].as_u64().is_some_and(|l| l >= 1),
            "{issue}"
        );
    }
    assert_eq!(severities, set(&["info", "major", "minor"]));
    let codes: BTreeSet<&str> = issues
        .iter()
        .filter_map(|i| i["check_name"].as_str())
        .collect();
    assert!(
        codes.contains("SS106") && codes.contains("SS202"),
        "{codes:?}"
    );
}

/// Fingerprints are unique in a report, the same on every run, and do not change when
/// lines above a finding move (GitLab compares them between pipelines); the same finding
/// twice in one file still gets two.
#[test]
fn fingerprints_are_unique_and_stable() {
    let fingerprints = |report: &Value| -> Vec<String> {
        report
            .as_array()
            .expect("array")
            .iter()
            .map(|i| i["fingerprint"].as_str().expect("fingerprint").to_owned())
            .collect()
    };
    let (_, first) = lint_gitlab(&repo_root(), &SAMPLE);
    let (_, again) = lint_gitlab(&repo_root(), &SAMPLE);
    let prints = fingerprints(&first);
    assert_eq!(prints, fingerprints(&again));
    assert_eq!(prints.iter().collect::<BTreeSet<_>>().len(), prints.len());

    let dir = tempfile::tempdir().expect("tempdir");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: app\nspec:\n  containers:\n  - name: app\n    image: app\n    command: [app]\n";
    // The same pod twice: two findings alike but for their line.
    std::fs::write(dir.path().join("pods.yaml"), format!("{pod}---\n{pod}")).expect("write");
    let (_, before) = lint_gitlab(dir.path(), &["pods.yaml"]);
    std::fs::write(
        dir.path().join("pods.yaml"),
        format!("# a comment\n# and another\n{pod}---\n{pod}"),
    )
    .expect("write");
    let (_, after) = lint_gitlab(dir.path(), &["pods.yaml"]);
    let prints = fingerprints(&before);
    assert_eq!(prints.len(), 2, "{before}");
    assert_ne!(prints[0], prints[1]);
    assert_eq!(prints, fingerprints(&after));
    let line = |r: &Value, i: usize| r[i]["location"]["lines"]["begin"].as_u64().expect("line");
    assert_eq!(line(&after, 0), line(&before, 0) + 2);
}
