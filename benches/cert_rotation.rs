//! A certificate kept fresh by a sidecar: secretstore's agent in live mode (a `files`
//! config of `pki/issue/web`, issued again at two thirds of its lifetime) against OpenBao's
//! own agent (`bao agent`) rendering the same certificate and key with a `pkiCert`
//! template, side by side against one real OpenBao, with 90 s certificates (one new
//! certificate about every minute). Reports each sidecar's RSS (sampled every second) and
//! CPU time per rotation, counting rotations as new certificates in its output.
//!
//! `cargo bench --bench cert_rotation` runs for 300 s (`SECRETSTORE_BENCH_STEADY_SECONDS`
//! changes it); `cargo test --all-targets` runs it briefly as a check.
//! `SECRETSTORE_BENCH_AGENT_BIN` measures another build of secretstore.

#[path = "support/proc_stats.rs"]
mod proc_stats;
#[path = "../tests/support/mod.rs"]
mod support;

use proc_stats::{cpu_ms, rss_kib};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::jwt::{JwtRole, ServiceAccountIssuer};
use support::openbao::OpenBao;

const ROLE: &str = "app";
const TTL: &str = "90s";

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let seconds: u64 = std::env::var("SECRETSTORE_BENCH_STEADY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benchmarking { 300 } else { 8 });
    let agent_bin = std::env::var("SECRETSTORE_BENCH_AGENT_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_secretstore").to_owned());

    let vault = OpenBao::start();
    vault.enable_secrets_engine("pki", "pki", &json!({"config": {"max_lease_ttl": "2h"}}));
    vault.post_json(
        "pki/root/generate/internal",
        &json!({"common_name": "bench root", "ttl": "2h", "key_type": "ec"}),
    );
    vault.post_json(
        "pki/roles/web",
        &json!({"allowed_domains": ["web.shop.svc"], "allow_subdomains": true,
                "max_ttl": "1h", "not_before_duration": "1s", "key_type": "ec", "key_bits": 256}),
    );
    vault.put_policy(
        "app",
        r#"path "pki/issue/web" { capabilities = ["update"] }"#,
    );
    let issuer = ServiceAccountIssuer::new();
    vault.enable_jwt_auth("kubernetes", &issuer);
    vault.write_jwt_role(
        "kubernetes",
        ROLE,
        &JwtRole::service_account("shop", "shop", "vault", &["app"]),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let jwt = dir.path().join("jwt");
    std::fs::write(&jwt, issuer.token("shop", "shop", "vault")).expect("jwt");

    println!(
        "a {TTL} certificate kept fresh for {seconds} s; agent binary: {agent_bin}; bao: {}",
        support::tool("bao").display()
    );
    let ours_file = dir.path().join("ss/files/app/0/tls.crt");
    let theirs_file = dir.path().join("bao/tls.pem");
    let ours = secretstore(&agent_bin, &vault, &jwt, dir.path());
    let theirs = bao(&vault, &jwt, dir.path(), &theirs_file);
    let results = sample_together(
        [
            ("secretstore agent", ours, ours_file),
            ("bao agent (pkiCert)", theirs, theirs_file),
        ],
        Duration::from_secs(seconds),
    );
    for r in &results {
        let per_rotation = if r.rotations == 0 {
            "no rotation in this run".to_owned()
        } else {
            format!("{:.2} ms per rotation", r.cpu_ms / r.rotations as f64)
        };
        println!(
            "{:<20} RSS max {:>6.1} MiB, at the end {:>6.1} MiB; {} rotations; CPU {:>7.1} ms in all, {per_rotation}",
            r.name,
            r.max_kib as f64 / 1024.0,
            r.last_kib as f64 / 1024.0,
            r.rotations,
            r.cpu_ms,
        );
    }
}

fn secretstore(bin: &str, vault: &OpenBao, jwt: &Path, base: &Path) -> Child {
    let root = base.join("ss");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::create_dir_all(base.join("ss-bin")).expect("mkdir");
    let root_text = root.to_str().expect("utf-8");
    let file = |name: &str, key: &str, mode: u32| {
        json!({"secret": 0, "key": key, "format": "raw", "mode": mode,
               "path": format!("{root_text}/files/app/0/{name}"), "reference": "pki/issue/web",
               "together": true})
    };
    let spec = json!({
        "v": 1,
        "vault": {"address": vault.addr(), "auth_path": "auth/kubernetes", "role": ROLE,
                  "token_file": jwt.to_str().expect("utf-8")},
        "timeout_seconds": 30,
        "secrets": [{"path": "pki/issue/web",
                     "params": {"common_name": "ss.web.shop.svc", "ttl": TTL}}],
        "files": [file("tls.crt", "certificate", 0o444), file("tls.key", "private_key", 0o400)],
        "env_files": [],
        "secrets_root": root_text,
        "bin_root": format!("{root_text}-bin"),
        "live": {"refresh_seconds": 3600, "revoke_on_stop": true},
    });
    Command::new(bin)
        .arg("agent")
        .env("SECRETSTORE_SPEC", spec.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the secretstore sidecar")
}

fn bao(vault: &OpenBao, jwt: &Path, base: &Path, out: &Path) -> Child {
    std::fs::create_dir_all(out.parent().expect("dir")).expect("mkdir");
    let config = format!(
        "vault {{\n  address = \"{}\"\n}}\nauto_auth {{\n  method \"jwt\" {{\n    mount_path = \"auth/kubernetes\"\n    config = {{\n      path = \"{}\"\n      role = \"{ROLE}\"\n      remove_jwt_after_reading = false\n    }}\n  }}\n}}\ntemplate {{\n  contents = \"{{{{ with pkiCert \\\"pki/issue/web\\\" \\\"common_name=bao.web.shop.svc\\\" \\\"ttl={TTL}\\\" }}}}{{{{ .Cert }}}}{{{{ .Key }}}}{{{{ end }}}}\"\n  destination = \"{}\"\n}}\n",
        vault.addr(),
        jwt.display(),
        out.display()
    );
    let config_file = base.join("bao.hcl");
    std::fs::write(&config_file, config).expect("config");
    let mut command = Command::new(support::tool("bao"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("VAULT_") || name.starts_with("BAO_") {
            command.env_remove(&*name);
        }
    }
    command
        .arg("agent")
        .arg(format!("-config={}", config_file.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bao agent")
}

struct Measured {
    name: &'static str,
    max_kib: u64,
    last_kib: u64,
    cpu_ms: f64,
    rotations: usize,
}

/// Once both have written their first certificate, samples each sidecar's RSS and its
/// output every second for `length`, then stops them. CPU is counted from the first
/// certificate on, so it covers rotations only (and the idle time between them).
fn sample_together(
    sidecars: [(&'static str, Child, std::path::PathBuf); 2],
    length: Duration,
) -> Vec<Measured> {
    let started = Instant::now();
    while sidecars
        .iter()
        .any(|(_, _, file)| std::fs::read(file).map_or(true, |c| c.is_empty()))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "a sidecar wrote no certificate in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut state: Vec<(Measured, f64, Vec<u8>)> = sidecars
        .iter()
        .map(|(name, child, file)| {
            (
                Measured {
                    name,
                    max_kib: 0,
                    last_kib: 0,
                    cpu_ms: 0.0,
                    rotations: 0,
                },
                cpu_ms(child.id()).unwrap_or(0.0),
                std::fs::read(file).unwrap_or_default(),
            )
        })
        .collect();
    let end = Instant::now() + length;
    let mut sidecars = sidecars;
    while Instant::now() < end {
        for ((name, child, file), (m, _, last)) in sidecars.iter_mut().zip(state.iter_mut()) {
            assert!(
                child.try_wait().expect("wait").is_none(),
                "{name} exited during the run"
            );
            let rss = rss_kib(child.id()).unwrap_or(0);
            m.max_kib = m.max_kib.max(rss);
            m.last_kib = rss;
            let now = std::fs::read(&*file).unwrap_or_default();
            if !now.is_empty() && now != *last {
                m.rotations += 1;
                *last = now;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    for ((_, child, _), (m, start, _)) in sidecars.iter_mut().zip(state.iter_mut()) {
        m.cpu_ms = cpu_ms(child.id()).unwrap_or(*start) - *start;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
    }
    state.into_iter().map(|(m, _, _)| m).collect()
}
