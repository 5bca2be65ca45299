//! The `github` format: workflow commands that GitHub Actions shows as annotations.

use super::Report;
use crate::diag::Severity;
use std::io::{self, Write};

impl Report<'_> {
    /// `::error file=F,line=L,col=C,title=SS101::message`, one line per diagnostic, and
    /// `::notice` for notes.
    pub(super) fn write_github(&self, out: &mut dyn Write) -> io::Result<()> {
        for d in self.diagnostics {
            let command = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let mut message = String::new();
            if let Some(o) = &d.object {
                message.push_str(&format!("{o}: "));
            }
            if let Some(field) = &d.field {
                message.push_str(&format!("{field}: "));
            }
            message.push_str(&d.message);
            if let Some(help) = &d.help {
                message.push_str("\nhelp: ");
                message.push_str(help);
            }
            writeln!(
                out,
                "::{command} file={},line={},col={},title={}::{}",
                escape_property(&d.location.source),
                d.location.line,
                d.location.column,
                escape_property(d.code.id()),
                escape_data(&message)
            )?;
        }
        for note in self.notes {
            writeln!(
                out,
                "::notice file={}::{}",
                escape_property(&note.source),
                escape_data(&note.message)
            )?;
        }
        Ok(())
    }
}

/// Escapes a workflow command's message (GitHub's `escapeData`).
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value (GitHub's `escapeProperty`).
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}
