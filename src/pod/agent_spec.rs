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
/// (`.` + name + `.tmp` or `.lnk` + a pid of up to 10 digits).
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
/// Prefix of an env value that is the content of a file secret's file (SPEC 1.4):
/// `secretstore:file:<N>/<file name>`.
pub const FILE_REF_PREFIX: &str = "secretstore:file:";
/// Live mode: env var of a wrapped app container that tells `exec` to stay as the app's
/// supervisor, and which files to watch (compact JSON of [`ExecWatch`]).
pub const LIVE_ENV: &str = "SECRETSTORE_LIVE";
/// Env var that makes the agent and `exec` log JSON lines (`json`) instead of logfmt;
/// render sets it on the agent and every wrapped container when `agent.logFormat` asks.
pub const LOG_FORMAT_ENV: &str = "SECRETSTORE_LOG_FORMAT";
/// Live mode: the file the agent writes after its first complete fetch, which its
/// `startupProbe` (`secretstore agent --ready`) checks. Outside every app container's
/// sub-path mounts.
pub const READY_FILE: &str = "/secretstore/secrets/.secretstore-ready";
/// [`READY_FILE`]'s name, inside the secrets volume.
pub const READY_FILE_NAME: &str = ".secretstore-ready";
/// Live mode with metrics: the name of the sidecar's container port. Kubernetes port
/// names are IANA service names, at most 15 characters.
pub const METRICS_PORT_NAME: &str = "secretstore-met";

/// Everything the init container needs, in the order it needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Format version of this spec; the agent refuses versions it does not know.
    pub v: u32,
    pub vault: VaultConnection,
    /// Overall deadline for the agent, in seconds, retries included.
    pub timeout_seconds: u64,
    /// Each distinct secret read once; files, env refs and templates point into this list
    /// by index.
    pub secrets: Vec<SecretRead>,
    /// Each template once (SPEC 1.4), however many containers get its file or env value;
    /// files and env refs point into this list by index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<TemplateSpec>,
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
    /// Live mode (SPEC 2.1): the agent stays running as a native sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveSpec>,
}

/// What the sidecar does after the first fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSpec {
    /// How often KV secrets are read again (jitter is added by the agent).
    pub refresh_seconds: u64,
    /// Whether the pod's leases are revoked on SIGTERM (the token always is).
    pub revoke_on_stop: bool,
    /// The port of the Prometheus endpoint (`GET /metrics`), when metrics are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u16>,
}

/// What the app is told when its files change (`on-change` / `onChange`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum OnChange {
    /// Files change in place; the app reads them when it wants.
    None,
    /// The app process receives this signal (e.g. `SIGHUP`) after its files changed.
    Signal(String),
    /// The app process is stopped with SIGTERM and started again with fresh env and files.
    Restart,
}

/// Signals `signal:<NAME>` accepts: every catchable standard signal an app may handle.
pub const SIGNALS: [&str; 12] = [
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM",
    "SIGCONT", "SIGWINCH", "SIGURG", "SIGIO",
];

impl OnChange {
    /// Parses `none`, `restart` or `signal:<NAME>` (`HUP` and `SIGHUP` both work).
    pub fn parse(text: &str) -> Result<OnChange, String> {
        match text {
            "none" => Ok(OnChange::None),
            "restart" => Ok(OnChange::Restart),
            _ => {
                let Some(name) = text.strip_prefix("signal:") else {
                    return Err(format!(
                        "`{text}` is not an on-change action: use none, restart or signal:<NAME> (e.g. signal:SIGHUP)"
                    ));
                };
                let upper = name.trim().to_ascii_uppercase();
                let full = if upper.starts_with("SIG") {
                    upper
                } else {
                    format!("SIG{upper}")
                };
                if SIGNALS.contains(&full.as_str()) {
                    Ok(OnChange::Signal(full))
                } else {
                    Err(format!(
                        "`{name}` is not a signal an app can be sent on change: use one of {}",
                        SIGNALS.join(", ")
                    ))
                }
            }
        }
    }
}

impl TryFrom<String> for OnChange {
    type Error = String;
    fn try_from(text: String) -> Result<OnChange, String> {
        OnChange::parse(&text)
    }
}

impl From<OnChange> for String {
    fn from(action: OnChange) -> String {
        action.to_string()
    }
}

impl std::fmt::Display for OnChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OnChange::None => f.write_str("none"),
            OnChange::Signal(name) => write!(f, "signal:{name}"),
            OnChange::Restart => f.write_str("restart"),
        }
    }
}

/// What `exec` watches in one app container (the [`LIVE_ENV`] value): files as that
/// container sees them, each with what to do when it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecWatch {
    pub files: Vec<WatchedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchedFile {
    pub path: String,
    pub on_change: OnChange,
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
/// agent resolves the mount and KV version at run time), optionally pinned to a version;
/// or, with `params`, one secret issued by a write (SPEC 1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRead {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The body of a write (`PUT` to `path`) as written in the manifest; its strings may
    /// name pod variables ([`POD_VARIABLES`]), which the agent resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Params>,
    /// Live mode, certificates: issue again this many seconds before notAfter, when that
    /// comes before two thirds of the lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before_seconds: Option<u64>,
}

/// The body of a write, a JSON object. Params are not secret (a transit plaintext in the
/// answer is).
pub type Params = serde_json::Map<String, serde_json::Value>;

/// The pod variables a param string may name as `$(NAME)`: the name, the agent's env var
/// that holds it, and the downward-API field render wires that env var from.
pub const POD_VARIABLES: [(&str, &str, &str); 5] = [
    ("POD_NAME", "SECRETSTORE_POD_NAME", "metadata.name"),
    (
        "POD_NAMESPACE",
        "SECRETSTORE_POD_NAMESPACE",
        "metadata.namespace",
    ),
    ("POD_IP", "SECRETSTORE_POD_IP", "status.podIP"),
    (
        "POD_SERVICE_ACCOUNT",
        "SECRETSTORE_POD_SERVICE_ACCOUNT",
        "spec.serviceAccountName",
    ),
    ("NODE_NAME", "SECRETSTORE_NODE_NAME", "spec.nodeName"),
];

/// A piece of a param string: literal text, or a pod variable (index into
/// [`POD_VARIABLES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamPiece {
    Text(String),
    Var(usize),
}

/// Splits a param string into text and pod variables, Kubernetes' `$(VAR)` syntax:
/// `$$(` is a literal `$(`; a `$(...)` that names no pod variable is an error giving its
/// byte offset.
pub fn parse_param(text: &str) -> Result<Vec<ParamPiece>, (usize, String)> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(at) = rest.find('$') {
        literal.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$$(") {
            literal.push_str("$(");
            offset += at + 3;
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("$(") {
            let Some(close) = tail.find(')') else {
                return Err((
                    offset + at,
                    format!("`$(` has no closing `)`: write $(NAME) with one of {}, or $$( for a literal $(", pod_variable_names()),
                ));
            };
            let name = &tail[..close];
            let Some(index) = POD_VARIABLES.iter().position(|(n, _, _)| *n == name) else {
                return Err((
                    offset + at,
                    format!(
                        "`$({name})` is not a pod variable: use one of {}, or $$( for a literal $(",
                        pod_variable_names()
                    ),
                ));
            };
            if !literal.is_empty() {
                pieces.push(ParamPiece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(ParamPiece::Var(index));
            offset += at + 2 + close + 1;
            rest = &tail[close + 1..];
        } else {
            literal.push('$');
            offset += at + 1;
            rest = &after[1..];
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(ParamPiece::Text(literal));
    }
    Ok(pieces)
}

fn pod_variable_names() -> String {
    POD_VARIABLES
        .iter()
        .map(|(n, _, _)| format!("$({n})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every string in `value` (recursively), with the JSON path of each, e.g. `alt_names`
/// or `tags[0]`.
pub fn param_strings<'v>(
    value: &'v serde_json::Value,
    at: String,
    out: &mut Vec<(String, &'v str)>,
) {
    match value {
        serde_json::Value::String(s) => out.push((at, s)),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                param_strings(item, format!("{at}[{i}]"), out);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                param_strings(v, path, out);
            }
        }
        _ => {}
    }
}

/// The params with every pod variable replaced by `value(index)`; an unknown or unset
/// variable is an error naming it.
pub fn resolve_params(
    params: &Params,
    value: &dyn Fn(usize) -> Option<String>,
) -> Result<Params, String> {
    fn resolve(
        v: &serde_json::Value,
        value: &dyn Fn(usize) -> Option<String>,
    ) -> Result<serde_json::Value, String> {
        Ok(match v {
            serde_json::Value::String(s) => {
                let mut out = String::new();
                for piece in parse_param(s).map_err(|(_, e)| e)? {
                    match piece {
                        ParamPiece::Text(t) => out.push_str(&t),
                        ParamPiece::Var(i) => {
                            let (name, env, _) = POD_VARIABLES[i];
                            match value(i) {
                                Some(v) if !v.is_empty() => out.push_str(&v),
                                _ => {
                                    return Err(format!(
                                        "$({name}) is used in params, but {env} is not set in the agent's environment: render wires it from the downward API"
                                    ))
                                }
                            }
                        }
                    }
                }
                serde_json::Value::String(out)
            }
            serde_json::Value::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|i| resolve(i, value))
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), resolve(v, value)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }
    params
        .iter()
        .map(|(k, v)| Ok((k.clone(), resolve(v, value)?)))
        .collect()
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
    /// Index into [`AgentSpec::secrets`]: the answer the file holds a key of, or whole.
    /// `None` for a template's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<usize>,
    /// The key to write raw; `None` writes the whole data map in `format`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub format: FileFormat,
    /// Index into [`AgentSpec::templates`]: the file is that template's output (then
    /// `secret` and `key` are `None` and `format` is `raw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<usize>,
    /// Octal permission bits, e.g. `0o444`.
    pub mode: u32,
    /// Absolute path of the file as the agent sees it (under [`AGENT_SECRETS_DIR`]).
    pub path: String,
    /// The reference as written in the manifest, for error messages (for a template, the
    /// config and file: `filesecret-config-1/app.conf`).
    pub reference: String,
    /// Live mode: what the containers of this file are told when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_change: Option<OnChange>,
    /// The file belongs to a config of several files (`files`): its directory is written
    /// as one version (a `..data` symlink swap), so a reader never sees two answers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub together: bool,
}

/// A template (SPEC 1.4): its text and the secrets its aliases name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// The config and file it comes from, for messages: `filesecret-config-1/app.conf`.
    pub name: String,
    pub text: String,
    /// Alias → index into [`AgentSpec::secrets`].
    pub sources: std::collections::BTreeMap<String, usize>,
}

/// What a file or an env value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'s> {
    /// One key of a secret's answer, raw.
    Key { secret: usize, key: &'s str },
    /// A secret's whole data map in a format.
    Whole { secret: usize, format: FileFormat },
    /// A template's output.
    Template(usize),
}

impl FileOutput {
    /// What the file holds; `None` when its fields do not say one thing (a spec the agent
    /// refuses).
    pub fn content(&self) -> Option<Content<'_>> {
        content_of(
            self.secret,
            self.key.as_deref(),
            Some(self.format),
            self.template,
        )
    }
}

fn content_of(
    secret: Option<usize>,
    key: Option<&str>,
    format: Option<FileFormat>,
    template: Option<usize>,
) -> Option<Content<'_>> {
    match (secret, key, format, template) {
        (Some(secret), Some(key), None | Some(FileFormat::Raw), None) => {
            Some(Content::Key { secret, key })
        }
        (Some(_), None, None | Some(FileFormat::Raw), None) => None,
        (Some(secret), None, Some(format), None) => Some(Content::Whole { secret, format }),
        (None, None, None | Some(FileFormat::Raw), Some(t)) => Some(Content::Template(t)),
        _ => None,
    }
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

/// One env reference: the literal text of the env value (`secretstore:vault:...` or
/// `secretstore:file:...`), which is also the key `exec` looks values up by, and where its
/// value comes from: a key of a secret, a secret's whole data in a format, or a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvRef {
    pub reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `secretstore:file:` of a file that holds a whole secret: its format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FileFormat>,
    /// Index into [`AgentSpec::templates`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<usize>,
}

impl EnvRef {
    /// What the value is; `None` when the fields do not say one thing.
    pub fn content(&self) -> Option<Content<'_>> {
        content_of(self.secret, self.key.as_deref(), self.format, self.template)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_strings_split_into_text_and_pod_variables() {
        assert_eq!(
            parse_param("$(POD_NAME).web.$(POD_NAMESPACE).svc").unwrap(),
            vec![
                ParamPiece::Var(0),
                ParamPiece::Text(".web.".into()),
                ParamPiece::Var(1),
                ParamPiece::Text(".svc".into()),
            ]
        );
        assert_eq!(
            parse_param("cost $5 $$(POD_NAME)").unwrap(),
            vec![ParamPiece::Text("cost $5 $(POD_NAME)".into())]
        );
        let (at, message) = parse_param("a.$(HOSTNAME)").unwrap_err();
        assert_eq!(at, 2);
        assert!(message.contains("$(HOSTNAME)"), "{message}");
        assert!(parse_param("$(POD_NAME").is_err());
        let params: Params = serde_json::from_str(
            r#"{"common_name":"$(POD_NAME).x","alt":["$(NODE_NAME)"],"ttl":60}"#,
        )
        .unwrap();
        let resolved = resolve_params(&params, &|i| Some(format!("v{i}"))).unwrap();
        assert_eq!(
            serde_json::Value::Object(resolved).to_string(),
            r#"{"common_name":"v0.x","alt":["v4"],"ttl":60}"#
        );
        assert!(resolve_params(&params, &|_| None)
            .unwrap_err()
            .contains("SECRETSTORE_POD_NAME"));
    }
}
