//! The `json` format.

use super::Report;
use serde_json::{json, Value};

impl Report<'_> {
    /// `{"findings": [...], "notes": [...], "summary": {...}}`; absent parts are `null`.
    pub fn json(&self) -> Value {
        let findings: Vec<Value> = self
            .diagnostics
            .iter()
            .map(|d| {
                json!({
                    "code": d.code,
                    "severity": d.severity,
                    "file": d.location.source,
                    "line": d.location.line,
                    "column": d.location.column,
                    "object": d.object.as_ref().map(|o| json!({
                        "kind": o.kind,
                        "namespace": o.namespace,
                        "name": o.name,
                    })),
                    "field": d.field,
                    "message": d.message,
                    "help": d.help,
                })
            })
            .collect();
        let notes: Vec<Value> = self
            .notes
            .iter()
            .map(|n| json!({"file": n.source, "message": n.message}))
            .collect();
        json!({
            "findings": findings,
            "notes": notes,
            "summary": {"errors": self.errors(), "warnings": self.warnings()},
        })
    }
}
