//! Shared fixtures for integration tests: real OpenBao, PostgreSQL, Helm, kubectl and
//! Kubernetes schema validation. Each integration test file compiles this module on its
//! own and uses only part of it, hence the module-level `dead_code` allowance.
//!
//! Every fixture needs the tools that `scripts/install-test-deps.sh` puts in `.tools/`;
//! a missing tool fails the test with that instruction, it never skips.
#![allow(dead_code, unused_imports)]

pub mod jwt;
pub mod k8s;
pub mod net;
pub mod openbao;
pub mod pod;
pub mod postgres;
pub mod process;

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;

pub use jwt::{JwtRole, ServiceAccountIssuer};
pub use k8s::validate_k8s;
pub use openbao::OpenBao;
pub use postgres::Postgres;

/// The repository root (where Cargo.toml and `.tools/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `.tools/bin/<name>`, installed by `scripts/install-test-deps.sh`: `bao`, `helm3`,
/// `helm4`, `kubectl`, `pre-commit`. Panics with the install instruction when missing.
pub fn tool(name: &str) -> PathBuf {
    installed(repo_root().join(".tools/bin").join(name))
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
