//! `secretstore convert`: other tools' annotations into this dialect.

use super::args::ConvertArgs;
use super::exit;
use super::{read_input, read_stdin, server_mounts, usage_error, write_all_stdout, write_report};
use crate::analyze::policy;
use crate::diag::{Code, Diagnostic, Location};
use crate::in_place::{self, Original};
use crate::render::Input;
use crate::report::{Note, Report};
use std::collections::BTreeMap;
use std::io;
use std::process::ExitCode;

pub fn run(args: ConvertArgs) -> ExitCode {
    let settings = match args.config.settings() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let mut options = crate::convert::Options {
        role: args.role.clone(),
        ..Default::default()
    };
    for text in &args.kv_versions {
        match policy::parse_kv_version(text) {
            Ok(m) => options.mounts.flags.insert(m),
            Err(e) => return usage_error(&format!("--kv-version {e}")),
        }
    }
    match server_mounts(&settings, "convert") {
        Ok(table) => options.mounts.server = table,
        Err(e) => return usage_error(&e),
    }
    let stdin_only = args.paths.iter().all(|p| p.as_os_str() == "-");
    if args.paths.len() > 1 && args.paths.iter().any(|p| p.as_os_str() == "-") {
        return usage_error("`-` (stdin) cannot be combined with other paths: convert writes stdin's stream to stdout and files in place");
    }
    let (inputs, notes) = if stdin_only {
        match read_stdin() {
            Ok(input) => (vec![(None, input)], Vec::new()),
            Err(e) => return usage_error(&e),
        }
    } else {
        let targets = match crate::analyze::lint::collect(&args.paths) {
            Ok(t) => t,
            Err(e) => return usage_error(&e),
        };
        let mut inputs = Vec::new();
        for path in targets.files.into_iter().flatten() {
            // Its identity, taken before reading it: a rewrite goes ahead only if the path
            // still names this file, unchanged.
            let original = match Original::of(&path) {
                Ok(o) => o,
                Err(e) => return usage_error(&e),
            };
            match read_input(&path) {
                Ok(input) => inputs.push((Some((path, original)), input)),
                Err(e) => return usage_error(&e),
            }
        }
        (inputs, targets.notes)
    };
    let plain: Vec<Input> = inputs
        .iter()
        .map(|(_, i)| Input {
            name: i.name.clone(),
            bytes: i.bytes.clone(),
        })
        .collect();
    let outcome = crate::convert::convert(&plain, &settings, &options);
    let mut notes = notes;
    let mut sources = BTreeMap::new();
    for d in &outcome.diagnostics {
        if let Some((_, input)) = inputs.iter().find(|(_, i)| i.name == d.location.source) {
            sources
                .entry(input.name.clone())
                .or_insert_with(|| String::from_utf8_lossy(&input.bytes).into_owned());
        }
    }
    let mut diagnostics = outcome.diagnostics;
    let mut changed = false;
    // Each file is rewritten or left whole, independently: one that cannot be written is
    // reported (SS610) and the others are still written, each with its own note.
    for (((path, input), output), pods) in
        inputs.iter().zip(&outcome.outputs).zip(&outcome.converted)
    {
        let Some(output) = output else {
            if path.is_none() && !args.check {
                if let Err(e) = write_all_stdout(&input.bytes) {
                    return usage_error(&e);
                }
            }
            continue;
        };
        changed = true;
        let written = match path {
            Some((path, original)) if args.check => match original.refusal(path, "convert") {
                Some(refusal) => Err(refusal),
                None => Ok(()),
            },
            Some((path, original)) => in_place::replace(path, original, output, "convert"),
            None => match write_all_stdout(output) {
                Ok(()) => Ok(()),
                Err(e) => return usage_error(&e),
            },
        };
        if let Err(message) = written {
            sources
                .entry(input.name.clone())
                .or_insert_with(|| String::from_utf8_lossy(&input.bytes).into_owned());
            diagnostics.push(
                Diagnostic::new(
                    Code::ConvertCannotWrite,
                    Location {
                        source: input.name.clone(),
                        line: 1,
                        column: 1,
                    },
                    format!(
                        "the file is left as it was ({pods} pod template{} would be converted): {message}",
                        if *pods == 1 { "" } else { "s" }
                    ),
                )
                .with_help("do what the message says and convert again, or convert through stdin into a new file (`secretstore convert - < FILE > NEW`)"),
            );
            continue;
        }
        let verb = if args.check {
            "would convert"
        } else {
            "converted"
        };
        notes.push(Note {
            source: input.name.clone(),
            message: format!(
                "{verb} {pods} pod template{}",
                if *pods == 1 { "" } else { "s" }
            ),
        });
    }
    let report = Report {
        command: "convert",
        diagnostics: &diagnostics,
        sources: &sources,
        notes: &notes,
    };
    let to_stderr = stdin_only && !args.check;
    let reported = if to_stderr {
        let mut err = io::stderr().lock();
        report
            .write(args.format, &mut err, false)
            .map_err(|e| format!("cannot write the report: {e}"))
    } else {
        write_report(&report, args.format)
    };
    if let Err(e) = reported {
        return usage_error(&e);
    }
    if report.errors() > 0 || (args.check && changed) {
        ExitCode::from(exit::FINDINGS)
    } else {
        ExitCode::from(exit::OK)
    }
}
