//! Refresh intervals and TTLs at their edges, end to end. render and lint: zero in any
//! spelling is `off`, intervals past a day or Go's range are refused with their location,
//! odd spellings are linted. The live sidecar with durations no render writes and no sane
//! Vault sends (a refresh interval of zero or of `u64::MAX` seconds in its spec, token and
//! lease TTLs of `u64::MAX` seconds): it neither panics (duration overflow) nor reads
//! Vault in a loop without a pause, and stops cleanly on SIGTERM.

mod support;

use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::agent_run::{mount_answer, spec, JWT, MARKER, TOKEN};
use support::fake_vault::{FakeVault, Reply};

fn pod(refresh: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: shop\n  annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: app\n    vault.secretstore.rafay.dev/refresh: \"{refresh}\"\n    vault.secretstore.rafay.dev/filesecret-config-1: '{{\"vaultSecretRef\": \"secret/shop/app#key\", \"secretFileName\": \"key\", \"volumeMountPath\": \"/run/app\"}}'\nspec:\n  serviceAccountName: app\n  containers:\n  - name: app\n    image: app\n    command: [app]\n"
    )
}

fn run(command: &str, input: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = support::run_with_stdin(
        support::secretstore().arg(command).args(args),
        input.as_bytes(),
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Zero in any spelling renders a one-shot pod (no sidecar, so no refresh loop at all).
#[test]
fn zero_in_any_spelling_is_off() {
    for zero in ["0", "00", "0s", "0h0m", "-0s", "0.0m"] {
        let (code, out, err) = run("render", &pod(zero), &[]);
        assert_eq!(code, Some(0), "{zero}: {err}");
        assert!(!out.contains("restartPolicy: Always"), "{zero}: {out}");
        assert!(!out.contains("refresh_seconds"), "{zero}: {out}");
    }
    let (code, out, err) = run("render", &pod("5m"), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(r#""refresh_seconds":300"#), "{out}");
}

/// Too long, negative or fractional: SS106 at the annotation's value, in render and lint.
#[test]
fn bad_intervals_are_refused_with_their_location() {
    for (bad, says) in [
        ("18446744073709551615", "too long a duration"),
        ("9999999999999999999h", "too long a duration"),
        ("25h", "longer than the longest refresh interval, 24h"),
        ("-5s", "negative"),
        ("1500ms", "whole number of seconds"),
    ] {
        let (code, out, err) = run("render", &pod(bad), &[]);
        assert_eq!(code, Some(1), "{bad}: {err}");
        assert!(out.is_empty(), "{bad}: {out}");
        assert!(
            err.contains("error[SS106]: <stdin>:9:42: Pod shop/app: metadata.annotations[vault.secretstore.rafay.dev/refresh]"),
            "{bad}: {err}"
        );
        assert!(err.contains(says), "{bad}: {err}");
        let (code, out, _) = run("lint", &pod(bad), &["--format", "json", "-"]);
        assert_eq!(code, Some(1), "{bad}: {out}");
        let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        let finding = &report["findings"][0];
        assert_eq!(
            (finding["code"].as_str(), finding["line"].as_u64()),
            (Some("SS106"), Some(9)),
            "{out}"
        );
    }
}

/// What render accepts oddly, lint reports (SS210); a plain interval is not reported.
#[test]
fn odd_spellings_are_linted() {
    for (odd, says) in [
        ("00", "turns live mode off"),
        ("0s", "turns live mode off"),
        ("45", "read as 45 seconds"),
        ("+5m", "sign"),
    ] {
        let (code, out, _) = run("lint", &pod(odd), &["--format", "json", "-"]);
        assert_eq!(code, Some(0), "{odd}: {out}");
        let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        let findings = report["findings"].as_array().expect("findings");
        let ss210: Vec<_> = findings.iter().filter(|f| f["code"] == "SS210").collect();
        assert_eq!(ss210.len(), 1, "{odd}: {out}");
        assert_eq!(ss210[0]["line"], 9, "{out}");
        assert!(
            ss210[0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{out}"
        );
    }
    for fine in ["5m", "off", "0", "1h30m"] {
        let (_, out, _) = run("lint", &pod(fine), &["--format", "json", "-"]);
        assert!(!out.contains("SS210"), "{fine}: {out}");
    }
}

/// A Vault whose token lasts `u64::MAX` seconds and whose secret is leased for as long
/// (`endless`), or a normal token and a plain KV secret.
fn vault_with_ttls(endless: bool) -> FakeVault {
    let (lease_id, lease_duration, token_ttl) = if endless {
        ("secret/app/lease-1", u64::MAX, u64::MAX)
    } else {
        ("", 0, 600)
    };
    FakeVault::start(move |req, _| match req.path() {
        "/v1/auth/kubernetes/login" => Reply::json(
            200,
            &json!({"request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
                "data": null, "wrap_info": null, "warnings": null,
                "auth": {"client_token": TOKEN, "accessor": "acc", "policies": ["app"],
                "token_policies": ["app"], "metadata": null, "lease_duration": token_ttl,
                "renewable": true, "entity_id": "e", "token_type": "service", "orphan": true}})
            .to_string(),
        ),
        p if p.starts_with("/v1/sys/internal/ui/mounts/") => mount_answer(),
        "/v1/auth/token/revoke-self" | "/v1/sys/leases/revoke" => Reply::Full(204, vec![], vec![]),
        _ => Reply::json(
            200,
            &json!({"data": {"data": {"password": MARKER},
                "metadata": {"version": 1, "deletion_time": "", "destroyed": false}},
                "lease_id": lease_id, "lease_duration": lease_duration, "renewable": endless})
            .to_string(),
        ),
    })
}

fn start_sidecar(vault: &FakeVault, dir: &Path, refresh_seconds: u64) -> Child {
    let mut spec = spec(&vault.address(), dir, 10, "secret/app");
    spec["live"] = json!({"refresh_seconds": refresh_seconds, "revoke_on_stop": true});
    std::fs::write(dir.join("token"), JWT).expect("token");
    std::fs::create_dir_all(dir.join("secrets")).expect("secrets");
    std::fs::create_dir_all(dir.join("bin")).expect("bin");
    support::secretstore()
        .arg("agent")
        .env_clear()
        .env("SECRETSTORE_SPEC", spec.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).expect("stderr"))
        .spawn()
        .expect("run the agent")
}

/// Waits for the ready marker (or the agent's exit), then lets it run `for_a_while`.
fn ready_then_run(child: &mut Child, dir: &Path, for_a_while: Duration) {
    let ready = dir.join("secrets/.secretstore-ready");
    let start = Instant::now();
    while !ready.exists() {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!(
                "the agent exited ({status}) before it was ready:\n{}",
                stderr(dir)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never ready:\n{}",
            stderr(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(for_a_while);
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the agent stopped on its own:\n{}",
        stderr(dir)
    );
}

fn stop(mut child: Child, dir: &Path) {
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    let log = stderr(dir);
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    support::assert_no_secret(&log, &[MARKER, JWT, TOKEN]);
}

fn stderr(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
}

/// `u64::MAX` everywhere: the first refresh, the token's renewal and the lease's are
/// scheduled (capped at a year) instead of overflowing the clock.
#[test]
fn endless_ttls_and_refresh_neither_panic_nor_spin() {
    let vault = vault_with_ttls(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = start_sidecar(&vault, dir.path(), u64::MAX);
    ready_then_run(&mut child, dir.path(), Duration::from_secs(2));
    let reads = vault
        .requests()
        .iter()
        .filter(|r| r.path() == "/v1/secret/data/app")
        .count();
    assert_eq!(reads, 1, "{}", stderr(dir.path()));
    stop(child, dir.path());
}

/// A refresh interval of zero in the spec (render writes none: zero is `off`) is a
/// second, not a loop: a few reads in three seconds, not thousands.
#[test]
fn a_zero_refresh_in_the_spec_does_not_spin() {
    let vault = vault_with_ttls(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = start_sidecar(&vault, dir.path(), 0);
    ready_then_run(&mut child, dir.path(), Duration::from_secs(3));
    let reads = vault
        .requests()
        .iter()
        .filter(|r| r.path() == "/v1/secret/data/app")
        .count();
    // One a second (plus jitter) is at most 4 here; a loop without a pause is hundreds.
    assert!(
        (1..=20).contains(&reads),
        "{reads} reads:\n{}",
        stderr(dir.path())
    );
    stop(child, dir.path());
}
