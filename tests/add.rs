//! `secretstore add` over `testdata/add/`: the edited file of every workload kind, of a
//! multi-document stream with comments and odd quoting, and of a JSON manifest (insta
//! snapshots; every other document byte-identical), idempotence, each refusal (exit 1,
//! file untouched), usage errors, `--diff`, and the safe write (symlinks, mode). Every
//! edited file lints clean and renders, through the library's own lint and render.

mod support;

use secretstore::config::Settings;
use secretstore::render::{self, stream, Input};
use std::path::{Path, PathBuf};
use std::process::Output;

const ENV: &str = "DB_PASSWORD=secret/shop/db#password";
const FILE: &str = "/etc/tls/tls.crt=secret/shop/tls#tls.crt";

/// A copy of `testdata/add/<case>` in a fresh directory.
fn copy(case: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let name = Path::new(case).file_name().expect("file name");
    let path = dir.path().join(name);
    std::fs::copy(support::repo_root().join("testdata/add").join(case), &path)
        .expect("copy the case");
    (dir, path)
}

fn add(path: &Path, args: &[&str]) -> Output {
    let mut command = support::secretstore();
    command.arg("add").arg(path).args(args);
    support::run_with_stdin(&mut command, b"")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read the file")
}

fn snapshot(name: &str, content: &str) {
    insta::with_settings!({snapshot_path => "snapshots/add", prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!(name, content);
    });
}

/// The library's lint finds nothing (not even a warning) and render accepts the file.
fn assert_lints_clean_and_renders(name: &str, content: &str) {
    let input = Input {
        name: name.to_string(),
        bytes: content.as_bytes().to_vec(),
    };
    let settings = Settings::default();
    let findings = secretstore::analyze::lint::lint_input(&input, &settings);
    assert!(
        findings.is_empty(),
        "{name}: lint found {findings:#?}\n{content}"
    );
    let inputs = [input];
    match render::render(&inputs, &settings, &render::Options::default()) {
        Ok(rendered) => assert!(rendered.expanded >= 1, "{name}: nothing expanded"),
        Err(e) => panic!("{name}: render refused: {:#?}", e.diagnostics),
    }
}

fn assert_ok(name: &str, output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{name}: {}",
        text(&output.stderr)
    );
}

/// Runs the same `add` again: exit 0, nothing changed.
fn assert_idempotent(name: &str, path: &Path, args: &[&str]) {
    let before = read(path);
    let again = add(path, args);
    assert_ok(name, &again);
    assert_eq!(read(path), before, "{name}: a second add changed the file");
    assert!(
        text(&again.stderr).contains("nothing to add"),
        "{name}: {}",
        text(&again.stderr)
    );
}

#[test]
fn every_workload_kind() {
    for kind in [
        "deployment",
        "statefulset",
        "daemonset",
        "job",
        "cronjob",
        "pod",
        "replicaset",
    ] {
        let (_dir, path) = copy(&format!("kinds/{kind}.yaml"));
        let args = ["--role", "shop", "--env", ENV, "--file", FILE];
        let output = add(&path, &args);
        assert_ok(kind, &output);
        let edited = read(&path);
        snapshot(&format!("kind-{kind}"), &edited);
        assert_lints_clean_and_renders(kind, &edited);
        assert_idempotent(kind, &path, &args);
    }
}

#[test]
fn a_json_manifest_stays_json() {
    let (_dir, path) = copy("deployment.json");
    let args = ["--role", "shop", "--env", ENV, "--file", FILE];
    assert_ok("json", &add(&path, &args));
    let edited = read(&path);
    serde_json::from_str::<serde_json::Value>(&edited).expect("still JSON");
    snapshot("deployment-json", &edited);
    assert_lints_clean_and_renders("json", &edited);
    assert_idempotent("json", &path, &args);
}

/// The documents of a stream, as bytes.
fn documents(content: &str) -> Vec<String> {
    stream::split(content.as_bytes())
        .iter()
        .map(|d| content[d.start..d.end].to_string())
        .collect()
}

#[test]
fn multi_document_stream_with_comments_and_odd_quoting() {
    let (_dir, path) = copy("stream.yaml");
    let original = read(&path);
    let args = [
        "--workload",
        "Deployment/api",
        "--container",
        "api",
        "--role",
        "shop",
        "--env",
        "DB_PASSWORD=secret/shop/db#password",
        "--env",
        "API_TOKEN=secret/shop/api#token",
        "--file",
        "/etc/shop/tls/tls.key=secret/shop/tls#tls.key",
    ];
    // The diff hides the literal value it replaces: it may be a secret.
    let mut with_diff = args.to_vec();
    with_diff.push("--diff");
    let diff = add(&path, &with_diff);
    assert_ok("stream --diff", &diff);
    let shown = text(&diff.stdout);
    assert!(
        shown.contains("-              value: <not shown>\n"),
        "{shown}"
    );
    support::assert_no_secret(&shown, &["s3cr3t-hunter2"]);
    support::assert_no_secret(&text(&diff.stderr), &["s3cr3t-hunter2"]);
    assert_eq!(read(&path), original);
    let output = add(&path, &args);
    assert_ok("stream", &output);
    let edited = read(&path);
    snapshot("stream", &edited);
    // Only the Deployment changed.
    let (before, after) = (documents(&original), documents(&edited));
    assert_eq!(before.len(), after.len());
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        if i != 1 {
            assert_eq!(b, a, "document {i} changed");
        }
    }
    // The literal password was replaced, with a warning that never shows it.
    let stderr = text(&output.stderr);
    assert!(stderr.contains("warning[SS707]"), "{stderr}");
    assert!(stderr.contains("rotate"), "{stderr}");
    support::assert_no_secret(&stderr, &["s3cr3t-hunter2"]);
    support::assert_no_secret(&edited, &["s3cr3t-hunter2"]);
    assert_lints_clean_and_renders("stream", &edited);
    assert_idempotent("stream", &path, &args);
}

#[test]
fn an_opted_in_pod_gets_the_next_file_secret_and_keeps_its_role() {
    let (_dir, path) = copy("opted-in.yaml");
    let args = [
        "--file",
        "/etc/tls/tls.key=secret/shop/tls#tls.key",
        "--file",
        "/etc/db/password=secret/shop/db#password",
        "--env",
        "DB_PASSWORD=secret/shop/db#password",
    ];
    let output = add(&path, &args);
    assert_ok("opted-in", &output);
    let edited = read(&path);
    snapshot("opted-in", &edited);
    assert!(edited.contains("filesecret-config-2"));
    assert!(edited.contains("filesecret-config-3"));
    assert_lints_clean_and_renders("opted-in", &edited);
    assert_idempotent("opted-in", &path, &args);
    // The same role again is fine; nothing changes.
    assert_idempotent("opted-in", &path, &["--role", "shop", "--env", ENV]);
}

#[test]
fn diff_prints_a_unified_diff_and_writes_nothing() {
    let (_dir, path) = copy("kinds/deployment.yaml");
    let original = read(&path);
    let output = add(
        &path,
        &["--role", "shop", "--env", ENV, "--file", FILE, "--diff"],
    );
    assert_ok("diff", &output);
    assert_eq!(read(&path), original, "--diff wrote the file");
    let diff = text(&output.stdout).replace(path.to_str().expect("UTF-8 path"), "FILE");
    snapshot("diff", &diff);
    // Written, the file is the diff's new side.
    assert_ok(
        "write",
        &add(&path, &["--role", "shop", "--env", ENV, "--file", FILE]),
    );
    let edited = read(&path);
    let added: Vec<&str> = diff
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .map(|l| &l[1..])
        .collect();
    assert!(!added.is_empty());
    for line in added {
        assert!(edited.lines().any(|l| l == line), "{line:?} not written");
    }
}

/// Each refusal: exit 1, the code on stderr, the file byte for byte as it was.
#[test]
fn refusals_leave_the_file_untouched() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "several workloads",
            &["--role", "shop", "--env", ENV],
            "SS703",
        ),
        (
            "unknown workload",
            &["--workload", "deployment/nope", "--env", ENV],
            "SS702",
        ),
        (
            "several containers",
            &["--workload", "deploy/two-containers", "--env", ENV],
            "SS704",
        ),
        (
            "unknown container",
            &[
                "--workload",
                "deployment/two-containers",
                "--container",
                "nope",
                "--env",
                ENV,
            ],
            "SS115",
        ),
        (
            "malformed reference",
            &[
                "--workload",
                "deployment/two-containers",
                "--container",
                "api",
                "--env",
                "TOKEN=secret/shop/api#",
            ],
            "SS120",
        ),
        (
            "reference with three #",
            &[
                "--workload",
                "deployment/two-containers",
                "--container",
                "api",
                "--file",
                "/etc/x/y=secret/a#b#1#2",
            ],
            "SS120",
        ),
        (
            "mount path in use",
            &[
                "--workload",
                "deployment/two-containers",
                "--container",
                "api",
                "--file",
                "/var/lib/shop/token=secret/shop/api#token",
            ],
            "SS117",
        ),
        (
            "file path taken by another reference",
            &[
                "--workload",
                "deployment/two-containers",
                "--container",
                "api",
                "--file",
                "/etc/tls/tls.crt=secret/other/tls#crt",
            ],
            "SS116",
        ),
        (
            "env that is not a list",
            &["--workload", "pod/odd-env", "--role", "shop", "--env", ENV],
            "SS706",
        ),
        (
            "another role",
            &[
                "--workload",
                "deployment/two-containers",
                "--container",
                "api",
                "--role",
                "other",
                "--env",
                "API_TOKEN=secret/shop/api#token",
            ],
            "SS705",
        ),
        (
            "no role to opt in with",
            &["--workload", "job/no-command", "--file", FILE],
            "SS102",
        ),
        (
            "env reference without a command",
            &[
                "--workload",
                "job/no-command",
                "--role",
                "shop",
                "--env",
                ENV,
            ],
            "SS122",
        ),
        (
            "relative file path",
            &[
                "--workload",
                "job/no-command",
                "--role",
                "shop",
                "--file",
                "tls.crt=secret/shop/tls#crt",
            ],
            "SS114",
        ),
    ];
    for (name, args, code) in cases {
        let (_dir, path) = copy("refusals.yaml");
        let original = std::fs::read(&path).expect("read");
        let output = add(&path, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(code), "{name}: no {code} in\n{stderr}");
        assert!(stderr.contains("was left as it is"), "{name}: {stderr}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            original,
            "{name}: the file changed"
        );
        assert!(
            std::fs::read_dir(path.parent().expect("dir"))
                .expect("list")
                .count()
                == 1,
            "{name}: a file was left next to the manifest"
        );
    }
}

#[test]
fn an_env_var_from_a_kubernetes_secret_becomes_a_reference() {
    let (_dir, path) = copy("refusals.yaml");
    let original = read(&path);
    let args = [
        "--workload",
        "deployment/two-containers",
        "--container",
        "api",
        "--env",
        ENV,
    ];
    let output = add(&path, &args);
    assert_ok("valueFrom", &output);
    let edited = read(&path);
    let expected = original.replace(
        "              valueFrom:\n                secretKeyRef:\n                  name: db\n                  key: password\n",
        "              value: 'secretstore:vault:secret/shop/db#password'\n",
    );
    assert_ne!(expected, original);
    assert_eq!(edited, expected);
    assert!(text(&output.stderr).contains("replaces its valueFrom"));
    assert_idempotent("valueFrom", &path, &args);
}

#[test]
fn the_entrypoints_configuration_stands_in_for_a_command() {
    let (dir, path) = copy("refusals.yaml");
    let config = dir.path().join("secretstore.yaml");
    std::fs::write(
        &config,
        "entrypoints:\n  ghcr.io/acme/job: [\"/app/job\"]\n",
    )
    .expect("write config");
    let output = add(
        &path,
        &[
            "--config",
            config.to_str().expect("UTF-8"),
            "--workload",
            "job/no-command",
            "--role",
            "shop",
            "--env",
            ENV,
        ],
    );
    assert_ok("entrypoints", &output);
    assert!(read(&path).contains("secretstore:vault:secret/shop/db#password"));
}

#[test]
fn usage_errors() {
    let (_dir, path) = copy("kinds/deployment.yaml");
    let original = read(&path);
    // No --env/--file and no terminal to ask on.
    let output = add(&path, &["--role", "shop"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("terminal"));
    // NAME without =REF.
    let output = add(&path, &["--role", "shop", "--env", "DB_PASSWORD"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("SS701"));
    // A file that is not there.
    let output = add(&path.with_file_name("missing.yaml"), &["--env", ENV]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert_eq!(read(&path), original);
}

#[cfg(unix)]
#[test]
fn writes_through_a_symlink_and_keeps_the_mode() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = copy("kinds/deployment.yaml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let link = dir.path().join("link.yaml");
    std::os::unix::fs::symlink(&path, &link).expect("symlink");
    assert_ok("symlink", &add(&link, &["--role", "shop", "--env", ENV]));
    assert!(std::fs::symlink_metadata(&link)
        .expect("link")
        .file_type()
        .is_symlink());
    assert!(read(&path).contains("secretstore:vault:secret/shop/db#password"));
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    // Nothing left next to it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// A file with two hard links is refused and left as it is (a rename would split the
/// links); a plain file keeps its owner and group (when the test can set them, as root).
#[cfg(unix)]
#[test]
fn keeps_hard_links_owner_and_group() {
    use std::os::unix::fs::MetadataExt;
    let (dir, path) = copy("kinds/deployment.yaml");
    let before = std::fs::read(&path).expect("read");
    std::fs::hard_link(&path, dir.path().join("other-name.yaml")).expect("hard link");
    let out = add(&path, &["--role", "shop", "--env", ENV]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("2 hard links"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&path).expect("read"), before);
    assert_eq!(std::fs::metadata(&path).expect("meta").nlink(), 2);

    let (_dir, path) = copy("kinds/deployment.yaml");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        std::os::unix::fs::chown(&path, Some(1000), Some(100)).expect("chown");
    }
    let owner = std::fs::metadata(&path).expect("meta");
    assert_ok("owner", &add(&path, &["--role", "shop", "--env", ENV]));
    let after = std::fs::metadata(&path).expect("meta");
    assert_eq!((after.uid(), after.gid()), (owner.uid(), owner.gid()));
    assert_ne!(after.ino(), owner.ino(), "replaced by a rename");
}

#[test]
fn the_library_core_is_what_the_command_writes() {
    let case = support::repo_root().join("testdata/add/kinds/deployment.yaml");
    let original = read(&case);
    let request = secretstore::add::AddRequest {
        role: Some("shop".into()),
        env: vec![secretstore::add::EnvAddition::parse(ENV).expect("env")],
        files: vec![secretstore::add::FileAddition::parse(FILE).expect("file")],
        ..Default::default()
    };
    let added = secretstore::add::apply(&original, &request).expect("accepted");
    let (_dir, path) = copy("kinds/deployment.yaml");
    assert_ok(
        "cli",
        &add(&path, &["--role", "shop", "--env", ENV, "--file", FILE]),
    );
    assert_eq!(added.text, read(&path));
    assert!(added.changed);
    assert_eq!(added.container, "api");
    assert_eq!(added.workload.name, "api");
    let again = secretstore::add::apply(&added.text, &request).expect("accepted");
    assert!(!again.changed);
    assert_eq!(again.text, added.text);
}
