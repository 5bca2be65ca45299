//! The Rafay secret-store dialect (SPEC section 1), parsed from a pod template into a typed
//! request with source positions.

use crate::diag::{Diagnostic, Location, ObjectRef};
use crate::pod::agent_spec::{FileFormat, OnChange, MAX_FILE_NAME, REF_PREFIX, RESERVED_DIR};
use crate::render::tree::{NodeId, Tree};
use serde::Deserialize;

pub const OPT_IN_KEY: &str = "rafay.dev/secretstore";
pub const OPT_IN_VALUE: &str = "vault";
pub const PREFIX: &str = "vault.secretstore.rafay.dev/";
pub const ROLE_KEY: &str = "vault.secretstore.rafay.dev/role";
pub const FILE_KEY_PREFIX: &str = "vault.secretstore.rafay.dev/filesecret-config-";
/// Extension: written by render on every pod it expanded.
pub const STATUS_KEY: &str = "vault.secretstore.rafay.dev/status";
pub const STATUS_INJECTED: &str = "injected";
/// Extension (live mode, SPEC 2.1): refresh interval, `off` or `0` for none.
pub const REFRESH_KEY: &str = "vault.secretstore.rafay.dev/refresh";
/// Extension (live mode): what the app is told when its files change.
pub const ON_CHANGE_KEY: &str = "vault.secretstore.rafay.dev/on-change";
/// Extension (live mode): `"false"` keeps the pod's leases when the sidecar stops.
pub const REVOKE_ON_STOP_KEY: &str = "vault.secretstore.rafay.dev/revoke-on-stop";
/// Text that every document the dialect can touch contains (in the opt-in annotation,
/// the dialect's keys and every reference); documents without it are never parsed.
pub const MARKER: &[u8] = b"secretstore";

/// Diagnostic codes of the dialect, stable across releases.
pub mod code {
    pub const YAML_SYNTAX: &str = "SS001";
    pub const LIMIT: &str = "SS002";
    pub const EMPTY_INPUT: &str = "SS003";
    pub const UNKNOWN_PROVIDER: &str = "SS101";
    pub const MISSING_ROLE: &str = "SS102";
    pub const UNKNOWN_KEY: &str = "SS103";
    pub const BAD_FILE_SUFFIX: &str = "SS104";
    pub const BAD_VALUE_TYPE: &str = "SS105";
    pub const LIVE_BAD_VALUE: &str = "SS106";
    pub const FILE_BAD_JSON: &str = "SS110";
    pub const FILE_MISSING_FIELD: &str = "SS111";
    pub const FILE_UNKNOWN_FIELD: &str = "SS112";
    pub const FILE_BAD_NAME: &str = "SS113";
    pub const FILE_RELATIVE_MOUNT: &str = "SS114";
    pub const UNKNOWN_CONTAINER: &str = "SS115";
    pub const FILE_PATH_CLASH: &str = "SS116";
    pub const MOUNT_PATH_IN_USE: &str = "SS117";
    pub const FILE_BAD_FORMAT: &str = "SS118";
    pub const BAD_REFERENCE: &str = "SS120";
    pub const REF_NOT_OPTED_IN: &str = "SS121";
    pub const NO_COMMAND: &str = "SS122";
    pub const CANNOT_EDIT: &str = "SS130";
    pub const LIVE_NEEDS_KUBE_129: &str = "SS131";
    pub const KEYS_ON_WORKLOAD: &str = "SS201";
    pub const NO_SERVICE_ACCOUNT: &str = "SS202";
    pub const FILE_UNREADABLE: &str = "SS203";
    pub const ISTIO_INIT_ORDER: &str = "SS204";
    pub const VERSION_CONFLICT: &str = "SS205";
    pub const REFRESH_TOO_SHORT: &str = "SS206";
    pub const ON_CHANGE_NOT_LIVE: &str = "SS207";

    // `check`: the references against a live Vault (README.md has the table).
    pub const MOUNT_NOT_FOUND: &str = "SS301";
    pub const VERSION_NOT_SUPPORTED: &str = "SS302";
    pub const SECRET_NOT_FOUND: &str = "SS303";
    pub const KEY_NOT_FOUND: &str = "SS304";
    pub const VERSION_NOT_FOUND: &str = "SS305";
    pub const VERSION_DELETED: &str = "SS306";
    pub const VERSION_DESTROYED: &str = "SS307";
    pub const ENV_FORMAT_KEYS: &str = "SS308";
    pub const ROLE_NOT_FOUND: &str = "SS310";
    pub const SERVICE_ACCOUNT_NOT_BOUND: &str = "SS311";
    pub const NAMESPACE_NOT_BOUND: &str = "SS312";
    pub const JWT_SUBJECT_MISMATCH: &str = "SS313";
    pub const JWT_CLAIM_MISMATCH: &str = "SS314";
    pub const AUDIENCE_MISMATCH: &str = "SS315";
    pub const NOT_A_JWT_ROLE: &str = "SS316";
    pub const POLICY_DENIES_READ: &str = "SS320";
    pub const POLICY_DENIES_LEASES: &str = "SS321";
    pub const NAMESPACE_AT_DEPLOY_TIME: &str = "SS330";
    pub const BINDING_NOT_CHECKABLE: &str = "SS331";
    pub const POLICY_NOT_CHECKABLE: &str = "SS332";
    pub const CANNOT_CHECK: &str = "SS390";

    // `convert`: what could not be converted from another tool's dialect.
    pub const CONVERT_UNSUPPORTED_ANNOTATION: &str = "SS601";
    pub const CONVERT_TEMPLATE: &str = "SS602";
    pub const CONVERT_REFERENCE: &str = "SS603";
    pub const CONVERT_PLACEHOLDER_ELSEWHERE: &str = "SS604";
    pub const CONVERT_CONFIG_MISMATCH: &str = "SS605";
    pub const CONVERT_NO_ROLE: &str = "SS606";
    pub const CONVERT_NO_COMMAND: &str = "SS607";
    pub const CONVERT_CANNOT_EDIT: &str = "SS608";
    pub const CONVERT_BEHAVIOUR_CHANGE: &str = "SS609";

    use crate::diag::Rule;

    /// Every code with a stable name and a one-line description (SARIF `rules`, docs).
    pub const RULES: &[Rule] = &[
        Rule::new(
            YAML_SYNTAX,
            "YamlSyntax",
            "The document is not valid YAML/JSON or not UTF-8.",
        ),
        Rule::new(
            LIMIT,
            "InputLimit",
            "A document exceeds a size, nesting or node limit.",
        ),
        Rule::new(
            EMPTY_INPUT,
            "EmptyInput",
            "The input holds no Kubernetes objects (render only).",
        ),
        Rule::new(
            UNKNOWN_PROVIDER,
            "UnknownProvider",
            "`rafay.dev/secretstore` names a provider other than `vault`.",
        ),
        Rule::new(
            MISSING_ROLE,
            "MissingRole",
            "An opted-in pod has no (or an empty) Vault role annotation.",
        ),
        Rule::new(
            UNKNOWN_KEY,
            "UnknownAnnotation",
            "An unknown key under `vault.secretstore.rafay.dev/`.",
        ),
        Rule::new(
            BAD_FILE_SUFFIX,
            "BadFileSecretSuffix",
            "A `filesecret-config-<N>` suffix is not made of a-z, 0-9 and -.",
        ),
        Rule::new(
            BAD_VALUE_TYPE,
            "BadAnnotationType",
            "A file secret annotation is not a string.",
        ),
        Rule::new(
            LIVE_BAD_VALUE,
            "LiveBadValue",
            "A live-mode setting (refresh, on-change, onChange, revoke-on-stop) has an invalid value.",
        ),
        Rule::new(
            FILE_BAD_JSON,
            "FileSecretBadJson",
            "A file secret configuration is not valid JSON.",
        ),
        Rule::new(
            FILE_MISSING_FIELD,
            "FileSecretMissingField",
            "A file secret lacks vaultSecretRef, secretFileName or volumeMountPath.",
        ),
        Rule::new(
            FILE_UNKNOWN_FIELD,
            "FileSecretUnknownField",
            "A file secret configuration has an unknown field.",
        ),
        Rule::new(
            FILE_BAD_NAME,
            "FileSecretBadName",
            "secretFileName is not a plain file name.",
        ),
        Rule::new(
            FILE_RELATIVE_MOUNT,
            "FileSecretRelativeMount",
            "volumeMountPath is not absolute.",
        ),
        Rule::new(
            UNKNOWN_CONTAINER,
            "UnknownContainer",
            "A file secret names a container the pod does not have.",
        ),
        Rule::new(
            FILE_PATH_CLASH,
            "FileSecretPathClash",
            "Two file secrets give one container the same path.",
        ),
        Rule::new(
            MOUNT_PATH_IN_USE,
            "MountPathInUse",
            "A file secret's volumeMountPath is already mounted in the container.",
        ),
        Rule::new(
            FILE_BAD_FORMAT,
            "FileSecretBadFormat",
            "A file secret's format or mode is invalid.",
        ),
        Rule::new(
            BAD_REFERENCE,
            "BadReference",
            "A secret reference is not `<path>[#<key>[#<version>]]`.",
        ),
        Rule::new(
            REF_NOT_OPTED_IN,
            "ReferenceNotOptedIn",
            "An env secret reference in a pod that is not opted in.",
        ),
        Rule::new(
            NO_COMMAND,
            "NoCommand",
            "A container with env references has no command to wrap.",
        ),
        Rule::new(
            CANNOT_EDIT,
            "CannotEdit",
            "Render cannot insert its wiring into this document.",
        ),
        Rule::new(
            LIVE_NEEDS_KUBE_129,
            "LiveNeedsKubernetes129",
            "Live mode needs native sidecars (Kubernetes 1.29+), but the target version is older.",
        ),
        Rule::new(
            KEYS_ON_WORKLOAD,
            "KeysOnWorkloadMetadata",
            "Dialect keys on a workload's own metadata have no effect.",
        ),
        Rule::new(
            NO_SERVICE_ACCOUNT,
            "NoServiceAccount",
            "An opted-in pod has no serviceAccountName, so it logs in to Vault as `default`.",
        ),
        Rule::new(
            FILE_UNREADABLE,
            "FileSecretUnreadable",
            "A container cannot read a file secret with its mode, user and fsGroup.",
        ),
        Rule::new(
            ISTIO_INIT_ORDER,
            "IstioInitOrder",
            "An Istio-injected pod: the init container has no network before the proxy starts.",
        ),
        Rule::new(
            VERSION_CONFLICT,
            "VersionConflict",
            "One secret path is read at different versions in one pod.",
        ),
        Rule::new(
            REFRESH_TOO_SHORT,
            "RefreshTooShort",
            "A live-mode refresh interval under 30 seconds loads Vault with little gain.",
        ),
        Rule::new(
            ON_CHANGE_NOT_LIVE,
            "OnChangeWithoutRefresh",
            "on-change, onChange or revoke-on-stop on a pod without live mode: nothing will change.",
        ),
        Rule::new(
            MOUNT_NOT_FOUND,
            "MountNotFound",
            "No secrets engine is mounted at a prefix of the reference's path (check).",
        ),
        Rule::new(
            VERSION_NOT_SUPPORTED,
            "VersionNotSupported",
            "A version is pinned on a mount that has no versions (KV v1, non-KV) (check).",
        ),
        Rule::new(
            SECRET_NOT_FOUND,
            "SecretNotFound",
            "No secret at the path, or its latest version is deleted or destroyed (check).",
        ),
        Rule::new(
            KEY_NOT_FOUND,
            "KeyNotFound",
            "The secret has no such key (check).",
        ),
        Rule::new(
            VERSION_NOT_FOUND,
            "VersionNotFound",
            "The pinned KV v2 version does not exist (check).",
        ),
        Rule::new(
            VERSION_DELETED,
            "VersionDeleted",
            "The pinned KV v2 version is soft-deleted (check).",
        ),
        Rule::new(
            VERSION_DESTROYED,
            "VersionDestroyed",
            "The pinned KV v2 version is destroyed (check).",
        ),
        Rule::new(
            ENV_FORMAT_KEYS,
            "EnvFormatKeys",
            "A file secret in format env reads a secret whose keys are not all shell variable names (check).",
        ),
        Rule::new(
            ROLE_NOT_FOUND,
            "RoleNotFound",
            "The pod's Vault role does not exist on the auth path (check).",
        ),
        Rule::new(
            SERVICE_ACCOUNT_NOT_BOUND,
            "ServiceAccountNotBound",
            "The role is not bound to the pod's service account (check).",
        ),
        Rule::new(
            NAMESPACE_NOT_BOUND,
            "NamespaceNotBound",
            "The role is not bound to the pod's namespace (check).",
        ),
        Rule::new(
            JWT_SUBJECT_MISMATCH,
            "JwtSubjectMismatch",
            "A jwt role's bound_subject is not the pod's service-account subject (check).",
        ),
        Rule::new(
            JWT_CLAIM_MISMATCH,
            "JwtClaimMismatch",
            "A jwt role's bound_claims do not match the pod's service-account token (check).",
        ),
        Rule::new(
            AUDIENCE_MISMATCH,
            "AudienceMismatch",
            "The role's audience binding does not accept the pod's token audience (check).",
        ),
        Rule::new(
            NOT_A_JWT_ROLE,
            "NotAJwtRole",
            "The role's role_type does not accept a JWT login (check).",
        ),
        Rule::new(
            POLICY_DENIES_READ,
            "PolicyDeniesRead",
            "The role's policies do not grant `read` on a path the pod reads (check).",
        ),
        Rule::new(
            POLICY_DENIES_LEASES,
            "PolicyDeniesLeases",
            "A live pod reads a leased secret, but the role's policies do not grant `update` on sys/leases/renew and sys/leases/revoke (check).",
        ),
        Rule::new(
            NAMESPACE_AT_DEPLOY_TIME,
            "NamespaceAtDeployTime",
            "The manifest sets no namespace, so the role's namespace binding cannot be decided (check, policy).",
        ),
        Rule::new(
            BINDING_NOT_CHECKABLE,
            "BindingNotCheckable",
            "Part of the role's binding depends on the cluster (namespace selector, claims) (check).",
        ),
        Rule::new(
            POLICY_NOT_CHECKABLE,
            "PolicyNotCheckable",
            "The policies deny the path unless an identity-templated path allows it (check).",
        ),
        Rule::new(
            CANNOT_CHECK,
            "CannotCheck",
            "A lookup was refused or failed, so an item could not be checked (check).",
        ),
        Rule::new(
            CONVERT_UNSUPPORTED_ANNOTATION,
            "ConvertUnsupportedAnnotation",
            "A source tool's annotation has no equivalent that convert writes (convert).",
        ),
        Rule::new(
            CONVERT_TEMPLATE,
            "ConvertTemplate",
            "A Vault Agent template is not one key or the whole secret in a file format (convert).",
        ),
        Rule::new(
            CONVERT_REFERENCE,
            "ConvertReference",
            "A source reference uses a form env references do not express (convert).",
        ),
        Rule::new(
            CONVERT_PLACEHOLDER_ELSEWHERE,
            "ConvertPlaceholderElsewhere",
            "An argocd-vault-plugin placeholder is not a pod's whole env value (convert).",
        ),
        Rule::new(
            CONVERT_CONFIG_MISMATCH,
            "ConvertConfigurationMismatch",
            "The pod's Vault address, auth path or namespace differs from the configuration (convert).",
        ),
        Rule::new(
            CONVERT_NO_ROLE,
            "ConvertNoRole",
            "No single Vault role for the converted pod (convert).",
        ),
        Rule::new(
            CONVERT_NO_COMMAND,
            "ConvertNoCommand",
            "A container that gets env references has no command to wrap (convert).",
        ),
        Rule::new(
            CONVERT_CANNOT_EDIT,
            "ConvertCannotEdit",
            "Convert cannot rewrite the pod in this layout (convert).",
        ),
        Rule::new(
            CONVERT_BEHAVIOUR_CHANGE,
            "ConvertBehaviourChange",
            "Converted, but the pod behaves differently from the source tool in a stated way (convert).",
        ),
    ];

    /// The rule of a code, if it is one of [`RULES`].
    pub fn rule(code: &str) -> Option<&'static Rule> {
        RULES.iter().find(|r| r.code == code)
    }
}

/// A parsed `<path>[#<key>[#<version>]]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    /// The path as written, without a leading `/`.
    pub path: String,
    pub key: Option<String>,
    pub version: Option<u64>,
}

impl SecretRef {
    pub fn parse(text: &str) -> Result<SecretRef, String> {
        let mut parts = text.split('#');
        let path = parts.next().unwrap_or_default().trim_start_matches('/');
        let key = parts.next();
        let version = parts.next();
        if parts.next().is_some() {
            return Err(format!(
                "`{text}` has more than two `#`: write <path>[#<key>[#<version>]]"
            ));
        }
        if path.is_empty() || path.ends_with('/') || path.contains("//") {
            return Err(format!(
                "`{text}` has no valid Vault path: write <path>[#<key>[#<version>]], e.g. secret/shop/db#password"
            ));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("the Vault path in `{text}` contains whitespace"));
        }
        if crate::vault::http::has_dot_segment(path) {
            return Err(format!(
                "the Vault path in `{text}` has a `.` or `..` segment, which would read another path than the one written: write the path itself"
            ));
        }
        if key == Some("") {
            return Err(format!("`{text}` has an empty key after `#`"));
        }
        let version = match version {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(format!(
                        "`{text}` pins version `{v}`: a KV v2 version is a positive integer"
                    ))
                }
            },
        };
        Ok(SecretRef {
            path: path.to_string(),
            key: key.map(str::to_string),
            version,
        })
    }
}

/// A container or init container of the pod template.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub node: NodeId,
    pub init: bool,
    /// Index within `containers` or `initContainers`.
    pub index: usize,
    pub image: Option<String>,
    /// Mount paths the container already has.
    pub mount_paths: Vec<String>,
}

impl Container {
    pub fn field(&self) -> String {
        format!(
            "{}[{}]",
            if self.init {
                "initContainers"
            } else {
                "containers"
            },
            self.index
        )
    }
}

#[derive(Debug, Clone)]
pub struct FileSecret {
    pub suffix: String,
    pub reference: SecretRef,
    pub reference_text: String,
    pub file_name: String,
    pub mount_path: String,
    /// Indices into [`PodRequest::containers`].
    pub containers: Vec<usize>,
    pub format: FileFormat,
    pub mode: u32,
    /// Live mode: `onChange`, overriding the pod's `on-change`.
    pub on_change: Option<OnChange>,
    /// The annotation's value node.
    pub node: NodeId,
}

#[derive(Debug, Clone)]
pub struct EnvRefUse {
    /// Index into [`PodRequest::containers`].
    pub container: usize,
    pub env_name: String,
    /// Index of the entry in the container's `env`.
    pub env_index: usize,
    pub reference: SecretRef,
    /// The env value as written, e.g. `secretstore:vault:secret/db#password`.
    pub text: String,
    pub node: NodeId,
}

/// What an opted-in pod template asks for.
#[derive(Debug, Clone)]
pub struct PodRequest {
    pub role: String,
    pub files: Vec<FileSecret>,
    pub env_refs: Vec<EnvRefUse>,
    pub containers: Vec<Container>,
    pub annotations: NodeId,
    /// Already expanded by an earlier render (`status: injected`): render leaves it as is.
    pub injected: bool,
    pub live: LiveAnnotations,
}

/// The pod's live-mode annotations (SPEC 2.1), each with its value node.
#[derive(Debug, Clone, Default)]
pub struct LiveAnnotations {
    /// `refresh`: seconds, or `None` for `off`/`0`.
    pub refresh: Option<(Option<u64>, NodeId)>,
    pub on_change: Option<(OnChange, NodeId)>,
    pub revoke_on_stop: Option<(bool, NodeId)>,
}

impl LiveAnnotations {
    /// The refresh interval in force: the annotation, else the configuration's.
    pub fn refresh_seconds(&self, configured: Option<u64>) -> Option<u64> {
        match self.refresh {
            Some((seconds, _)) => seconds,
            None => configured,
        }
    }
}

#[derive(Debug)]
pub enum Gate {
    /// Not opted in (and nothing wrong found).
    NotOptedIn,
    OptedIn(PodRequest),
}

/// Where diagnostics go, and how node positions become stream locations.
pub struct Ctx<'a> {
    pub source: &'a str,
    /// 1-based line of the document's first byte in the stream.
    pub first_line: usize,
    pub tree: &'a Tree<'a>,
    pub object: ObjectRef,
    pub diagnostics: Vec<Diagnostic>,
}

/// Where `node` of a document starting at `first_line` of `source` is.
pub fn node_location(source: &str, first_line: usize, tree: &Tree, node: NodeId) -> Location {
    let n = tree.node(node);
    Location {
        source: source.to_string(),
        line: first_line + n.line - 1,
        column: n.col + 1,
    }
}

impl Ctx<'_> {
    pub fn location(&self, node: NodeId) -> Location {
        node_location(self.source, self.first_line, self.tree, node)
    }

    pub fn error(
        &mut self,
        code: &'static str,
        node: NodeId,
        field: String,
        message: String,
        help: &str,
    ) {
        let d = Diagnostic::error(code, self.location(node), message)
            .with_object(Some(self.object.clone()))
            .with_field(field)
            .with_help(help);
        self.diagnostics.push(d);
    }

    pub fn warning(
        &mut self,
        code: &'static str,
        node: NodeId,
        field: String,
        message: String,
        help: &str,
    ) {
        let d = Diagnostic::warning(code, self.location(node), message)
            .with_object(Some(self.object.clone()))
            .with_field(field)
            .with_help(help);
        self.diagnostics.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == crate::diag::Severity::Error)
    }
}

/// Known extension keys besides the upstream ones.
const KNOWN_KEYS: [&str; 6] = [
    OPT_IN_KEY,
    ROLE_KEY,
    STATUS_KEY,
    REFRESH_KEY,
    ON_CHANGE_KEY,
    REVOKE_ON_STOP_KEY,
];

/// Warns about dialect keys on a workload's own metadata, where they have no effect.
pub fn check_workload_metadata(ctx: &mut Ctx, object: NodeId, field_prefix: &str) {
    let tree = ctx.tree;
    let Some(annotations) = tree.path(object, &["metadata", "annotations"]) else {
        return;
    };
    for (k, _) in tree.entries(annotations) {
        let Some(key) = tree.str(*k) else { continue };
        if key == OPT_IN_KEY || key.starts_with(PREFIX) {
            ctx.warning(
                code::KEYS_ON_WORKLOAD,
                *k,
                format!("{field_prefix}metadata.annotations[{key}]"),
                format!("`{key}` is on the workload's own metadata, where it has no effect"),
                "move it to the pod template's metadata.annotations (spec.template.metadata.annotations)",
            );
        }
    }
}

fn containers(tree: &Tree, spec: NodeId) -> Vec<Container> {
    let mut out = Vec::new();
    for (list, init) in [("initContainers", true), ("containers", false)] {
        let Some(seq) = tree.get(spec, list) else {
            continue;
        };
        for (index, c) in tree.items(seq).iter().enumerate() {
            let mount_paths = tree
                .get(*c, "volumeMounts")
                .map(|m| {
                    tree.items(m)
                        .iter()
                        .filter_map(|vm| tree.str_at(*vm, &["mountPath"]))
                        .map(|p| p.trim_end_matches('/').to_string())
                        .collect()
                })
                .unwrap_or_default();
            out.push(Container {
                name: tree.str_at(*c, &["name"]).unwrap_or_default().to_string(),
                node: tree.resolve(*c),
                init,
                index,
                image: tree.str_at(*c, &["image"]).map(str::to_string),
                mount_paths,
            });
        }
    }
    out
}

/// Reads the dialect of one pod template (`template` holds `metadata` and `spec`).
pub fn read_pod(ctx: &mut Ctx, template: NodeId, field: &str) -> Gate {
    let tree = ctx.tree;
    let annotations = tree.path(template, &["metadata", "annotations"]);
    let spec = tree.get(template, "spec").map(|s| tree.resolve(s));
    let containers = spec.map(|s| containers(tree, s)).unwrap_or_default();
    let env_refs = collect_env_refs(ctx, &containers, field);

    let opt_in = annotations.and_then(|a| tree.get(a, OPT_IN_KEY));
    let Some(opt_in) = opt_in else {
        for r in &env_refs {
            let c = &containers[r.container];
            ctx.error(
                code::REF_NOT_OPTED_IN,
                r.node,
                format!("{field}spec.{}.env[{}].value", c.field(), r.env_index),
                format!(
                    "env `{}` of container `{}` is a secret reference, but the pod is not opted in, so the app would start with the literal reference",
                    r.env_name, c.name
                ),
                &format!("add `{OPT_IN_KEY}: vault` and `{ROLE_KEY}: <role>` to {field}metadata.annotations"),
            );
        }
        return Gate::NotOptedIn;
    };
    let Some(annotations) = annotations else {
        return Gate::NotOptedIn;
    };
    let annotations = tree.resolve(annotations);
    let afield = format!("{field}metadata.annotations");
    if tree.str(opt_in) != Some(OPT_IN_VALUE) {
        let shown = tree.str(opt_in).unwrap_or("<not a string>").to_string();
        ctx.error(
            code::UNKNOWN_PROVIDER,
            opt_in,
            format!("{afield}[{OPT_IN_KEY}]"),
            format!("unknown secret-store provider `{shown}`"),
            "the only provider is `vault`",
        );
        return Gate::NotOptedIn;
    }
    let injected =
        tree.get(annotations, STATUS_KEY).and_then(|s| tree.str(s)) == Some(STATUS_INJECTED);

    let mut role = None;
    let mut live = LiveAnnotations::default();
    let mut file_entries: Vec<(String, NodeId, NodeId)> = Vec::new();
    for (k, v) in tree.entries(annotations) {
        let Some(key) = tree.str(*k) else { continue };
        if !key.starts_with(PREFIX) {
            continue;
        }
        let kfield = format!("{afield}[{key}]");
        if key == ROLE_KEY {
            match tree.str(*v) {
                Some(r) if r.chars().any(char::is_control) => ctx.error(
                    code::MISSING_ROLE,
                    *v,
                    kfield,
                    format!("the Vault role {r:?} holds a line break or another control character"),
                    "write the role name on one line",
                ),
                Some(r) if !r.trim().is_empty() => role = Some(r.to_string()),
                _ => ctx.error(
                    code::MISSING_ROLE,
                    *v,
                    kfield,
                    "the Vault role is empty".into(),
                    "set it to the Vault role bound to this pod's service account",
                ),
            }
        } else if key == REFRESH_KEY || key == ON_CHANGE_KEY || key == REVOKE_ON_STOP_KEY {
            read_live_annotation(ctx, key, *v, kfield, &mut live);
        } else if let Some(suffix) = key.strip_prefix(FILE_KEY_PREFIX) {
            if suffix.is_empty()
                || !suffix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                ctx.error(
                    code::BAD_FILE_SUFFIX,
                    *k,
                    kfield,
                    format!("`{key}` has an invalid suffix `{suffix}`"),
                    "the suffix after filesecret-config- is one or more of a-z, 0-9 and -",
                );
            } else {
                file_entries.push((suffix.to_string(), *k, *v));
            }
        } else if !KNOWN_KEYS.contains(&key) {
            let suggestion = suggest(key);
            ctx.error(
                code::UNKNOWN_KEY,
                *k,
                kfield,
                format!("unknown secret-store annotation `{key}`"),
                &match suggestion {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known keys: {ROLE_KEY}, {FILE_KEY_PREFIX}<N>, {STATUS_KEY}, {REFRESH_KEY}, {ON_CHANGE_KEY}, {REVOKE_ON_STOP_KEY}"),
                },
            );
        }
    }
    let role = match role {
        Some(r) => r,
        None => {
            if tree.get(annotations, ROLE_KEY).is_none() {
                ctx.error(
                    code::MISSING_ROLE,
                    opt_in,
                    afield.clone(),
                    format!("the pod is opted in but has no `{ROLE_KEY}` annotation"),
                    "add the Vault role bound to this pod's service account",
                );
            }
            String::new()
        }
    };
    file_entries.sort_by(|a, b| suffix_order(&a.0, &b.0));
    let mut files = Vec::new();
    for (suffix, _k, v) in file_entries {
        let kfield = format!("{afield}[{FILE_KEY_PREFIX}{suffix}]");
        if let Some(f) = parse_file_secret(ctx, &containers, suffix, v, &kfield) {
            files.push(f);
        }
    }
    check_file_clashes(ctx, &files, &containers, &afield, injected);
    Gate::OptedIn(PodRequest {
        role,
        files,
        env_refs,
        containers,
        annotations,
        injected,
        live,
    })
}

/// Parses one live-mode annotation into `live`, or reports its bad value.
fn read_live_annotation(
    ctx: &mut Ctx,
    key: &str,
    node: NodeId,
    field: String,
    live: &mut LiveAnnotations,
) {
    let Some(text) = ctx.tree.str(node).map(str::trim) else {
        ctx.error(
            code::LIVE_BAD_VALUE,
            node,
            field,
            format!("`{key}` is not a string"),
            "quote the value",
        );
        return;
    };
    let parsed = if key == REFRESH_KEY {
        crate::config::parse_refresh(text).map(|r| live.refresh = Some((r, node)))
    } else if key == ON_CHANGE_KEY {
        OnChange::parse(text).map(|a| live.on_change = Some((a, node)))
    } else {
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("`{text}` is not \"true\" or \"false\"")),
        }
        .map(|b| live.revoke_on_stop = Some((b, node)))
    };
    if let Err(message) = parsed {
        let help = if key == REFRESH_KEY {
            "write a duration such as 30s, 5m or 1h30m, or `off`"
        } else if key == ON_CHANGE_KEY {
            "write none, restart or signal:<NAME> (e.g. signal:SIGHUP)"
        } else {
            "write \"true\" (the default) or \"false\""
        };
        ctx.error(code::LIVE_BAD_VALUE, node, field, message, help);
    }
}

/// Numeric suffixes in numeric order first, then the rest in text order.
/// `/secretstore` itself or anything below it.
fn is_reserved_mount_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path == RESERVED_DIR
        || path
            .strip_prefix(RESERVED_DIR)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn suffix_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u128>(), b.parse::<u128>()) {
        (Ok(x), Ok(y)) => x.cmp(&y).then(a.cmp(b)),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    }
}

fn collect_env_refs(ctx: &mut Ctx, containers: &[Container], field: &str) -> Vec<EnvRefUse> {
    let tree = ctx.tree;
    let mut refs = Vec::new();
    for (ci, c) in containers.iter().enumerate() {
        let Some(env) = tree.get(c.node, "env") else {
            continue;
        };
        for (ei, e) in tree.items(env).iter().enumerate() {
            let Some(value_node) = tree.get(*e, "value") else {
                continue;
            };
            let Some(value) = tree.str(value_node) else {
                continue;
            };
            if !value.starts_with(REF_PREFIX) {
                continue;
            }
            let env_name = tree.str_at(*e, &["name"]).unwrap_or_default().to_string();
            match SecretRef::parse(&value[REF_PREFIX.len()..]) {
                Ok(mut reference) => {
                    if reference.key.is_none() {
                        reference.key = Some(env_name.clone());
                    }
                    refs.push(EnvRefUse {
                        container: ci,
                        env_name,
                        env_index: ei,
                        reference,
                        text: value.to_string(),
                        node: value_node,
                    });
                }
                Err(message) => ctx.error(
                    code::BAD_REFERENCE,
                    value_node,
                    format!("{field}spec.{}.env[{ei}].value", c.field()),
                    message,
                    "write secretstore:vault:<path>[#<key>[#<version>]]",
                ),
            }
        }
    }
    refs
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileSecretJson {
    vault_secret_ref: Option<String>,
    secret_file_name: Option<String>,
    volume_mount_path: Option<String>,
    containers: Option<Vec<String>>,
    format: Option<String>,
    mode: Option<String>,
    on_change: Option<String>,
}

const FILE_FIELDS: [&str; 7] = [
    "vaultSecretRef",
    "secretFileName",
    "volumeMountPath",
    "containers",
    "format",
    "mode",
    "onChange",
];

fn parse_file_secret(
    ctx: &mut Ctx,
    containers: &[Container],
    suffix: String,
    node: NodeId,
    field: &str,
) -> Option<FileSecret> {
    let tree = ctx.tree;
    let Some(text) = tree.str(node) else {
        ctx.error(
            code::BAD_VALUE_TYPE,
            node,
            field.into(),
            "the file secret configuration is not a string".into(),
            "write it as a JSON object in a quoted string or a block scalar (|)",
        );
        return None;
    };
    let parsed: FileSecretJson = match serde_json::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            let message = e.to_string();
            if let Some(name) = message
                .strip_prefix("unknown field `")
                .and_then(|m| m.split('`').next())
            {
                let help = match closest(name, &FILE_FIELDS) {
                    Some(s) => format!("did you mean `{s}`? fields: {}", FILE_FIELDS.join(", ")),
                    None => format!("fields: {}", FILE_FIELDS.join(", ")),
                };
                ctx.error(
                    code::FILE_UNKNOWN_FIELD,
                    node,
                    field.into(),
                    format!("unknown field `{name}` in the file secret configuration"),
                    &help,
                );
            } else {
                ctx.error(
                    code::FILE_BAD_JSON,
                    node,
                    field.into(),
                    format!("the file secret configuration is not valid JSON: {message}"),
                    r#"write a JSON object, e.g. {"vaultSecretRef": "secret/app#tls.crt", "secretFileName": "tls.crt", "volumeMountPath": "/etc/tls"}"#,
                );
            }
            return None;
        }
    };
    let mut ok = true;
    let mut missing = |present: bool, name: &str, ctx: &mut Ctx| {
        if !present {
            ctx.error(
                code::FILE_MISSING_FIELD,
                node,
                field.into(),
                format!("the file secret configuration has no `{name}`"),
                "vaultSecretRef, secretFileName and volumeMountPath are required",
            );
            ok = false;
        }
    };
    missing(parsed.vault_secret_ref.is_some(), "vaultSecretRef", ctx);
    missing(parsed.secret_file_name.is_some(), "secretFileName", ctx);
    missing(parsed.volume_mount_path.is_some(), "volumeMountPath", ctx);
    let (Some(reference_text), Some(file_name), Some(mount_path)) = (
        parsed.vault_secret_ref,
        parsed.secret_file_name,
        parsed.volume_mount_path,
    ) else {
        return None;
    };
    let reference = match SecretRef::parse(&reference_text) {
        Ok(r) => Some(r),
        Err(message) => {
            ctx.error(
                code::BAD_REFERENCE,
                node,
                format!("{field}.vaultSecretRef"),
                message,
                "write <path>[#<key>[#<version>]]",
            );
            None
        }
    };
    if file_name.is_empty() || file_name.contains('/') || file_name == "." || file_name == ".." {
        ctx.error(
            code::FILE_BAD_NAME,
            node,
            format!("{field}.secretFileName"),
            format!("`{file_name}` is not a file name"),
            "give a plain file name without `/`; the directory is volumeMountPath",
        );
        ok = false;
    } else if file_name.chars().any(char::is_control) {
        ctx.error(
            code::FILE_BAD_NAME,
            node,
            format!("{field}.secretFileName"),
            format!("{file_name:?} holds a NUL, a line break or another control character"),
            "give a plain file name of printable characters",
        );
        ok = false;
    } else if file_name.len() > MAX_FILE_NAME {
        ctx.error(
            code::FILE_BAD_NAME,
            node,
            format!("{field}.secretFileName"),
            format!(
                "the file name is {} bytes long; the agent writes names of at most {MAX_FILE_NAME} bytes",
                file_name.len()
            ),
            "give a shorter file name",
        );
        ok = false;
    }
    if !mount_path.starts_with('/') {
        ctx.error(
            code::FILE_RELATIVE_MOUNT,
            node,
            format!("{field}.volumeMountPath"),
            format!("volumeMountPath `{mount_path}` is not absolute"),
            "give an absolute directory, e.g. /etc/secrets",
        );
        ok = false;
    } else if mount_path.chars().any(char::is_control)
        || mount_path
            .trim_end_matches('/')
            .split('/')
            .skip(1)
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        ctx.error(
            code::FILE_RELATIVE_MOUNT,
            node,
            format!("{field}.volumeMountPath"),
            format!("volumeMountPath {mount_path:?} is not a plain directory path"),
            "give an absolute directory without `.`, `..`, `//` or control characters, e.g. /etc/secrets",
        );
        ok = false;
    } else if is_reserved_mount_path(&mount_path) {
        ctx.error(
            code::MOUNT_PATH_IN_USE,
            node,
            format!("{field}.volumeMountPath"),
            format!("volumeMountPath `{mount_path}` is inside {RESERVED_DIR}, where secretstore mounts its own volumes"),
            "mount the file secret elsewhere, e.g. /etc/secrets",
        );
        ok = false;
    }
    let whole = reference.as_ref().is_some_and(|r| r.key.is_none());
    let format = match parsed.format.as_deref() {
        None if whole => FileFormat::Json,
        None => FileFormat::Raw,
        Some(name) => match FileFormat::parse(name) {
            Some(FileFormat::Raw) if whole => {
                ctx.error(
                    code::FILE_BAD_FORMAT,
                    node,
                    format!("{field}.format"),
                    "format `raw` needs a `#key` in vaultSecretRef".into(),
                    "use json, yaml, env or properties for a whole secret, or add #<key>",
                );
                ok = false;
                FileFormat::Raw
            }
            Some(f) if !whole && f != FileFormat::Raw => {
                ctx.error(
                    code::FILE_BAD_FORMAT,
                    node,
                    format!("{field}.format"),
                    format!("format `{name}` applies to a whole secret, but the reference selects one key"),
                    "drop the #key to write the whole secret, or drop format (raw is the default with #key)",
                );
                ok = false;
                f
            }
            Some(f) => f,
            None => {
                ctx.error(
                    code::FILE_BAD_FORMAT,
                    node,
                    format!("{field}.format"),
                    format!("unknown format `{name}`"),
                    "formats: json, yaml, env, properties (whole secret); raw (with #key)",
                );
                ok = false;
                FileFormat::Json
            }
        },
    };
    let mode = match parsed.mode.as_deref() {
        None => 0o444,
        Some(m) => match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
            Ok(v) if v <= 0o777 && !m.is_empty() => v,
            _ => {
                ctx.error(
                    code::FILE_BAD_FORMAT,
                    node,
                    format!("{field}.mode"),
                    format!("mode `{m}` is not an octal permission"),
                    "write an octal string such as \"0440\"",
                );
                ok = false;
                0o444
            }
        },
    };
    let targets: Vec<usize> = match &parsed.containers {
        None => containers
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.init)
            .map(|(i, _)| i)
            .collect(),
        Some(names) => {
            let mut found = Vec::new();
            for name in names {
                match containers.iter().position(|c| &c.name == name) {
                    Some(i) if !found.contains(&i) => found.push(i),
                    Some(_) => {}
                    None => {
                        let known: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                        ctx.error(
                            code::UNKNOWN_CONTAINER,
                            node,
                            format!("{field}.containers"),
                            format!("no container or init container is named `{name}`"),
                            &format!("containers of this pod: {}", known.join(", ")),
                        );
                        ok = false;
                    }
                }
            }
            found
        }
    };
    let on_change = match parsed.on_change.as_deref().map(OnChange::parse) {
        None => None,
        Some(Ok(action)) => Some(action),
        Some(Err(message)) => {
            ctx.error(
                code::LIVE_BAD_VALUE,
                node,
                format!("{field}.onChange"),
                message,
                "write none, restart or signal:<NAME> (e.g. signal:SIGHUP)",
            );
            ok = false;
            None
        }
    };
    let reference = reference?;
    if !ok {
        return None;
    }
    Some(FileSecret {
        suffix,
        reference,
        reference_text,
        file_name,
        mount_path: mount_path.trim_end_matches('/').to_string(),
        containers: targets,
        format,
        mode,
        on_change,
        node,
    })
}

/// Two files at one path in one container, and mount paths the container already uses
/// (except on an injected pod, whose mounts are secretstore's own).
fn check_file_clashes(
    ctx: &mut Ctx,
    files: &[FileSecret],
    containers: &[Container],
    afield: &str,
    injected: bool,
) {
    let mut seen: Vec<(usize, &str, &str, &str)> = Vec::new();
    for f in files {
        for &c in &f.containers {
            let container = &containers[c];
            let field = format!("{afield}[{FILE_KEY_PREFIX}{}]", f.suffix);
            let mount = if f.mount_path.is_empty() {
                "/"
            } else {
                &f.mount_path
            };
            if !injected && container.mount_paths.iter().any(|p| p == &f.mount_path) {
                ctx.error(
                    code::MOUNT_PATH_IN_USE,
                    f.node,
                    format!("{field}.volumeMountPath"),
                    format!(
                        "container `{}` already mounts a volume at `{mount}`",
                        container.name
                    ),
                    "choose a volumeMountPath the container does not use",
                );
            }
            if let Some((_, _, _, other)) = seen
                .iter()
                .find(|(sc, m, n, _)| *sc == c && *m == f.mount_path && *n == f.file_name)
            {
                ctx.error(
                    code::FILE_PATH_CLASH,
                    f.node,
                    field.clone(),
                    format!(
                        "container `{}` would get two files at `{mount}/{}` (also from filesecret-config-{other})",
                        container.name, f.file_name
                    ),
                    "give each file its own secretFileName or volumeMountPath",
                );
            } else {
                seen.push((c, &f.mount_path, &f.file_name, &f.suffix));
            }
        }
    }
}

/// The closest known key to an unknown one under the dialect prefix.
fn suggest(key: &str) -> Option<String> {
    let known = [
        ROLE_KEY,
        STATUS_KEY,
        REFRESH_KEY,
        ON_CHANGE_KEY,
        REVOKE_ON_STOP_KEY,
        "vault.secretstore.rafay.dev/filesecret-config-1",
    ];
    if let Some(rest) = key.strip_prefix(PREFIX) {
        if rest.starts_with("file") || rest.contains("secret-config") || rest.contains("filesecret")
        {
            let suffix = rest.rsplit('-').next().unwrap_or("1");
            return Some(format!("{FILE_KEY_PREFIX}{suffix}"));
        }
    }
    closest(key, &known).map(str::to_string)
}

fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = SecretRef::parse("/secret/data/shop/db#password#3").unwrap();
        assert_eq!(r.path, "secret/data/shop/db");
        assert_eq!(r.key.as_deref(), Some("password"));
        assert_eq!(r.version, Some(3));
        assert!(SecretRef::parse("secret/x#k#0").is_err());
        assert!(SecretRef::parse("secret/x#k#v1").is_err());
        assert!(SecretRef::parse("secret/x#").is_err());
        assert!(SecretRef::parse("#k").is_err());
        assert!(SecretRef::parse("a#b#1#2").is_err());
    }

    #[test]
    fn suffixes_sort_numerically_first() {
        let mut s = vec!["10", "b", "2", "a", "1"];
        s.sort_by(|a, b| suffix_order(a, b));
        assert_eq!(s, vec!["1", "2", "10", "a", "b"]);
    }

    #[test]
    fn suggests_close_keys() {
        assert_eq!(
            suggest("vault.secretstore.rafay.dev/rol").as_deref(),
            Some(ROLE_KEY)
        );
        assert_eq!(
            suggest("vault.secretstore.rafay.dev/filesecret-conf-2").as_deref(),
            Some("vault.secretstore.rafay.dev/filesecret-config-2")
        );
    }
}
