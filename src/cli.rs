//! Command-line interface: argument definitions and the commands' entry points.
//! `main.rs` only parses and maps the result to an exit code.

use crate::config::{Overrides, Settings};
use crate::render::{self, Input, Options};
use crate::report::{Format, Report};
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit statuses shared by every command.
pub mod exit {
    pub const OK: u8 = 0;
    /// Findings, or input that was refused.
    pub const FINDINGS: u8 = 1;
    /// Usage or environment problem.
    pub const USAGE: u8 = 2;
}

const RENDER_EXAMPLES: &str = "\
Examples:
  helm template shop ./chart | secretstore render
  kustomize build overlays/prod | secretstore render --cluster prod-eu
  secretstore render examples/deployment.yaml
  helm install shop ./chart --post-renderer secretstore --post-renderer-args render";

const LINT_EXAMPLES: &str = "\
Exit status: 0 clean (warnings allowed), 1 findings (errors; warnings too with
--deny-warnings), 2 usage error.

Examples:
  secretstore lint k8s/
  secretstore lint --format github --deny-warnings deploy/ overlays/
  helm template shop ./chart | secretstore lint -
  secretstore lint --format sarif . > secretstore.sarif";

#[derive(Debug, Parser)]
#[command(
    name = "secretstore",
    version,
    about = "Expand Vault secret-store references in Kubernetes manifests into pod wiring",
    long_about = "Expand Vault secret-store references (the Rafay secret-store dialect) in \
Kubernetes manifests into the pod wiring that fetches the secrets at pod start. Secret values \
never pass through Git, Helm, Argo CD or etcd: rendered manifests hold only references."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Expand opted-in pod templates of a manifest stream (stdin when no file is given).
    #[command(after_help = RENDER_EXAMPLES)]
    Render(RenderArgs),
    /// The init container's job: log in to Vault, fetch the secrets listed in
    /// $SECRETSTORE_SPEC and write them into the pod's secrets volume.
    Agent,
    /// Replace secret references in the environment and arguments with their values
    /// from this container's env file, then execute CMD in place (same PID, signals and
    /// exit status).
    Exec(ExecArgs),
    /// Check manifests offline: everything render would refuse, plus pods likely to fail at start.
    #[command(after_help = LINT_EXAMPLES)]
    Lint(LintArgs),
    /// Copy this binary into DIR as `secretstore` (e.g. an emptyDir that an Argo CD
    /// plugin sidecar puts on its PATH; the image may have no shell or `cp`).
    Install(InstallArgs),
    /// Print a shell completion script.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The command and its arguments, after `--`
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<std::ffi::OsString>,
}

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  secretstore completions bash > /etc/bash_completion.d/secretstore
  secretstore completions zsh > \"${fpath[1]}/_secretstore\"
  secretstore completions fish > ~/.config/fish/completions/secretstore.fish";

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write secretstore.1 and secretstore-<command>.1 here instead of printing
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Configuration flags shared by commands that read the configuration.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// Configuration file [env: SECRETSTORE_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<String>,
    /// Named cluster of the configuration's `clusters` [env: SECRETSTORE_CLUSTER]
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Vault address the pods use [env: SECRETSTORE_VAULT_ADDR]
    #[arg(long, value_name = "URL")]
    pub vault_addr: Option<String>,
    /// Vault auth mount path the pods log in with [env: SECRETSTORE_AUTH_PATH]
    #[arg(long, value_name = "PATH")]
    pub auth_path: Option<String>,
    /// Image of the injected init container [env: SECRETSTORE_AGENT_IMAGE]
    #[arg(long, value_name = "IMAGE")]
    pub agent_image: Option<String>,
}

impl ConfigArgs {
    pub fn settings(&self) -> Result<Settings, String> {
        let overrides = Overrides {
            config: self.config.clone(),
            cluster: self.cluster.clone(),
            vault_addr: self.vault_addr.clone(),
            auth_path: self.auth_path.clone(),
            agent_image: self.agent_image.clone(),
        };
        Settings::resolve(&overrides, &|name| std::env::var(name).ok())
    }
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Manifest files (YAML streams, JSON, `kind: List`, KRM ResourceList); `-` or none for stdin
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Accept an input with no objects (by default refused, so that a failed upstream
    /// render does not become an empty one that Argo CD prunes everything against)
    #[arg(long)]
    pub allow_empty: bool,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Files and directories (walked for .yaml, .yml and .json; hidden directories and
    /// Helm chart templates skipped); `-` for stdin [default: .]
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Exit 1 on warnings too
    #[arg(long)]
    pub deny_warnings: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Directory to copy the binary into
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Reads the named files, or stdin when there are none (or `-`).
pub fn read_inputs(files: &[PathBuf]) -> Result<Vec<Input>, String> {
    if files.is_empty() {
        return Ok(vec![read_stdin()?]);
    }
    files
        .iter()
        .map(|path| {
            if path.as_os_str() == "-" {
                return read_stdin();
            }
            std::fs::read(path)
                .map(|bytes| Input {
                    name: path.display().to_string(),
                    bytes,
                })
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        })
        .collect()
}

fn read_stdin() -> Result<Input, String> {
    let mut bytes = Vec::new();
    io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(Input {
        name: "<stdin>".into(),
        bytes,
    })
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Render(args) => run_render(args),
        Command::Agent => exit_code(crate::agent::run_from_env()),
        Command::Exec(args) => exit_code(crate::exec::run(args.command)),
        Command::Lint(args) => run_lint(args),
        Command::Install(args) => run_install(&args.dir),
        Command::Completions(args) => {
            let mut out = io::stdout().lock();
            clap_complete::generate(args.shell, &mut Cli::command(), "secretstore", &mut out);
            ExitCode::from(exit::OK)
        }
        Command::Man(args) => run_man(args.out_dir.as_deref()),
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(exit::USAGE))
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("secretstore: {message}");
    ExitCode::from(exit::USAGE)
}

pub fn run_render(args: RenderArgs) -> ExitCode {
    let settings = match args.config.settings() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let inputs = match read_inputs(&args.files) {
        Ok(i) => i,
        Err(e) => return usage_error(&e),
    };
    let options = Options {
        allow_empty: args.allow_empty,
    };
    match render::render(&inputs, &settings, &options) {
        Ok(rendered) => {
            for w in &rendered.warnings {
                eprintln!("{w}");
            }
            let stdout = io::stdout();
            let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
            if let Err(e) = rendered.write_to(&mut out).and_then(|()| out.flush()) {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    return ExitCode::from(exit::OK);
                }
                return usage_error(&format!("cannot write the output: {e}"));
            }
            ExitCode::from(exit::OK)
        }
        Err(err) => {
            let errors = err
                .diagnostics
                .iter()
                .filter(|d| d.severity == crate::diag::Severity::Error)
                .count();
            for d in &err.diagnostics {
                eprintln!("{d}");
            }
            eprintln!(
                "secretstore: render refused the input ({errors} error{}); nothing was written",
                if errors == 1 { "" } else { "s" }
            );
            if let Some(krm) = err.krm_output {
                let _ = io::stdout().write_all(&krm);
            }
            ExitCode::from(exit::FINDINGS)
        }
    }
}

pub fn run_lint(args: LintArgs) -> ExitCode {
    let settings = match args.config.settings() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths
    };
    let targets = match crate::lint::collect(&paths) {
        Ok(t) => t,
        Err(e) => return usage_error(&e),
    };
    let mut diagnostics = Vec::new();
    let mut sources = BTreeMap::new();
    for file in &targets.files {
        let input = match file {
            None => read_stdin(),
            Some(path) => std::fs::read(path)
                .map(|bytes| Input {
                    name: path.display().to_string(),
                    bytes,
                })
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        };
        let input = match input {
            Ok(i) => i,
            Err(e) => return usage_error(&e),
        };
        let found = crate::lint::lint_input(&input, &settings);
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
    let color = args.format == Format::Human
        && io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if let Err(e) = report
        .write(args.format, &mut out, color)
        .and_then(|()| out.flush())
    {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return usage_error(&format!("cannot write the report: {e}"));
        }
    }
    if report.errors() > 0 || (args.deny_warnings && report.warnings() > 0) {
        ExitCode::from(exit::FINDINGS)
    } else {
        ExitCode::from(exit::OK)
    }
}

/// Copies the running executable to `DIR/secretstore` (mode 0755) through a temporary
/// file and a rename, so a reader never sees a half-written binary.
pub fn run_install(dir: &std::path::Path) -> ExitCode {
    use std::os::unix::fs::PermissionsExt;
    let copy = || -> io::Result<PathBuf> {
        let source = std::env::current_exe()?;
        let dest = dir.join("secretstore");
        let temp = dir.join(format!(".secretstore.{}", std::process::id()));
        std::fs::copy(&source, &temp)
            .and_then(|_| std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)))
            .and_then(|()| std::fs::rename(&temp, &dest))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&temp);
            })?;
        Ok(dest)
    };
    match copy() {
        Ok(dest) => {
            eprintln!("secretstore: installed {}", dest.display());
            ExitCode::from(exit::OK)
        }
        Err(e) => usage_error(&format!("cannot install into {}: {e}", dir.display())),
    }
}

fn run_man(out_dir: Option<&std::path::Path>) -> ExitCode {
    let written = match out_dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
        None => clap_mangen::Man::new(Cli::command()).render(&mut io::stdout().lock()),
    };
    match written {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(exit::OK),
        Err(e) => usage_error(&format!("cannot write the man page: {e}")),
    }
}
