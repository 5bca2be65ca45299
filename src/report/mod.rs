//! Reports of diagnostics, shared by `lint` and `check`: `human` (source snippets),
//! `json`, `sarif` (SARIF 2.1.0, for GitHub code scanning), `github` (workflow
//! commands that GitHub Actions shows as annotations) and `gitlab` (GitLab's
//! code-quality report).
//!
//! Diagnostics never hold secret values, and nothing here adds any: a report shows the
//! diagnostics and, in `human`, the source lines they point at (manifests, which hold
//! only references).

use crate::diag::{Diagnostic, Severity};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{self, Write};

mod github;
mod gitlab;
mod human;
mod json;
mod sarif;

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
    /// GitLab code-quality report (artifacts: reports: codequality)
    Gitlab,
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
            Format::Gitlab => write_json(out, &self.gitlab()),
        }
    }
}

fn write_json(out: &mut dyn Write, value: &Value) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::human::highlight;
    use super::*;
    use crate::diag::{Code, Location, ObjectRef};
    use serde_json::json;

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
