//! The `gitlab` format: GitLab's code-quality report, the subset of the Code Climate issue
//! format that a job uploads with `artifacts: reports: codequality:` and that merge
//! requests show. A JSON array with one object per finding and exactly the fields GitLab
//! reads: `description`, `check_name`, `fingerprint`, `severity` and `location` (`path`,
//! `lines.begin`).

use super::Report;
use crate::diag::{Diagnostic, Severity};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

impl Report<'_> {
    /// The findings, then the notes (at severity `info`, on line 1 of their source).
    pub fn gitlab(&self) -> Value {
        let mut occurrences: HashMap<[u8; 32], u64> = HashMap::new();
        let mut issue = |check_name: &str,
                         severity: &str,
                         path: &str,
                         line: usize,
                         description: String,
                         identity: &[&str]| {
            // The fingerprint leaves out the line, so that a finding keeps it when lines
            // above it change; findings that are otherwise the same are told apart by
            // their order in the file.
            let mut key = Sha256::new();
            for part in identity {
                key.update(part.as_bytes());
                key.update([0]);
            }
            let key: [u8; 32] = key.finalize().into();
            let nth = occurrences.entry(key).or_insert(0);
            *nth += 1;
            let digest = Sha256::new()
                .chain_update(key)
                .chain_update(nth.to_be_bytes())
                .finalize();
            json!({
                "description": description,
                "check_name": check_name,
                "fingerprint": hex(&digest[..16]),
                "severity": severity,
                "location": {
                    "path": path,
                    "lines": {"begin": line.max(1)},
                },
            })
        };
        let mut issues = Vec::with_capacity(self.diagnostics.len() + self.notes.len());
        for d in self.diagnostics {
            let path = relative_path(&d.location.source);
            let object = d
                .object
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let field = d.field.as_deref().unwrap_or_default();
            issues.push(issue(
                d.code.id(),
                severity(d.severity),
                path,
                d.location.line,
                description(d),
                &["finding", d.code.id(), path, &object, field, &d.message],
            ));
        }
        for note in self.notes {
            let path = relative_path(&note.source);
            issues.push(issue(
                "note",
                "info",
                path,
                1,
                note.message.clone(),
                &["note", path, &note.message],
            ));
        }
        Value::Array(issues)
    }
}

/// Errors (render refuses the input) rank above warnings in the merge request.
fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "major",
        Severity::Warning => "minor",
    }
}

/// GitLab matches paths relative to the repository, written without a leading `./`.
fn relative_path(source: &str) -> &str {
    let mut path = source;
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    path
}

/// One line: the object, the field, what is wrong, and what to do.
fn description(d: &Diagnostic) -> String {
    let mut text = String::new();
    if let Some(o) = &d.object {
        text.push_str(&format!("{o}: "));
    }
    if let Some(field) = &d.field {
        text.push_str(&format!("{field}: "));
    }
    text.push_str(&d.message);
    if let Some(help) = &d.help {
        text.push_str(&format!(" (help: {help})"));
    }
    text
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
