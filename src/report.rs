//! Reports of diagnostics, shared by `lint` and `check`: `human` (source snippets),
//! `json`, `sarif` (SARIF 2.1.0, for GitHub code scanning) and `github` (workflow
//! commands that GitHub Actions shows as annotations).
//!
//! Diagnostics never hold secret values, and nothing here adds any: a report shows the
//! diagnostics and, in `human`, the source lines they point at (manifests, which hold
//! only references).

use crate::diag::Code;
use crate::diag::{Diagnostic, Severity};
use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// The project's home (SARIF `informationUri`); each rule links its row of the codes page.
pub const INFORMATION_URI: &str = "https://github.com/secretstore/secretstore";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Readable, with source snippets
    #[default]
    Human,
    /// An object with a `findings` array and a `summary`
    Json,
    /// SARIF 2.1.0, for GitHub code scanning (upload-sarif)
    Sarif,
    /// GitHub Actions workflow commands (annotations on the pull request)
    Github,
}

/// Something worth telling that is not a finding, e.g. a file that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub source: String,
    pub message: String,
}

pub struct Report<'a> {
    /// The command reporting, e.g. `lint` (for the human summary line).
    pub command: &'a str,
    /// In the order they are shown.
    pub diagnostics: &'a [Diagnostic],
    /// Source name → its text, for snippets; a source not in it is shown without one.
    pub sources: &'a BTreeMap<String, String>,
    pub notes: &'a [Note],
}

impl Report<'_> {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }

    /// Writes the report. `color` styles the human format (for a terminal).
    pub fn write(&self, format: Format, out: &mut dyn Write, color: bool) -> io::Result<()> {
        match format {
            Format::Human => self.write_human(out, color),
            Format::Json => write_json(out, &self.json()),
            Format::Sarif => write_json(out, &self.sarif()),
            Format::Github => self.write_github(out),
        }
    }

    fn write_human(&self, out: &mut dyn Write, color: bool) -> io::Result<()> {
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

    /// `::error file=F,line=L,col=C,title=SS101::message`, one line per diagnostic, and
    /// `::notice` for notes.
    fn write_github(&self, out: &mut dyn Write) -> io::Result<()> {
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

fn write_json(out: &mut dyn Write, value: &Value) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// The byte range to underline on a line: the token starting at the 1-based character
/// `column`, a quoted string to its closing quote, a key up to its `:`, else the rest of
/// the line (without trailing blanks or a JSON comma).
fn highlight(line: &str, column: usize) -> std::ops::Range<usize> {
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

/// Percent-encodes all but RFC 3986 unreserved characters and `/`.
fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{Location, ObjectRef};

    fn diagnostics() -> Vec<Diagnostic> {
        vec![
            Diagnostic::new(
                Code::UnknownProvider,
                Location {
                    source: "k8s/app, v1.yaml".into(),
                    line: 3,
                    column: 30,
                },
                "unknown secret-store provider `aws`",
            )
            .with_object(Some(ObjectRef {
                kind: "Deployment".into(),
                namespace: Some("shop".into()),
                name: "api".into(),
            }))
            .with_field("spec.template.metadata.annotations[rafay.dev/secretstore]")
            .with_help("the only provider is `vault`"),
            Diagnostic::new(
                Code::NoServiceAccount,
                Location {
                    source: "<stdin>".into(),
                    line: 9,
                    column: 1,
                },
                "100% sure:\r\nyes",
            ),
        ]
    }

    fn sources() -> BTreeMap<String, String> {
        BTreeMap::from([(
            "k8s/app, v1.yaml".to_string(),
            "kind: Deployment\nx:\n      rafay.dev/secretstore: aws\n".to_string(),
        )])
    }

    fn render(format: Format) -> String {
        let diagnostics = diagnostics();
        let sources = sources();
        let notes = [Note {
            source: "chart/templates/a.yaml".into(),
            message: "skipped".into(),
        }];
        let report = Report {
            command: "lint",
            diagnostics: &diagnostics,
            sources: &sources,
            notes: &notes,
        };
        let mut out = Vec::new();
        report.write(format, &mut out, false).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn github_commands_are_escaped() {
        let out = render(Format::Github);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "::error file=k8s/app%2C v1.yaml,line=3,col=30,title=SS101::Deployment shop/api: \
             spec.template.metadata.annotations[rafay.dev/secretstore]: unknown secret-store \
             provider `aws`%0Ahelp: the only provider is `vault`"
        );
        assert_eq!(
            lines[1],
            "::warning file=<stdin>,line=9,col=1,title=SS202::100%25 sure:%0D%0Ayes"
        );
        assert_eq!(lines[2], "::notice file=chart/templates/a.yaml::skipped");
    }

    #[test]
    fn human_shows_the_source_line() {
        let out = render(Format::Human);
        assert!(
            out.contains("error[SS101]: unknown secret-store provider `aws`"),
            "{out}"
        );
        assert!(out.contains("k8s/app, v1.yaml:3:30"), "{out}");
        assert!(out.contains("rafay.dev/secretstore: aws"), "{out}");
        assert!(out.contains("^^^ spec.template"), "{out}");
        assert!(out.contains("help: the only provider is `vault`"), "{out}");
        assert!(out.contains("<stdin>:9:1"), "{out}");
        assert!(
            out.ends_with("secretstore lint: 1 error, 1 warning\n"),
            "{out}"
        );
    }

    #[test]
    fn json_and_sarif_shapes() {
        let json: Value = serde_json::from_str(&render(Format::Json)).unwrap();
        assert_eq!(json["findings"][0]["object"]["namespace"], "shop");
        assert_eq!(json["findings"][1]["object"], Value::Null);
        assert_eq!(json["summary"], json!({"errors": 1, "warnings": 1}));
        let sarif: Value = serde_json::from_str(&render(Format::Sarif)).unwrap();
        let run = &sarif["runs"][0];
        assert_eq!(run["tool"]["driver"]["rules"][1]["id"], "SS202");
        assert_eq!(run["results"][1]["ruleIndex"], 1);
        assert_eq!(
            run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "k8s/app%2C%20v1.yaml"
        );
        assert_eq!(
            run["results"][1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "%3Cstdin%3E"
        );
    }

    #[test]
    fn highlights_tokens() {
        let line = r#"    "rafay.dev/secretstore": "aws","#;
        assert_eq!(&line[highlight(line, 5)], r#""rafay.dev/secretstore""#);
        assert_eq!(&line[highlight(line, 30)], r#""aws""#);
        let line = "      rafay.dev/secretstore: aws  ";
        assert_eq!(&line[highlight(line, 7)], "rafay.dev/secretstore");
        assert_eq!(&line[highlight(line, 30)], "aws");
        assert_eq!(highlight(line, 99), line.len()..line.len());
        // A token of Unicode blanks (U+3000) is underlined whole, not cut inside.
        let line = "    rafay.dev/secretstore: \u{3000}";
        assert_eq!(&line[highlight(line, 28)], "\u{3000}");
    }
}
