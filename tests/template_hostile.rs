//! Hostile template text in a file secret's annotation, written in every YAML scalar
//! style (literal and folded blocks, one line or pretty-printed, single- and double-quoted), never makes
//! render or lint panic: render succeeds or says why, lint has an error exactly when
//! render refuses, every finding points inside the document, and a template error's
//! line is one of the annotation's.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use secretstore::analyze::lint::lint_input;
use secretstore::config::Settings;
use secretstore::diag::Severity;
use secretstore::render::{render, Input, Options};

/// Template text: the delimiters, statements, quotes, escapes and non-ASCII text
/// templates and their YAML and JSON containers treat specially, mixed with words.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("${".to_string()),
        Just("$${".to_string()),
        Just("}".to_string()),
        Just("{%".to_string()),
        Just("%}".to_string()),
        Just("{#".to_string()),
        Just(" db.password ".to_string()),
        Just("secret[\"a-b\"]".to_string()),
        Just(" | urlencode".to_string()),
        Just(" | nope".to_string()),
        Just("for k in db".to_string()),
        Just("endfor".to_string()),
        Just(" if ".to_string()),
        Just("\n".to_string()),
        Just("\t".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("\\".to_string()),
        Just("é€😀".to_string()),
        Just("#".to_string()),
        Just(": ".to_string()),
        Just("range(9)".to_string()),
        "[a-z_.]{1,6}",
        "\\PC{1,3}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

/// The configuration's JSON with `template` as its template.
fn config_json(template: &str) -> String {
    serde_json::json!({
        "sources": {"db": "database/creds/app", "secret": "secret/shop/app"},
        "secretFileName": "app.conf",
        "volumeMountPath": "/etc/app",
        "template": template,
    })
    .to_string()
}

/// The annotation line(s) holding `json` in YAML style `style` (a JSON object cannot be
/// a plain scalar: YAML reads `{...}` as a flow mapping).
fn annotation(style: usize, json: &str) -> String {
    let key = "    vault.secretstore.rafay.dev/filesecret-config-1:";
    match style {
        0 => format!("{key} |\n      {json}\n"),
        1 => format!("{key} >-\n      {json}\n"),
        2 => format!("{key} '{}'\n", json.replace('\'', "''")),
        3 => format!("{key} {}\n", serde_json::Value::from(json)),
        _ => {
            // Pretty-printed over several lines of a literal block.
            let value: serde_json::Value = serde_json::from_str(json).expect("JSON");
            let pretty = serde_json::to_string_pretty(&value).expect("JSON");
            let mut out = format!("{key} |\n");
            for line in pretty.lines() {
                out.push_str(&format!("      {line}\n"));
            }
            out
        }
    }
}

fn document(annotation: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: app\n{annotation}spec:\n  serviceAccountName: app\n  containers:\n  - name: app\n    image: app\n    command: [/app]\n    env:\n    - name: CONF\n      value: secretstore:file:1/app.conf\n"
    )
}

/// The character of `text` at the template line and column a message names
/// (`line 2 column 5: ...`).
fn template_char(text: &str, message: &str) -> Option<char> {
    let rest = message.split_once(", line ")?.1;
    let (line, rest) = rest.split_once(" column ")?;
    let column = rest.split_once(':')?.0;
    let (line, column): (usize, usize) = (line.parse().ok()?, column.parse().ok()?);
    text.split('\n').nth(line - 1)?.chars().nth(column - 1)
}

#[test]
fn hostile_templates_never_break_render_or_lint() {
    let mut runner = TestRunner::new(Config {
        cases: 192,
        failure_persistence: None,
        ..Config::default()
    });
    let settings = Settings::default();
    runner
        .run(&(hostile_text(), 0..5usize), |(text, style)| {
            let annotation = annotation(style, &config_json(&text));
            let doc = document(&annotation);
            let lines = doc.lines().count();
            let annotation_lines = 8..8 + annotation.lines().count();
            let input = Input {
                name: "t.yaml".into(),
                bytes: doc.clone().into_bytes(),
            };
            let rendered = render(
                std::slice::from_ref(&input),
                &settings,
                &Options { allow_empty: true },
            );
            let refused = match &rendered {
                Ok(_) => false,
                Err(e) => {
                    prop_assert!(!e.diagnostics.is_empty(), "a refusal without a reason");
                    true
                }
            };
            let findings = lint_input(&input, &settings);
            let errors = findings.iter().any(|d| d.severity == Severity::Error);
            prop_assert_eq!(errors, refused, "lint and render disagree on {:?}", doc);
            for d in &findings {
                prop_assert!(
                    d.location.line >= 1 && d.location.line <= lines && d.location.column >= 1,
                    "{:?} points outside the document",
                    d
                );
                if d.code.id() == "SS125" {
                    prop_assert!(
                        annotation_lines.contains(&d.location.line),
                        "{:?} is not on the annotation ({:?})",
                        d,
                        annotation_lines
                    );
                    // Unless it fell back to the value's start, the location is where the
                    // template's character is written (or its JSON escape starts).
                    let at = (d.location.line, d.location.column);
                    if at != (8, 54) && at != (9, 7) {
                        let written = doc
                            .lines()
                            .nth(at.0 - 1)
                            .and_then(|l| l.chars().nth(at.1 - 1));
                        let meant = template_char(&text, &d.message);
                        prop_assert!(
                            meant.is_none() || written == meant || written == Some('\\'),
                            "{:?}: {:?} is written where {:?} is meant",
                            d,
                            written,
                            meant
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}
