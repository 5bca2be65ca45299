//! Peak memory of the agent (the release binary, under GNU time) against a fake Vault
//! on 127.0.0.1, for the sizes the security page documents: no real secret (the base), an
//! 8 MiB secret written as a raw file, a json file and an env file, and a 200 MiB secret,
//! which must be refused. Each figure is the largest of a few runs, printed beside render's
//! default memory limit for the init container. Run with `cargo bench --bench agent_memory`.

#[path = "../tests/support/mod.rs"]
mod support;

use secretstore::pod::agent_spec::AGENT_MEMORY_LIMIT_MIB;
use serde_json::json;
use support::agent_run::{huge_secret, run_agent, secret_answer, spec_for, vault_with_reads};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this once as a check.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let runs = if benchmarking { 3 } else { 1 };
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let cases: [(&str, usize, i32); 3] = [
        ("small secret (base)", 0, 0),
        ("8 MiB secret, written raw + json + env", 8 << 20, 0),
        ("200 MiB secret, refused", 200 << 20, 2),
    ];
    println!(
        "{:<42} {:>14} {:>10} {:>8}",
        "agent run", "peak RSS (MiB)", "limit", "exit"
    );
    for (name, size, expected_exit) in cases {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let vault = if size == 0 {
            vault_with_reads(|_, _| secret_answer(json!({"password": "p", "user": "app"})))
        } else {
            vault_with_reads(move |_, _| huge_secret(size))
        };
        let mut peak = 0u64;
        let mut exit = None;
        for _ in 0..runs {
            let run = run_agent(&spec_for(&vault.address(), 60));
            assert_eq!(run.code, Some(expected_exit), "{name}:\n{}", run.stderr);
            peak = peak.max(run.peak_rss_kib);
            exit = run.code;
        }
        println!(
            "{name:<42} {:>14.1} {:>7} Mi {:>8}",
            peak as f64 / 1024.0,
            AGENT_MEMORY_LIMIT_MIB,
            exit.unwrap_or(-1)
        );
        assert!(
            peak < (AGENT_MEMORY_LIMIT_MIB as u64) << 10,
            "{name}: over the limit"
        );
    }
}
