//! Hostile input for `render` and `lint`, run through the real binary under a 256 MB
//! address-space limit and a kill deadline. Every input gets from render either a clear
//! refusal (exit 1, nothing on stdout, a message on stderr) or a correct render (exit 0,
//! output that parses), and from lint the same verdict (exit 1 naming render's error
//! code, or exit 0): never a panic, a crash signal, a hang or running out of memory.
//!
//! The binary runs under GNU time (`/usr/bin/time`, Debian's `time`) for its peak RSS:
//! the rusage of a child forked from this (large) test process would count the pages it
//! shared before exec.

mod support;

use secretstore::config::Settings;
use secretstore::render::stream;
use secretstore::render::{render, Input, Options};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const MEMORY_LIMIT: u64 = 256 * 1024 * 1024;
/// The process is killed after this long...
const DEADLINE: Duration = Duration::from_secs(20);
/// ...and must have finished well before (the test binary is a debug build).
const EXPECTED_WITHIN: Duration = Duration::from_secs(10);
const GNU_TIME: &str = "/usr/bin/time";

struct Run {
    /// Exit status; `None` when a signal ended the process.
    code: Option<i32>,
    /// GNU time's report of how the process ended, when not with status 0.
    ending: String,
    /// Bytes.
    peak_rss: u64,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `secretstore render [args]` with `input` on stdin, under the limits.
fn run_render(input: &[u8], args: &[&str]) -> Run {
    let mut all = vec!["render"];
    all.extend_from_slice(args);
    run(input, &all)
}

/// Runs render and lint on `input`; they must agree: lint exits 1 and names the error
/// code render refused the input with, or exits 0 when render accepts it. Returns render's
/// run.
fn render_and_lint(input: &[u8]) -> Run {
    let render = run_render(input, &[]);
    let lint = run_lint(input);
    let report = String::from_utf8_lossy(&lint.stdout);
    if render.code == Some(0) {
        // Render passes a document it cannot parse through when it holds no reference;
        // lint reports it (SS001/SS002) and nothing else.
        let other_errors = report
            .split("error[")
            .skip(1)
            .filter(|rest| !rest.starts_with("SS001]") && !rest.starts_with("SS002]"))
            .count();
        assert!(
            lint.code == Some(0) || (lint.code == Some(1) && other_errors == 0),
            "lint refuses what render accepts:\n{}{}",
            excerpt(&report),
            excerpt(&lint.stderr)
        );
    } else {
        let code = render
            .stderr
            .split("error[")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .unwrap_or("<none>");
        assert!(
            lint.code == Some(1) && report.contains(&format!("error[{code}]")),
            "render refused with {code}, lint exited {:?}:\n{}{}",
            lint.code,
            excerpt(&report),
            excerpt(&lint.stderr)
        );
    }
    render
}

/// Runs `secretstore lint -` with `input` on stdin, under the limits.
fn run_lint(input: &[u8]) -> Run {
    run(input, &["lint", "-"])
}

/// Runs `secretstore [args]` with `input` on stdin, under the limits.
fn run(input: &[u8], args: &[&str]) -> Run {
    assert!(
        Path::new(GNU_TIME).is_file(),
        "{GNU_TIME} (Debian package `time`) is not installed: run scripts/install-test-deps.sh (as root) first"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("stdin"), input).expect("write input");
    let secretstore = support::secretstore();
    let mut command = Command::new(GNU_TIME);
    command
        .arg("--format=%M")
        .arg("--output")
        .arg(path("time"))
        .arg(secretstore.get_program())
        .args(args)
        .stdin(File::open(path("stdin")).expect("input file"))
        // Files, not pipes: a large output cannot block the child while we wait.
        .stdout(File::create(path("stdout")).expect("stdout file"))
        .stderr(File::create(path("stderr")).expect("stderr file"));
    for (name, value) in secretstore.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    limit_resources(&mut command);
    let started = Instant::now();
    let child = command.spawn().expect("GNU time starts");
    wait_with_deadline(child);
    let elapsed = started.elapsed();
    let report = std::fs::read_to_string(path("time")).expect("GNU time's report");
    let (ending, rss) = report
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or(("", report.trim()));
    let code = if ending.contains("terminated by signal") {
        None
    } else {
        Some(
            ending
                .rsplit(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
        )
    };
    let run = Run {
        code,
        ending: ending.to_string(),
        peak_rss: rss.trim().parse::<u64>().expect("GNU time's %M") * 1024,
        stdout: std::fs::read(path("stdout")).expect("read stdout"),
        stderr: String::from_utf8_lossy(&std::fs::read(path("stderr")).expect("read stderr"))
            .into_owned(),
    };
    assert!(
        elapsed < EXPECTED_WITHIN,
        "secretstore {args:?} took {elapsed:?}; stderr:\n{}",
        excerpt(&run.stderr)
    );
    assert_no_crash(&run);
    run
}

/// Waits for GNU time (and so secretstore), killing both at the deadline.
fn wait_with_deadline(mut child: Child) {
    let started = Instant::now();
    while child.try_wait().expect("wait for GNU time").is_none() {
        if started.elapsed() > DEADLINE {
            // GNU time leads its own process group (see limit_resources).
            let group = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            let _ = child.wait();
            panic!("secretstore did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The address-space limit (inherited by secretstore from GNU time), no core dumps, and a
/// process group to kill at the deadline.
fn limit_resources(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit
    // and setpgid, which are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let memory = libc::rlimit {
                rlim_cur: MEMORY_LIMIT,
                rlim_max: MEMORY_LIMIT,
            };
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &memory) != 0
                || libc::setrlimit(libc::RLIMIT_CORE, &no_core) != 0
                || libc::setpgid(0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(2000);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// No signal (running out of memory under the limit aborts with SIGABRT), no panic.
fn assert_no_crash(run: &Run) {
    assert!(
        run.code.is_some(),
        "secretstore crashed ({}); stderr:\n{}",
        run.ending,
        excerpt(&run.stderr)
    );
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("memory allocation"),
        "secretstore crashed:\n{}",
        excerpt(&run.stderr)
    );
}

/// Exit 1, nothing on stdout, and stderr says why (containing `reason`).
fn assert_refused(run: &Run, reason: &str) {
    assert_eq!(
        run.code,
        Some(1),
        "expected a refusal; stderr:\n{}",
        excerpt(&run.stderr)
    );
    assert!(run.stdout.is_empty(), "a refusal wrote to stdout");
    assert!(
        run.stderr.contains("nothing was written") && run.stderr.contains(reason),
        "stderr does not say `{reason}`:\n{}",
        excerpt(&run.stderr)
    );
}

/// Exit 0 and a render of `input` (see [`assert_render_of`]); returns the output.
fn assert_rendered<'a>(run: &'a Run, input: &[u8]) -> &'a [u8] {
    assert_eq!(
        run.code,
        Some(0),
        "expected a render; stderr:\n{}",
        excerpt(&run.stderr)
    );
    assert_render_of(input, &run.stdout);
    &run.stdout
}

/// Parses a whole stream with saphyr-parser (aliases are events, never expanded).
fn assert_parses(bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).expect("the output is UTF-8");
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = saphyr_parser::Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        if let Err(e) = event {
            panic!("the output does not parse: {e}\n{}", excerpt(text));
        }
    }
}

/// A successful render of `input`: each output document parses, or is an input document
/// copied byte for byte (render never parses documents it has nothing to do with, so a
/// broken one passes through as it came).
fn assert_render_of(input: &[u8], output: &[u8]) {
    let input_body = &input[stream::bom_len(input)..];
    let output_body = &output[stream::bom_len(output)..];
    let inputs = stream::split(input_body);
    let outputs = stream::split(output_body);
    assert_eq!(inputs.len(), outputs.len(), "the document count changed");
    for (i, o) in inputs.iter().zip(&outputs) {
        let before = &input_body[i.start..i.end];
        let after = &output_body[o.start..o.end];
        if before != after {
            assert_parses(after);
        }
    }
}

/// Peak memory at most twice the input, plus what the process needs for itself (a debug
/// build: ~20 MB).
fn assert_memory_near_input(run: &Run, input_len: usize) {
    let bound = 2 * input_len as u64 + 32 * 1024 * 1024;
    assert!(
        run.peak_rss <= bound,
        "peak RSS {} MB for {} MB of input",
        run.peak_rss >> 20,
        input_len >> 20
    );
}

/// The untouched input comes back byte for byte.
fn assert_unchanged(run: &Run, input: &[u8]) {
    assert_eq!(
        run.code,
        Some(0),
        "expected a render; stderr:\n{}",
        excerpt(&run.stderr)
    );
    assert!(run.stdout == input, "an untouched input changed");
}

/// An opted-in Pod with one env reference; `metadata` and `spec` are extra lines of
/// those mappings (indented by two spaces).
fn pod(metadata: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  annotations:\n    \
         rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: app\n{metadata}\
         spec:\n{spec}  containers:\n  - name: app\n    image: busybox:1.37\n    \
         command: [sh, -c, 'exec app']\n    env:\n    - name: DB_PASSWORD\n      \
         value: secretstore:vault:secret/app/db#password\n"
    )
}

fn expanded(output: &[u8]) -> bool {
    String::from_utf8_lossy(output).contains("vault.secretstore.rafay.dev/status: injected")
}

/// `levels` of anchors, each a list of ten aliases of the one before: expanding the last
/// would make 10^levels scalars.
fn laughs(indent: &str, levels: usize) -> String {
    let mut text = format!("{indent}l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..levels {
        let prev = format!("*l{}", level - 1);
        let items = [prev.as_str(); 10].join(", ");
        text.push_str(&format!("{indent}l{level}: &l{level} [{items}]\n"));
    }
    text
}

#[test]
fn billion_laughs_in_an_untouched_document() {
    let input = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n{}",
        laughs("  ", 30)
    );
    let run = render_and_lint(input.as_bytes());
    assert_unchanged(&run, input.as_bytes());
}

#[test]
fn billion_laughs_in_an_opted_in_pod() {
    let lol = laughs("    ", 30);
    let spec = format!("  x-lol:\n{lol}  hostname: *l29\n");
    let mut input = pod("", &spec);
    input.push_str("---\n");
    let metadata = format!("  x-lol:\n{lol}  labels: *l29\n");
    input.push_str(&pod(&metadata, "").replace("name: app\n", "name: app2\n"));
    let run = render_and_lint(input.as_bytes());
    let output = String::from_utf8_lossy(assert_rendered(&run, input.as_bytes())).into_owned();
    assert_eq!(output.matches("status: injected").count(), 2);
    // Aliases are kept as written, never expanded.
    assert_eq!(output.matches("l29: &l29 [*l28").count(), 2);
}

fn nested(open: &str, close: &str, depth: usize) -> String {
    format!("{}x{}", open.repeat(depth), close.repeat(depth))
}

#[test]
fn deep_flow_nesting_in_an_opted_in_pod_is_refused() {
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        let spec = format!("  x-deep: {}\n", nested(open, close, 100_000));
        let run = render_and_lint(pod("", &spec).as_bytes());
        assert_refused(&run, "SS002");
        assert_refused(&run, "nesting deeper than");
    }
}

#[test]
fn deep_block_nesting_in_an_opted_in_pod_is_refused() {
    // Compact block sequences nest without indentation growing: `- - - x`.
    let spec = format!("  x-deep:\n  {}x\n", "- ".repeat(100_000));
    let run = render_and_lint(pod("", &spec).as_bytes());
    assert_refused(&run, "nesting deeper than");
    // Block mappings need an indentation step per level: 3,000 levels, 4.5 MB.
    let mut spec = String::from("  x-deep:\n");
    for level in 0..3_000 {
        spec.push_str(&" ".repeat(level + 4));
        spec.push_str("a:\n");
    }
    let run = render_and_lint(pod("", &spec).as_bytes());
    assert_refused(&run, "nesting deeper than");
}

#[test]
fn deep_nesting_in_an_untouched_document_is_copied() {
    let input = format!(
        "kind: ConfigMap\nmetadata:\n  name: deep\ndata: {}\n---\nkind: X\nd:\n  {}x\n",
        nested("[", "]", 100_000),
        "- ".repeat(100_000)
    );
    let run = render_and_lint(input.as_bytes());
    assert_unchanged(&run, input.as_bytes());
}

#[test]
fn a_50_mb_line() {
    let line = "a".repeat(50 * 1024 * 1024);
    // Untouched: copied, never parsed.
    let input = format!("kind: ConfigMap\nmetadata:\n  name: big\ndata:\n  x: \"{line}\"\n");
    let run = render_and_lint(input.as_bytes());
    assert_unchanged(&run, input.as_bytes());
    assert_memory_near_input(&run, input.len());
    // In an opted-in pod: over the document size limit.
    let input = pod(&format!("  labels:\n    x: \"{line}\"\n"), "");
    let run = render_and_lint(input.as_bytes());
    assert_refused(&run, "MiB limit");
}

#[test]
fn a_30_mb_non_ascii_comment_in_an_opted_in_pod() {
    // Under the 32 MiB document limit, so parsed; one non-ASCII character makes every
    // parser position a character index that has to be mapped to bytes.
    let comment = format!("  # é{}\n", "x".repeat(30 * 1024 * 1024));
    let input = pod(&comment, "");
    let run = render_and_lint(input.as_bytes());
    assert!(expanded(assert_rendered(&run, input.as_bytes())));
}

#[test]
fn invalid_utf8() {
    let mut untouched = b"kind: ConfigMap\nmetadata:\n  name: bin\ndata:\n  x: \"".to_vec();
    untouched.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28, b'"', b'\n']);
    let run = render_and_lint(&untouched);
    assert_unchanged(&run, &untouched);

    let mut opted_in = pod("", "").into_bytes();
    opted_in.extend_from_slice(b"    - name: X\n      value: \"\xc3\x28\"\n");
    let run = render_and_lint(&opted_in);
    assert_refused(&run, "not valid UTF-8");
}

#[test]
fn nul_bytes() {
    let untouched = b"kind: ConfigMap\nmetadata:\n  name: nul\ndata:\n  x: \"a\0b\"\n\0\n";
    let run = render_and_lint(untouched);
    assert_unchanged(&run, untouched);

    let opted_in = pod("  labels:\n    x: \"a\0b\"\n", "");
    let run = render_and_lint(opted_in.as_bytes());
    assert_refused(&run, "SS001");
    let opted_in = pod("  labels:\n    x: a\0b\n", "");
    let run = render_and_lint(opted_in.as_bytes());
    assert_refused(&run, "SS001");
}

#[test]
fn bom_and_crlf() {
    let input = format!(
        "\u{feff}{}",
        pod("  # a comment\n", "").replace('\n', "\r\n")
    );
    let run = render_and_lint(input.as_bytes());
    let output = assert_rendered(&run, input.as_bytes());
    assert!(expanded(output));
    assert!(output.starts_with("\u{feff}".as_bytes()), "the BOM is kept");
    let bare_newlines = output
        .windows(2)
        .filter(|w| w[1] == b'\n' && w[0] != b'\r')
        .count()
        + usize::from(output.first() == Some(&b'\n'));
    assert_eq!(bare_newlines, 0, "every line keeps its CRLF");
    assert_fixed_point(output);

    // A BOM may also start a later document of a stream.
    let input = format!("{}---\n\u{feff}{}", pod("", ""), pod("", ""));
    let run = render_and_lint(input.as_bytes());
    if run.code == Some(0) {
        assert_rendered(&run, input.as_bytes());
    } else {
        assert_refused(&run, "SS001");
    }
}

#[test]
fn lone_carriage_returns() {
    // Old Mac line ends: YAML reads a lone CR as a line break.
    let untouched = "kind: ConfigMap\rmetadata:\r  name: cr\r";
    let run = render_and_lint(untouched.as_bytes());
    assert_unchanged(&run, untouched.as_bytes());
    let opted_in = pod("  labels:\n    x: a\r\r\r\n", "");
    let run = render_and_lint(opted_in.as_bytes());
    assert_refused(&run, "carriage return without a line feed");
}

#[test]
fn unicode_blanks() {
    // U+3000 and U+00A0 are blanks to Unicode but plain text to YAML.
    for value in ["\u{3000}", "\u{a0}vault", "vault\u{2028}"] {
        let input = pod("", "").replace(
            "rafay.dev/secretstore: vault",
            &format!("rafay.dev/secretstore: {value}"),
        );
        let run = render_and_lint(input.as_bytes());
        assert_refused(&run, "SS101");
    }
}

#[test]
fn tabs() {
    // Tabs in scalars and as separation after a space are YAML.
    let input = pod(
        "  labels:\n    tier: \tbackend\t\n    x: \"a\tb\"\n    y: a\tb\n",
        "",
    );
    let run = render_and_lint(input.as_bytes());
    assert!(expanded(assert_rendered(&run, input.as_bytes())));
    // A tab as indentation, or alone after `key:`, is not (libyaml agrees).
    for labels in [
        "  labels:\n\ttier: backend\n",
        "  labels:\n    tier:\tbackend\n",
    ] {
        let run = render_and_lint(pod(labels, "").as_bytes());
        assert_refused(&run, "SS001");
    }
}

const RESOURCE_LIST_HEAD: &str = "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\n\
    functionConfig:\n  apiVersion: secretstore.rafay.dev/v1\n  kind: SecretStoreTransformer\n  \
    metadata:\n    name: secretstore\n";

#[test]
fn a_resource_list_without_items() {
    for items in [
        "",
        "items:\n",
        "items: []\n",
        "items: 42\n",
        "items: {a: b}\n",
    ] {
        let input = format!("{RESOURCE_LIST_HEAD}{items}");
        let run = render_and_lint(input.as_bytes());
        assert_unchanged(&run, input.as_bytes());
    }
}

/// `doc` as an item of a block list at the root.
fn as_item(doc: &str) -> String {
    format!("- {}\n", doc.trim_end().replace('\n', "\n  "))
}

#[test]
fn a_resource_list_whose_items_laugh() {
    // The functionConfig is read on its own: the items' aliases are never expanded.
    let input = format!(
        "{RESOURCE_LIST_HEAD}  spec:\n    vault:\n      address: https://fc.example:8200\nitems:\n{}{}",
        as_item(&pod("", "")),
        as_item(&format!("apiVersion: v1\nkind: ConfigMap\ndata:\n{}", laughs("  ", 30)))
    );
    let run = render_and_lint(input.as_bytes());
    let output = String::from_utf8_lossy(assert_rendered(&run, input.as_bytes())).into_owned();
    assert!(expanded(output.as_bytes()));
    assert!(
        output.contains("fc.example"),
        "the functionConfig's address is used"
    );
}

#[test]
fn a_list_of_garbage() {
    let garbage = "items:\n- 1\n- two\n- [3]\n- null\n- &x {kind: Pod}\n- *x\n- {kind: Deployment, spec: 5}\n\
         - {kind: Deployment, spec: {template: [1]}}\n- {kind: CronJob, spec: {jobTemplate: *x}}\n\
         - {kind: Pod, metadata: {annotations: 7}, spec: {containers: 7}}\n- kind: [Pod]\n";
    for head in [
        "apiVersion: v1\nkind: List\n# secretstore\n",
        RESOURCE_LIST_HEAD,
    ] {
        let input = format!("{head}{garbage}");
        let run = render_and_lint(input.as_bytes());
        assert_unchanged(&run, input.as_bytes());
    }
    // Opted-in pods with garbage where containers, env and volumes belong.
    let pods = [
        "{kind: Pod, metadata: {annotations: {rafay.dev/secretstore: vault, vault.secretstore.rafay.dev/role: r}}, spec: {containers: 7}}",
        "{kind: Pod, metadata: {annotations: {rafay.dev/secretstore: vault, vault.secretstore.rafay.dev/role: r}}, spec: {containers: [7, [], {env: 3}, {env: [1, {value: 2}]}]}}",
        "{kind: Pod, metadata: {annotations: {rafay.dev/secretstore: vault, vault.secretstore.rafay.dev/role: r}}, spec: {containers: [{name: a, command: [x], env: [{name: A, value: 'secretstore:vault:s/a'}]}], volumes: 5}}",
        "{kind: Pod, metadata: {annotations: {rafay.dev/secretstore: [vault], vault.secretstore.rafay.dev/role: {}}}}",
        "{kind: Pod, metadata: {annotations: {rafay.dev/secretstore: vault, vault.secretstore.rafay.dev/role: r, vault.secretstore.rafay.dev/filesecret-config-1: [1]}}, spec: {}}",
    ];
    for item in pods {
        let input = format!("apiVersion: v1\nkind: List\nitems:\n- {item}\n");
        let run = render_and_lint(input.as_bytes());
        if run.code == Some(0) {
            assert_rendered(&run, input.as_bytes());
        } else {
            assert_refused(&run, "error");
        }
    }
}

/// Files whose every line-prefix is rendered through the binary; the library renders
/// the line-prefixes of every testdata file (see below), which is much faster.
const TRUNCATED_THROUGH_THE_BINARY: [&str; 4] = [
    "kind-cronjob.yaml",
    "style-comments-anchors.yaml",
    "form-crlf.yaml",
    "form-json.json",
];

/// Of those, the ones also linted at every line-prefix.
const LINTED: [&str; 2] = ["kind-cronjob.yaml", "style-comments-anchors.yaml"];

fn testdata_files() -> Vec<std::path::PathBuf> {
    let dir = support::repo_root().join("testdata/render");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/render exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            (name.ends_with(".yaml") || name.ends_with(".json")) && !name.ends_with(".config.yaml")
        })
        .collect();
    files.sort();
    files
}

/// The input cut after each of its lines (without the whole input).
fn line_prefixes(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b'\n' && i + 1 < bytes.len())
        .map(move |(i, _)| &bytes[..=i])
}

#[test]
fn truncated_testdata_through_the_binary() {
    let dir = support::repo_root().join("testdata/render");
    for name in TRUNCATED_THROUGH_THE_BINARY {
        let bytes = std::fs::read(dir.join(name)).expect("testdata readable");
        for prefix in line_prefixes(&bytes) {
            let run = run_render(prefix, &["--allow-empty"]);
            if run.code == Some(0) {
                assert_rendered(&run, prefix);
            } else {
                assert_refused(&run, "error");
            }
            if LINTED.contains(&name) {
                let lint = run_lint(prefix);
                let expected = if run.code == Some(0) { 0 } else { 1 };
                assert_eq!(lint.code, Some(expected), "lint of a prefix of {name}");
            }
        }
    }
}

#[test]
fn truncated_testdata_in_process() {
    let mut cuts = 0;
    for file in testdata_files() {
        let bytes = std::fs::read(&file).expect("testdata readable");
        let config = file.with_extension("config.yaml");
        let settings = if config.exists() {
            let loaded = secretstore::config::ConfigFile::load(&config).expect("config loads");
            Settings::from_file(&loaded, None).expect("config resolves")
        } else {
            Settings::default()
        };
        for prefix in line_prefixes(&bytes) {
            cuts += 1;
            let inputs = [Input {
                name: format!("{}", file.display()),
                bytes: prefix.to_vec(),
            }];
            let options = Options { allow_empty: true };
            match render(&inputs, &settings, &options) {
                Ok(rendered) => {
                    let out = rendered.to_bytes();
                    assert_render_of(prefix, &out);
                    assert_fixed_point_with(&out, &settings);
                }
                Err(e) => assert!(
                    e.diagnostics
                        .iter()
                        .any(|d| d.severity == secretstore::diag::Severity::Error),
                    "a refusal without an error"
                ),
            }
        }
    }
    assert!(cuts > 1000, "testdata has {cuts} line prefixes");
}

fn assert_fixed_point(output: &[u8]) {
    assert_fixed_point_with(output, &Settings::default());
}

fn assert_fixed_point_with(output: &[u8], settings: &Settings) {
    let inputs = [Input {
        name: "output".into(),
        bytes: output.to_vec(),
    }];
    let again = render(&inputs, settings, &Options { allow_empty: true })
        .unwrap_or_else(|e| panic!("the output is refused: {:?}", e.diagnostics));
    assert!(
        again.to_bytes() == output,
        "rendering the output changed it"
    );
}

#[test]
fn the_limits_hold_for_a_file_argument_too() {
    // `render FILE` reads the file with its size known; stdin grows a buffer.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.yaml");
    let line = "b".repeat(40 * 1024 * 1024);
    let input = format!("{}---\nkind: ConfigMap\ndata:\n  x: {line}\n", pod("", ""));
    std::fs::write(&path, &input).expect("write input");
    let run = run_render(b"", &[path_str(&path)]);
    let output = assert_rendered(&run, input.as_bytes());
    assert!(expanded(output));
    assert_memory_near_input(&run, input.len());
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}
