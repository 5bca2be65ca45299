//! The `sarif` format (SARIF 2.1.0, for GitHub code scanning); its rules are the codes' own
//! metadata.

use super::{Report, INFORMATION_URI};
use crate::diag::{Code, Severity};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

impl Report<'_> {
    /// A SARIF 2.1.0 log with one run. Columns count Unicode code points, as the
    /// diagnostics do (`columnKind`); relative paths are relative to `%SRCROOT%`, the
    /// repository root when run from it, as GitHub code scanning expects.
    pub fn sarif(&self) -> Value {
        // The rules are the codes' own metadata, one per code the report holds.
        let mut codes: Vec<Code> = self.diagnostics.iter().map(|d| d.code).collect();
        codes.sort();
        codes.dedup();
        let rules: Vec<Value> = codes
            .iter()
            .map(|code| {
                json!({
                    "id": code.id(),
                    "name": code.name(),
                    "shortDescription": {"text": code.summary()},
                    "helpUri": code.help_url(),
                    "defaultConfiguration": {"level": sarif_level(code.severity())},
                })
            })
            .collect();
        let results: Vec<Value> = self
            .diagnostics
            .iter()
            .map(|d| {
                let rule_index = codes.iter().position(|c| *c == d.code);
                let mut text = d.message.clone();
                if let Some(help) = &d.help {
                    text.push_str("\nhelp: ");
                    text.push_str(help);
                }
                let mut location = json!({
                    "physicalLocation": physical_location(&d.location.source, Some((d.location.line, d.location.column))),
                });
                if let Some(o) = &d.object {
                    let qualified = match &o.namespace {
                        Some(ns) => format!("{}/{ns}/{}", o.kind, o.name),
                        None => format!("{}/{}", o.kind, o.name),
                    };
                    location["logicalLocations"] = json!([{
                        "name": o.name,
                        "fullyQualifiedName": qualified,
                        "kind": "resource",
                    }]);
                }
                let mut result = json!({
                    "ruleId": d.code,
                    "ruleIndex": rule_index,
                    "level": sarif_level(d.severity),
                    "message": {"text": text},
                    "locations": [location],
                });
                if let Some(field) = &d.field {
                    result["properties"] = json!({"field": field});
                }
                result
            })
            .collect();
        let notifications: Vec<Value> = self
            .notes
            .iter()
            .map(|n| {
                json!({
                    "level": "note",
                    "message": {"text": n.message},
                    "locations": [{"physicalLocation": physical_location(&n.source, None)}],
                })
            })
            .collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "secretstore",
                    "version": env!("CARGO_PKG_VERSION"),
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "informationUri": INFORMATION_URI,
                    "rules": rules,
                }},
                "invocations": [{
                    "executionSuccessful": true,
                    "toolExecutionNotifications": notifications,
                }],
                "columnKind": "unicodeCodePoints",
                "results": results,
            }],
        })
    }
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// A SARIF `physicalLocation`: relative paths as URI references against `%SRCROOT%`,
/// absolute ones as `file://` URIs.
fn physical_location(source: &str, position: Option<(usize, usize)>) -> Value {
    let path = source.strip_prefix("./").unwrap_or(source);
    let artifact = if path.starts_with('/') {
        json!({"uri": format!("file://{}", percent_encode(path))})
    } else {
        json!({"uri": percent_encode(path), "uriBaseId": "%SRCROOT%"})
    };
    let mut location = json!({"artifactLocation": artifact});
    if let Some((line, column)) = position {
        location["region"] = json!({"startLine": line, "startColumn": column});
    }
    location
}

/// All but RFC 3986 unreserved characters and `/` are percent-encoded in a URI path.
const URI_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn percent_encode(path: &str) -> String {
    utf8_percent_encode(path, URI_PATH).to_string()
}
