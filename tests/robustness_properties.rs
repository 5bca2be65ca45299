//! Property tests of the pieces hostile input reaches first (bounded case counts, so they
//! run in seconds under `cargo test`):
//!
//! - the stream splitter: its documents cover the input exactly, equal a plain
//!   line-by-line reading of the marker rules, and on valid streams agree with the
//!   parser (one document per piece: no boundary inside a block scalar);
//! - the reference parser of the dialect (`<path>[#<key>[#<version>]]`);
//! - render over generated opted-in pods in block, flow and JSON layouts, with comments
//!   and CRLF, mixed with real corpus documents, then mutated (lines dropped, doubled,
//!   swapped, cut, hostile tokens inserted): it never panics; a success keeps every
//!   other document byte for byte, leaves only documents that parse, and is a fixed
//!   point; a refusal says why; lint agrees and writes its report in every format;
//! - convert's in-place writer over regular files of any mode, owner and group, symbolic
//!   links, hard links, files changed after reading, and a planted link where the old
//!   writer put its temporary file: a rewrite keeps mode, owner, group and every other
//!   entry of the directory; a refusal changes nothing.

mod support;

use support::gen::Gen;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use secretstore::analyze::lint::lint_input;
use secretstore::config::Settings;
use secretstore::render::dialect::SecretRef;
use secretstore::render::stream::{self, Document};
use secretstore::render::tree::Tree;
use secretstore::render::{render, Input, Options};
use secretstore::report::{Format, Report};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

// --- the stream splitter ----------------------------------------------------------

/// The marker rules read one line at a time: the definition the splitter implements.
fn reference_split(input: &[u8]) -> Vec<Document> {
    fn is_marker(line: &[u8], marker: &[u8]) -> bool {
        line.starts_with(marker)
            && matches!(
                line.get(marker.len()),
                None | Some(b' ' | b'\t' | b'\n' | b'\r')
            )
    }
    fn is_blank_or_comment(line: &[u8]) -> bool {
        match line
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            None => true,
            Some(b) => *b == b'#',
        }
    }
    let mut docs = Vec::new();
    let (mut doc_start, mut doc_line, mut has_body) = (0, 1, false);
    let (mut line_start, mut line_no) = (0, 1);
    while line_start < input.len() {
        let line_end = input[line_start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(input.len(), |i| line_start + i + 1);
        let line = &input[line_start..line_end];
        if is_marker(line, b"---") {
            if has_body {
                docs.push(Document {
                    start: doc_start,
                    end: line_start,
                    first_line: doc_line,
                });
                doc_start = line_start;
                doc_line = line_no;
            }
            has_body = true;
        } else if is_marker(line, b"...") {
            docs.push(Document {
                start: doc_start,
                end: line_end,
                first_line: doc_line,
            });
            doc_start = line_end;
            doc_line = line_no + 1;
            has_body = false;
        } else if !has_body && !is_blank_or_comment(line) {
            has_body = true;
        }
        line_start = line_end;
        line_no += 1;
    }
    if doc_start < input.len() || docs.is_empty() {
        docs.push(Document {
            start: doc_start,
            end: input.len(),
            first_line: doc_line,
        });
    }
    docs
}

/// Lines that exercise the marker rules, valid YAML or not.
const LINES: [&str; 24] = [
    "---",
    "--- ",
    "---\t# c",
    "--- |",
    "---x",
    "----",
    "...",
    "... # end",
    "....",
    "..",
    "# comment",
    "",
    "  ",
    "kind: A",
    "%YAML 1.2",
    "  ---",
    "  ...",
    "  - item",
    "a: |",
    "\t",
    "-- -",
    " --- ",
    "x: '---'",
    "é: ü",
];

fn line_stream() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((0..LINES.len(), any::<bool>()), 0..40),
        any::<bool>(),
    )
        .prop_map(|(lines, final_newline)| {
            let mut text = String::new();
            for (i, (line, crlf)) in lines.iter().enumerate() {
                if i > 0 {
                    text.push_str(if *crlf { "\r\n" } else { "\n" });
                }
                text.push_str(LINES[*line]);
            }
            if final_newline && !text.is_empty() {
                text.push('\n');
            }
            text
        })
}

fn assert_covers(input: &[u8], docs: &[Document]) -> Result<(), TestCaseError> {
    prop_assert!(!docs.is_empty());
    prop_assert_eq!(docs[0].start, 0);
    prop_assert_eq!(docs[docs.len() - 1].end, input.len());
    for pair in docs.windows(2) {
        prop_assert_eq!(pair[0].end, pair[1].start);
    }
    for doc in docs {
        let before = &input[..doc.start];
        prop_assert_eq!(
            doc.first_line,
            1 + before.iter().filter(|b| **b == b'\n').count()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    #[test]
    fn split_covers_the_input_and_follows_the_marker_rules(text in line_stream()) {
        let docs = stream::split(text.as_bytes());
        assert_covers(text.as_bytes(), &docs)?;
        prop_assert_eq!(docs, reference_split(text.as_bytes()));
    }

    #[test]
    fn split_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let docs = stream::split(&bytes);
        assert_covers(&bytes, &docs)?;
        prop_assert_eq!(docs, reference_split(&bytes));
    }
}

/// A valid document whose block scalars hold lines that look like markers.
fn tricky_document(g: &mut Gen) -> String {
    let mut doc = String::from("---\n");
    if g.chance(50) {
        doc.push_str("# Source: chart/templates/x.yaml\n");
    }
    if g.chance(10) {
        return doc; // a template that rendered to nothing
    }
    doc.push_str("apiVersion: v1\nkind: ConfigMap\ndata:\n");
    for i in 0..1 + g.below(3) {
        let style = g.pick(&["|", "|-", "|+", ">", "|2"]);
        doc.push_str(&format!("  f{i}: {style}\n"));
        for _ in 0..1 + g.below(6) {
            let line = g.pick(&[
                "---",
                "...",
                "--- |",
                "# not a comment",
                "kind: B",
                "",
                "- x",
                "--- # x",
            ]);
            if line.is_empty() {
                doc.push('\n');
            } else {
                doc.push_str(&format!("    {line}\n"));
            }
        }
    }
    if g.chance(30) {
        doc.push_str("x: \"a\n  --- b\n  ... c\"\n");
    }
    if g.chance(20) {
        doc.push_str("...\n");
    }
    doc
}

#[test]
fn split_agrees_with_the_parser_on_valid_streams() {
    // saphyr refuses a few documents that libyaml reads (istio's spire-quickstart closes
    // a flow sequence at its key's indentation); this test needs streams it reads.
    let corpus: Vec<String> = corpus_documents()
        .into_iter()
        .filter(|doc| Tree::parse(doc).is_ok())
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&any::<u64>(), |seed| {
            let mut g = Gen(seed | 1);
            let mut text = String::new();
            for _ in 0..1 + g.below(6) {
                if g.chance(30) {
                    text.push_str(&corpus[g.below(corpus.len())]);
                } else {
                    text.push_str(&tricky_document(&mut g));
                }
            }
            let docs = stream::split(text.as_bytes());
            assert_covers(text.as_bytes(), &docs)?;
            let mut parser = saphyr_parser::Parser::new_from_str(&text);
            let mut documents = 0;
            while let Some(event) = parser.next_event() {
                let (event, _) = event.map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
                if matches!(event, saphyr_parser::Event::DocumentStart(_)) {
                    documents += 1;
                }
            }
            prop_assert_eq!(docs.len(), documents, "pieces vs documents in\n{}", text);
            for doc in &docs {
                let piece = &text[doc.start..doc.end];
                prop_assert!(
                    Tree::parse(piece).is_ok(),
                    "a piece is not one document:\n{}",
                    piece
                );
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The documents of `docs` that contain `needle`, one document at a time: the
/// reference for `stream::containing`'s search over chunks.
fn reference_containing(input: &[u8], docs: &[Document], needle: &[u8]) -> Vec<Document> {
    docs.iter()
        .filter(|d| memchr::memmem::find(&input[d.start..d.end], needle).is_some())
        .copied()
        .collect()
}

#[test]
fn chunked_scan_of_a_large_stream_matches_the_line_by_line_cut() {
    let pieces: [&[u8]; 9] = [
        b"---\nkind: A\n",
        b"# secretstore\n",
        b"x: ---\n",
        b"...\n",
        b"--- # c\n",
        b"  ---\n",
        b"\n",
        b"data: |\n  secretstore\n",
        b"kind: B\r\n",
    ];
    let mut g = Gen(0x2545_f491_4f6c_dd1d);
    for round in 0..4 {
        let mut input = Vec::new();
        // Over the parallel threshold, with marker lines and the needle at many offsets
        // (so some straddle the chunk bounds).
        while input.len() < stream::PARALLEL_SCAN_MIN_BYTES * 2 + round * 7919 {
            input.extend_from_slice(pieces[g.below(pieces.len())]);
        }
        let docs = stream::split(&input);
        assert_eq!(docs, reference_split(&input));
        assert_eq!(
            stream::containing(&input, &docs, b"secretstore"),
            reference_containing(&input, &docs, b"secretstore")
        );
    }
}

#[test]
fn markers_and_needles_across_the_middle_chunk_bound() {
    // On two threads the chunks meet at the middle: put a `---` line and the needle
    // across it at every offset.
    let half = stream::PARALLEL_SCAN_MIN_BYTES;
    for shift in 0..16 {
        let mut input = b"kind: A\n".repeat(half / 8);
        input.truncate(half - 8 + shift);
        input.extend_from_slice(b"\n---\nsecretstore: x\n");
        input.extend_from_slice(&b"kind: B\n".repeat(half / 8));
        input.truncate(2 * half);
        let docs = stream::split(&input);
        assert_eq!(docs, reference_split(&input), "shift {shift}");
        assert_eq!(docs.len(), 2, "shift {shift}");
        assert_eq!(
            stream::containing(&input, &docs, b"secretstore"),
            docs[1..],
            "shift {shift}"
        );
    }
}

// --- the reference parser ---------------------------------------------------------

/// A path segment as written: any name but `.` and `..`, which the parser refuses.
fn path_segment() -> impl Strategy<Value = String> {
    "[a-z0-9_.-]{1,8}".prop_filter("a dot segment", |s| s != "." && s != "..")
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    #[test]
    fn secret_refs_never_panic(text in ".{0,40}") {
        let _ = SecretRef::parse(&text);
    }

    #[test]
    fn secret_refs_with_dot_segments_are_refused(
        before in prop::collection::vec(path_segment(), 0..3),
        dots in prop::sample::select(vec![".", ".."]),
        after in prop::collection::vec(path_segment(), 0..3),
    ) {
        let path = before.iter().map(String::as_str).chain([dots]).chain(after.iter().map(String::as_str)).collect::<Vec<_>>().join("/");
        prop_assert!(SecretRef::parse(&path).is_err(), "{} accepted", path);
    }

    #[test]
    fn secret_refs_round_trip(
        segments in prop::collection::vec(path_segment(), 1..5),
        leading_slash in any::<bool>(),
        key in prop::option::of("[A-Za-z0-9_.-]{1,10}"),
        version in prop::option::of(1u64..100_000),
    ) {
        let path = segments.join("/");
        let mut text = format!("{}{path}", if leading_slash { "/" } else { "" });
        if let Some(key) = &key {
            text.push_str(&format!("#{key}"));
            if let Some(version) = version {
                text.push_str(&format!("#{version}"));
            }
        }
        let parsed = SecretRef::parse(&text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(parsed.path, path);
        prop_assert_eq!(&parsed.key, &key);
        prop_assert_eq!(parsed.version, key.and(version));
        let three = format!("{text}#a#1#2");
        prop_assert!(SecretRef::parse(&three).is_err());
    }
}

// --- render over generated and mutated pods ----------------------------------------

/// An opted-in pod (or a workload holding one) that render accepts.
fn pod_value(g: &mut Gen, n: usize) -> Value {
    let containers = 1 + g.below(4);
    let names: Vec<String> = (0..containers).map(|i| format!("c{i}")).collect();
    let mut annotations = Map::new();
    annotations.insert("rafay.dev/secretstore".into(), json!("vault"));
    annotations.insert(
        "vault.secretstore.rafay.dev/role".into(),
        json!(format!("role-{n}")),
    );
    for f in 0..g.below(3) {
        let mut config = json!({
            "vaultSecretRef": format!("secret/app/f{f}{}", if g.chance(50) { "#tls.crt" } else { "" }),
            "secretFileName": format!("file-{f}"),
            "volumeMountPath": format!("/etc/secret-{f}"),
        });
        if g.chance(50) {
            config["containers"] = json!([names[g.below(names.len())]]);
        }
        annotations.insert(
            format!("vault.secretstore.rafay.dev/filesecret-config-{}", f + 1),
            json!(config.to_string()),
        );
    }
    let mut spec = Map::new();
    spec.insert("serviceAccountName".into(), json!(format!("app-{n}")));
    if g.chance(30) {
        spec.insert(
            "initContainers".into(),
            json!([{"name": "init", "image": "busybox:1.37", "command": ["sh", "-c", "true"]}]),
        );
    }
    let mut list = Vec::new();
    for name in &names {
        let mut c = Map::new();
        c.insert("name".into(), json!(name));
        c.insert("image".into(), json!(format!("ghcr.io/acme/{name}:1.0")));
        let refs = g.below(3);
        if refs > 0 || g.chance(30) {
            c.insert("command".into(), json!([format!("/bin/{name}"), "on"]));
        }
        if refs > 0 || g.chance(30) {
            let mut env = vec![json!({"name": "PLAIN", "value": "yes"})];
            for r in 0..refs {
                let reference = g.pick(&[
                    "secret/app/db#password",
                    "secret/data/app/db#user",
                    "kv/app/api",
                    "secret/app/db#password#2",
                ]);
                env.push(json!({"name": format!("REF_{r}"), "value": format!("secretstore:vault:{reference}")}));
            }
            c.insert("env".into(), Value::Array(env));
        }
        if g.chance(40) {
            c.insert(
                "volumeMounts".into(),
                json!([{"name": "data", "mountPath": "/data"}]),
            );
        }
        list.push(Value::Object(c));
    }
    spec.insert("containers".into(), Value::Array(list));
    if g.chance(60) {
        spec.insert("volumes".into(), json!([{"name": "data", "emptyDir": {}}]));
    }
    let template = json!({"metadata": {"labels": {"app": format!("app-{n}")}, "annotations": annotations}, "spec": spec});
    if g.chance(30) {
        let mut pod =
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("app-{n}")}});
        pod["metadata"]["annotations"] = template["metadata"]["annotations"].clone();
        pod["spec"] = template["spec"].clone();
        pod
    } else {
        json!({
            "apiVersion": "apps/v1",
            "kind": g.pick(&["Deployment", "StatefulSet", "DaemonSet"]),
            "metadata": {"name": format!("app-{n}"), "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": format!("app-{n}")}}, "template": template},
        })
    }
}

/// Layout choices of the YAML writer.
struct Style {
    /// Columns between a key and the dashes of its block sequence (0 or 2).
    seq_offset: usize,
    /// Percent of collections written in flow style.
    flow: u64,
    /// Percent of entries preceded by a comment line.
    comments: u64,
}

fn scalar(g: &mut Gen, value: &Value) -> String {
    match value {
        Value::String(s)
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
                && s.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
                && !matches!(
                    s.as_str(),
                    "yes" | "on" | "no" | "off" | "true" | "false" | "null"
                )
                && g.chance(50) =>
        {
            s.clone()
        }
        Value::String(s) if g.chance(30) && !s.contains('\'') && !s.contains('\n') => {
            format!("'{s}'")
        }
        other => other.to_string(),
    }
}

fn write_block(g: &mut Gen, style: &Style, value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if g.chance(style.comments) {
                    out.push_str(&format!("{pad}# about {k}\n"));
                }
                out.push_str(&format!("{pad}{k}:"));
                write_value(g, style, v, indent, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&format!("{pad}-"));
                match item {
                    Value::Object(map) if !map.is_empty() && !g.chance(style.flow) => {
                        // The first entry on the dash's line, the rest below it.
                        let mut inner = String::new();
                        write_block(g, style, item, indent + 2, &mut inner);
                        out.push(' ');
                        out.push_str(inner.trim_start());
                    }
                    _ => write_value(g, style, item, indent, out),
                }
            }
        }
        other => {
            out.push_str(&format!("{pad}{}\n", scalar(g, other)));
        }
    }
}

/// What follows `key:` or `-`: a scalar or flow collection on the line, or a block below.
fn write_value(g: &mut Gen, style: &Style, value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() && !g.chance(style.flow) => {
            out.push('\n');
            write_block(g, style, value, indent + 2, out);
        }
        Value::Array(items) if !items.is_empty() && !g.chance(style.flow) => {
            out.push('\n');
            write_block(g, style, value, indent + style.seq_offset, out);
        }
        Value::Object(_) | Value::Array(_) => {
            out.push_str(&format!(" {value}\n"));
        }
        other => {
            let text = scalar(g, other);
            out.push_str(&format!(" {text}\n"));
        }
    }
}

/// One generated pod document in a random layout, starting with `---`.
fn pod_document(g: &mut Gen, n: usize) -> String {
    let value = pod_value(g, n);
    let body = match g.below(7) {
        0 => format!(
            "{}\n",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        ),
        1 => format!("{value}\n"),
        // Flow collections with blanks (and line breaks) around their brackets.
        2 => format!("{value}\n")
            .replace('{', g.pick(&["{ ", "{\n  ", "{   "]))
            .replace('[', g.pick(&["[ ", "[\n  "]))
            .replace('}', g.pick(&["}", "} ", " }  "]))
            .replace(']', g.pick(&["]", "] ", "\n ]  "])),
        _ => {
            let style = Style {
                seq_offset: if g.chance(50) { 0 } else { 2 },
                flow: [0, 20, 60][g.below(3)],
                comments: [0, 10][g.below(2)],
            };
            let mut out = String::new();
            write_block(g, &style, &value, 0, &mut out);
            out
        }
    };
    let doc = format!("---\n# Source: chart/templates/pod-{n}.yaml\n{body}");
    if g.chance(15) {
        doc.replace('\n', "\r\n")
    } else {
        doc
    }
}

const HOSTILE_TOKENS: [&str; 19] = [
    "[", "{", "]", "}", "&a ", "*a", ": ", "- ", "\"", "'", "\t", "\0", "\r", "|", "#", "---",
    "\u{feff}", "\u{3000}", "é",
];

/// Damages `doc` a little: drops, doubles, swaps or cuts lines, or inserts a token.
fn mutate(g: &mut Gen, doc: &str) -> String {
    let mut lines: Vec<String> = doc.split_inclusive('\n').map(str::to_string).collect();
    for _ in 0..1 + g.below(3) {
        if lines.is_empty() {
            break;
        }
        let i = g.below(lines.len());
        match g.below(5) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let copy = lines[i].clone();
                lines.insert(i, copy);
            }
            2 => {
                let j = g.below(lines.len());
                lines.swap(i, j);
            }
            3 => {
                let line = &lines[i];
                let mut cut = g.below(line.len() + 1);
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                lines[i] = format!("{}\n", &line[..cut]);
            }
            _ => {
                let line = &lines[i];
                let mut at = g.below(line.len() + 1);
                while !line.is_char_boundary(at) {
                    at -= 1;
                }
                let token = g.pick(&HOSTILE_TOKENS);
                lines[i] = format!("{}{token}{}", &line[..at], &line[at..]);
            }
        }
    }
    lines.concat()
}

fn corpus_documents() -> Vec<String> {
    let dir = support::repo_root().join("testdata/corpus/real");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).expect("corpus readable");
        if bytes.len() > 200_000 {
            continue;
        }
        let body = &bytes[stream::bom_len(&bytes)..];
        for d in stream::split(body) {
            let Ok(text) = std::str::from_utf8(&body[d.start..d.end]) else {
                continue;
            };
            if text.starts_with("---")
                && text.ends_with('\n')
                && stream::has_content(text.as_bytes())
            {
                docs.push(text.to_string());
            }
        }
    }
    assert!(docs.len() > 100, "corpus documents found: {}", docs.len());
    docs
}

fn pieces(bytes: &[u8]) -> Vec<&[u8]> {
    let body = &bytes[stream::bom_len(bytes)..];
    stream::split(body)
        .iter()
        .map(|d| &body[d.start..d.end])
        .collect()
}

/// Renders `text`; checks what every outcome must satisfy; returns the output of a
/// success, or the diagnostics of a refusal.
fn check_render(text: &str) -> Result<Result<Vec<u8>, String>, TestCaseError> {
    let inputs = [Input {
        name: "case.yaml".into(),
        bytes: text.as_bytes().to_vec(),
    }];
    let options = Options { allow_empty: true };
    let rendered = match render(&inputs, &Settings::default(), &options) {
        Ok(rendered) => rendered,
        Err(e) => {
            prop_assert!(
                e.diagnostics
                    .iter()
                    .any(|d| d.severity == secretstore::diag::Severity::Error),
                "a refusal without an error"
            );
            let messages: Vec<String> = e.diagnostics.iter().map(|d| d.to_string()).collect();
            return Ok(Err(messages.join("\n")));
        }
    };
    let out = rendered.to_bytes();
    let (before, after) = (pieces(text.as_bytes()), pieces(&out));
    prop_assert_eq!(before.len(), after.len(), "the document count changed");
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            // Only documents with the dialect marker are changed, and they parse.
            prop_assert!(String::from_utf8_lossy(b).contains("secretstore"));
            let changed = std::str::from_utf8(a).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(
                Tree::parse(changed.trim_start_matches('\u{feff}')).is_ok(),
                "a changed document does not parse:\n{}",
                changed
            );
        }
    }
    let again_inputs = [Input {
        name: "again.yaml".into(),
        bytes: out.clone(),
    }];
    let again = render(&again_inputs, &Settings::default(), &options)
        .map_err(|e| TestCaseError::fail(format!("the output is refused: {:?}", e.diagnostics)))?;
    prop_assert!(again.to_bytes() == out, "rendering the output changed it");
    Ok(Ok(out))
}

/// Lints `text` and writes the report in every format (the human one with source
/// snippets): no panic, and lint has an error when render refused. When render accepts,
/// lint's only errors are documents it cannot parse: render passes those through when
/// they hold no reference, a linter reports them.
fn check_lint(text: &str, rendered: bool) -> Result<(), TestCaseError> {
    let input = Input {
        name: "case.yaml".into(),
        bytes: text.as_bytes().to_vec(),
    };
    let diagnostics = lint_input(&input, &Settings::default());
    let errors: Vec<&str> = diagnostics
        .iter()
        .filter(|d| d.severity == secretstore::diag::Severity::Error)
        .map(|d| d.code.id())
        .collect();
    if rendered {
        prop_assert!(
            errors.iter().all(|c| *c == "SS001" || *c == "SS002"),
            "lint refuses what render accepts: {:?}",
            errors
        );
    } else {
        prop_assert!(!errors.is_empty(), "lint accepts what render refuses");
    }
    let sources = BTreeMap::from([(
        input.name.clone(),
        String::from_utf8_lossy(&input.bytes).into_owned(),
    )]);
    let report = Report {
        command: "lint",
        diagnostics: &diagnostics,
        sources: &sources,
        notes: &[],
    };
    for format in [Format::Human, Format::Json, Format::Sarif, Format::Github] {
        let mut out = Vec::new();
        report
            .write(format, &mut out, format == Format::Human)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    Ok(())
}

#[test]
fn generated_pods_render_in_every_layout() {
    let corpus = corpus_documents();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&any::<u64>(), |seed| {
            let mut g = Gen(seed | 1);
            let mut text = String::new();
            let mut pods = 0;
            for n in 0..1 + g.below(5) {
                if g.chance(35) {
                    text.push_str(&corpus[g.below(corpus.len())]);
                } else {
                    text.push_str(&pod_document(&mut g, n));
                    pods += 1;
                }
            }
            let out = check_render(&text)?
                .map_err(|e| TestCaseError::fail(format!("refused: {e}\n{text}")))?;
            let injected = String::from_utf8_lossy(&out)
                .matches("secretstore.rafay.dev/status")
                .count();
            prop_assert_eq!(injected, pods, "every pod is expanded, once:\n{}", text);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn mutated_pods_never_break_render() {
    let corpus = corpus_documents();
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&any::<u64>(), |seed| {
            let mut g = Gen(seed | 1);
            let mut text = String::new();
            for n in 0..1 + g.below(3) {
                if g.chance(25) {
                    text.push_str(&corpus[g.below(corpus.len())]);
                } else {
                    let doc = pod_document(&mut g, n);
                    text.push_str(&mutate(&mut g, &doc));
                }
            }
            // A refusal is as good as a render here; check_render checked either.
            let outcome = check_render(&text)?;
            check_lint(&text, outcome.is_ok())?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

// --- convert's in-place writer -----------------------------------------------------

/// What the path given to the writer is.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Regular,
    Symlink,
    HardLinked,
    ChangedAfterReading,
}

/// Every entry of `dir`: name → (is a symlink, link target or content, mode, uid, gid).
fn snapshot(dir: &std::path::Path) -> BTreeMap<String, (bool, Vec<u8>, u32, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let link = meta.file_type().is_symlink();
            let content = if link {
                std::fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                std::fs::read(&path).unwrap()
            };
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                (link, content, meta.mode() & 0o7777, meta.uid(), meta.gid()),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(Config { cases: 96, failure_persistence: None, ..Config::default() })]

    #[test]
    fn in_place_rewrites_keep_what_they_do_not_own(
        shape in prop::sample::select(vec![Shape::Regular, Shape::Symlink, Shape::HardLinked, Shape::ChangedAfterReading]),
        mode in 0o000u32..0o7777,
        owner in prop::sample::select(vec![0u32, 1000, 65534]),
        group in prop::sample::select(vec![0u32, 100, 65534]),
        old in prop::collection::vec(any::<u8>(), 0..200),
        new in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        use secretstore::in_place::{replace, Original};
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        // Without root, the test itself must be able to read and write the file.
        let mode = if root { mode } else { mode | 0o600 };
        let file = dir.path().join("manifest.yaml");
        std::fs::write(&file, &old).unwrap();
        if root {
            std::os::unix::fs::chown(&file, Some(owner), Some(group)).unwrap();
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        // The old writer's predictable temporary name, planted as a link to a victim.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"victim").unwrap();
        let planted = format!(".manifest.yaml.secretstore-{}", std::process::id());
        std::os::unix::fs::symlink(&victim, dir.path().join(&planted)).unwrap();
        let target = match shape {
            Shape::Symlink => {
                let link = dir.path().join("link.yaml");
                std::os::unix::fs::symlink("manifest.yaml", &link).unwrap();
                link
            }
            Shape::HardLinked => {
                std::fs::hard_link(&file, dir.path().join("other-name.yaml")).unwrap();
                file.clone()
            }
            Shape::Regular | Shape::ChangedAfterReading => file.clone(),
        };
        let original = Original::of(&target).unwrap();
        if let Shape::ChangedAfterReading = shape {
            let mut changed = old.clone();
            changed.push(b'!');
            std::fs::write(&file, &changed).unwrap();
        }
        let before = snapshot(dir.path());
        let before_meta = std::fs::metadata(&file).unwrap();
        let result = replace(&target, &original, &new, "convert");
        let after = snapshot(dir.path());
        match shape {
            Shape::Regular => {
                prop_assert!(result.is_ok(), "{:?}", result);
                let meta = std::fs::symlink_metadata(&file).unwrap();
                prop_assert!(meta.file_type().is_file());
                prop_assert_eq!(meta.mode() & 0o7777, mode);
                prop_assert_eq!((meta.uid(), meta.gid()), (before_meta.uid(), before_meta.gid()));
                prop_assert_eq!(meta.nlink(), 1);
                prop_assert_eq!(std::fs::read(&file).unwrap(), new);
                let mut expected = before.clone();
                expected.get_mut("manifest.yaml").unwrap().1 = std::fs::read(&file).unwrap();
                prop_assert_eq!(after, expected, "only the file's content changed");
            }
            Shape::Symlink | Shape::HardLinked | Shape::ChangedAfterReading => {
                prop_assert!(result.is_err(), "{:?} was rewritten", shape);
                prop_assert_eq!(after, before, "a refusal changed the directory");
                prop_assert_eq!(std::fs::metadata(&file).unwrap().ino(), before_meta.ino());
            }
        }
    }
}
