//! `secretstore lint`: what render would refuse, and pods likely to fail at start.

use super::args::LintArgs;
use super::exit;
use super::{read_input, read_stdin, usage_error, write_report};
use crate::report::Report;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(args: LintArgs) -> ExitCode {
    let settings = match args.config.settings() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths
    };
    let targets = match crate::analyze::lint::collect(&paths) {
        Ok(t) => t,
        Err(e) => return usage_error(&e),
    };
    let mut diagnostics = Vec::new();
    let mut sources = BTreeMap::new();
    for file in &targets.files {
        let input = match file {
            None => read_stdin(),
            Some(path) => read_input(path),
        };
        let input = match input {
            Ok(i) => i,
            Err(e) => return usage_error(&e),
        };
        let found = crate::analyze::lint::lint_input(&input, &settings);
        if !found.is_empty() {
            sources.insert(
                input.name.clone(),
                String::from_utf8_lossy(&input.bytes).into_owned(),
            );
            diagnostics.extend(found);
        }
    }
    let report = Report {
        command: "lint",
        diagnostics: &diagnostics,
        sources: &sources,
        notes: &targets.notes,
    };
    if let Err(e) = write_report(&report, args.format) {
        return usage_error(&e);
    }
    if report.errors() > 0 || (args.deny_warnings && report.warnings() > 0) {
        ExitCode::from(exit::FINDINGS)
    } else {
        ExitCode::from(exit::OK)
    }
}
