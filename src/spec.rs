//! The agent spec: what render tells the init container to fetch and where to write it.
//!
//! This is the one definition shared by `render` (which serialises it into the init
//! container's `SECRETSTORE_SPEC` env var as compact JSON) and `agent`/`exec` (which read
//! it). It holds references and paths only, never a secret value.

use serde::{Deserialize, Serialize};

/// Name of the init container's env var that carries the compact JSON spec.
pub const SPEC_ENV: &str = "SECRETSTORE_SPEC";
/// Where secretstore mounts its own volumes into the containers: no file secret may be
/// mounted here.
pub const RESERVED_DIR: &str = "/secretstore";
/// The most the agent takes from Vault in one answer (a secret's JSON); a larger answer
/// is refused with an error naming the path.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;
/// The most the agent holds at once of answers being received and secret data read, for
/// all secrets of a pod together.
pub const MAX_HELD_BYTES: usize = 32 << 20;
/// What the agent needs besides the secrets: code, runtime, TLS, buffers. Measured peak
/// with no secret is under 10 MiB (`benches/agent_memory.rs`).
pub const AGENT_BASE_MIB: usize = 16;
/// The init container's default memory limit, derived from the caps: the base, everything
/// held, and one answer's worth for the copy made while a body grows.
pub const AGENT_MEMORY_LIMIT_MIB: usize =
    AGENT_BASE_MIB + ((MAX_HELD_BYTES + MAX_ANSWER_BYTES) >> 20);
/// Longest file name the agent writes: Linux's 255 less what its temporary name adds
/// (`.` + name + `.tmp` + a pid of up to 10 digits).
pub const MAX_FILE_NAME: usize = 255 - (1 + 4 + 10);
/// Where the init container sees the secrets volume (read-write).
pub const AGENT_SECRETS_DIR: &str = "/secretstore/secrets";
/// Where the init container and the wrapped containers see the bin volume.
pub const BIN_DIR: &str = "/secretstore/bin";
/// Where a wrapped container sees its own env file directory (read-only sub-path mount).
pub const ENV_DIR: &str = "/secretstore/env";
/// File name of a container's env file, inside its env directory.
pub const ENV_FILE_NAME: &str = "env.json";
/// Env var that overrides where `exec` reads its env file.
pub const ENV_FILE_ENV: &str = "SECRETSTORE_ENV_FILE";
/// Directory of the projected service-account token in the init container.
pub const TOKEN_DIR: &str = "/var/run/secrets/secretstore";
/// File name of the projected token inside [`TOKEN_DIR`].
pub const TOKEN_FILE_NAME: &str = "token";
/// Directory where the CA certificate volume is mounted in the init container.
pub const CA_DIR: &str = "/secretstore/ca";
/// Prefix of every env value that is a secret reference.
pub const REF_PREFIX: &str = "secretstore:vault:";

/// Everything the init container needs, in the order it needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Format version of this spec; the agent refuses versions it does not know.
    pub v: u32,
    pub vault: VaultConnection,
    /// Overall deadline for the agent, in seconds, retries included.
    pub timeout_seconds: u64,
    /// Each distinct secret read once; files and env refs point into this list by index.
    pub secrets: Vec<SecretRead>,
    pub files: Vec<FileOutput>,
    pub env_files: Vec<EnvFileOutput>,
    /// Where to copy the agent's own executable (a file path in the bin volume), when some
    /// container's command is wrapped with `secretstore exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_binary_to: Option<String>,
    /// The secrets volume as the agent sees it: every file and env file is written inside
    /// it, and the agent refuses a spec that says otherwise. Render leaves it out (the
    /// default, [`AGENT_SECRETS_DIR`]); tests run the agent with its volumes elsewhere.
    #[serde(
        default = "default_secrets_root",
        skip_serializing_if = "is_default_secrets_root"
    )]
    pub secrets_root: String,
    /// The bin volume as the agent sees it: `copy_binary_to` must be inside it.
    #[serde(
        default = "default_bin_root",
        skip_serializing_if = "is_default_bin_root"
    )]
    pub bin_root: String,
}

fn default_secrets_root() -> String {
    AGENT_SECRETS_DIR.to_owned()
}

fn is_default_secrets_root(root: &str) -> bool {
    root == AGENT_SECRETS_DIR
}

fn default_bin_root() -> String {
    BIN_DIR.to_owned()
}

fn is_default_bin_root(root: &str) -> bool {
    root == BIN_DIR
}

/// How to reach and log in to Vault from the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConnection {
    pub address: String,
    /// Auth mount path without a trailing slash, e.g. `auth/kubernetes`; login goes to
    /// `<auth_path>/login`.
    pub auth_path: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// PEM file with the CA bundle to trust, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// The projected service-account token file.
    pub token_file: String,
}

/// One secret read: a Vault path as written in the manifest (logical or API form; the
/// agent resolves the mount and KV version at run time), optionally pinned to a version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRead {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// How a whole secret (no `#key`) is written to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Json,
    Yaml,
    Env,
    Properties,
    /// The raw value of one key; only valid with a `#key` reference.
    Raw,
}

impl FileFormat {
    pub const ALL: [(&'static str, FileFormat); 5] = [
        ("json", FileFormat::Json),
        ("yaml", FileFormat::Yaml),
        ("env", FileFormat::Env),
        ("properties", FileFormat::Properties),
        ("raw", FileFormat::Raw),
    ];

    pub fn parse(name: &str) -> Option<FileFormat> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }
}

/// Whether `key` is a shell variable name, as format `env` needs its keys to be.
pub fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One file secret, written by the agent into the secrets volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutput {
    /// Index into [`AgentSpec::secrets`].
    pub secret: usize,
    /// The key to write raw; `None` writes the whole data map in `format`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub format: FileFormat,
    /// Octal permission bits, e.g. `0o444`.
    pub mode: u32,
    /// Absolute path of the file as the agent sees it (under [`AGENT_SECRETS_DIR`]).
    pub path: String,
    /// The reference as written in the manifest, for error messages.
    pub reference: String,
}

/// One container's env file: the values for the env refs of that container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvFileOutput {
    pub container: String,
    /// Absolute path of the env file as the agent sees it (under [`AGENT_SECRETS_DIR`]).
    pub path: String,
    pub refs: Vec<EnvRef>,
}

/// One env reference: the literal text of the env value (`secretstore:vault:...`), which is
/// also the key `exec` looks values up by, and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvRef {
    pub reference: String,
    pub secret: usize,
    pub key: String,
}

/// The env file a wrapped container reads: reference text → value. Values are secrets;
/// callers hold the parsed map in zeroizing memory.
pub type EnvFileContents = std::collections::BTreeMap<String, String>;

impl AgentSpec {
    pub const VERSION: u32 = 1;

    pub fn to_compact_json(&self) -> String {
        // Serialising plain strings, numbers and lists cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<AgentSpec, String> {
        let spec: AgentSpec = serde_json::from_str(text)
            .map_err(|e| format!("{SPEC_ENV} is not a valid agent spec: {e}"))?;
        if spec.v != Self::VERSION {
            return Err(format!(
                "{SPEC_ENV} has spec version {}, this agent understands version {}: use the agent image that matches the secretstore that rendered the manifest",
                spec.v,
                Self::VERSION
            ));
        }
        Ok(spec)
    }
}
