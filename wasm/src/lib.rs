//! The playground's bindings: the I/O-free core of secretstore (render, lint) for the
//! browser. Each function takes the text of a manifest stream, named `<stdin>` as the CLI
//! names its standard input, resolves the configuration as the CLI does with no file, flag
//! or environment variable, and answers with text or JSON; `docs/src/playground/playground.js`
//! turns the JSON into `window.secretstore`.

use secretstore::config::{Overrides, Settings};
use secretstore::diag::{Diagnostic, Severity};
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
