//! The agent against a misbehaving Vault (a scripted server on 127.0.0.1): redirects that
//! would carry credentials elsewhere, huge and endless bodies, hangs, 429 storms with
//! `Retry-After`, malformed answers. Each run is the real binary with its volumes in a
//! temporary directory, under GNU time for its peak memory; every run must end with a
//! clear message and exit status, within its deadline and render's memory limit, and
//! without a secret value in its output.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::agent_run::{
    assert_exit, huge_secret, login_answer, mount_answer, run_agent, run_agent_prepared,
    secret_answer, spec_for, vault_with_reads, AgentRun, MARKER, TOKEN,
};
use support::fake_vault::{run_against, FakeVault, Reply};

use secretstore::pod::agent_spec::{AGENT_MEMORY_LIMIT_MIB, MAX_ANSWER_BYTES};

fn ok_secret() -> Reply {
    secret_answer(json!({"password": MARKER, "user": "app"}))
}

fn assert_within_memory_limit(run: &AgentRun) {
    let limit_kib = (AGENT_MEMORY_LIMIT_MIB as u64) << 10;
    assert!(
        run.peak_rss_kib < limit_kib,
        "peak RSS {} KiB is over render's memory limit of {limit_kib} KiB",
        run.peak_rss_kib
    );
}

#[test]
fn a_normal_vault_is_read_and_every_file_written() {
    let vault = vault_with_reads(|_, _| ok_secret());
    let run = run_agent(&spec_for(&vault.address(), 10));
    assert_exit(&run, 0, &["all secrets written"]);
    assert_eq!(run.read("files/app/0/password"), MARKER.as_bytes());
    let env: Value = serde_json::from_slice(&run.read("env/app/env.json")).unwrap();
    assert_eq!(env["secretstore:vault:secret/app#password"], MARKER);
    let requests = vault.requests();
    let read = requests
        .iter()
        .find(|r| r.path() == "/v1/secret/data/app")
        .expect("no read");
    assert_eq!(read.header("x-vault-token"), Some(TOKEN));
    assert!(requests
        .iter()
        .any(|r| r.path() == "/v1/auth/token/revoke-self"));
}

#[test]
fn a_cross_origin_redirect_on_login_is_refused_and_the_jwt_stays_home() {
    let elsewhere = FakeVault::start(|_, _| login_answer());
    let target = format!("{}/v1/auth/kubernetes/login", elsewhere.address());
    for status in [301, 302, 307, 308] {
        let target = target.clone();
        let vault = FakeVault::start(move |_, _| Reply::redirect(status, &target));
        let run = run_agent(&spec_for(&vault.address(), 5));
        assert_exit(&run, 2, &["redirect", &elsewhere.address()]);
        assert!(
            elsewhere.requests().is_empty(),
            "a {status} redirect carried the login elsewhere"
        );
    }
}

#[test]
fn a_cross_origin_redirect_on_read_never_sends_the_token_elsewhere() {
    let elsewhere = FakeVault::start(|_, _| ok_secret());
    let target = format!("{}/v1/secret/data/app", elsewhere.address());
    for status in [301, 307] {
        let target = target.clone();
        let vault = vault_with_reads(move |_, _| Reply::redirect(status, &target));
        let run = run_agent(&spec_for(&vault.address(), 5));
        assert_exit(&run, 2, &["redirect", "secretstore follows one redirect"]);
        assert!(elsewhere.requests().is_empty());
        assert!(!run.secrets().join("files").exists(), "a file was written");
    }
}

#[test]
fn one_same_origin_redirect_is_followed_and_a_second_is_not() {
    let vault = FakeVault::start(|req, _| match req.path() {
        "/v1/auth/kubernetes/login" => login_answer(),
        p if p.starts_with("/v1/sys/internal/ui/mounts/") => mount_answer(),
        "/v1/secret/data/app" => Reply::redirect(307, "/v1/secret/data/moved"),
        "/v1/secret/data/moved" => ok_secret(),
        _ => Reply::Full(204, vec![], vec![]),
    });
    let run = run_agent(&spec_for(&vault.address(), 10));
    assert_exit(&run, 0, &[]);
    let moved = vault
        .requests()
        .into_iter()
        .find(|r| r.path() == "/v1/secret/data/moved")
        .expect("the redirect was not followed");
    assert_eq!(moved.header("x-vault-token"), Some(TOKEN));

    let twice = FakeVault::start(|req, _| match req.path() {
        "/v1/auth/kubernetes/login" => login_answer(),
        p if p.starts_with("/v1/sys/internal/ui/mounts/") => mount_answer(),
        "/v1/secret/data/app" => Reply::redirect(307, "/v1/secret/data/once"),
        "/v1/secret/data/once" => Reply::redirect(307, "/v1/secret/data/twice"),
        "/v1/secret/data/twice" => ok_secret(),
        _ => Reply::Full(204, vec![], vec![]),
    });
    let run = run_agent(&spec_for(&twice.address(), 5));
    assert_exit(&run, 2, &["redirect"]);
    assert!(!twice
        .requests()
        .iter()
        .any(|r| r.path() == "/v1/secret/data/twice"));
}

#[test]
fn a_200_mib_secret_is_refused_within_the_memory_limit() {
    let vault = vault_with_reads(|_, _| huge_secret(200 << 20));
    let run = run_agent(&spec_for(&vault.address(), 20));
    assert_exit(&run, 2, &["GET /v1/secret/data/app", "larger than 16 MiB"]);
    assert_within_memory_limit(&run);
    assert!(!run.secrets().join("files").exists(), "a file was written");
}

#[test]
fn a_declared_length_over_the_cap_is_refused_before_reading() {
    let vault = vault_with_reads(|_, _| {
        Reply::Full(
            200,
            vec![("Content-Type".into(), "application/json".into())],
            vec![b' '; MAX_ANSWER_BYTES + 1],
        )
    });
    let run = run_agent(&spec_for(&vault.address(), 10));
    assert_exit(&run, 2, &["larger than 16 MiB"]);
}

#[test]
fn an_8_mib_secret_is_written_as_raw_json_and_env_within_the_memory_limit() {
    let size = 8 << 20;
    let vault = vault_with_reads(move |_, _| huge_secret(size));
    let run = run_agent(&spec_for(&vault.address(), 30));
    assert_exit(&run, 0, &["all secrets written"]);
    assert_within_memory_limit(&run);
    assert_eq!(run.read("files/app/0/password").len(), size);
    let all: Value = serde_json::from_slice(&run.read("files/app/1/all.json")).unwrap();
    assert_eq!(all["password"].as_str().unwrap().len(), size);
    let env: Value = serde_json::from_slice(&run.read("env/app/env.json")).unwrap();
    assert_eq!(
        env["secretstore:vault:secret/app#password"]
            .as_str()
            .unwrap()
            .len(),
        size
    );
    eprintln!(
        "8 MiB secret: peak RSS {} KiB (limit {} MiB)",
        run.peak_rss_kib, AGENT_MEMORY_LIMIT_MIB
    );
}

#[test]
fn a_vault_that_never_answers_is_given_up_at_the_deadline() {
    let vault = FakeVault::start(|_, _| Reply::Hang);
    let run = run_agent(&spec_for(&vault.address(), 3));
    assert_exit(&run, 2, &["gave up", "timeout 3s"]);
    // The deadline, one request's minimum time past it, and the process's own start.
    assert!(
        run.elapsed < Duration::from_secs(6),
        "took {:?} for a 3 s deadline",
        run.elapsed
    );

    let after_login = vault_with_reads(|_, _| Reply::Hang);
    let run = run_agent(&spec_for(&after_login.address(), 3));
    assert_exit(&run, 2, &["gave up"]);
    assert!(
        run.elapsed < Duration::from_secs(7),
        "took {:?} for a 3 s deadline when the hang starts after login",
        run.elapsed
    );
}

#[test]
fn a_429_storm_is_waited_out_as_retry_after_asks() {
    let vault = vault_with_reads(|_, n| {
        if n < 3 {
            Reply::Full(
                429,
                vec![
                    ("Retry-After".into(), "1".into()),
                    ("Content-Type".into(), "application/json".into()),
                ],
                br#"{"errors":["rate limit quota exceeded"]}"#.to_vec(),
            )
        } else {
            ok_secret()
        }
    });
    let run = run_agent(&spec_for(&vault.address(), 30));
    assert_exit(&run, 0, &["rate limit quota exceeded"]);
    let reads: Vec<Instant> = vault
        .requests()
        .iter()
        .filter(|r| r.path() == "/v1/secret/data/app")
        .map(|r| r.at)
        .collect();
    assert_eq!(reads.len(), 4);
    for pair in reads.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(950),
            "retried after {gap:?}, before the 1 s Retry-After"
        );
    }
}

/// Exit 1 or 2 with a message saying `says`, and no panic.
fn assert_clear_failure(name: &str, run: &AgentRun, says: &str) {
    assert!(
        matches!(run.code, Some(1) | Some(2)),
        "{name}: exit {:?}\n{}",
        run.code,
        run.stderr
    );
    assert!(run.stderr.contains(says), "{name}:\n{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{name}:\n{}", run.stderr);
}

#[test]
fn malformed_answers_get_clear_errors_not_panics() {
    let cases = [
        ("login garbage", "<html>not vault</html>", "login"),
        (
            "login not Vault's shape",
            r#"{"data":null}"#,
            "not the JSON Vault sends",
        ),
        (
            "login without auth",
            r#"{"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,"data":null,"wrap_info":null,"warnings":null,"auth":null}"#,
            "no token",
        ),
    ];
    for (name, login, says) in cases {
        let vault = FakeVault::start(move |_, _| Reply::json(200, login));
        let run = run_agent(&spec_for(&vault.address(), 5));
        assert_clear_failure(name, &run, says);
    }
    let reads: Vec<(&str, Reply, &str)> = vec![
        (
            "not JSON",
            Reply::json(200, "{{{"),
            "not the JSON Vault sends",
        ),
        (
            "data is a list",
            Reply::json(200, r#"{"data":{"data":[1,2]}}"#),
            "not a JSON object",
        ),
        (
            "truncated",
            Reply::json(200, r#"{"data":{"data":{"password":"hun"#),
            "not the JSON Vault sends",
        ),
    ];
    for (name, reply, says) in reads {
        let reply = std::sync::Mutex::new(Some(reply));
        let vault = vault_with_reads(move |_, _| {
            reply
                .lock()
                .unwrap()
                .take()
                .unwrap_or_else(|| Reply::json(500, "{}"))
        });
        let run = run_agent(&spec_for(&vault.address(), 5));
        assert_clear_failure(name, &run, says);
    }
}

#[test]
fn a_namespace_with_a_newline_is_refused_without_a_panic() {
    let vault = vault_with_reads(|_, _| ok_secret());
    let mut spec = spec_for(&vault.address(), 5);
    spec["vault"]["namespace"] = json!("team\nX-Injected: 1");
    let run = run_agent(&spec);
    assert_exit(&run, 2, &["X-Vault-Namespace"]);
    assert!(vault.requests().is_empty());
}

#[test]
fn credentials_in_the_address_are_refused_and_never_logged() {
    let vault = vault_with_reads(|_, _| ok_secret());
    let address = vault
        .address()
        .replace("http://", &format!("http://admin:{MARKER}@"));
    let run = run_agent(&spec_for(&address, 5));
    assert_exit(&run, 2, &["user name or password"]);
    assert!(vault.requests().is_empty());
}

#[test]
fn the_agent_writes_only_inside_its_volume_and_through_no_symlink() {
    let vault = vault_with_reads(|_, _| ok_secret());
    // A path outside the volume root.
    let mut outside = spec_for(&vault.address(), 5);
    outside["files"][0]["path"] = json!("@DIR@/elsewhere/password");
    let run = run_agent(&outside);
    assert_exit(&run, 2, &["outside the volume"]);
    assert!(!run.dir.path().join("elsewhere").exists());
    // Over its own token file.
    let mut token = spec_for(&vault.address(), 5);
    token["vault"]["token_file"] = json!("@DIR@/secrets/files/app/0/password");
    let run = run_agent(&token);
    assert_exit(&run, 2, &["token"]);
    // A directory of the volume replaced by a symlink to elsewhere (another container of
    // the pod can write the volume): the agent refuses to write through it.
    let run = run_agent_prepared(&spec_for(&vault.address(), 5), |dir| {
        std::fs::create_dir_all(dir.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join("secrets/files")).unwrap();
    });
    assert_exit(&run, 2, &["symlink"]);
    assert_eq!(
        std::fs::read_dir(run.dir.path().join("elsewhere"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn exec_messages_never_hold_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env.json");
    let run_exec = |contents: &str, argv: &[&str], env: &[(&str, &str)]| {
        std::fs::write(&env_file, contents).unwrap();
        let mut command = support::secretstore();
        command
            .arg("exec")
            .arg("--")
            .args(argv)
            .env_clear()
            .env("SECRETSTORE_ENV_FILE", &env_file)
            .envs(env.iter().copied());
        let out = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        support::assert_no_secret(&text, &[MARKER]);
        (out.status.code(), text)
    };
    // argv[0] is a reference whose value names no program.
    let (code, text) = run_exec(
        &json!({"secretstore:vault:secret/db#bin": format!("/no/such/{MARKER}")}).to_string(),
        &["secretstore:vault:secret/db#bin"],
        &[],
    );
    assert_eq!(code, Some(127), "{text}");
    assert!(text.contains("secretstore:vault:secret/db#bin"), "{text}");
    // A corrupt env file: serde would quote the value it choked on.
    let (code, text) = run_exec(
        &format!(r#"{{"secretstore:vault:secret/db#pw":["{MARKER}"]}}"#),
        &["/bin/true"],
        &[("PW", "secretstore:vault:secret/db#pw")],
    );
    assert_eq!(code, Some(125), "{text}");
    // A NUL in a value: refused, naming the place.
    let (code, text) = run_exec(
        &json!({"secretstore:vault:secret/db#pw": format!("{MARKER}\u{0}x")}).to_string(),
        &["/bin/true"],
        &[("PW", "secretstore:vault:secret/db#pw")],
    );
    assert_eq!(code, Some(125), "{text}");
    assert!(text.contains("NUL") && text.contains("env PW"), "{text}");
}

const CHECKED_MANIFEST: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  namespace: shop
spec:
  template:
    metadata:
      annotations:
        rafay.dev/secretstore: vault
        vault.secretstore.rafay.dev/role: app
        vault.secretstore.rafay.dev/filesecret-config-1: '{"vaultSecretRef": "secret/app", "secretFileName": "app.env", "volumeMountPath": "/etc/app", "format": "env"}'
    spec:
      serviceAccountName: shop
      containers:
        - name: app
          image: shop:1
          command: ["/app"]
          env:
            - name: PASSWORD
              value: secretstore:vault:secret/app#password
            - name: OTHER
              value: secretstore:vault:secret/app#nokey
"#;

#[test]
fn check_reports_in_every_format_without_a_value() {
    let vault = FakeVault::start(|req, _| match req.path() {
        "/v1/sys/internal/ui/mounts" => Reply::json(
            200,
            r#"{"data":{"secret":{"secret/":{"type":"kv","options":{"version":"2"}}},"auth":{"kubernetes/":{"type":"kubernetes","options":null}}}}"#,
        ),
        "/v1/secret/data/app" => secret_answer(json!({"password": MARKER, "not-a-name": MARKER})),
        _ => Reply::json(403, r#"{"errors":["permission denied"]}"#),
    });
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("shop.yaml");
    std::fs::write(&manifest, CHECKED_MANIFEST).unwrap();
    for format in ["human", "json", "sarif", "github", "gitlab"] {
        let (code, text) = run_against(&vault, &["check", "--format", format], &manifest);
        support::assert_no_secret(&text, &[MARKER, TOKEN]);
        assert_eq!(code, Some(1), "{format}: {text}");
        assert!(
            text.contains("SS304"),
            "{format}: no missing-key finding: {text}"
        );
        assert!(
            text.contains("SS308"),
            "{format}: no env-format finding: {text}"
        );
    }
}

#[test]
fn check_never_sends_its_token_through_a_redirect_to_another_host() {
    let elsewhere = FakeVault::start(|_, _| Reply::json(200, "{}"));
    let target = format!("{}/v1/sys/internal/ui/mounts", elsewhere.address());
    let vault = FakeVault::start(move |_, _| Reply::redirect(307, &target));
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("shop.yaml");
    std::fs::write(&manifest, CHECKED_MANIFEST).unwrap();
    let out = support::secretstore()
        .arg("check")
        .arg(&manifest)
        .env("VAULT_ADDR", vault.address())
        .env("VAULT_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("redirect"), "{stderr}");
    assert!(elsewhere.requests().is_empty());
}
