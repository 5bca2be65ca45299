//! `secretstore convert`: rewrite Vault Agent Injector annotations, bank-vaults `vault:`
//! env values and argocd-vault-plugin placeholders into this dialect.
//!
//! It uses render's machinery: the stream is split without parsing ([`crate::render::stream`]),
//! only documents that mention a source dialect are parsed ([`crate::render::tree`]), and a
//! converted pod is changed by byte-range replacements and insertions
//! ([`rewrite`], [`crate::render::edit`]), so every other byte, and every other document, is kept.
//!
//! A pod is converted whole or not at all: when anything in it cannot be converted, it is
//! left exactly as it was (its original tool keeps working) and every reason is reported.

pub mod agent_injector;
pub mod avp;
pub mod bank_vaults;
pub mod go_template;
pub mod rewrite;
pub mod template;

use crate::config::Settings;
use crate::diag::{Code, Diagnostic, Location, ObjectRef, Severity};
use crate::render::dialect::{OPT_IN_KEY, ROLE_KEY};
use crate::render::edit::Layout;
use crate::render::stream;
use crate::render::tree::{NodeId, Tree};
use crate::render::workload;
use crate::render::{self, Input};
use crate::vault::mounts::{Engine, Mount, MountTable};
use rewrite::{PodPlan, Replacement};

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Role for pods whose source names none (argocd-vault-plugin's).
    pub role: Option<String>,
    /// Mounts whose KV version is known (`--kv-version`, or the live Vault).
    pub mounts: KnownMounts,
}

/// Mounts whose engine convert knows: from `--kv-version` first, then from the live Vault
/// (`VAULT_ADDR`), as `policy` looks them up.
#[derive(Debug, Clone, Default)]
pub struct KnownMounts {
    pub flags: MountTable,
    pub server: Option<MountTable>,
}

impl KnownMounts {
    pub fn find(&self, path: &str) -> Option<&Mount> {
        self.flags
            .find(path)
            .or_else(|| self.server.as_ref()?.find(path))
    }
}

/// What converting the inputs came to.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Per input: the converted bytes, when anything changed.
    pub outputs: Vec<Option<Vec<u8>>>,
    /// Per input: the pod templates converted.
    pub converted: Vec<usize>,
    /// Everything not converted (errors) and conversions that change behaviour (warnings).
    pub diagnostics: Vec<Diagnostic>,
}

/// Text that a document with anything to convert contains.
const MARKERS: [&[u8]; 6] = [
    b"vault.hashicorp.com/",
    b"vault.security.banzaicloud.io/",
    b"secrets-webhook.security.bank-vaults.io/",
    bank_vaults::VALUE_PREFIX.as_bytes(),
    avp::MARKERS[0],
    avp::MARKERS[1],
];

pub fn convert(inputs: &[Input], settings: &Settings, options: &Options) -> Outcome {
    let mut outcome = Outcome::default();
    for input in inputs {
        let mut diagnostics = Vec::new();
        let mut converted_at = Vec::new();
        let (output, pods) = convert_input(
            input,
            settings,
            options,
            &mut diagnostics,
            &mut converted_at,
        );
        let output = output.and_then(|bytes| {
            let introduced = new_render_errors(input, &bytes, settings, &converted_at);
            if introduced.is_empty() {
                Some(bytes)
            } else {
                diagnostics.extend(introduced);
                None
            }
        });
        outcome
            .converted
            .push(if output.is_some() { pods } else { 0 });
        outcome.outputs.push(output);
        outcome.diagnostics.extend(diagnostics);
    }
    outcome
}

/// The converted input, and how many pods it converted; `converted_at` gets each
/// converted object and the location of its pod template in the input.
fn convert_input(
    input: &Input,
    settings: &Settings,
    options: &Options,
    diagnostics: &mut Vec<Diagnostic>,
    converted_at: &mut Vec<(ObjectRef, Location)>,
) -> (Option<Vec<u8>>, usize) {
    let bom = stream::bom_len(&input.bytes);
    let body = &input.bytes[bom..];
    let mut out = input.bytes[..bom].to_vec();
    let mut changed = false;
    let mut pods = 0;
    for doc in stream::split(body) {
        let bytes = &body[doc.start..doc.end];
        let marked = MARKERS
            .iter()
            .any(|m| memchr::memmem::find(bytes, m).is_some());
        let converted = if marked {
            convert_document(
                &input.name,
                bytes,
                doc.first_line,
                settings,
                options,
                diagnostics,
                converted_at,
            )
        } else {
            None
        };
        match converted {
            Some((text, n)) => {
                out.extend_from_slice(text.as_bytes());
                changed = true;
                pods += n;
            }
            None => out.extend_from_slice(bytes),
        }
    }
    (changed.then_some(out), pods)
}

fn convert_document(
    source: &str,
    bytes: &[u8],
    first_line: usize,
    settings: &Settings,
    options: &Options,
    diagnostics: &mut Vec<Diagnostic>,
    converted_at: &mut Vec<(ObjectRef, Location)>,
) -> Option<(String, usize)> {
    let at = |line: usize, column: usize| Location {
        source: source.to_string(),
        line: first_line + line - 1,
        column,
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        diagnostics.push(
            Diagnostic::new(
                Code::YamlSyntax,
                at(1, 1),
                "the document is not valid UTF-8",
            )
            .with_help("save the file as UTF-8"),
        );
        return None;
    };
    if bytes.len() > render::MAX_DOCUMENT_BYTES {
        diagnostics.push(Diagnostic::new(
            Code::InputLimit,
            at(1, 1),
            "the document is larger than the limit",
        ));
        return None;
    }
    let tree = match Tree::parse(text) {
        Ok(t) => t,
        Err(e) => {
            diagnostics.push(
                Diagnostic::new(
                    Code::YamlSyntax,
                    at(e.line, e.column),
                    format!("cannot parse the document: {}", e.message),
                )
                .with_help("fix the YAML syntax at that position"),
            );
            return None;
        }
    };
    let layout = Layout::detect(text, &tree, None);
    let mut replacements = Vec::new();
    let mut edits = Vec::new();
    let mut pods = 0;
    for object in workload::objects(&tree) {
        let mut site = Site {
            source,
            first_line,
            text,
            tree: &tree,
            object: object.reference.clone(),
            mounts: &options.mounts,
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let pod = workload::pod_template(&tree, &object, settings)
            .map(|(template, field)| Pod::new(&tree, template, field));
        let mut plan = PodPlan::default();
        let mut any = false;
        if let Some(pod) = &pod {
            plan.already_opted_in = pod.opted_in();
            if !plan.already_opted_in {
                any |= agent_injector::read(pod, &mut site, settings, &mut plan);
                any |= bank_vaults::read(pod, &mut site, settings, &mut plan);
            }
        }
        let found = avp::read(
            &tree,
            &object,
            pod.as_ref(),
            &mut site,
            options.role.as_deref(),
            &mut plan,
        );
        any |= found.any;
        if !any {
            continue;
        }
        if let Some(pod) = &pod {
            check_commands(pod, &plan, settings, &mut site);
            check_existing_role(pod, &plan, &mut site);
        }
        let Some(pod) = pod.filter(|_| !site.has_problems()) else {
            // Behaviour changes matter only for a pod that is converted.
            diagnostics.append(&mut site.problems);
            continue;
        };
        // A bare Pod's own annotations are its template's: AVP's are replaced by the
        // dialect's in the one rewrite of that mapping, not removed beside it.
        let mut object_annotations = found.object_annotations;
        if pod.template == object.node && !plan.already_opted_in {
            plan.dropped.append(&mut object_annotations);
        }
        let planned =
            rewrite::plan_pod(text, &tree, pod.template, &plan, &layout).and_then(|(r, e)| {
                let mut r = r;
                r.extend(drop_object_annotations(
                    text,
                    &tree,
                    object.node,
                    &object_annotations,
                )?);
                Ok((r, e))
            });
        match planned {
            Ok((r, e)) => {
                replacements.extend(r);
                edits.extend(e);
                pods += 1;
                converted_at.push((object.reference.clone(), site.location(pod.template)));
                diagnostics.append(&mut site.warnings);
            }
            Err(message) => {
                let location = site.location(pod.template);
                diagnostics.push(
                    Diagnostic::new(
                        Code::ConvertCannotEdit,
                        location,
                        format!("cannot rewrite the pod: {message}"),
                    )
                    .with_object(Some(object.reference.clone()))
                    .with_field(pod.field.trim_end_matches('.').to_string())
                    .with_help("write the pod template in block style (one key per line) and convert again"),
                );
            }
        }
    }
    if replacements.is_empty() && edits.is_empty() {
        return None;
    }
    match rewrite::apply(text, &tree, replacements, &edits, &layout) {
        Ok(new) => Some((new, pods)),
        Err(message) => {
            diagnostics.push(Diagnostic::new(
                Code::ConvertCannotEdit,
                at(1, 1),
                format!("cannot rewrite the document: {message}"),
            ));
            None
        }
    }
}

/// Removal of an object's own annotations (AVP's), with the `annotations` key when
/// nothing else is left in it.
fn drop_object_annotations(
    text: &str,
    tree: &Tree,
    object: NodeId,
    dropped: &[(NodeId, NodeId)],
) -> Result<Vec<Replacement>, String> {
    let Some(metadata) = tree.get(object, "metadata") else {
        return Ok(Vec::new());
    };
    let (Some(key), Some(map)) = (
        tree.key_node(metadata, "annotations"),
        tree.get(metadata, "annotations"),
    ) else {
        return Ok(Vec::new());
    };
    let mut ranges = Vec::new();
    for (k, v) in dropped {
        ranges.push(rewrite::entry_lines(text, tree, *k, *v)?);
    }
    if !ranges.is_empty() && ranges.len() == tree.entries(map).len() {
        let start = crate::render::edit::line_start(text, tree.node(key).start);
        let first = ranges.iter().map(|r| r.start).min().unwrap_or(start);
        let end = ranges.iter().map(|r| r.end).max().unwrap_or(first);
        let head = text[start..first].trim_end();
        if head.trim_start().trim_end_matches(':') == "annotations" && head.ends_with(':') {
            return Ok(vec![Replacement {
                range: start..end,
                text: String::new(),
            }]);
        }
    }
    Ok(ranges
        .into_iter()
        .map(|range| Replacement {
            range,
            text: String::new(),
        })
        .collect())
}

/// A pod that has this dialect's role annotation but is not opted in: writing the role
/// again would give it two (render refuses that, SS107), so the pod is left for its owner
/// to say which role is meant.
fn check_existing_role(pod: &Pod, plan: &PodPlan, site: &mut Site) {
    if plan.already_opted_in {
        return;
    }
    let tree = pod.tree;
    let Some(annotations) = pod.annotations else {
        return;
    };
    for (k, v) in tree.entries(annotations) {
        if tree.str(*k) != Some(ROLE_KEY) || plan.dropped.iter().any(|(d, _)| d == k) {
            continue;
        }
        let existing = tree.str(*v).unwrap_or("<not a string>");
        let new = plan
            .role
            .as_deref()
            .map(|r| format!(" (`{r}`)"))
            .unwrap_or_default();
        site.problem(
            Code::ConvertNoRole,
            *k,
            format!("{}metadata.annotations[{ROLE_KEY}]", pod.field),
            format!("the pod already has `{ROLE_KEY}: {existing}`, and convert would write a second one{new}"),
            &format!("remove the one that is not meant (or opt the pod in with `{OPT_IN_KEY}: vault` if it is already converted) and convert again"),
        );
    }
}

/// Env references need a command to wrap (SPEC 2, 4): the webhooks looked the image's
/// entrypoint up in its registry, render needs it written or configured.
fn check_commands(pod: &Pod, plan: &PodPlan, settings: &Settings, site: &mut Site) {
    let mut seen = Vec::new();
    for &ci in &plan.env_containers {
        if seen.contains(&ci) {
            continue;
        }
        seen.push(ci);
        let c = &pod.containers[ci];
        let configured = c
            .image
            .as_deref()
            .is_some_and(|i| settings.entrypoint(i).is_some());
        if !c.has_command && !configured {
            site.problem(
                Code::ConvertNoCommand,
                c.node,
                format!("{}spec.{}", pod.field, c.field),
                format!(
                    "container `{}` gets env references but has no `command`: its secrets were resolved by a wrapper that found the image's entrypoint itself",
                    c.name
                ),
                "write the image's entrypoint as the container's command, or add the image to the configuration's `entrypoints`",
            );
        }
    }
}

/// Render errors in the converted bytes that the input did not have: a conversion that
/// render would refuse is not written. Each is reported at the converted pod it is about
/// in the input (its position in the output, which is not written, is in the message).
fn new_render_errors(
    input: &Input,
    converted: &[u8],
    settings: &Settings,
    converted_at: &[(ObjectRef, Location)],
) -> Vec<Diagnostic> {
    let errors = |bytes: &[u8]| -> Vec<Diagnostic> {
        let one = Input {
            name: input.name.clone(),
            bytes: bytes.to_vec(),
        };
        let options = render::Options { allow_empty: true };
        match render::render(std::slice::from_ref(&one), settings, &options) {
            Ok(_) => Vec::new(),
            Err(err) => err
                .diagnostics
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .collect(),
        }
    };
    let before = errors(&input.bytes);
    errors(converted)
        .into_iter()
        .filter(|d| {
            !before
                .iter()
                .any(|b| b.code == d.code && b.message == d.message && b.object == d.object)
        })
        .map(|mut d| {
            d.message = format!(
                "the converted output would not render, so {} was left as it is: {} (line {}, column {} of the converted output)",
                input.name, d.message, d.location.line, d.location.column
            );
            let pod = converted_at
                .iter()
                .find(|(object, _)| d.object.as_ref() == Some(object))
                .or(converted_at.first());
            if let Some((_, at)) = pod {
                d.location = at.clone();
            }
            d
        })
        .collect()
}

/// Where findings about one object go.
pub struct Site<'a> {
    source: &'a str,
    first_line: usize,
    text: &'a str,
    tree: &'a Tree<'a>,
    object: ObjectRef,
    pub mounts: &'a KnownMounts,
    problems: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Site<'_> {
    pub fn location(&self, node: NodeId) -> Location {
        crate::render::dialect::node_location(self.source, self.first_line, self.tree, node)
    }

    /// The location of `needle` inside the scalar `node` as written (a one-line or block
    /// scalar), else of the node.
    pub fn location_in(&self, node: NodeId, needle: &str) -> Location {
        self.location_of_nth(node, needle, 0)
    }

    /// The location of the `nth` (from 0) `needle` inside the scalar `node` as written,
    /// else of the node: the spot of something that may also be written before it.
    pub fn location_of_nth(&self, node: NodeId, needle: &str, nth: usize) -> Location {
        // A block scalar's lines hold its text as written, past their indentation.
        let written = rewrite::scalar_range(self.text, self.tree, node)
            .unwrap_or_else(|_| self.tree.node(node).start..self.tree.node(node).end);
        let Some(offset) = self.text.get(written.clone()).and_then(|w| {
            w.match_indices(needle)
                .nth(nth)
                .map(|(i, _)| written.start + i)
        }) else {
            return self.location(node);
        };
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            source: self.source.to_string(),
            line: self.first_line + before.matches('\n').count(),
            column: before[line_start..].chars().count() + 1,
        }
    }

    fn diagnostic(&self, d: Diagnostic, field: String, help: &str) -> Diagnostic {
        d.with_object(Some(self.object.clone()))
            .with_field(field)
            .with_help(help)
    }

    /// Something that keeps the object from being converted.
    pub fn problem(
        &mut self,
        code: Code,
        node: NodeId,
        field: String,
        message: String,
        help: &str,
    ) {
        let location = self.location(node);
        self.problem_at(code, location, field, message, help);
    }

    pub fn problem_at(
        &mut self,
        code: Code,
        location: Location,
        field: String,
        message: String,
        help: &str,
    ) {
        let d = self.diagnostic(Diagnostic::new(code, location, message), field, help);
        self.problems.push(d);
    }

    /// A conversion that changes behaviour, reported when the object is converted.
    pub fn warn(&mut self, code: Code, node: NodeId, field: String, message: String, help: &str) {
        let d = self.diagnostic(
            Diagnostic::new(code, self.location(node), message),
            field,
            help,
        );
        self.warnings.push(d);
    }

    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }
}

impl PodPlan {
    /// The role a source names for the pod; two different ones are a problem.
    pub fn set_role(&mut self, site: &mut Site, role: String, node: NodeId, field: &str) {
        match &self.role {
            Some(existing) if self.role_explicit && *existing != role => site.problem(
                Code::ConvertNoRole,
                node,
                field.to_string(),
                format!("the pod names two Vault roles, `{existing}` and `{role}`"),
                "give the pod one role",
            ),
            _ => {
                self.role = Some(role);
                self.role_explicit = true;
                self.role_node = Some(node);
            }
        }
    }

    /// A role the source implies when it names none.
    pub fn set_default_role(&mut self, role: String) {
        if self.role.is_none() {
            self.role = Some(role);
        }
    }
}

/// A pod template, as the source dialects read it.
pub struct Pod<'a> {
    pub tree: &'a Tree<'a>,
    pub template: NodeId,
    /// Field path of the template, ending in `.` (empty for a Pod).
    pub field: String,
    pub annotations: Option<NodeId>,
    pub containers: Vec<PodContainer>,
    pub service_account: Option<String>,
}

pub struct PodContainer {
    pub name: String,
    pub node: NodeId,
    /// `containers[0]`, `initContainers[1]`.
    pub field: String,
    pub image: Option<String>,
    pub has_command: bool,
}

impl<'a> Pod<'a> {
    fn new(tree: &'a Tree<'a>, template: NodeId, field: String) -> Pod<'a> {
        let annotations = tree
            .path(template, &["metadata", "annotations"])
            .map(|a| tree.resolve(a))
            .filter(|a| tree.is_map(*a));
        let spec = tree.get(template, "spec").map(|s| tree.resolve(s));
        let mut containers = Vec::new();
        for list in ["initContainers", "containers"] {
            let Some(seq) = spec.and_then(|s| tree.get(s, list)) else {
                continue;
            };
            for (i, c) in tree.items(seq).iter().enumerate() {
                let c = tree.resolve(*c);
                containers.push(PodContainer {
                    name: tree.str_at(c, &["name"]).unwrap_or_default().to_string(),
                    node: c,
                    field: format!("{list}[{i}]"),
                    image: tree.str_at(c, &["image"]).map(str::to_string),
                    has_command: tree
                        .get(c, "command")
                        .is_some_and(|cmd| !tree.items(cmd).is_empty()),
                });
            }
        }
        let service_account = spec
            .and_then(|s| {
                tree.str_at(s, &["serviceAccountName"])
                    .or_else(|| tree.str_at(s, &["serviceAccount"]))
            })
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Pod {
            tree,
            template,
            field,
            annotations,
            containers,
            service_account,
        }
    }

    /// The pod opts in to this dialect already.
    fn opted_in(&self) -> bool {
        self.annotations
            .is_some_and(|a| self.tree.get(a, OPT_IN_KEY).is_some())
    }

    /// (index in `env`, value node, value) of each literal env value of a container.
    pub fn env_values(&self, c: &PodContainer) -> Vec<(usize, NodeId, &'a str)> {
        let tree = self.tree;
        let Some(env) = tree.get(c.node, "env") else {
            return Vec::new();
        };
        tree.items(env)
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let node = tree.get(*e, "value")?;
                Some((i, node, tree.str(node)?))
            })
            .collect()
    }
}

/// `path` in logical form where its KV v2 `data/` segment is known: from the mount table
/// first, else from the source's own semantics (`implied_kv2`) when exactly one segment
/// is `data` and it is neither the first nor the last. Otherwise as written: the dialect
/// reads both forms.
pub fn logical_path(path: &str, implied_kv2: bool, mounts: &KnownMounts) -> String {
    let path = path.trim_start_matches('/');
    if let Some(mount) = mounts.find(path) {
        if mount.engine == Engine::Kv2 {
            if let Some(rest) = path
                .strip_prefix(mount.path.as_str())
                .and_then(|r| r.strip_prefix("data/"))
            {
                return format!("{}{rest}", mount.path);
            }
        }
        return path.to_string();
    }
    if implied_kv2 {
        let segments: Vec<&str> = path.split('/').collect();
        let data: Vec<usize> = (0..segments.len())
            .filter(|&i| segments[i] == "data")
            .collect();
        if let [i] = data[..] {
            if i > 0 && i + 1 < segments.len() {
                let mut kept = segments;
                kept.remove(i);
                return kept.join("/");
            }
        }
    }
    path.to_string()
}

/// `auth/<mount>` from `kubernetes`, `/auth/kubernetes/`, `auth/kubernetes`.
pub fn normalise_auth_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.starts_with("auth/") {
        trimmed.to_string()
    } else {
        format!("auth/{trimmed}")
    }
}

/// Go's strconv.ParseBool, false for anything it does not take.
pub fn go_bool_or_false(text: &str) -> bool {
    agent_injector::go_bool(text) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_paths() {
        let none = KnownMounts::default();
        assert_eq!(
            logical_path("secret/data/shop/db", true, &none),
            "secret/shop/db"
        );
        assert_eq!(
            logical_path("/secret/data/shop/db", false, &none),
            "secret/data/shop/db"
        );
        assert_eq!(logical_path("secret/data", true, &none), "secret/data");
        assert_eq!(logical_path("data/x/y", true, &none), "data/x/y");
        assert_eq!(
            logical_path("a/data/b/data/c", true, &none),
            "a/data/b/data/c"
        );
        let mut known = KnownMounts::default();
        known.flags.insert(Mount {
            path: "team/kv/".into(),
            engine: Engine::Kv2,
        });
        known.flags.insert(Mount {
            path: "old/".into(),
            engine: Engine::Kv1,
        });
        assert_eq!(
            logical_path("team/kv/data/app", false, &known),
            "team/kv/app"
        );
        assert_eq!(logical_path("old/data/app", true, &known), "old/data/app");
    }
}
