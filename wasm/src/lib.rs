//! The playground's bindings: the I/O-free core of secretstore (render, lint, add) for the
//! browser. Each function takes the text of a manifest stream, named `<stdin>` as the CLI
//! names its standard input, resolves the configuration as the CLI does with no file, flag
//! or environment variable, and answers with text or JSON; `docs/src/playground/playground.js`
//! turns the JSON into `window.secretstore`.

use secretstore::add;
use secretstore::config::{Overrides, Settings};
use secretstore::diag::{Code, Diagnostic, Severity};
use secretstore::render::{self, Input, Options};
use secretstore::report::{Format, Report};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use wasm_bindgen::prelude::*;

/// The source name in findings: what the CLI says for its standard input.
const SOURCE: &str = "<stdin>";

fn input(text: &str) -> Input {
    Input {
        name: SOURCE.to_owned(),
        bytes: text.as_bytes().to_vec(),
    }
}

/// The settings the CLI resolves with no configuration file, flag or environment variable.
fn settings() -> Result<Settings, String> {
    Settings::resolve(&Overrides::default(), &|_| None)
}

/// Findings as the `json` report format prints them (`findings`, `notes`, `summary`).
fn report_json(command: &str, diagnostics: &[Diagnostic]) -> Value {
    Report {
        command,
        diagnostics,
        sources: &BTreeMap::new(),
        notes: &[],
    }
    .json()
}

/// `secretstore render` on `text`: `{"output": ..., "warnings": [...]}`, or, when render
/// refuses the input, `{"error": ..., "findings": [...]}` whose `error` is what the CLI
/// writes to stderr.
#[wasm_bindgen(js_name = renderJson)]
pub fn render_json(text: &str) -> String {
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => return json!({"error": e, "findings": []}).to_string(),
    };
    let inputs = [input(text)];
    let answer = match render::render(&inputs, &settings, &Options::default()) {
        Ok(rendered) => json!({
            "output": String::from_utf8_lossy(&rendered.to_bytes()),
            "warnings": report_json("render", &rendered.warnings)["findings"],
        }),
        Err(refused) => {
            let errors = refused
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            let mut message = String::new();
            for d in &refused.diagnostics {
                message.push_str(&format!("{d}\n"));
            }
            message.push_str(&format!(
                "secretstore: render refused the input ({errors} error{}); nothing was written\n",
                if errors == 1 { "" } else { "s" }
            ));
            json!({
                "error": message,
                "findings": report_json("render", &refused.diagnostics)["findings"],
            })
        }
    };
    answer.to_string()
}

/// `secretstore lint --format json` on `text`: the report, byte for byte as the CLI prints
/// it.
#[wasm_bindgen(js_name = lintJson)]
pub fn lint_json(text: &str) -> Result<String, String> {
    let settings = settings()?;
    let diagnostics = secretstore::analyze::lint::lint_input(&input(text), &settings);
    let report = Report {
        command: "lint",
        diagnostics: &diagnostics,
        sources: &BTreeMap::new(),
        notes: &[],
    };
    let mut out = Vec::new();
    report
        .write(Format::Json, &mut out, false)
        .map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// `secretstore add` on `text`, with `request` as JSON: `{"workload", "container", "role"}`
/// (each optional), `"env": [{"name", "reference"}]` and `"files": [{"path",
/// "reference"}]`, read as the CLI reads `--env NAME=REF` and `--file PATH=REF`. Answers
/// `{"text", "changed", "workload", "container", "changes", "warnings"}`, or `{"error",
/// "findings"}` when add refuses (the text is then to be left as it was).
#[wasm_bindgen(js_name = addJson)]
pub fn add_json(text: &str, request: &str) -> String {
    let refused = |diagnostics: &[Diagnostic]| {
        let mut message = String::new();
        for d in diagnostics {
            message.push_str(&format!("{d}\n"));
        }
        json!({"error": message, "findings": report_json("add", diagnostics)["findings"]})
    };
    let answer = match add_request(request).and_then(|request| {
        let settings = settings().map_err(|e| {
            vec![Diagnostic::new(
                Code::AddBadArgument,
                add::request_location("configuration"),
                e,
            )]
        })?;
        add::apply_with(SOURCE, text, &request, &settings)
    }) {
        Ok(added) => json!({
            "text": added.text,
            "changed": added.changed,
            "workload": added.workload,
            "container": added.container,
            "changes": added.changes,
            "warnings": report_json("add", &added.warnings)["findings"],
        }),
        Err(diagnostics) => refused(&diagnostics),
    };
    answer.to_string()
}

/// The request of [`add_json`], each `--env` and `--file` parsed as the CLI parses it.
fn add_request(json: &str) -> Result<add::AddRequest, Vec<Diagnostic>> {
    let bad = |message: String| {
        vec![Diagnostic::new(
            Code::AddBadArgument,
            add::request_location("request"),
            message,
        )]
    };
    let value: Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let text = |v: &Value, field: &str| {
        v[field]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let pairs = |list: &str, left: &str| -> Vec<String> {
        value[list]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| {
                        format!(
                            "{}={}",
                            text(item, left).unwrap_or_default(),
                            text(item, "reference").unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut errors = Vec::new();
    let mut request = add::AddRequest {
        workload: text(&value, "workload"),
        container: text(&value, "container"),
        role: text(&value, "role"),
        ..add::AddRequest::default()
    };
    for arg in pairs("env", "name") {
        match add::EnvAddition::parse(&arg) {
            Ok(env) => request.env.push(env),
            Err(d) => errors.push(*d),
        }
    }
    for arg in pairs("files", "path") {
        match add::FileAddition::parse(&arg) {
            Ok(file) => request.files.push(file),
            Err(d) => errors.push(*d),
        }
    }
    if errors.is_empty() {
        Ok(request)
    } else {
        Err(errors)
    }
}

/// A unified diff of two texts, line by line, for the page's "what render changed".
#[wasm_bindgen]
pub fn diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

/// The crate's version, shown on the page.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
