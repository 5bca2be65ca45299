//! Lint never panics, has an error exactly when render refuses, and writes its report in
//! every format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretstore::config::Settings;
use secretstore::diag::Severity;
use secretstore::analyze::lint::lint_input;
use secretstore::render::{render, Input, Options};
use secretstore::report::{Format, Report};
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let input = Input {
        name: "fuzz.yaml".into(),
        bytes: data.to_vec(),
    };
    let settings = Settings::default();
    let rendered = render(
        std::slice::from_ref(&input),
        &settings,
        &Options { allow_empty: true },
    )
    .is_ok();
    let diagnostics = lint_input(&input, &settings);
    let errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    assert_eq!(errors, !rendered, "lint and render disagree");
    let sources = BTreeMap::from([(
        input.name.clone(),
        String::from_utf8_lossy(data).into_owned(),
    )]);
    let report = Report {
        command: "lint",
        diagnostics: &diagnostics,
        sources: &sources,
        notes: &[],
    };
    for format in [Format::Human, Format::Json, Format::Sarif, Format::Github] {
        let mut out = Vec::new();
        if let Err(e) = report.write(format, &mut out, format == Format::Human) {
            panic!("writing to a Vec failed: {e}");
        }
    }
});
