//! The `human` format: each finding with its source line, as compilers show them.

use super::{plural, Report};
use crate::diag::Severity;
use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};
use std::collections::BTreeMap;
use std::io::{self, Write};

impl Report<'_> {
    pub(super) fn write_human(&self, out: &mut dyn Write, color: bool) -> io::Result<()> {
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        // Where each source's lines start, computed once: finding a line by scanning the
        // source from its start for each diagnostic took seconds for a thousand findings
        // in a large stream.
        let mut line_starts: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for d in self.diagnostics {
            let line_text = self
                .sources
                .get(&d.location.source)
                .and_then(|text| {
                    let starts = line_starts
                        .entry(d.location.source.as_str())
                        .or_insert_with(|| {
                            std::iter::once(0)
                                .chain(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1))
                                .collect()
                        });
                    let start = *starts.get(d.location.line.checked_sub(1)?)?;
                    if start >= text.len() {
                        return None;
                    }
                    let end = starts
                        .get(d.location.line)
                        .map_or(text.len(), |next| next - 1);
                    Some(&text[start..end])
                })
                .map(|line| line.strip_suffix('\r').unwrap_or(line));
            let level = match d.severity {
                Severity::Error => Level::ERROR,
                Severity::Warning => Level::WARNING,
            };
            let title = level.primary_title(d.message.as_str()).id(d.code.id());
            let mut group = match line_text {
                Some(line) => {
                    let span = highlight(line, d.location.column);
                    let mut annotation = AnnotationKind::Primary.span(span);
                    if let Some(field) = &d.field {
                        annotation = annotation.label(field.as_str());
                    }
                    title.element(
                        Snippet::source(line)
                            .line_start(d.location.line)
                            .path(d.location.source.as_str())
                            .annotation(annotation),
                    )
                }
                None => title.element(
                    Origin::path(d.location.source.as_str())
                        .line(d.location.line)
                        .char_column(d.location.column),
                ),
            };
            if let Some(object) = &d.object {
                group = group.element(Level::NOTE.message(format!("in {object}")));
            }
            if let Some(help) = &d.help {
                group = group.element(Level::HELP.message(help.as_str()));
            }
            let report: [Group; 1] = [group];
            writeln!(out, "{}\n", renderer.render(&report))?;
        }
        for note in self.notes {
            writeln!(out, "note: {}: {}", note.source, note.message)?;
        }
        let (errors, warnings) = (self.errors(), self.warnings());
        if errors + warnings == 0 {
            writeln!(out, "secretstore {}: no findings", self.command)
        } else {
            writeln!(
                out,
                "secretstore {}: {}, {}",
                self.command,
                plural(errors, "error"),
                plural(warnings, "warning")
            )
        }
    }
}

/// The byte range to underline on a line: the token starting at the 1-based character
/// `column`, a quoted string to its closing quote, a key up to its `:`, else the rest of
/// the line (without trailing blanks or a JSON comma).
pub(super) fn highlight(line: &str, column: usize) -> std::ops::Range<usize> {
    let start = line
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(line.len(), |(i, _)| i);
    let rest = &line[start..];
    let len = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => rest[1..]
            .find(q)
            .map_or(rest.len(), |end| end + 2)
            .min(rest.len()),
        Some(_) => rest.find(": ").unwrap_or_else(|| {
            rest.trim_end()
                .trim_end_matches(',')
                .trim_end_matches(':')
                .len()
        }),
        None => 0,
    };
    // At least the first character, whole: a token of Unicode blanks trims to nothing.
    start..start + len.max(rest.chars().next().map_or(0, char::len_utf8))
}
