//! Command-line interface: argument definitions and the commands' entry points.
//! `main.rs` only parses and maps the result to an exit code.

use crate::analyze::check::{self, CheckOptions};
use crate::analyze::policy::{self, MountSources, PolicyOptions};
use crate::analyze::scan;
use crate::config::{Overrides, Settings};
use crate::diag::{Diagnostic, Severity};
use crate::render::{self, Input, Options};
use crate::report::{Format, Note, Report};
use crate::vault::client::{VaultApi, VaultEnv};
use crate::vault::mounts::MountTable;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit statuses shared by every command.
pub mod help;

pub mod exit {
    pub const OK: u8 = 0;
    /// Findings, or input that was refused.
    pub const FINDINGS: u8 = 1;
    /// Usage or environment problem.
    pub const USAGE: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(
    name = "secretstore",
    version,
    about = "Expand Vault secret-store references in Kubernetes manifests into pod wiring",
    long_about = "Expand Vault secret-store references (the Rafay secret-store dialect) in \
Kubernetes manifests into the pod wiring that fetches the secrets at pod start. Secret values \
never pass through Git, Helm, Argo CD or etcd: rendered manifests hold only references.",
    after_help = crate::cli::help::after_help("secretstore")
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Expand opted-in pod templates of a manifest stream (stdin when no file is given).
    #[command(after_help = crate::cli::help::after_help("render"))]
    Render(RenderArgs),
    /// The init container's job: log in to Vault, fetch the secrets listed in
    /// $SECRETSTORE_SPEC and write them into the pod's secrets volume (in live mode, keep
    /// them fresh as a native sidecar).
    #[command(after_help = crate::cli::help::after_help("agent"))]
    Agent(AgentArgs),
    /// Replace secret references in the environment and arguments with their values
    /// from this container's env file, then execute CMD in place (same PID, signals and
    /// exit status).
    #[command(after_help = crate::cli::help::after_help("exec"))]
    Exec(ExecArgs),
    /// Check every reference of every opted-in pod against a live Vault (VAULT_ADDR,
    /// VAULT_TOKEN, VAULT_NAMESPACE, VAULT_CACERT): mounts, secrets, keys, versions, the
    /// role's bindings and policies.
    #[command(after_help = crate::cli::help::after_help("check"))]
    Check(CheckArgs),
    /// Derive least-privilege Vault policies and role bindings from the manifests.
    #[command(after_help = crate::cli::help::after_help("policy"))]
    Policy(PolicyArgs),
    /// Check manifests offline: everything render would refuse, plus pods likely to fail at start.
    #[command(after_help = crate::cli::help::after_help("lint"))]
    Lint(LintArgs),
    /// Rewrite Vault Agent Injector annotations, bank-vaults `vault:` env values and
    /// argocd-vault-plugin placeholders into this dialect (files in place; stdin to stdout).
    #[command(after_help = crate::cli::help::after_help("convert"))]
    Convert(ConvertArgs),
    /// Copy this binary into DIR as `secretstore` (e.g. an emptyDir that an Argo CD
    /// plugin sidecar puts on its PATH; the image may have no shell or `cp`).
    #[command(after_help = crate::cli::help::after_help("install"))]
    Install(InstallArgs),
    /// Print a shell completion script.
    #[command(after_help = crate::cli::help::after_help("completions"))]
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory.
    #[command(after_help = crate::cli::help::after_help("man"))]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Exit 0 if the live sidecar has finished its first fetch, else 1 (its startupProbe)
    #[arg(long)]
    pub ready: bool,
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
    /// Kubernetes version of the target cluster, e.g. 1.30; live mode needs 1.29+
    /// [env: SECRETSTORE_KUBE_VERSION, Argo CD's KUBE_VERSION]
    #[arg(long, value_name = "VERSION")]
    pub kube_version: Option<String>,
}

impl ConfigArgs {
    pub fn settings(&self) -> Result<Settings, String> {
        let overrides = Overrides {
            config: self.config.clone(),
            cluster: self.cluster.clone(),
            vault_addr: self.vault_addr.clone(),
            auth_path: self.auth_path.clone(),
            agent_image: self.agent_image.clone(),
            kube_version: self.kube_version.clone(),
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
pub struct CheckArgs {
    /// Manifest files (as for render); `-` or none for stdin
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Namespace of objects whose manifest sets none (as `helm template -n` deploys them)
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Most Vault requests in flight at once
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Print the number of pods, references, lookups and HTTP requests, and the time, to stderr
    #[arg(long)]
    pub stats: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Output of `secretstore policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyFormat {
    /// Each policy in HCL, after a comment naming its role and bindings
    Hcl,
    /// A list of {role, policy_name, policy, bound_service_account_names, bound_service_account_namespaces, auth_path}
    Json,
    /// A shell script of `vault policy write` and `vault write <auth>/role/<role>`
    VaultCli,
    /// Terraform (Vault provider): `vault_policy` and role resources; with
    /// --all-clusters also each cluster's auth backend
    Terraform,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Manifest files (as for render); `-` or none for stdin
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Namespace of objects whose manifest sets none (as `helm template -n` deploys them)
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    #[arg(long, value_enum, default_value_t = PolicyFormat::Hcl)]
    pub format: PolicyFormat,
    /// KV version of a mount, when VAULT_ADDR is not set to look it up (default: KV v2 at
    /// the path's first segment); `1` also fits non-KV engines, whose paths are used as
    /// written; `0` marks a non-KV engine with leases (live pods get sys/leases/* for it)
    #[arg(long = "kv-version", value_name = "MOUNT=N")]
    pub kv_versions: Vec<String>,
    /// Only this role
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// With --format terraform: one role per cluster of the configuration's `clusters`,
    /// on that cluster's auth path, with each cluster's auth backend and its configuration
    #[arg(long)]
    pub all_clusters: bool,
    /// With --format terraform: the auth method the roles are for (default: the live
    /// Vault's method at the auth path when VAULT_ADDR is set, else kubernetes)
    #[arg(long, value_enum, value_name = "METHOD")]
    pub auth_method: Option<policy::AuthMethod>,
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
pub struct ConvertArgs {
    /// Files and directories (walked as lint walks them); `-` or none for stdin
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Write nothing: report, and exit 1 when anything would change or be left
    #[arg(long)]
    pub check: bool,
    /// Report format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Vault role for pods whose source names none (argocd-vault-plugin placeholders,
    /// which Argo CD resolved with its own login)
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// KV version of a mount, to turn `<mount>/data/...` paths logical where the source
    /// does not imply it
    #[arg(long = "kv-version", value_name = "MOUNT=N")]
    pub kv_versions: Vec<String>,
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
            crate::sysio::read_file(path)
                .map(|bytes| Input {
                    name: path.display().to_string(),
                    bytes,
                })
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        })
        .collect()
}

fn read_stdin() -> Result<Input, String> {
    let bytes = crate::sysio::read_stdin().map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(Input {
        name: "<stdin>".into(),
        bytes,
    })
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Render(args) => run_render(args),
        Command::Agent(args) if args.ready => exit_code(crate::pod::agent::ready()),
        Command::Agent(_) => exit_code(crate::pod::agent::run_from_env()),
        Command::Exec(args) => exit_code(crate::pod::exec::run(args.command)),
        Command::Check(args) => run_check(args),
        Command::Policy(args) => run_policy(args),
        Command::Lint(args) => run_lint(args),
        Command::Convert(args) => run_convert(args),
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
    // The inputs and the rendered output live until the process exits and are never
    // changed: `write_stdout` may hand their pages to a pipe instead of copying them.
    let inputs: &'static [Input] = Vec::leak(inputs);
    let options = Options {
        allow_empty: args.allow_empty,
    };
    match render::render(inputs, &settings, &options) {
        Ok(rendered) => {
            for w in &rendered.warnings {
                eprintln!("{w}");
            }
            let rendered: &'static render::Rendered<'static> = Box::leak(Box::new(rendered));
            if let Err(e) = crate::sysio::write_stdout(rendered.pieces(), rendered.output_len()) {
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
    let targets = match crate::analyze::lint::collect(&paths) {
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
    let written =
        crate::cli::help::write_man_pages(Cli::command(), out_dir, &mut io::stdout().lock());
    match written {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(exit::OK),
        Err(e) => usage_error(&format!("cannot write the man page: {e}")),
    }
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

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub fn run_check(args: CheckArgs) -> ExitCode {
    let started = std::time::Instant::now();
    let settings = match args.config.settings() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let (scanned, sources) = match scan_inputs(&args.files, &settings) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let Some(env) = VaultEnv::from_env(&env_lookup, settings.vault_namespace.as_deref()) else {
        return usage_error("VAULT_ADDR is not set: check needs the address of the Vault the pods use (and VAULT_TOKEN)");
    };
    if env.token.is_empty() {
        return usage_error(
            "VAULT_TOKEN is not set: check reads the mounts, secrets, roles and policies with it",
        );
    }
    let api = match VaultApi::new(env, usize::from(args.concurrency)) {
        Ok(api) => std::sync::Arc::new(api),
        Err(e) => return usage_error(&e),
    };
    let options = CheckOptions {
        auth_path: settings.auth_path.clone(),
        default_namespace: args.namespace.clone(),
        audience: settings.audience.clone(),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return usage_error(&e),
    };
    let (found, stats) = if scanned.pods.is_empty() {
        (Vec::new(), check::Stats::default())
    } else {
        match rt.block_on(check::check(api, &scanned.pods, &options)) {
            Ok(result) => result,
            Err(e) => return usage_error(&format!("could not check: {e}")),
        }
    };
    let mut diagnostics = scanned.diagnostics;
    diagnostics.extend(found);
    diagnostics.sort_by(|a, b| a.location.cmp(&b.location).then(a.code.cmp(&b.code)));
    let notes: Vec<Note> = if scanned.pods.is_empty() {
        sources
            .keys()
            .map(|source| Note {
                source: source.clone(),
                message: "no opted-in pod; nothing to check against Vault".into(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let report = Report {
        command: "check",
        diagnostics: &diagnostics,
        sources: &sources,
        notes: &notes,
    };
    if let Err(e) = write_report(&report, args.format) {
        return usage_error(&e);
    }
    if args.stats {
        eprintln!(
            "secretstore check: {} pods, {} references; lookups: {} secrets, {} roles, {} policies, {} metadata; {} HTTP requests; {} ms",
            stats.pods,
            stats.references,
            stats.secret_lookups,
            stats.role_lookups,
            stats.policy_lookups,
            stats.metadata_lookups,
            stats.requests,
            started.elapsed().as_millis()
        );
    }
    ExitCode::from(check::exit_status(&diagnostics))
}

pub fn run_policy(args: PolicyArgs) -> ExitCode {
    let settings = match args.config.settings() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let mut flags = MountTable::default();
    for text in &args.kv_versions {
        match policy::parse_kv_version(text) {
            Ok(m) => flags.insert(m),
            Err(e) => return usage_error(&format!("--kv-version {e}")),
        }
    }
    let (scanned, _) = match scan_inputs(&args.files, &settings) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let server = match server_mounts(&settings, "policy") {
        Ok(table) => table,
        Err(e) => return usage_error(&e),
    };
    if args.all_clusters && args.format != PolicyFormat::Terraform {
        return usage_error("--all-clusters needs --format terraform");
    }
    let clusters = if args.all_clusters {
        match configured_clusters(&args.config) {
            Ok(c) => c,
            Err(e) => return usage_error(&e),
        }
    } else {
        Vec::new()
    };
    let method = args.auth_method.unwrap_or_else(|| {
        match server
            .as_ref()
            .and_then(|t| t.auth_type(&settings.auth_path))
        {
            Some("jwt" | "oidc") => policy::AuthMethod::Jwt,
            _ => policy::AuthMethod::Kubernetes,
        }
    });
    let errors: Vec<&Diagnostic> = scanned
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    for d in &scanned.diagnostics {
        eprintln!("{d}");
    }
    if !errors.is_empty() {
        eprintln!("secretstore: the input has errors; no policy was written");
        return ExitCode::from(exit::FINDINGS);
    }
    let options = PolicyOptions {
        auth_path: settings.auth_path.clone(),
        default_namespace: args.namespace.clone(),
        role: args.role.clone(),
    };
    let sources = MountSources { server, flags };
    let policies = match policy::generate(&scanned.pods, &sources, &options) {
        Ok(generated) => {
            for d in &generated.warnings {
                eprintln!("{d}");
            }
            generated.policies
        }
        Err(problems) => {
            for d in &problems {
                eprintln!("{d}");
            }
            eprintln!("secretstore: no policy was written");
            return ExitCode::from(exit::FINDINGS);
        }
    };
    if policies.is_empty() {
        eprintln!(
            "secretstore: no opted-in pod{} in the input; no policy to write",
            args.role
                .as_ref()
                .map(|r| format!(" with role `{r}`"))
                .unwrap_or_default()
        );
    }
    let text = match args.format {
        PolicyFormat::Hcl => policy::to_hcl(&policies),
        PolicyFormat::Json => policy::to_json(&policies),
        PolicyFormat::VaultCli => policy::to_vault_cli(&policies),
        PolicyFormat::Terraform => policy::to_terraform(
            &policies,
            &policy::TerraformOptions {
                method,
                clusters,
                audience: settings.audience.clone(),
            },
        ),
    };
    match io::stdout().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(exit::OK),
        Err(e) => usage_error(&format!("cannot write the output: {e}")),
    }
}

pub fn run_convert(args: ConvertArgs) -> ExitCode {
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
            match std::fs::read(&path) {
                Ok(bytes) => inputs.push((
                    Some(path.clone()),
                    Input {
                        name: path.display().to_string(),
                        bytes,
                    },
                )),
                Err(e) => return usage_error(&format!("cannot read {}: {e}", path.display())),
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
    let mut changed = false;
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
        if args.check {
            continue;
        }
        let written = match path {
            Some(path) => replace_file(path, output),
            None => write_all_stdout(output),
        };
        if let Err(e) = written {
            return usage_error(&e);
        }
    }
    let report = Report {
        command: "convert",
        diagnostics: &outcome.diagnostics,
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

fn write_all_stdout(bytes: &[u8]) -> Result<(), String> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write the output: {e}"))
        }
        _ => Ok(()),
    }
}

/// Replaces `path`'s content through a temporary file in its directory and a rename,
/// keeping its permissions, so a reader never sees a half-written manifest.
fn replace_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let fail = |e: io::Error| format!("cannot rewrite {}: {e}", path.display());
    let permissions = std::fs::metadata(path).map_err(fail)?.permissions();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.secretstore-{}", std::process::id()));
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::set_permissions(&temp, permissions))
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            fail(e)
        })
}

/// (name, auth path) of every cluster of the configuration's `clusters`.
fn configured_clusters(config: &ConfigArgs) -> Result<Vec<(String, String)>, String> {
    let path = config
        .config
        .clone()
        .or_else(|| crate::config::env_var(&env_lookup, "SECRETSTORE_CONFIG"))
        .ok_or("--all-clusters needs the configuration (--config or SECRETSTORE_CONFIG) whose `clusters` it writes roles for")?;
    let file = crate::config::ConfigFile::load(std::path::Path::new(&path))?;
    if file.clusters.is_empty() {
        return Err(format!(
            "--all-clusters: configuration {path} has no `clusters`"
        ));
    }
    file.clusters
        .keys()
        .map(|name| Settings::from_file(&file, Some(name)).map(|s| (name.clone(), s.auth_path)))
        .collect()
}
