//! The argument definitions (clap derive), apart from what the commands do with them.

use crate::analyze::policy;
use crate::config::{Overrides, Settings};
use crate::report::Format;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    /// Add a secret reference (an env var or a file) to a workload of a manifest, in
    /// place; on a terminal without --env/--file, ask for it step by step.
    #[command(after_help = crate::cli::help::after_help("add"))]
    Add(AddArgs),
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
        let settings = Settings::resolve(&overrides, &|name| std::env::var(name).ok())?;
        if let Some(text) = &settings.kube_version_unreadable {
            eprintln!(
                "secretstore: warning: ignoring KUBE_VERSION {text:?}, which is not a Kubernetes version; pods in live mode are refused until it is one or --kube-version / SECRETSTORE_KUBE_VERSION is set"
            );
        }
        Ok(settings)
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
pub struct AddArgs {
    /// The manifest to edit in place (YAML, multi-document, or JSON)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The workload to add to, when the file holds several (e.g. deployment/api)
    #[arg(long, value_name = "KIND/NAME")]
    pub workload: Option<String>,
    /// The container (or init container) to add to, when the pod has several
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
    /// The Vault role the pod logs in with (needed unless the pod is opted in already)
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Set env var NAME to the reference secretstore:vault:REF, where REF is
    /// <path>[#<key>[#<version>]] (repeatable)
    #[arg(long = "env", value_name = "NAME=REF")]
    pub env: Vec<String>,
    /// Mount the secret REF as the file PATH (an absolute path) in the container only
    /// (repeatable)
    #[arg(long = "file", value_name = "PATH=REF")]
    pub files: Vec<String>,
    /// Print a unified diff to stdout instead of writing the file
    #[arg(long)]
    pub diff: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Directory to copy the binary into
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}
