//! The `render` command as users call it: stdin/files, exit codes, all-or-nothing output,
//! configuration from file, env (also `ARGOCD_ENV_`) and flags.

mod support;

use std::process::Output;

fn render_stdin(args: &[&str], envs: &[(&str, &str)], input: &[u8]) -> Output {
    let mut cmd = support::secretstore();
    cmd.arg("render").args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    support::run_with_stdin(&mut cmd, input)
}

fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(support::repo_root().join("testdata/render").join(name)).expect("testdata")
}

#[test]
fn renders_stdin_and_exits_zero() {
    let out = render_stdin(&[], &[], &testdata("kind-deployment.yaml"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("name: secretstore-agent"));
    assert!(text.contains("vault.secretstore.rafay.dev/status: injected"));
}

#[test]
fn an_error_anywhere_writes_nothing_to_stdout() {
    let mut input = testdata("kind-deployment.yaml");
    input.extend_from_slice(b"---\n");
    input.extend_from_slice(&testdata("gating-missing-role.yaml"));
    let out = render_stdin(&[], &[], &input);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "partial output on stdout");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SS102"), "{err}");
    // The error names the source, the line in the whole stream, the object and the field.
    assert!(err.contains("<stdin>:41:32"), "{err}");
    assert!(err.contains("Deployment shop/shop-api"), "{err}");
    assert!(err.contains("spec.template.metadata.annotations"), "{err}");
}

#[test]
fn empty_input_is_refused_unless_allowed() {
    let out = render_stdin(&[], &[], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SS003"));
    let out = render_stdin(&["--allow-empty"], &[], b"---\n# nothing\n");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"---\n# nothing\n");
}

#[test]
fn files_are_joined_as_one_stream() {
    let dir = support::repo_root().join("testdata/render");
    let out = support::secretstore()
        .arg("render")
        .arg(dir.join("kind-job.yaml"))
        .arg(dir.join("gating-no-annotation.yaml"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(text.matches("\n---\n").count(), 1, "{text}");
    assert!(
        text.ends_with(&String::from_utf8(testdata("gating-no-annotation.yaml")).expect("utf-8"))
    );
}

#[test]
fn configuration_layers_reach_the_agent_spec() {
    let input = testdata("kind-deployment.yaml");
    let out = render_stdin(
        &[],
        &[(
            "ARGOCD_ENV_SECRETSTORE_VAULT_ADDR",
            "https://argo.example:8200",
        )],
        &input,
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(r#""address":"https://argo.example:8200""#)
    );
    let out = render_stdin(
        &[
            "--vault-addr",
            "https://flag.example:8200",
            "--auth-path",
            "k8s-eu",
            "--agent-image",
            "reg.example/ss:1",
        ],
        &[("SECRETSTORE_VAULT_ADDR", "https://env.example:8200")],
        &input,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(r#""address":"https://flag.example:8200""#),
        "{text}"
    );
    assert!(text.contains(r#""auth_path":"auth/k8s-eu""#), "{text}");
    assert!(text.contains("image: 'reg.example/ss:1'"), "{text}");

    let config = support::repo_root().join("testdata/render/kind-custom-configured.config.yaml");
    let config = config.to_str().expect("utf-8 path");
    let out = render_stdin(&["--config", config, "--cluster", "nope"], &[], &input);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster `nope`"));
}

#[test]
fn unknown_flags_are_usage_errors() {
    let out = support::secretstore()
        .args(["render", "--frobnicate"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = support::secretstore()
        .args(["render", "/does/not/exist.yaml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/does/not/exist.yaml"));
}

/// Opted-in pods around a 5 MB object that render only copies: large enough for the
/// reading and writing paths of large inputs, with more output pieces than one vectored
/// write takes.
const LARGE_STREAM_PODS: usize = 2 * 300;

fn large_stream() -> Vec<u8> {
    let pod = testdata("kind-deployment.yaml");
    let mut stream = Vec::new();
    for _ in 0..LARGE_STREAM_PODS / 2 {
        stream.extend_from_slice(b"---\n");
        stream.extend_from_slice(&pod);
    }
    stream.extend_from_slice(
        b"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bulk\ndata:\n",
    );
    let mut line = 0;
    while stream.len() < 5 << 20 {
        stream.extend_from_slice(format!("  key-{line}: value of line {line}\n").as_bytes());
        line += 1;
    }
    for _ in 0..LARGE_STREAM_PODS / 2 {
        stream.extend_from_slice(b"---\n");
        stream.extend_from_slice(&pod);
    }
    stream
}

#[test]
fn stdin_reads_as_a_file_argument_from_a_pipe_or_a_file_read_in_part() {
    use std::io::{Seek, SeekFrom, Write};
    let stream = large_stream();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stream.yaml");
    std::fs::write(&path, &stream).expect("write");
    let from_file = support::secretstore()
        .arg("render")
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(
        from_file.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&from_file.stdout)
            .matches("name: secretstore-agent")
            .count(),
        LARGE_STREAM_PODS
    );

    let from_pipe = render_stdin(&[], &[], &stream);
    assert!(
        from_pipe.stdout == from_file.stdout,
        "stdin from a pipe differs"
    );

    // A file on stdin whose caller already read a first line: render reads from there on.
    let prefixed = dir.path().join("prefixed.yaml");
    let mut file = std::fs::File::create(&prefixed).expect("create");
    file.write_all(b"not: yaml: read by the caller\n")
        .and_then(|()| file.write_all(&stream))
        .expect("write");
    let mut stdin = std::fs::File::open(&prefixed).expect("open");
    stdin.seek(SeekFrom::Start(30)).expect("seek");
    let from_offset = support::secretstore()
        .arg("render")
        .stdin(stdin)
        .output()
        .expect("runs");
    assert_eq!(
        from_offset.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&from_offset.stderr)
    );
    assert!(
        from_offset.stdout == from_file.stdout,
        "stdin from a file differs"
    );
}

/// Writes `stream` into `dir` and renders it with stdout on a file: the input's path
/// and the rendered bytes.
fn render_to_file(dir: &std::path::Path, stream: &[u8]) -> (std::path::PathBuf, Vec<u8>) {
    let input = dir.join("stream.yaml");
    std::fs::write(&input, stream).expect("write");
    let output = dir.join("rendered.yaml");
    let to_file = support::secretstore()
        .arg("render")
        .arg(&input)
        .stdout(std::fs::File::create(&output).expect("create"))
        .status()
        .expect("runs");
    assert_eq!(to_file.code(), Some(0));
    (input, std::fs::read(&output).expect("read"))
}

#[test]
fn a_large_output_reads_the_same_from_a_pipe_as_from_a_file() {
    let stream = large_stream();
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, written) = render_to_file(dir.path(), &stream);
    let to_pipe = support::secretstore()
        .arg("render")
        .arg(&input)
        .output()
        .expect("runs");
    assert_eq!(to_pipe.status.code(), Some(0));
    assert!(written.len() > stream.len());
    assert!(to_pipe.stdout == written, "the pipe's output differs");
}

/// Into a pipe, render hands over references to its pages (vmsplice) rather than copies:
/// output still in the pipe when render has exited must read as written.
#[test]
fn output_left_in_the_pipe_after_render_exits_is_intact() {
    use std::io::Read;
    let pod = testdata("kind-deployment.yaml");
    // Under 1 MiB, so that it fits in the pipe render enlarges and render can exit
    // before anything is read; over 64 KiB, so that the pipe is enlarged at all.
    let mut stream = Vec::new();
    while stream.len() < 300 << 10 {
        stream.extend_from_slice(b"---\n");
        stream.extend_from_slice(&pod);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, written) = render_to_file(dir.path(), &stream);
    let mut child = support::secretstore()
        .arg("render")
        .arg(&input)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let mut stdout = child.stdout.take().expect("stdout");
    // Read late: by then render has usually exited, its memory gone but for the pages
    // the pipe holds. (Should the pipe not have grown, render waits for this read.)
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut piped = Vec::new();
    stdout.read_to_end(&mut piped).expect("read");
    assert_eq!(child.wait().expect("waits").code(), Some(0));
    assert!(piped == written, "the output read after exit differs");
}

#[test]
fn a_reader_that_goes_away_ends_render_quietly() {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = support::secretstore()
        .arg("render")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    // Render reads all its input before it writes: the reader is gone by then.
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&large_stream()).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("waits");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_closed_stdout_is_written_as_nothing() {
    use std::os::unix::process::CommandExt;
    let path = support::repo_root().join("testdata/render/kind-deployment.yaml");
    let mut cmd = support::secretstore();
    cmd.arg("render").arg(path);
    // (The Rust runtime puts /dev/null in its place at start-up; render must not trip
    // over either.)
    // SAFETY: close(2) is async-signal-safe, as a pre_exec hook must be.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(1);
            Ok(())
        });
    }
    let out = cmd.output().expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
