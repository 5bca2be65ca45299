//! `secretstore add`: add env and file secret references to a workload of a manifest, in
//! place ([`crate::add`] does the edit), or print the diff. Without `--env`/`--file` on a
//! terminal, [`wizard`] asks for them step by step.

mod wizard;

use super::args::AddArgs;
use super::{exit, usage_error};
use crate::add::{self, AddRequest, Added, EnvAddition, FileAddition};
use crate::diag::{Code, Diagnostic};
use crate::in_place::{self, Original};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(args: AddArgs) -> ExitCode {
    let settings = match args.config.settings() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let file = match ManifestFile::read(&args.file) {
        Ok(f) => f,
        Err(e) => return usage_error(&e),
    };
    let mut request = AddRequest {
        workload: args.workload.clone(),
        container: args.container.clone(),
        role: args.role.clone(),
        ..AddRequest::default()
    };
    let mut bad = Vec::new();
    for arg in &args.env {
        match EnvAddition::parse(arg) {
            Ok(e) => request.env.push(e),
            Err(d) => bad.push(*d),
        }
    }
    for arg in &args.files {
        match FileAddition::parse(arg) {
            Ok(f) => request.files.push(f),
            Err(d) => bad.push(*d),
        }
    }
    if !bad.is_empty() {
        return refused(&file, &bad);
    }
    let text = match std::str::from_utf8(&file.bytes) {
        Ok(t) => t,
        Err(_) => {
            eprintln!(
                "error[{}]: {}: the file is not valid UTF-8\n  help: save it as UTF-8",
                Code::YamlSyntax,
                file.shown
            );
            return ExitCode::from(exit::FINDINGS);
        }
    };
    if request.env.is_empty() && request.files.is_empty() {
        if !(io::stdin().is_terminal() && io::stderr().is_terminal()) {
            return usage_error(
                "add needs --env NAME=REF or --file PATH=REF (it asks for them only on a terminal); see secretstore add --help",
            );
        }
        return wizard::run(&file, text, request, &settings, args.diff);
    }
    match add::apply_with(&file.shown, text, &request, &settings) {
        Err(problems) => refused(&file, &problems),
        Ok(added) => finish(&file, text, &added, args.diff),
    }
}

/// Reports the refusal; the file is untouched. Malformed arguments are usage errors.
fn refused(file: &ManifestFile, problems: &[Diagnostic]) -> ExitCode {
    for d in problems {
        print_diagnostic(d);
    }
    let errors = problems
        .iter()
        .filter(|d| d.severity == crate::diag::Severity::Error)
        .count();
    eprintln!(
        "secretstore: add refused ({errors} error{}); {} was left as it is",
        if errors == 1 { "" } else { "s" },
        file.shown
    );
    if problems.iter().all(|d| d.code == Code::AddBadArgument) {
        ExitCode::from(exit::USAGE)
    } else {
        ExitCode::from(exit::FINDINGS)
    }
}

/// A diagnostic on stderr; one about the request itself (line 0) names the argument or
/// the file without a position.
pub fn print_diagnostic(d: &Diagnostic) {
    if d.location.line == 0 {
        let mut line = format!("{}[{}]: {}: ", d.severity, d.code, d.location.source);
        if let Some(o) = &d.object {
            line.push_str(&format!("{o}: "));
        }
        line.push_str(&d.message);
        if let Some(help) = &d.help {
            line.push_str(&format!("\n  help: {help}"));
        }
        eprintln!("{line}");
    } else {
        eprintln!("{d}");
    }
}

/// Prints the warnings and the diff, or writes the file and says what changed.
fn finish(file: &ManifestFile, text: &str, added: &Added, diff: bool) -> ExitCode {
    for w in &added.warnings {
        print_diagnostic(w);
    }
    if diff {
        if let Err(e) = write_stdout(unified_diff(&file.shown, text, added).as_bytes()) {
            return usage_error(&e);
        }
        return ExitCode::from(exit::OK);
    }
    if !added.changed {
        eprintln!(
            "{}: {}, container {}: nothing to add, the references are there already",
            file.shown, added.workload, added.container
        );
        return ExitCode::from(exit::OK);
    }
    if let Err(e) = file.replace(added.text.as_bytes()) {
        return usage_error(&e);
    }
    print_changes(file, added);
    ExitCode::from(exit::OK)
}

fn print_changes(file: &ManifestFile, added: &Added) {
    let mut out = format!(
        "{}: {}, container {}:\n",
        file.shown, added.workload, added.container
    );
    for change in &added.changes {
        out.push_str(&format!("  {change}\n"));
    }
    eprint!("{out}");
}

/// A unified diff of the file (`a/FILE` → `b/FILE`), empty when nothing changed. A
/// replaced literal env value, which may be a secret, is shown as `<not shown>`.
pub fn unified_diff(name: &str, old: &str, added: &Added) -> String {
    if !added.changed {
        return String::new();
    }
    let old = add::masked(old, &added.replaced_literals);
    similar::TextDiff::from_lines(old.as_str(), added.text.as_str())
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}

fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write the diff: {e}"))
        }
        _ => Ok(()),
    }
}

/// The manifest as read: where it really is (a symlink's target) and its bytes.
pub struct ManifestFile {
    /// The path as given, for messages.
    shown: String,
    /// The regular file written: the path itself, or the final target of a symlink (the
    /// link stays a link).
    target: PathBuf,
    /// The target as it was read: it is rewritten only if it is still this file.
    original: Original,
    bytes: Vec<u8>,
}

impl ManifestFile {
    fn read(path: &Path) -> Result<ManifestFile, String> {
        let shown = path.display().to_string();
        let link =
            std::fs::symlink_metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let target = if link.file_type().is_symlink() {
            std::fs::canonicalize(path)
                .map_err(|e| format!("cannot follow the symlink {shown}: {e}"))?
        } else {
            path.to_path_buf()
        };
        let meta = std::fs::metadata(&target).map_err(|e| format!("cannot read {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!(
                "{shown} is not a regular file: add edits one manifest file in place"
            ));
        }
        let original = Original::of(&target)?;
        let bytes = std::fs::read(&target).map_err(|e| format!("cannot read {shown}: {e}"))?;
        Ok(ManifestFile {
            shown,
            target,
            original,
            bytes,
        })
    }

    /// Replaces the file's content keeping its owner, group, mode and hard links (see
    /// [`in_place`]): a reader sees the old or the new manifest, never half of one, and
    /// nothing is written when the file changed since it was read.
    fn replace(&self, bytes: &[u8]) -> Result<(), String> {
        in_place::replace(&self.target, &self.original, bytes, "add")
    }
}
