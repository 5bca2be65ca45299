//! The Rafay secret-store dialect (SPEC section 1), parsed from a pod template into a typed
//! request with source positions.

use crate::diag::{Code, Diagnostic, Location, ObjectRef};
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
/// Extension (live mode): the sidecar's Prometheus metrics port, `off` or `0` for none.
pub const METRICS_PORT_KEY: &str = "vault.secretstore.rafay.dev/metrics-port";
/// Text that every document the dialect can touch contains (in the opt-in annotation,
/// the dialect's keys and every reference); documents without it are never parsed.
pub const MARKER: &[u8] = b"secretstore";

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
    /// `metrics-port`: the port, or `None` for `off`/`0`.
    pub metrics_port: Option<(Option<u16>, NodeId)>,
}

impl LiveAnnotations {
    /// The refresh interval in force: the annotation, else the configuration's.
    pub fn refresh_seconds(&self, configured: Option<u64>) -> Option<u64> {
        match self.refresh {
            Some((seconds, _)) => seconds,
            None => configured,
        }
    }

    /// The metrics port in force: the annotation, else the configuration's.
    pub fn metrics_port(&self, configured: Option<u16>) -> Option<u16> {
        match self.metrics_port {
            Some((port, _)) => port,
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

impl<'a> Ctx<'a> {
    /// A context for one document of `source` that starts at `first_line`.
    pub fn new(source: &'a str, first_line: usize, tree: &'a Tree<'a>) -> Self {
        Ctx {
            source,
            first_line,
            tree,
            object: ObjectRef::default(),
            diagnostics: Vec::new(),
        }
    }

    pub fn location(&self, node: NodeId) -> Location {
        node_location(self.source, self.first_line, self.tree, node)
    }

    /// Reports a finding about `node`, at its code's severity.
    pub fn report(&mut self, code: Code, node: NodeId, field: String, message: String, help: &str) {
        let d = Diagnostic::new(code, self.location(node), message)
            .with_object(Some(self.object.clone()))
            .with_field(field)
            .with_help(help);
        self.diagnostics.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == crate::diag::Severity::Error)
            .count()
    }
}

/// Known extension keys besides the upstream ones.
const KNOWN_KEYS: [&str; 7] = [
    OPT_IN_KEY,
    ROLE_KEY,
    STATUS_KEY,
    REFRESH_KEY,
    ON_CHANGE_KEY,
    REVOKE_ON_STOP_KEY,
    METRICS_PORT_KEY,
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
            ctx.report(
                Code::KeysOnWorkloadMetadata,
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
        report_references_not_opted_in(ctx, &env_refs, &containers, field);
        return Gate::NotOptedIn;
    };
    let Some(annotations) = annotations else {
        return Gate::NotOptedIn;
    };
    let annotations = tree.resolve(annotations);
    let afield = format!("{field}metadata.annotations");
    if tree.str(opt_in) != Some(OPT_IN_VALUE) {
        let shown = tree.str(opt_in).unwrap_or("<not a string>").to_string();
        ctx.report(
            Code::UnknownProvider,
            opt_in,
            format!("{afield}[{OPT_IN_KEY}]"),
            format!("unknown secret-store provider `{shown}`"),
            "the only provider is `vault`",
        );
        return Gate::NotOptedIn;
    }
    let injected =
        tree.get(annotations, STATUS_KEY).and_then(|s| tree.str(s)) == Some(STATUS_INJECTED);
    let DialectAnnotations {
        role,
        live,
        mut file_entries,
    } = read_annotations(ctx, annotations, &afield);
    let role = match role {
        Some(r) => r,
        None => {
            if tree.get(annotations, ROLE_KEY).is_none() {
                ctx.report(
                    Code::MissingRole,
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

/// Env references in a pod that is not opted in: the app would see the literal text.
fn report_references_not_opted_in(
    ctx: &mut Ctx,
    env_refs: &[EnvRefUse],
    containers: &[Container],
    field: &str,
) {
    for r in env_refs {
        let c = &containers[r.container];
        ctx.report(
            Code::ReferenceNotOptedIn,
            r.node,
            format!("{field}spec.{}.env[{}].value", c.field(), r.env_index),
            format!(
                "env `{}` of container `{}` is a secret reference, but the pod is not opted in, so the app would start with the literal reference",
                r.env_name, c.name
            ),
            &format!("add `{OPT_IN_KEY}: vault` and `{ROLE_KEY}: <role>` to {field}metadata.annotations"),
        );
    }
}

/// The dialect's annotations of an opted-in pod, each checked.
struct DialectAnnotations {
    role: Option<String>,
    live: LiveAnnotations,
    /// `filesecret-config-<suffix>`: the suffix, and the key and value nodes.
    file_entries: Vec<(String, NodeId, NodeId)>,
}

/// Reads each `vault.secretstore.rafay.dev/` annotation, reporting the ones that are
/// wrong or unknown.
fn read_annotations(ctx: &mut Ctx, annotations: NodeId, afield: &str) -> DialectAnnotations {
    let tree = ctx.tree;
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
                Some(r) if r.chars().any(char::is_control) => ctx.report(
                    Code::MissingRole,
                    *v,
                    kfield,
                    format!("the Vault role {r:?} holds a line break or another control character"),
                    "write the role name on one line",
                ),
                Some(r) if !r.trim().is_empty() => role = Some(r.to_string()),
                _ => ctx.report(
                    Code::MissingRole,
                    *v,
                    kfield,
                    "the Vault role is empty".into(),
                    "set it to the Vault role bound to this pod's service account",
                ),
            }
        } else if key == REFRESH_KEY
            || key == ON_CHANGE_KEY
            || key == REVOKE_ON_STOP_KEY
            || key == METRICS_PORT_KEY
        {
            read_live_annotation(ctx, key, *v, kfield, &mut live);
        } else if let Some(suffix) = key.strip_prefix(FILE_KEY_PREFIX) {
            if suffix.is_empty()
                || !suffix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                ctx.report(
                    Code::BadFileSecretSuffix,
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
            ctx.report(
                Code::UnknownAnnotation,
                *k,
                kfield,
                format!("unknown secret-store annotation `{key}`"),
                &match suggestion {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known keys: {ROLE_KEY}, {FILE_KEY_PREFIX}<N>, {STATUS_KEY}, {REFRESH_KEY}, {ON_CHANGE_KEY}, {REVOKE_ON_STOP_KEY}, {METRICS_PORT_KEY}"),
                },
            );
        }
    }
    DialectAnnotations {
        role,
        live,
        file_entries,
    }
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
        ctx.report(
            Code::LiveBadValue,
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
    } else if key == METRICS_PORT_KEY {
        parse_metrics_port(text).map(|p| live.metrics_port = Some((p, node)))
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
        } else if key == METRICS_PORT_KEY {
            "write a port number from 1 to 65535 (e.g. \"9102\"), or `off`"
        } else {
            "write \"true\" (the default) or \"false\""
        };
        ctx.report(Code::LiveBadValue, node, field, message, help);
    }
}

/// Parses a metrics port: 1-65535, or `off`/`0` for none.
pub fn parse_metrics_port(text: &str) -> Result<Option<u16>, String> {
    match text.trim() {
        "off" => Ok(None),
        other => match other.parse::<u16>() {
            Ok(0) => Ok(None),
            Ok(port) => Ok(Some(port)),
            Err(_) => Err(format!("`{text}` is not a port number (1-65535)")),
        },
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
                Err(message) => ctx.report(
                    Code::BadReference,
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

/// A `filesecret-config-<suffix>` annotation: its JSON configuration, every field checked.
fn parse_file_secret(
    ctx: &mut Ctx,
    containers: &[Container],
    suffix: String,
    node: NodeId,
    field: &str,
) -> Option<FileSecret> {
    let parsed = file_secret_json(ctx, node, field)?;
    let at = FileSite { node, field };
    let (reference_text, file_name, mount_path) = required_fields(ctx, at, &parsed)?;
    // Every field is checked, so one run reports every mistake of the configuration.
    let reference = secret_reference(ctx, at, &reference_text);
    let name_ok = file_name_ok(ctx, at, &file_name);
    let mount_ok = mount_path_ok(ctx, at, &mount_path);
    let whole = reference.as_ref().is_some_and(|r| r.key.is_none());
    let format = file_format(ctx, at, parsed.format.as_deref(), whole);
    let mode = file_mode(ctx, at, parsed.mode.as_deref());
    let targets = target_containers(ctx, at, containers, parsed.containers.as_deref());
    let on_change = file_on_change(ctx, at, parsed.on_change.as_deref());
    let (Some(reference), true, true, Some(format), Some(mode), Some(targets), Ok(on_change)) = (
        reference, name_ok, mount_ok, format, mode, targets, on_change,
    ) else {
        return None;
    };
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

/// Where a file secret's configuration is: its annotation's value and field path.
#[derive(Clone, Copy)]
struct FileSite<'f> {
    node: NodeId,
    field: &'f str,
}

impl FileSite<'_> {
    /// Reports a finding about one field of the configuration (`""` for the whole).
    fn report(&self, ctx: &mut Ctx, code: Code, json_field: &str, message: String, help: &str) {
        let field = if json_field.is_empty() {
            self.field.to_string()
        } else {
            format!("{}.{json_field}", self.field)
        };
        ctx.report(code, self.node, field, message, help);
    }
}

/// The annotation's value as the configuration's JSON object.
fn file_secret_json(ctx: &mut Ctx, node: NodeId, field: &str) -> Option<FileSecretJson> {
    let at = FileSite { node, field };
    let Some(text) = ctx.tree.str(node) else {
        at.report(
            ctx,
            Code::BadAnnotationType,
            "",
            "the file secret configuration is not a string".into(),
            "write it as a JSON object in a quoted string or a block scalar (|)",
        );
        return None;
    };
    match serde_json::from_str(text) {
        Ok(parsed) => Some(parsed),
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
                at.report(
                    ctx,
                    Code::FileSecretUnknownField,
                    "",
                    format!("unknown field `{name}` in the file secret configuration"),
                    &help,
                );
            } else {
                at.report(
                    ctx,
                    Code::FileSecretBadJson,
                    "",
                    format!("the file secret configuration is not valid JSON: {message}"),
                    r#"write a JSON object, e.g. {"vaultSecretRef": "secret/app#tls.crt", "secretFileName": "tls.crt", "volumeMountPath": "/etc/tls"}"#,
                );
            }
            None
        }
    }
}

/// `vaultSecretRef`, `secretFileName` and `volumeMountPath`, each reported when missing.
fn required_fields(
    ctx: &mut Ctx,
    at: FileSite,
    parsed: &FileSecretJson,
) -> Option<(String, String, String)> {
    for (present, name) in [
        (parsed.vault_secret_ref.is_some(), "vaultSecretRef"),
        (parsed.secret_file_name.is_some(), "secretFileName"),
        (parsed.volume_mount_path.is_some(), "volumeMountPath"),
    ] {
        if !present {
            at.report(
                ctx,
                Code::FileSecretMissingField,
                "",
                format!("the file secret configuration has no `{name}`"),
                "vaultSecretRef, secretFileName and volumeMountPath are required",
            );
        }
    }
    Some((
        parsed.vault_secret_ref.clone()?,
        parsed.secret_file_name.clone()?,
        parsed.volume_mount_path.clone()?,
    ))
}

/// `vaultSecretRef`.
fn secret_reference(ctx: &mut Ctx, at: FileSite, text: &str) -> Option<SecretRef> {
    SecretRef::parse(text)
        .map_err(|message| {
            at.report(
                ctx,
                Code::BadReference,
                "vaultSecretRef",
                message,
                "write <path>[#<key>[#<version>]]",
            );
        })
        .ok()
}

/// `secretFileName`: one plain, printable file name the agent can write.
fn file_name_ok(ctx: &mut Ctx, at: FileSite, file_name: &str) -> bool {
    let (message, help) = if file_name.is_empty()
        || file_name.contains('/')
        || file_name == "."
        || file_name == ".."
    {
        (
            format!("`{file_name}` is not a file name"),
            "give a plain file name without `/`; the directory is volumeMountPath",
        )
    } else if file_name.chars().any(char::is_control) {
        (
            format!("{file_name:?} holds a NUL, a line break or another control character"),
            "give a plain file name of printable characters",
        )
    } else if file_name.len() > MAX_FILE_NAME {
        (
                format!(
                    "the file name is {} bytes long; the agent writes names of at most {MAX_FILE_NAME} bytes",
                    file_name.len()
                ),
                "give a shorter file name",
            )
    } else {
        return true;
    };
    at.report(
        ctx,
        Code::FileSecretBadName,
        "secretFileName",
        message,
        help,
    );
    false
}

/// `volumeMountPath`: an absolute, plain directory outside secretstore's own.
fn mount_path_ok(ctx: &mut Ctx, at: FileSite, mount_path: &str) -> bool {
    let (code, message, help) = if !mount_path.starts_with('/') {
        (
            Code::FileSecretRelativeMount,
            format!("volumeMountPath `{mount_path}` is not absolute"),
            "give an absolute directory, e.g. /etc/secrets",
        )
    } else if mount_path.chars().any(char::is_control)
        || mount_path
            .trim_end_matches('/')
            .split('/')
            .skip(1)
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        (
            Code::FileSecretRelativeMount,
            format!("volumeMountPath {mount_path:?} is not a plain directory path"),
            "give an absolute directory without `.`, `..`, `//` or control characters, e.g. /etc/secrets",
        )
    } else if is_reserved_mount_path(mount_path) {
        (
            Code::MountPathInUse,
            format!("volumeMountPath `{mount_path}` is inside {RESERVED_DIR}, where secretstore mounts its own volumes"),
            "mount the file secret elsewhere, e.g. /etc/secrets",
        )
    } else {
        return true;
    };
    at.report(ctx, code, "volumeMountPath", message, help);
    false
}

/// `format`: raw for one key, a file format for a whole secret (json by default).
fn file_format(
    ctx: &mut Ctx,
    at: FileSite,
    format: Option<&str>,
    whole: bool,
) -> Option<FileFormat> {
    let Some(name) = format else {
        return Some(if whole {
            FileFormat::Json
        } else {
            FileFormat::Raw
        });
    };
    let (message, help) = match FileFormat::parse(name) {
        Some(FileFormat::Raw) if whole => (
            "format `raw` needs a `#key` in vaultSecretRef".to_string(),
            "use json, yaml, env or properties for a whole secret, or add #<key>",
        ),
        Some(f) if !whole && f != FileFormat::Raw => (
            format!("format `{name}` applies to a whole secret, but the reference selects one key"),
            "drop the #key to write the whole secret, or drop format (raw is the default with #key)",
        ),
        Some(f) => return Some(f),
        None => (
            format!("unknown format `{name}`"),
            "formats: json, yaml, env, properties (whole secret); raw (with #key)",
        ),
    };
    at.report(ctx, Code::FileSecretBadFormat, "format", message, help);
    None
}

/// `mode`: an octal permission, `0444` by default.
fn file_mode(ctx: &mut Ctx, at: FileSite, mode: Option<&str>) -> Option<u32> {
    let Some(m) = mode else {
        return Some(0o444);
    };
    match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
        Ok(v) if v <= 0o777 && !m.is_empty() => Some(v),
        _ => {
            at.report(
                ctx,
                Code::FileSecretBadFormat,
                "mode",
                format!("mode `{m}` is not an octal permission"),
                "write an octal string such as \"0440\"",
            );
            None
        }
    }
}

/// `containers`: the named containers, or every app container.
fn target_containers(
    ctx: &mut Ctx,
    at: FileSite,
    containers: &[Container],
    names: Option<&[String]>,
) -> Option<Vec<usize>> {
    let Some(names) = names else {
        return Some(
            containers
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.init)
                .map(|(i, _)| i)
                .collect(),
        );
    };
    let mut found = Vec::new();
    let mut ok = true;
    for name in names {
        match containers.iter().position(|c| &c.name == name) {
            Some(i) if !found.contains(&i) => found.push(i),
            Some(_) => {}
            None => {
                let known: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                at.report(
                    ctx,
                    Code::UnknownContainer,
                    "containers",
                    format!("no container or init container is named `{name}`"),
                    &format!("containers of this pod: {}", known.join(", ")),
                );
                ok = false;
            }
        }
    }
    ok.then_some(found)
}

/// `onChange` (live mode): what the app is told when the file changes.
fn file_on_change(
    ctx: &mut Ctx,
    at: FileSite,
    on_change: Option<&str>,
) -> Result<Option<OnChange>, ()> {
    match on_change.map(OnChange::parse) {
        None => Ok(None),
        Some(Ok(action)) => Ok(Some(action)),
        Some(Err(message)) => {
            at.report(
                ctx,
                Code::LiveBadValue,
                "onChange",
                message,
                "write none, restart or signal:<NAME> (e.g. signal:SIGHUP)",
            );
            Err(())
        }
    }
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
                ctx.report(
                    Code::MountPathInUse,
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
                ctx.report(
                    Code::FileSecretPathClash,
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
        METRICS_PORT_KEY,
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
        assert_eq!(
            suggest("vault.secretstore.rafay.dev/metrics-prot").as_deref(),
            Some(METRICS_PORT_KEY)
        );
        assert_eq!(
            suggest("vault.secretstore.rafay.dev/metrics").as_deref(),
            Some(METRICS_PORT_KEY)
        );
    }

    #[test]
    fn metrics_ports() {
        assert_eq!(parse_metrics_port("9102"), Ok(Some(9102)));
        assert_eq!(parse_metrics_port(" 65535 "), Ok(Some(65535)));
        assert_eq!(parse_metrics_port("off"), Ok(None));
        assert_eq!(parse_metrics_port("0"), Ok(None));
        for bad in ["65536", "-1", "http", "", "9102/TCP", "1e3"] {
            assert!(parse_metrics_port(bad).is_err(), "{bad}");
        }
    }
}
