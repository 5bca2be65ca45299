//! Diagnostics: one type for render errors, lint findings and check findings.
//!
//! Each diagnostic has a stable code, a severity, where it is (source, line, column), the
//! object it concerns, the field, what is wrong and what to do. The severity comes with
//! the [`Code`].

pub mod code;

pub use code::Code;

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A position in a source: 1-based line and column (column counted in characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// File name, or `<stdin>`.
    pub source: String,
    pub line: usize,
    pub column: usize,
}

/// The Kubernetes object a diagnostic is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.kind.is_empty() {
            "<no kind>"
        } else {
            &self.kind
        };
        let name = if self.name.is_empty() {
            "<no name>"
        } else {
            &self.name
        };
        match &self.namespace {
            Some(ns) => write!(f, "{kind} {ns}/{name}"),
            None => write!(f, "{kind} {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable code, written as its id, e.g. `SS101`.
    pub code: Code,
    pub severity: Severity,
    pub location: Location,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// Dotted field path, e.g. `spec.template.spec.containers[0].env[2].value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    /// A finding at the code's severity.
    pub fn new(code: Code, location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: code.severity(),
            location,
            object: None,
            field: None,
            message: message.into(),
            help: None,
        }
    }

    /// The finding at its code's documented other severity ([`Code::alternative`]); a
    /// code without one keeps its severity.
    pub fn at_alternative_severity(mut self) -> Self {
        if let Some((severity, _)) = self.code.alternative() {
            self.severity = severity;
        }
        self
    }

    pub fn with_object(mut self, object: Option<ObjectRef>) -> Self {
        self.object = object;
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// One-paragraph plain form, used on stderr by render:
/// `error[SS101]: <stdin>:12:7: Deployment shop/api: spec...: message\n  help: ...`
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: {}:{}:{}: ",
            self.severity,
            self.code,
            self.location.source,
            self.location.line,
            self.location.column
        )?;
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}
