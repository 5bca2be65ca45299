//! Shared fixtures for integration tests: real OpenBao, PostgreSQL, Helm, kubectl and
//! Kubernetes schema validation. Each integration test file compiles this module on its
//! own and uses only part of it, hence the module-level `dead_code` allowance.
//!
//! Every fixture needs the tools that `scripts/install-test-deps.sh` puts in `.tools/`;
//! a missing tool fails the test with that instruction, it never skips.
#![allow(dead_code)]

pub mod agent_run;
pub mod fake_vault;
pub mod gen;
pub mod helm;
pub mod jwt;
pub mod k8s;
pub mod net;
pub mod openbao;
pub mod output;
pub mod pod;
pub mod postgres;
pub mod process;
pub mod sidecar;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (where Cargo.toml and `.tools/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The manifest files (`.yaml`, `.yml`, `.json`) under `root`, sorted.
pub fn manifest_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    files
}

/// `.tools/bin/<name>`, installed by `scripts/install-test-deps.sh`: `bao`, `helm3`,
/// `helm4`, `kubectl`, `pre-commit`. Panics with the install instruction when missing.
pub fn tool(name: &str) -> PathBuf {
    installed(repo_root().join(".tools/bin").join(name))
}

/// The `secretstore` binary of this build, with the environment variables it reads
/// (`VAULT_*`, `BAO_*`, `SECRETSTORE_*`, `ARGOCD_ENV_*`) removed, so a test sets exactly
/// the ones it means to.
pub fn secretstore() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_secretstore"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if ["VAULT_", "BAO_", "SECRETSTORE_", "ARGOCD_ENV_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(&*name);
        }
    }
    command
}

/// The Python of the test venv `.tools/venv` (has `kubernetes_validate`, `yaml`).
pub fn venv_python() -> PathBuf {
    installed(repo_root().join(".tools/venv/bin/python"))
}

fn installed(path: PathBuf) -> PathBuf {
    if !path.exists() {
        panic!(
            "test tool {} is not installed: run scripts/install-test-deps.sh (as root) first",
            path.display()
        );
    }
    path
}

/// A loopback TCP port that was free a moment ago. Servers started on it can still
/// lose a race for it, so fixtures retry with a new port when binding fails.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free loopback port")
}

/// Panics if any of `secrets` occurs in `output` (a command's captured stdout, stderr or
/// log). The message shows the output with each secret masked as `<SECRET #i>`.
pub fn assert_no_secret(output: &str, secrets: &[&str]) {
    let leaked: Vec<usize> = (0..secrets.len())
        .filter(|&i| !secrets[i].is_empty() && output.contains(secrets[i]))
        .collect();
    if !leaked.is_empty() {
        let mut masked = output.to_owned();
        for (i, secret) in secrets.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            masked = masked.replace(secret, &format!("<SECRET #{i}>"));
        }
        panic!("secret value(s) #{leaked:?} leaked into output:\n{masked}");
    }
}

/// Runs `command` with `input` on its stdin and captures stdout and stderr. A command
/// that exits before reading all of its input (a usage error) is not a write failure.
pub fn run_with_stdin(command: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{command:?} did not finish: {e}"))
}
