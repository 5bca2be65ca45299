//! Runs the real agent binary with its volumes in a temporary directory against a fake
//! Vault ([`super::fake_vault`]), under GNU time for its peak memory: for the hostile-Vault
//! tests and the agent memory benchmark.

use serde_json::{json, Value};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::fake_vault::{FakeVault, Received, Reply};

pub const GNU_TIME: &str = "/usr/bin/time";
/// A secret value no output may contain.
pub const MARKER: &str = "hunter2-marker-7f3a";
pub const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.service-account-jwt.signature";
pub const TOKEN: &str = "s.agent-token-4b1d";

pub struct AgentRun {
    pub code: Option<i32>,
    pub stderr: String,
    /// KiB.
    pub peak_rss_kib: u64,
    pub elapsed: Duration,
    pub dir: tempfile::TempDir,
}

impl AgentRun {
    pub fn secrets(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.secrets().join(rel))
            .unwrap_or_else(|e| panic!("cannot read {rel}: {e}\n{}", self.stderr))
    }
}

/// A spec with its volumes in `dir`: one secret read (`path`), written as a raw file of
/// `key`, a json file and an env file entry.
pub fn spec(address: &str, dir: &Path, timeout_seconds: u64, path: &str) -> Value {
    let secrets = dir.join("secrets");
    let s = secrets.to_str().unwrap();
    json!({
        "v": 1,
        "vault": {
            "address": address,
            "auth_path": "auth/kubernetes",
            "role": "app",
            "token_file": dir.join("token").to_str().unwrap(),
        },
        "timeout_seconds": timeout_seconds,
        "secrets": [{"path": path}],
        "files": [
            {"secret": 0, "key": "password", "format": "raw", "mode": 0o444,
             "path": format!("{s}/files/app/0/password"), "reference": format!("{path}#password")},
            {"secret": 0, "format": "json", "mode": 0o444,
             "path": format!("{s}/files/app/1/all.json"), "reference": path},
        ],
        "env_files": [
            {"container": "app", "path": format!("{s}/env/app/env.json"),
             "refs": [{"reference": format!("secretstore:vault:{path}#password"), "secret": 0, "key": "password"}]}
        ],
        "secrets_root": s,
        "bin_root": dir.join("bin").to_str().unwrap(),
    })
}

pub fn run_agent(spec: &Value) -> AgentRun {
    run_agent_prepared(spec, |_| {})
}

/// Runs the agent after `prepare` has been given the run's directory (with its `secrets`
/// and `bin` volumes created), e.g. to plant something there.
pub fn run_agent_prepared(spec: &Value, prepare: impl FnOnce(&Path)) -> AgentRun {
    assert!(
        Path::new(GNU_TIME).is_file(),
        "{GNU_TIME} (Debian package `time`) is not installed: run scripts/install-test-deps.sh (as root) first"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec.clone();
    // Re-root the spec's paths into this run's directory.
    let text = spec
        .to_string()
        .replace("@DIR@", dir.path().to_str().unwrap());
    spec = serde_json::from_str(&text).unwrap();
    std::fs::write(dir.path().join("token"), JWT).unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    prepare(dir.path());
    let time = dir.path().join("time");
    let stderr = dir.path().join("stderr");
    let secretstore = super::secretstore();
    let mut command = Command::new(GNU_TIME);
    command
        .arg("--format=%M")
        .arg("--output")
        .arg(&time)
        .arg(secretstore.get_program())
        .arg("agent")
        .env_clear()
        .env("SECRETSTORE_SPEC", spec.to_string())
        .stdout(File::create(dir.path().join("stdout")).unwrap())
        .stderr(File::create(&stderr).unwrap());
    let start = Instant::now();
    let status = command
        .status()
        .expect("cannot run the agent under GNU time");
    let elapsed = start.elapsed();
    let stdout = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
    let stderr = std::fs::read_to_string(&stderr).unwrap();
    let report = std::fs::read_to_string(&time).unwrap_or_default();
    let peak_rss_kib = report
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no peak RSS from GNU time: {report}"));
    assert!(stdout.is_empty(), "the agent wrote to stdout: {stdout}");
    for leaked in [MARKER, JWT, TOKEN] {
        super::assert_no_secret(&stderr, &[leaked]);
    }
    AgentRun {
        code: status.code(),
        stderr,
        peak_rss_kib,
        elapsed,
        dir,
    }
}

/// `spec` with `@DIR@` standing for the run's directory.
pub fn spec_for(address: &str, timeout_seconds: u64) -> Value {
    spec(address, Path::new("@DIR@"), timeout_seconds, "secret/app")
}

pub fn login_answer() -> Reply {
    Reply::json(
        200,
        &json!({"request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
            "data": null, "wrap_info": null, "warnings": null,
            "auth": {"client_token": TOKEN, "accessor": "acc", "policies": ["app"],
            "token_policies": ["app"], "metadata": null, "lease_duration": 600,
            "renewable": true, "entity_id": "e", "token_type": "service", "orphan": true}})
        .to_string(),
    )
}

pub fn mount_answer() -> Reply {
    Reply::json(
        200,
        r#"{"data":{"path":"secret/","type":"kv","options":{"version":"2"}}}"#,
    )
}

pub fn secret_answer(data: Value) -> Reply {
    Reply::json(
        200,
        &json!({"data": {"data": data, "metadata": {"version": 1, "deletion_time": "", "destroyed": false}},
            "lease_id": "", "lease_duration": 0, "renewable": false})
        .to_string(),
    )
}

/// A Vault whose login, mount lookup and revoke answer normally and whose secret reads
/// `read` answers (given the request and how many reads came before).
pub fn vault_with_reads(
    read: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
) -> FakeVault {
    let reads = std::sync::atomic::AtomicUsize::new(0);
    FakeVault::start(move |req, _| match req.path() {
        "/v1/auth/kubernetes/login" => login_answer(),
        p if p.starts_with("/v1/sys/internal/ui/mounts/") => mount_answer(),
        "/v1/auth/token/revoke-self" => Reply::Full(204, vec![], vec![]),
        _ => read(req, reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst)),
    })
}

pub fn assert_exit(run: &AgentRun, code: i32, must_say: &[&str]) {
    assert_eq!(
        run.code,
        Some(code),
        "exit status {:?}, stderr:\n{}",
        run.code,
        run.stderr
    );
    for text in must_say {
        assert!(
            run.stderr.contains(text),
            "stderr does not say {text:?}:\n{}",
            run.stderr
        );
    }
}

/// A KV v2 answer whose `password` is `len` bytes of `x`, streamed without a length.
pub fn huge_secret(len: usize) -> Reply {
    Reply::Stream {
        status: 200,
        prefix: br#"{"data":{"data":{"user":"app","password":""#.to_vec(),
        fill: b'x',
        len,
        suffix:
            br#""},"metadata":{"version":1,"deletion_time":"","destroyed":false}},"lease_id":""}"#
                .to_vec(),
    }
}
