//! The book's playground in headless Chromium: `scripts/build-book.sh` builds the book with
//! render and lint compiled to WebAssembly, a loopback server serves it, and
//! `tests/playground/driver.mjs` (playwright-core, Debian's chromium) calls
//! `window.secretstore` on every file of `examples/`, of `testdata/render/` and on a sample
//! of the real-world corpus. What the page answers must be what the CLI prints: the same
//! rendered bytes or the same refusal, and the same lint report. Its add form must write
//! what `secretstore add` writes. The page must load with no request outside its own
//! origin.

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use support::{manifest_files, repo_root, run_with_stdin, secretstore};

/// Debian's `chromium` (scripts/install-test-deps.sh installs it).
const CHROMIUM: &str = "/usr/bin/chromium";
/// One corpus file in this many, in name order.
const CORPUS_SAMPLE_EVERY: usize = 3;

fn need(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is not installed ({}): run scripts/install-test-deps.sh (as root) first",
        path.display()
    );
}

/// Serves `root` on a loopback port, one thread per connection, until the test ends.
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    let origin = format!("http://{}", listener.local_addr().expect("local address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || answer(&root, stream));
        }
    });
    origin
}

/// Answers one GET with the file it names, or 404.
fn answer(root: &Path, mut stream: TcpStream) {
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // The request's headers are not needed; read them so the client sees a clean close.
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let relative = Path::new(path.trim_start_matches('/'));
    let safe = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let mut file = root.join(relative);
    if file.is_dir() {
        file = file.join("index.html");
    }
    let (status, body, kind) = match std::fs::read(&file) {
        Ok(body) if safe => ("200 OK", body, content_type(&file)),
        _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("ttf") => "font/ttf",
        _ => "application/octet-stream",
    }
}

/// The inputs: every manifest of `examples/` and `testdata/render/`, and one corpus file in
/// [`CORPUS_SAMPLE_EVERY`]. A page holds text, so files that are not UTF-8 are left out
/// (the CLI's handling of those is tested in tests/render_cli.rs).
fn inputs() -> Vec<(String, String)> {
    let root = repo_root();
    let corpus = manifest_files(&root.join("testdata/corpus/real"));
    let files = manifest_files(&root.join("examples"))
        .into_iter()
        .chain(manifest_files(&root.join("testdata/render")))
        .chain(corpus.into_iter().step_by(CORPUS_SAMPLE_EVERY));
    files
        .filter_map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path
                .strip_prefix(&root)
                .expect("under the repository")
                .display()
                .to_string();
            String::from_utf8(bytes).ok().map(|text| (name, text))
        })
        .collect()
}

/// What the CLI does with `text` on its standard input: `{"output"}` or `{"error"}` for
/// render, and the lint report.
fn cli(text: &str) -> (Value, Value) {
    let rendered = run_with_stdin(secretstore().arg("render"), text.as_bytes());
    let render = match rendered.status.code() {
        Some(0) => json!({"output": String::from_utf8(rendered.stdout).expect("UTF-8 output")}),
        Some(1) => json!({"error": String::from_utf8_lossy(&rendered.stderr)}),
        other => panic!(
            "render exited {other:?}: {}",
            String::from_utf8_lossy(&rendered.stderr)
        ),
    };
    let linted = run_with_stdin(
        secretstore().args(["lint", "--format", "json", "-"]),
        text.as_bytes(),
    );
    assert!(
        matches!(linted.status.code(), Some(0 | 1)),
        "lint exited {:?}: {}",
        linted.status.code(),
        String::from_utf8_lossy(&linted.stderr)
    );
    let lint = serde_json::from_slice(&linted.stdout).expect("lint's JSON report");
    (render, lint)
}

fn codes(report: &Value) -> Vec<&str> {
    report["findings"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["code"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn the_playground_answers_as_the_cli_does_with_no_request_outside_its_origin() {
    let root = repo_root();
    let playwright = root.join(".tools/node/node_modules/playwright-core");
    need(&playwright, "playwright-core (npm)");
    need(Path::new(CHROMIUM), "Debian's chromium");
    let node_version = Command::new("node").arg("--version").output();
    assert!(
        node_version.is_ok_and(|o| o.status.success()),
        "node is not installed: run scripts/install-test-deps.sh (as root) first"
    );

    let work = tempfile::tempdir().expect("temp dir");
    let book = work.path().join("book");
    let built = Command::new(root.join("scripts/build-book.sh"))
        .arg(&book)
        .output()
        .expect("run scripts/build-book.sh");
    assert!(
        built.status.success(),
        "scripts/build-book.sh failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let inputs = inputs();
    assert!(inputs.len() > 60, "only {} inputs", inputs.len());
    let inputs_file = work.path().join("inputs.json");
    let as_json: Vec<Value> = inputs
        .iter()
        .map(|(name, text)| json!({"name": name, "text": text}))
        .collect();
    std::fs::write(&inputs_file, serde_json::to_vec(&as_json).expect("JSON")).expect("write");

    let origin = serve(book);
    let out_file = work.path().join("out.json");
    let driven = Command::new("node")
        .arg(root.join("tests/playground/driver.mjs"))
        .arg(&playwright)
        .arg(CHROMIUM)
        .arg(format!("{origin}/playground.html"))
        .arg(&inputs_file)
        .arg(&out_file)
        .output()
        .expect("run node");
    assert!(
        driven.status.success(),
        "the playwright driver failed:\n{}{}",
        String::from_utf8_lossy(&driven.stdout),
        String::from_utf8_lossy(&driven.stderr)
    );
    let out: Value =
        serde_json::from_slice(&std::fs::read(&out_file).expect("driver output")).expect("JSON");

    // Loaded from the book itself, and nothing else.
    let requests: Vec<&str> = out["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let outside: Vec<&&str> = requests
        .iter()
        .filter(|url| !url.starts_with(&format!("{origin}/")))
        .collect();
    assert!(
        outside.is_empty(),
        "requests outside {origin}: {outside:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|url| url.ends_with("/playground/secretstore_wasm_bg.wasm")),
        "the page did not load its wasm: {requests:#?}"
    );
    assert_eq!(out["failed"], json!([]), "failed requests");
    assert_eq!(out["pageErrors"], json!([]), "errors in the page");

    // The page's own widgets show the example's render and its findings' links.
    let widgets = &out["widgets"];
    let example = std::fs::read_to_string(root.join("examples/deployment.yaml")).expect("example");
    assert_eq!(widgets["input"], json!(example), "the text area's example");
    let (example_render, _) = cli(&example);
    assert_eq!(
        widgets["output"], example_render["output"],
        "the output pane"
    );
    let diff = widgets["diff"].as_str().expect("diff");
    assert!(
        diff.contains("+        vault.secretstore.rafay.dev/status: injected"),
        "the diff pane: {diff}"
    );
    assert!(
        widgets["status"]
            .as_str()
            .is_some_and(|s| s.contains(env!("CARGO_PKG_VERSION"))),
        "status: {}",
        widgets["status"]
    );

    // The findings of a refused input link their rows of the codes page.
    let refused_links = widgets["refusedCodeLinks"].as_array().expect("links");
    let codes_page =
        std::fs::read_to_string(work.path().join("book/reference/codes.html")).expect("codes page");
    assert!(
        !refused_links.is_empty(),
        "no findings shown for env-ref-bad.yaml"
    );
    for link in refused_links {
        let (code, href) = (
            link[0].as_str().expect("code"),
            link[1].as_str().expect("href"),
        );
        let anchor = code.to_lowercase();
        assert_eq!(
            href,
            format!("reference/codes.html#{anchor}"),
            "{code}'s link"
        );
        assert!(
            codes_page.contains(&format!("id=\"{anchor}\"")),
            "the codes page has no row {anchor}"
        );
    }

    // The add form writes what `secretstore add` writes, and shows the command.
    let file = work.path().join("deployment.yaml");
    std::fs::write(&file, &example).expect("write the example");
    let reference = "secret/shop/api#token";
    for (add, flag) in out["adds"]
        .as_array()
        .expect("adds")
        .iter()
        .zip([("--env", "API_TOKEN"), ("--file", "/etc/shop/api/token")])
    {
        let argument = format!("{}={reference}", flag.1);
        let added = secretstore()
            .arg("add")
            .arg(&file)
            .args([flag.0, argument.as_str()])
            .output()
            .expect("run secretstore add");
        assert!(
            added.status.success(),
            "add {argument}: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        let cli_text = std::fs::read_to_string(&file).expect("the edited file");
        assert_eq!(add["text"], json!(cli_text), "the form's {} edit", flag.0);
        assert_eq!(
            add["command"],
            json!(format!("secretstore add FILE {} {argument}", flag.0)),
            "the form's command line"
        );
    }

    // Every input: the same render and the same lint report as the CLI.
    let results = out["results"].as_array().expect("results");
    assert_eq!(results.len(), inputs.len());
    let mut refused = 0;
    let mut changed = 0;
    let mut linted_codes = std::collections::BTreeSet::new();
    for ((name, text), result) in inputs.iter().zip(results) {
        let (render, lint) = cli(text);
        let page_render = &result["render"];
        match (render.get("output"), page_render.get("output")) {
            (Some(cli_out), Some(page_out)) => {
                changed += usize::from(cli_out.as_str() != Some(text));
                assert!(
                    cli_out == page_out,
                    "{name}: the page rendered other bytes than the CLI"
                );
            }
            (None, None) => {
                refused += 1;
                assert_eq!(
                    page_render["error"], render["error"],
                    "{name}: the page's error is not the CLI's stderr"
                );
                let findings = json!({"findings": page_render["findings"]});
                assert!(
                    !codes(&findings).is_empty(),
                    "{name}: an error without findings"
                );
            }
            _ => panic!("{name}: the CLI gave {render}, the page {page_render}"),
        }
        assert_eq!(
            codes(&result["lint"]),
            codes(&lint),
            "{name}: lint codes differ"
        );
        assert_eq!(result["lint"], lint, "{name}: lint reports differ");
        linted_codes.extend(codes(&lint).into_iter().map(str::to_owned));
    }
    // The inputs exercise all three outcomes and many codes.
    assert!(refused >= 10, "only {refused} refused inputs");
    assert!(changed >= 10, "only {changed} expanded inputs");
    assert!(linted_codes.len() >= 15, "codes seen: {linted_codes:?}");
}
