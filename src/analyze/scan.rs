//! Reading every opted-in pod of an input into owned records, for the commands that
//! analyse references rather than edit them (`check`, `lint`, `policy`).

use crate::config::Settings;
use crate::diag::{Diagnostic, Location, ObjectRef};
use crate::pod::agent_spec::FileFormat;
use crate::render::dialect::{self, Ctx, FileContent, PodRequest, SecretRef};
use crate::render::frontend::{self, OptedInPod};
use crate::render::stream;
use crate::render::tree::{NodeId, Tree};
use crate::render::{self, Input, Options};

/// Where a reference is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    Env {
        container: String,
        env_name: String,
    },
    /// A file that holds one key (`format` raw) or the whole secret in `format`.
    File {
        suffix: String,
        file_name: String,
        containers: Vec<String>,
        format: FileFormat,
    },
    /// A source of a template file (SPEC 1.4): one record per key the template reads of
    /// it (the reference's `key`), or one without a key when it reads none by name.
    Template {
        suffix: String,
        file_name: String,
        containers: Vec<String>,
        alias: String,
    },
}

#[derive(Debug, Clone)]
pub struct ScannedRef {
    pub reference: SecretRef,
    /// The reference as written (env value, or the file secret's `vaultSecretRef`).
    pub text: String,
    pub usage: Usage,
    pub location: Location,
    pub field: String,
}

#[derive(Debug, Clone)]
pub struct ScannedPod {
    pub object: ObjectRef,
    /// Field path of the pod template within its document, e.g. `spec.template.`.
    pub field: String,
    /// Where the opt-in annotation is.
    pub location: Location,
    pub role: String,
    /// Where the role annotation is (the opt-in annotation when there is none).
    pub role_location: Location,
    /// `spec.serviceAccountName` (or the legacy `serviceAccount`); `None` means `default`.
    pub service_account: Option<String>,
    /// The object's `metadata.namespace`; `None` when the manifest leaves it to the
    /// deploy-time namespace.
    pub namespace: Option<String>,
    pub references: Vec<ScannedRef>,
    pub injected: bool,
    /// Where the pod template's `spec` key is (else the opt-in annotation).
    pub spec_location: Location,
    /// The pod template's `metadata.annotations` and `metadata.labels`.
    pub annotations: Vec<MetaEntry>,
    pub labels: Vec<MetaEntry>,
    /// `spec.securityContext`.
    pub security: PodSecurity,
    /// Init containers first, then app containers, in order.
    pub containers: Vec<ScannedContainer>,
    pub files: Vec<ScannedFile>,
    /// The `secretstore:file:<N>/<file name>` env values: (N, file name).
    pub file_env_values: Vec<(String, String)>,
    /// Live mode (a refresh interval from the annotation or the configuration).
    pub live: bool,
}

/// One annotation or label.
#[derive(Debug, Clone)]
pub struct MetaEntry {
    pub key: String,
    /// `None` when the value is not a scalar.
    pub value: Option<String>,
    /// Where the key is.
    pub location: Location,
}

/// The pod-level `securityContext` fields that decide file access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSecurity {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub fs_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct ScannedContainer {
    pub name: String,
    pub init: bool,
    /// The container's own `securityContext.runAsUser` / `runAsGroup` (not the pod's).
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// `securityContext.capabilities.drop`, as written.
    pub capabilities_drop: Vec<String>,
}

/// A file secret, as the agent will write it.
#[derive(Debug, Clone)]
pub struct ScannedFile {
    pub suffix: String,
    pub file_name: String,
    pub mount_path: String,
    pub mode: u32,
    /// Names of the containers that get the file.
    pub containers: Vec<String>,
    /// Where the annotation's value is.
    pub location: Location,
    pub field: String,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub pods: Vec<ScannedPod>,
    /// Everything render reports for the input (errors and warnings).
    pub diagnostics: Vec<Diagnostic>,
}

/// Scans one input. Its diagnostics are render's own for the input (planning's included),
/// so every command reports the same findings for it; the pods are read through the same
/// front-end. Documents without the dialect marker are skipped unparsed, as render does.
pub fn scan(input: &Input, settings: &Settings) -> Scan {
    let options = Options { allow_empty: true };
    let diagnostics = match render::render(std::slice::from_ref(input), settings, &options) {
        Ok(rendered) => rendered.warnings,
        Err(refused) => refused.diagnostics,
    };
    let mut out = Scan {
        pods: Vec::new(),
        diagnostics,
    };
    let body = &input.bytes[stream::bom_len(&input.bytes)..];
    let docs = stream::split(body);
    for doc in stream::containing(body, &docs, crate::render::dialect::MARKER) {
        // A document that does not parse is among render's diagnostics already.
        if let Ok((text, tree)) = frontend::parse_document(&input.name, body, &doc) {
            scan_document(input, text, &tree, doc.first_line, settings, &mut out);
        }
    }
    out
}

fn scan_document(
    input: &Input,
    text: &str,
    tree: &Tree,
    first_line: usize,
    settings: &Settings,
    out: &mut Scan,
) {
    let mut ctx = Ctx::new(&input.name, text, first_line, tree);
    // The walker's findings are render's, which `scan` took from render itself.
    frontend::for_each_opted_in_pod(&mut ctx, settings, |ctx, pod| {
        out.pods.push(scanned_pod(ctx, settings, pod));
    });
}

/// The owned record of an opted-in pod.
fn scanned_pod(ctx: &Ctx, settings: &Settings, pod: OptedInPod) -> ScannedPod {
    let OptedInPod {
        template,
        field,
        request,
        ..
    } = pod;
    let tree = ctx.tree;
    let spec = tree.get(template, "spec");
    let service_account = spec.and_then(|s| {
        tree.str_at(s, &["serviceAccountName"])
            .or_else(|| tree.str_at(s, &["serviceAccount"]))
            .map(str::to_string)
    });
    let opt_in: NodeId = tree
        .path(template, &["metadata", "annotations", dialect::OPT_IN_KEY])
        .unwrap_or(template);
    let role_node = tree
        .path(template, &["metadata", "annotations", dialect::ROLE_KEY])
        .unwrap_or(opt_in);
    let (references, files) = references_and_files(ctx, &request, &field);
    let containers = scanned_containers(tree, &request);
    let security = pod_security(tree, spec);
    let spec_location = ctx.location(tree.key_node(template, "spec").unwrap_or(opt_in));
    ScannedPod {
        object: ctx.object.clone(),
        location: ctx.location(opt_in),
        field,
        role: request.role.clone(),
        role_location: ctx.location(role_node),
        service_account,
        namespace: ctx.object.namespace.clone(),
        references,
        injected: request.injected,
        spec_location,
        annotations: meta_entries(ctx, template, "annotations"),
        labels: meta_entries(ctx, template, "labels"),
        security,
        containers,
        files,
        file_env_values: request
            .file_refs
            .iter()
            .map(|r| {
                let f = &request.files[r.config];
                (f.suffix.clone(), f.outputs[r.output].file_name.clone())
            })
            .collect(),
        live: request
            .live
            .refresh_seconds(settings.refresh_seconds)
            .is_some(),
    }
}

/// The pod's references, file secrets first, and its file secrets as the agent writes them.
fn references_and_files(
    ctx: &Ctx,
    request: &PodRequest,
    field: &str,
) -> (Vec<ScannedRef>, Vec<ScannedFile>) {
    let mut references = Vec::new();
    // Per file secret: the names of its containers and its annotation's field.
    let file_sites: Vec<(Vec<String>, String)> = request
        .files
        .iter()
        .map(|f| {
            let names = f
                .containers
                .iter()
                .map(|c| request.containers[*c].name.clone())
                .collect();
            let annotation = format!(
                "{field}metadata.annotations[{}{}]",
                dialect::FILE_KEY_PREFIX,
                f.suffix
            );
            (names, annotation)
        })
        .collect();
    for (f, (names, annotation)) in request.files.iter().zip(&file_sites) {
        let mut push = |reference: SecretRef, text: &str, usage: Usage| {
            references.push(ScannedRef {
                reference,
                text: text.to_string(),
                usage,
                location: ctx.location(f.node),
                field: annotation.clone(),
            });
        };
        for out in &f.outputs {
            let (key, format) = match &out.content {
                FileContent::Key(key) => (Some(key.clone()), FileFormat::Raw),
                FileContent::Whole(format) => (None, *format),
                FileContent::Template(t) => {
                    for source in &f.sources {
                        let usage = || Usage::Template {
                            suffix: f.suffix.clone(),
                            file_name: out.file_name.clone(),
                            containers: names.clone(),
                            alias: source.alias.clone(),
                        };
                        let keys: Vec<&String> = t
                            .template
                            .referenced_keys()
                            .iter()
                            .filter(|(alias, _)| *alias == source.alias)
                            .map(|(_, key)| key)
                            .collect();
                        if keys.is_empty() {
                            push(source.reference.clone(), &source.text, usage());
                        }
                        for key in keys {
                            let mut reference = source.reference.clone();
                            reference.key = Some(key.clone());
                            push(reference, &source.text, usage());
                        }
                    }
                    continue;
                }
            };
            let Some(answer) = f.answer() else { continue };
            let mut reference = answer.reference.clone();
            reference.key = key;
            push(
                reference,
                &answer.text,
                Usage::File {
                    suffix: f.suffix.clone(),
                    file_name: out.file_name.clone(),
                    containers: names.clone(),
                    format,
                },
            );
        }
    }
    for r in &request.env_refs {
        let c = &request.containers[r.container];
        references.push(ScannedRef {
            reference: r.reference.clone(),
            text: r.text.clone(),
            usage: Usage::Env {
                container: c.name.clone(),
                env_name: r.env_name.clone(),
            },
            location: ctx.location(r.node),
            field: format!("{field}spec.{}.env[{}].value", c.field(), r.env_index),
        });
    }
    let files = request
        .files
        .iter()
        .zip(file_sites)
        .flat_map(|(f, (containers, annotation))| {
            f.outputs.iter().map(move |out| ScannedFile {
                suffix: f.suffix.clone(),
                file_name: out.file_name.clone(),
                mount_path: f.mount_path.clone(),
                mode: out.mode,
                containers: containers.clone(),
                location: ctx.location(f.node),
                field: annotation.clone(),
            })
        })
        .collect();
    (references, files)
}

/// Init containers first, then app containers, with what decides their file access.
fn scanned_containers(tree: &Tree, request: &PodRequest) -> Vec<ScannedContainer> {
    request
        .containers
        .iter()
        .map(|c| ScannedContainer {
            name: c.name.clone(),
            init: c.init,
            run_as_user: int_at(tree, c.node, &["securityContext", "runAsUser"]),
            run_as_group: int_at(tree, c.node, &["securityContext", "runAsGroup"]),
            capabilities_drop: tree
                .path(c.node, &["securityContext", "capabilities", "drop"])
                .map(|d| {
                    tree.items(d)
                        .iter()
                        .filter_map(|i| tree.str(*i))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// The pod-level `securityContext` fields that decide file access.
fn pod_security(tree: &Tree, spec: Option<NodeId>) -> PodSecurity {
    spec.map(|s| PodSecurity {
        run_as_user: int_at(tree, s, &["securityContext", "runAsUser"]),
        run_as_group: int_at(tree, s, &["securityContext", "runAsGroup"]),
        fs_group: int_at(tree, s, &["securityContext", "fsGroup"]),
        supplemental_groups: tree
            .path(s, &["securityContext", "supplementalGroups"])
            .map(|g| {
                tree.items(g)
                    .iter()
                    .filter_map(|i| tree.str(*i)?.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
    })
    .unwrap_or_default()
}

/// An integer field (Kubernetes writes user and group ids as integers).
fn int_at(tree: &Tree, from: NodeId, keys: &[&str]) -> Option<i64> {
    tree.str_at(from, keys)?.parse().ok()
}

fn meta_entries(ctx: &Ctx, template: NodeId, name: &str) -> Vec<MetaEntry> {
    let tree = ctx.tree;
    let Some(map) = tree.path(template, &["metadata", name]) else {
        return Vec::new();
    };
    tree.entries(map)
        .iter()
        .filter_map(|(k, v)| {
            Some(MetaEntry {
                key: tree.str(*k)?.to_string(),
                value: tree.str(*v).map(str::to_string),
                location: ctx.location(*k),
            })
        })
        .collect()
}
