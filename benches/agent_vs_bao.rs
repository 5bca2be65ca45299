//! secretstore's agent against OpenBao's own agent (`bao agent`, the Vault Agent
//! equivalent), side by side in one run against one real OpenBao, with the same 20 KV
//! secrets (one file each, from a template for `bao agent`), logging in with the same
//! service-account JWT:
//!
//! - one-shot: wall time and peak RSS (GNU time) of a fetch of all 20 and exit
//!   (`exit_after_auth = true` for `bao agent`), best and median of several runs;
//! - steady state: both as long-running sidecars re-reading every 10 s (live mode;
//!   `static_secret_render_interval = "10s"`), RSS sampled every second and CPU time per
//!   refresh cycle.
//!
//! `cargo bench --bench agent_vs_bao` runs the steady state for 600 s (set
//! `SECRETSTORE_BENCH_STEADY_SECONDS` to change it); `cargo test --all-targets` runs it
//! once briefly as a check. `SECRETSTORE_BENCH_AGENT_BIN` measures another build of
//! secretstore (the static musl binary the image ships) instead of this one.

#[path = "support/proc_stats.rs"]
mod proc_stats;
#[path = "../tests/support/mod.rs"]
mod support;

use proc_stats::{cpu_ms, rss_kib};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::jwt::{JwtRole, ServiceAccountIssuer};
use support::openbao::OpenBao;

const SECRETS: usize = 20;
const ROLE: &str = "app";
const REFRESH_SECONDS: u64 = 10;

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let runs = if benchmarking { 7 } else { 1 };
    let steady_seconds: u64 = std::env::var("SECRETSTORE_BENCH_STEADY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benchmarking { 600 } else { 12 });
    let agent_bin = std::env::var("SECRETSTORE_BENCH_AGENT_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_secretstore").to_owned());

    let vault = OpenBao::start();
    vault.put_policy(
        "app",
        r#"path "secret/data/shop/*" { capabilities = ["read"] }"#,
    );
    let issuer = ServiceAccountIssuer::new();
    vault.enable_jwt_auth("kubernetes", &issuer);
    vault.write_jwt_role(
        "kubernetes",
        ROLE,
        &JwtRole::service_account("shop", "shop", "vault", &["app"]),
    );
    for i in 0..SECRETS {
        vault.kv2_put(
            "secret",
            &format!("shop/s{i:02}"),
            &json!({ "value": format!("value-{i:02}-7d1e") }),
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let jwt = dir.path().join("jwt");
    std::fs::write(&jwt, issuer.token("shop", "shop", "vault")).expect("jwt");

    println!(
        "agent binary: {agent_bin} ({:.1} MB); bao: {}",
        std::fs::metadata(&agent_bin).map_or(0.0, |m| m.len() as f64 / 1e6),
        support::tool("bao").display()
    );
    println!("\none-shot fetch of {SECRETS} KV secrets ({runs} runs each, alternating)");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for run in 0..runs {
        ours.push(one_shot_secretstore(
            &agent_bin,
            &vault,
            &jwt,
            dir.path(),
            run,
        ));
        theirs.push(one_shot_bao(&vault, &jwt, dir.path(), run));
    }
    report_one_shot("secretstore agent", &ours);
    report_one_shot("bao agent", &theirs);
    let (ours_ms, theirs_ms) = (median_ms(&ours), median_ms(&theirs));
    let (ours_kib, theirs_kib) = (max_rss(&ours), max_rss(&theirs));
    println!(
        "ratio: {:.1}x faster (median wall), peak RSS {:.2} of bao agent's",
        theirs_ms / ours_ms,
        ours_kib as f64 / theirs_kib as f64
    );

    println!(
        "\nsteady state: {SECRETS} secrets re-read every {REFRESH_SECONDS} s, for {steady_seconds} s, side by side"
    );
    let ours = Sidecar::secretstore(&agent_bin, &vault, &jwt, dir.path());
    let theirs = Sidecar::bao(&vault, &jwt, dir.path());
    let (ours, theirs) = sample_together(ours, theirs, Duration::from_secs(steady_seconds));
    for s in [&ours, &theirs] {
        let cycles = (steady_seconds / REFRESH_SECONDS).max(1);
        println!(
            "{:<18} RSS after start {:>6.1} MiB, max {:>6.1} MiB, at the end {:>6.1} MiB; CPU {:>7.1} ms in all, {:>6.2} ms per refresh cycle ({cycles} cycles)",
            s.name,
            s.first_kib as f64 / 1024.0,
            s.max_kib as f64 / 1024.0,
            s.last_kib as f64 / 1024.0,
            s.cpu_ms,
            s.cpu_ms / cycles as f64
        );
    }
    println!(
        "ratio: secretstore's max RSS is {:.2} of bao agent's",
        ours.max_kib as f64 / theirs.max_kib as f64
    );
}

struct OneShot {
    wall: Duration,
    peak_rss_kib: u64,
}

fn median_ms(runs: &[OneShot]) -> f64 {
    let mut ms: Vec<f64> = runs.iter().map(|r| r.wall.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn max_rss(runs: &[OneShot]) -> u64 {
    runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0)
}

fn report_one_shot(name: &str, runs: &[OneShot]) {
    let best = runs.iter().map(|r| r.wall).min().unwrap_or_default();
    println!(
        "{name:<18} wall best {:>7.1} ms, median {:>7.1} ms; peak RSS {:>6.1} MiB",
        best.as_secs_f64() * 1e3,
        median_ms(runs),
        max_rss(runs) as f64 / 1024.0
    );
}

/// Runs `command` under GNU time, checking it succeeds.
fn timed(mut command: Command, what: &str, work: &Path) -> OneShot {
    let time = work.join("time");
    let mut wrapped = Command::new(support::agent_run::GNU_TIME);
    wrapped
        .arg("--format=%M")
        .arg("--output")
        .arg(&time)
        .arg(command.get_program())
        .args(command.get_args())
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command.env_clear();
    let start = Instant::now();
    let output = wrapped.output().expect("run under GNU time");
    let wall = start.elapsed();
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let peak_rss_kib = std::fs::read_to_string(&time)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .expect("peak RSS from GNU time");
    OneShot { wall, peak_rss_kib }
}

fn spec(vault: &OpenBao, jwt: &Path, secrets_root: &Path, live: bool) -> Value {
    let root = secrets_root.to_str().expect("utf-8");
    let mut spec = json!({
        "v": 1,
        "vault": {"address": vault.addr(), "auth_path": "auth/kubernetes", "role": ROLE,
                  "token_file": jwt.to_str().expect("utf-8")},
        "timeout_seconds": 30,
        "secrets": (0..SECRETS).map(|i| json!({"path": format!("secret/shop/s{i:02}")})).collect::<Vec<_>>(),
        "files": (0..SECRETS).map(|i| json!({
            "secret": i, "key": "value", "format": "raw", "mode": 0o444,
            "path": format!("{root}/files/app/{i}/value"),
            "reference": format!("secret/shop/s{i:02}#value"),
        })).collect::<Vec<_>>(),
        "env_files": [],
        "secrets_root": root,
        "bin_root": format!("{root}-bin"),
    });
    if live {
        spec["live"] = json!({"refresh_seconds": REFRESH_SECONDS, "revoke_on_stop": true});
    }
    spec
}

fn fresh_dir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn one_shot_secretstore(
    bin: &str,
    vault: &OpenBao,
    jwt: &Path,
    base: &Path,
    run: usize,
) -> OneShot {
    let root = fresh_dir(base, &format!("ss-{run}"));
    let mut command = Command::new(bin);
    command.arg("agent").env(
        "SECRETSTORE_SPEC",
        spec(vault, jwt, &root, false).to_string(),
    );
    timed(command, "secretstore agent", base)
}

fn bao_config(vault: &OpenBao, jwt: &Path, out: &Path, one_shot: bool) -> String {
    let mut config = format!(
        "vault {{\n  address = \"{}\"\n}}\nauto_auth {{\n  method \"jwt\" {{\n    mount_path = \"auth/kubernetes\"\n    config = {{\n      path = \"{}\"\n      role = \"{ROLE}\"\n      remove_jwt_after_reading = false\n    }}\n  }}\n}}\n",
        vault.addr(),
        jwt.display()
    );
    if one_shot {
        config.push_str("exit_after_auth = true\n");
    } else {
        config.push_str(&format!(
            "template_config {{\n  static_secret_render_interval = \"{REFRESH_SECONDS}s\"\n}}\n"
        ));
    }
    for i in 0..SECRETS {
        config.push_str(&format!(
            "template {{\n  contents = \"{{{{ with secret \\\"secret/data/shop/s{i:02}\\\" }}}}{{{{ .Data.data.value }}}}{{{{ end }}}}\"\n  destination = \"{}\"\n}}\n",
            out.join(format!("s{i:02}")).display()
        ));
    }
    config
}

fn bao_command(config_file: &Path) -> Command {
    let mut command = Command::new(support::tool("bao"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("VAULT_") || name.starts_with("BAO_") {
            command.env_remove(&*name);
        }
    }
    command
        .arg("agent")
        .arg(format!("-config={}", config_file.display()));
    command
}

fn one_shot_bao(vault: &OpenBao, jwt: &Path, base: &Path, run: usize) -> OneShot {
    let out = fresh_dir(base, &format!("bao-{run}"));
    let config_file = base.join(format!("bao-{run}.hcl"));
    std::fs::write(&config_file, bao_config(vault, jwt, &out, true)).expect("config");
    let result = timed(bao_command(&config_file), "bao agent", base);
    let written = std::fs::read_dir(&out).map_or(0, |d| d.count());
    assert_eq!(written, SECRETS, "bao agent wrote {written} files");
    result
}

struct Sidecar {
    name: &'static str,
    child: Child,
}

impl Sidecar {
    fn secretstore(bin: &str, vault: &OpenBao, jwt: &Path, base: &Path) -> Sidecar {
        let root = fresh_dir(base, "ss-live");
        std::fs::create_dir_all(format!("{}-bin", root.display())).expect("mkdir");
        let child = Command::new(bin)
            .arg("agent")
            .env(
                "SECRETSTORE_SPEC",
                spec(vault, jwt, &root, true).to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the secretstore sidecar");
        Sidecar {
            name: "secretstore agent",
            child,
        }
    }

    fn bao(vault: &OpenBao, jwt: &Path, base: &Path) -> Sidecar {
        let out = fresh_dir(base, "bao-live");
        let config_file = base.join("bao-live.hcl");
        std::fs::write(&config_file, bao_config(vault, jwt, &out, false)).expect("config");
        let child = bao_command(&config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bao agent");
        Sidecar {
            name: "bao agent",
            child,
        }
    }
}

struct Steady {
    name: &'static str,
    first_kib: u64,
    max_kib: u64,
    last_kib: u64,
    cpu_ms: f64,
}

/// Samples both sidecars' RSS once a second for `length` (after 3 s to start), then
/// stops them.
fn sample_together(mut a: Sidecar, mut b: Sidecar, length: Duration) -> (Steady, Steady) {
    std::thread::sleep(Duration::from_secs(3));
    let mut stats: Vec<Steady> = [&a, &b]
        .iter()
        .map(|s| Steady {
            name: s.name,
            first_kib: rss_kib(s.child.id()).unwrap_or(0),
            max_kib: 0,
            last_kib: 0,
            cpu_ms: 0.0,
        })
        .collect();
    let cpu_start: Vec<f64> = [&a, &b]
        .iter()
        .map(|s| cpu_ms(s.child.id()).unwrap_or(0.0))
        .collect();
    let end = Instant::now() + length;
    while Instant::now() < end {
        for (s, stat) in [&mut a, &mut b].into_iter().zip(stats.iter_mut()) {
            assert!(
                s.child.try_wait().expect("wait").is_none(),
                "{} exited during the steady-state run",
                s.name
            );
            let rss = rss_kib(s.child.id()).unwrap_or(0);
            stat.max_kib = stat.max_kib.max(rss);
            stat.last_kib = rss;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    for ((s, stat), start) in [&mut a, &mut b]
        .into_iter()
        .zip(stats.iter_mut())
        .zip(cpu_start)
    {
        stat.cpu_ms = cpu_ms(s.child.id()).unwrap_or(start) - start;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
        let _ = s.child.wait();
    }
    let b_stat = stats.pop().expect("two");
    let a_stat = stats.pop().expect("two");
    (a_stat, b_stat)
}
