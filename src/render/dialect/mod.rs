//! The Rafay secret-store dialect (SPEC section 1), parsed from a pod template into a typed
//! request with source positions: the annotations (`annotations`), env references
//! (`env_refs`), file secrets (`file_secret`) and what makes one an issued secret
//! (`issued`: params, files, renewBefore).

mod annotations;
mod env_refs;
mod file_secret;
mod issued;
mod locate;
mod template;

use crate::diag::{Code, Diagnostic, Location, ObjectRef};
use crate::pod::agent_spec::{FileFormat, OnChange};
use crate::render::tree::{NodeId, Tree};
use annotations::{read_annotations, suffix_order, DialectAnnotations};
use env_refs::{collect_env_refs, report_references_not_opted_in, resolve_file_refs};
use file_secret::{check_file_clashes, parse_file_secret};

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
    /// A write's body (a file secret's `params`, SPEC 1.3) as compact JSON with its keys
    /// sorted, so that equal bodies are one request.
    pub params: Option<String>,
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
        if crate::vault::address::has_dot_segment(path) {
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
            params: None,
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
    /// What the config reads or issues: with `vaultSecretRef`, one source seen by its
    /// templates as [`SINGLE_SOURCE_ALIAS`]; with `sources`, one per alias, in alias order.
    pub sources: Vec<Source>,
    /// The files of the config: one for `secretFileName`, one per entry of `files`.
    pub outputs: Vec<FileEntry>,
    /// The config has `files`: its files are written together (one version at a time).
    pub together: bool,
    pub mount_path: String,
    /// Indices into [`PodRequest::containers`]; empty for `"containers": []` (a config
    /// that serves `secretstore:file:` env values only).
    pub containers: Vec<usize>,
    /// Live mode: `onChange`, overriding the pod's `on-change`.
    pub on_change: Option<OnChange>,
    /// Certificates in live mode: `renewBefore`, in seconds.
    pub renew_before: Option<u64>,
    /// The annotation's value node.
    pub node: NodeId,
}

/// The alias under which a template sees the answer of a config's `vaultSecretRef`.
pub const SINGLE_SOURCE_ALIAS: &str = "secret";

/// One secret a file secret reads or issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub alias: String,
    /// The request: path, version and a write's params. Never a key: a file's key is in
    /// its [`FileContent`], a template's keys in its text.
    pub reference: SecretRef,
    /// The reference as written: `vaultSecretRef` (with its `#key`), or the source's path.
    pub text: String,
}

/// One file of a file secret.
#[derive(Debug, Clone)]
pub struct FileEntry {
    pub file_name: String,
    pub content: FileContent,
    pub mode: u32,
}

/// What a file holds.
#[derive(Debug, Clone)]
pub enum FileContent {
    /// One key of the config's single answer (`vaultSecretRef`), raw.
    Key(String),
    /// The single answer's whole data map, in a format.
    Whole(FileFormat),
    /// A template over the config's sources (SPEC 1.4).
    Template(TemplateFile),
}

/// A template as written, and parsed against the config's aliases.
#[derive(Debug, Clone)]
pub struct TemplateFile {
    pub text: String,
    pub template: crate::template::Template,
}

impl FileSecret {
    /// The source that `Key` and `Whole` files read: the config's one answer.
    pub fn answer(&self) -> Option<&Source> {
        match self.sources.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
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

/// An env value that is a file secret's file: `secretstore:file:<N>/<file name>`.
#[derive(Debug, Clone)]
pub struct FileRefUse {
    /// Index into [`PodRequest::containers`].
    pub container: usize,
    pub env_name: String,
    /// Index of the entry in the container's `env`.
    pub env_index: usize,
    /// Index into [`PodRequest::files`], and into that config's `outputs`.
    pub config: usize,
    pub output: usize,
    /// The env value as written.
    pub text: String,
    pub node: NodeId,
}

/// What an opted-in pod template asks for.
#[derive(Debug, Clone)]
pub struct PodRequest {
    pub role: String,
    pub files: Vec<FileSecret>,
    pub env_refs: Vec<EnvRefUse>,
    /// `secretstore:file:` env values, each naming a file of a config of `files`.
    pub file_refs: Vec<FileRefUse>,
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
    OptedIn(Box<PodRequest>),
}

/// Where diagnostics go, and how node positions become stream locations.
pub struct Ctx<'a> {
    pub source: &'a str,
    /// The document's text, which the tree's byte offsets index.
    pub text: &'a str,
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
    pub fn new(source: &'a str, text: &'a str, first_line: usize, tree: &'a Tree<'a>) -> Self {
        Ctx {
            source,
            text,
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
        let location = self.location(node);
        self.report_at(code, location, field, message, help);
    }

    /// Reports a finding at a location inside a node's value.
    pub fn report_at(
        &mut self,
        code: Code,
        location: Location,
        field: String,
        message: String,
        help: &str,
    ) {
        let d = Diagnostic::new(code, location, message)
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
    let (env_refs, file_ref_texts) = collect_env_refs(ctx, &containers, field);
    if let Some(a) = annotations {
        annotations::report_duplicate_keys(
            ctx,
            tree.resolve(a),
            &format!("{field}metadata.annotations"),
        );
    }

    let opt_in = annotations.and_then(|a| tree.get(a, OPT_IN_KEY));
    let Some(opt_in) = opt_in else {
        report_references_not_opted_in(ctx, &env_refs, &file_ref_texts, &containers, field);
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
    let suffixes: Vec<String> = file_entries.iter().map(|(s, _, _)| s.clone()).collect();
    let mut files = Vec::new();
    for (suffix, _k, v) in file_entries {
        let kfield = format!("{afield}[{FILE_KEY_PREFIX}{suffix}]");
        if let Some(f) = parse_file_secret(ctx, &containers, suffix, v, &kfield) {
            files.push(f);
        }
    }
    check_file_clashes(ctx, &files, &containers, &afield, injected);
    let file_refs = resolve_file_refs(ctx, file_ref_texts, &suffixes, &files, &containers, field);
    Gate::OptedIn(Box::new(PodRequest {
        role,
        files,
        env_refs,
        file_refs,
        containers,
        annotations,
        injected,
        live,
    }))
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
}
