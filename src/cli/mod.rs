//! Command-line interface: the argument definitions ([`args`]), one module per command,
//! the exit statuses ([`exit`]) and the help text ([`help`]). `main.rs` only parses and
//! maps the result to an exit code; each command reads its inputs through the helpers
//! here, calls the library and decides its exit status.

pub mod args;
pub mod exit;
pub mod help;

mod add;
mod check;
mod convert;
mod install;
mod lint;
mod man;
mod policy;
mod render;

pub use args::{Cli, Command};

use crate::analyze::scan;
use crate::config::Settings;
use crate::render::Input;
use crate::report::{Format, Report};
use crate::vault::client::{VaultApi, VaultEnv};
use crate::vault::mounts::MountTable;
use clap::CommandFactory;
use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Render(args) => render::run(args),
        Command::Agent(args) if args.ready => exit::from_status(crate::pod::agent::ready()),
        Command::Agent(_) => exit::from_status(crate::pod::agent::run_from_env()),
        Command::Exec(args) => exit::from_status(crate::pod::exec::run(args.command)),
        Command::Check(args) => check::run(args),
        Command::Policy(args) => policy::run(args),
        Command::Lint(args) => lint::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Add(args) => add::run(args),
        Command::Install(args) => install::run(&args.dir),
        Command::Completions(args) => {
            let mut out = io::stdout().lock();
            clap_complete::generate(args.shell, &mut Cli::command(), "secretstore", &mut out);
            ExitCode::from(exit::OK)
        }
        Command::Man(args) => man::run(args.out_dir.as_deref()),
    }
}

/// Reads one file, or stdin for `-`: the one way every command reads its input.
pub fn read_input(path: &Path) -> Result<Input, String> {
    if path.as_os_str() == "-" {
        return read_stdin();
    }
    crate::sysio::read_file(path)
        .map(|bytes| Input {
            name: path.display().to_string(),
            bytes,
        })
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Reads the named files, or stdin when there are none.
pub fn read_inputs(files: &[PathBuf]) -> Result<Vec<Input>, String> {
    if files.is_empty() {
        return Ok(vec![read_stdin()?]);
    }
    files.iter().map(|path| read_input(path)).collect()
}

pub fn read_stdin() -> Result<Input, String> {
    let bytes = crate::sysio::read_stdin().map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(Input {
        name: "<stdin>".into(),
        bytes,
    })
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("secretstore: {message}");
    ExitCode::from(exit::USAGE)
}

/// Scans every input into one list of pods and diagnostics, keeping each input's text
/// for report snippets.
fn scan_inputs(
    files: &[PathBuf],
    settings: &Settings,
) -> Result<(scan::Scan, BTreeMap<String, String>), String> {
    let inputs = read_inputs(files)?;
    let mut all = scan::Scan::default();
    let mut sources = BTreeMap::new();
    for input in &inputs {
        let mut one = scan::scan(input, settings);
        all.pods.append(&mut one.pods);
        all.diagnostics.append(&mut one.diagnostics);
        sources.insert(
            input.name.clone(),
            String::from_utf8_lossy(&input.bytes).into_owned(),
        );
    }
    Ok((all, sources))
}

/// Writes a report to stdout, colouring the human format on a terminal.
fn write_report(report: &Report, format: Format) -> Result<(), String> {
    let color = format == Format::Human
        && io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match report
        .write(format, &mut out, color)
        .and_then(|()| out.flush())
    {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write the report: {e}"))
        }
        _ => Ok(()),
    }
}

fn write_all_stdout(bytes: &[u8]) -> Result<(), String> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write the output: {e}"))
        }
        _ => Ok(()),
    }
}

/// The mounts of the Vault at `VAULT_ADDR`, for `command` to learn their KV versions
/// from; `None` without `VAULT_ADDR`.
fn server_mounts(settings: &Settings, command: &str) -> Result<Option<MountTable>, String> {
    match VaultEnv::from_env(&env_lookup, settings.vault_namespace.as_deref()) {
        None => Ok(None),
        Some(env) if env.token.is_empty() => Err(format!(
            "VAULT_ADDR is set but VAULT_TOKEN is not: {command} looks up the mounts' KV versions with it (or unset VAULT_ADDR and pass --kv-version MOUNT=N)"
        )),
        Some(env) => VaultApi::new(env, 1)
            .and_then(|api| {
                runtime()?
                    .block_on(api.mounts())
                    .map_err(|e| format!("cannot look up the mounts' KV versions: {e}"))
            })
            .map(Some),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
