//! Render refuses names, paths and configuration values that the agent could not use
//! safely, with an error naming the field, instead of a pod that crash-loops or an agent
//! that writes or requests somewhere else.

mod support;

fn pod(annotations: &str, env: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: app
  annotations:
    rafay.dev/secretstore: vault
    vault.secretstore.rafay.dev/role: app
{annotations}spec:
  containers:
    - name: app
      image: app:1
      command: ["/app"]
{env}"#
    )
}

fn file_secret(name_json: &str, mount: &str, reference: &str) -> String {
    format!(
        "    vault.secretstore.rafay.dev/filesecret-config-1: '{{\"vaultSecretRef\": \"{reference}\", \"secretFileName\": {name_json}, \"volumeMountPath\": \"{mount}\"}}'\n"
    )
}

/// Renders `input` (with `args`) and returns exit status, stdout and stderr.
fn render(input: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = support::secretstore();
    command.arg("render").args(args);
    let out = support::run_with_stdin(&mut command, input.as_bytes());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused(input: &str, args: &[&str], must_say: &[&str]) {
    let (code, stdout, stderr) = render(input, args);
    assert_eq!(code, Some(1), "not refused:\n{stderr}");
    assert!(stdout.is_empty(), "partial output on a refusal");
    for text in must_say {
        assert!(
            stderr.contains(text),
            "stderr does not say {text:?}:\n{stderr}"
        );
    }
}

#[test]
fn unusable_file_names_are_refused() {
    let long = format!(
        "\"{}\"",
        "n".repeat(secretstore::pod::agent_spec::MAX_FILE_NAME + 1)
    );
    for name in [r#""a\u0000b""#, r#""a\nb""#, long.as_str()] {
        let input = pod(&file_secret(name, "/etc/app", "secret/app#k"), "");
        assert_refused(&input, &[], &["SS113", "secretFileName"]);
    }
    let fits = format!(
        "\"{}\"",
        "n".repeat(secretstore::pod::agent_spec::MAX_FILE_NAME)
    );
    let (code, _, stderr) = render(
        &pod(&file_secret(&fits, "/etc/app", "secret/app#k"), ""),
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn mount_paths_of_secretstore_and_unplain_paths_are_refused() {
    for mount in [
        "/secretstore/bin",
        "/secretstore/env",
        "/secretstore",
        "/secretstore/x/y",
    ] {
        let input = pod(&file_secret("\"a\"", mount, "secret/app#k"), "");
        assert_refused(&input, &[], &["SS117", "volumeMountPath", "/secretstore"]);
    }
    for mount in ["/etc/../x", "/etc//x", "/etc/./x"] {
        let input = pod(&file_secret("\"a\"", mount, "secret/app#k"), "");
        assert_refused(&input, &[], &["SS114", "volumeMountPath"]);
    }
}

#[test]
fn dot_segments_in_reference_paths_are_refused() {
    let input = pod(
        &file_secret("\"a\"", "/etc/app", "secret/data/../../sys/health#k"),
        "",
    );
    assert_refused(&input, &[], &["SS120", "`..`"]);
    let input = pod(
        "",
        "      env:\n        - name: PW\n          value: secretstore:vault:secret/./app#pw\n",
    );
    assert_refused(&input, &[], &["SS120", "env[0].value"]);
}

#[test]
fn header_unsafe_configuration_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let input = pod("", "");
    for (config, field) in [
        ("vault:\n  namespace: |\n    team\n", "vault.namespace"),
        (
            "vault:\n  authPath: \"auth/k8s\\r\\nX: y\"\n",
            "vault.authPath",
        ),
        ("vault:\n  authPath: auth/../sys\n", "vault.authPath"),
        (
            "vault:\n  address: https://admin:hunter2@vault.example:8200\n",
            "vault.address",
        ),
    ] {
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, config).unwrap();
        let (code, stdout, stderr) = render(&input, &["--config", file.to_str().unwrap()]);
        assert!(
            matches!(code, Some(1) | Some(2)),
            "{field}: exit {code:?}\n{stderr}"
        );
        assert!(stdout.is_empty());
        assert!(stderr.contains(field), "{field}:\n{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
