//! The pre-commit hook (.pre-commit-hooks.yaml) through the real `pre-commit try-repo`,
//! which installs the hook the way users get it: `language: rust` runs
//! `cargo install --path .` on a clone of this repository.
//!
//! A cold `cargo install` is a full release build (minutes on a small machine), so the
//! test points CARGO_TARGET_DIR at target/pre-commit-install, which later runs reuse.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;
use support::{repo_root, tool};

fn git(repo: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(repo)
        .status()
        .expect("cannot run git");
    assert!(status.success(), "git {args:?} failed");
}

fn write(repo: &Path, name: &str, text: &str) {
    let path = repo.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn try_repo(repo: &Path, home: &Path) -> Output {
    let mut command = Command::new(tool("pre-commit"));
    command
        .args(["try-repo"])
        .arg(repo_root())
        .args(["secretstore-lint", "--all-files", "--color", "never"])
        .current_dir(repo)
        .env("PRE_COMMIT_HOME", home)
        .env(
            "CARGO_TARGET_DIR",
            repo_root().join("target/pre-commit-install"),
        );
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("SECRETSTORE_") || name.starts_with("GIT_") {
            command.env_remove(&*name);
        }
    }
    let started = Instant::now();
    let output = command.output().expect("cannot run pre-commit");
    eprintln!("pre-commit try-repo took {:.1?}", started.elapsed());
    output
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
fn hook_fails_on_the_faulty_manifest_only() {
    let work = tempfile::tempdir().expect("temp dir");
    let repo = work.path().join("repo");
    let home = work.path().join("pre-commit-home");
    std::fs::create_dir(&repo).expect("mkdir");
    git(&repo, &["init", "-q"]);
    write(&repo, "k8s/clean.yaml", CLEAN);
    write(
        &repo,
        "k8s/faulty.json",
        &serde_json::to_string_pretty(
            &yaml_serde::from_str::<serde_json::Value>(&CLEAN.replace("role: ok", "rol: ok"))
                .expect("yaml"),
        )
        .expect("json"),
    );
    write(
        &repo,
        "chart/Chart.yaml",
        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
    );
    write(
        &repo,
        "chart/templates/pod.yaml",
        "metadata:\n  annotations:\n    rafay.dev/secretstore: {{ .Values.provider }}\n",
    );
    write(
        &repo,
        "README.md",
        "not a manifest: rafay.dev/secretstore: aws\n",
    );
    git(&repo, &["add", "-A"]);

    let output = try_repo(&repo, &home);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("secretstore lint"), "{stdout}");
    assert!(stdout.contains("Failed"), "{stdout}");
    assert!(stdout.contains("error[SS103]"), "{stdout}");
    assert!(stdout.contains("k8s/faulty.json:8:7"), "{stdout}");
    assert!(!stdout.contains("k8s/clean.yaml:"), "{stdout}");
    assert!(
        stdout.contains("chart/templates: skipped 1 Helm chart template file"),
        "{stdout}"
    );

    // Fixed: the hook passes (the environment is reused, no second build).
    write(
        &repo,
        "k8s/faulty.json",
        "{\"kind\": \"List\", \"items\": []}\n",
    );
    git(&repo, &["add", "-A"]);
    let output = try_repo(&repo, &home);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("Passed"), "{stdout}");
}

#[test]
fn example_config_names_the_hook() {
    let read = |path: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(repo_root().join(path)).expect(path);
        yaml_serde::from_str(&text).expect(path)
    };
    let hooks = read(".pre-commit-hooks.yaml");
    let config = read("examples/pre-commit/.pre-commit-config.yaml");
    let used = &config["repos"][0]["hooks"][0]["id"];
    assert!(
        hooks
            .as_array()
            .expect("hooks")
            .iter()
            .any(|h| &h["id"] == used && h["language"] == "rust"),
        "{used} is not a hook of .pre-commit-hooks.yaml"
    );
}
