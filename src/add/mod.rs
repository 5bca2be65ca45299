//! `secretstore add` (SPEC 5.1): add env and file secret references to one workload of a
//! manifest, in place, as a developer would write them by hand.
//!
//! This is the I/O-free core: text in, edited text and findings out. No filesystem, no
//! Vault, no async runtime, so that the command line ([`crate::cli`]) and the book's
//! playground (WebAssembly) share it. The edit goes through the same byte-preserving
//! machinery as `convert` ([`crate::convert::rewrite`], [`crate::render::edit`]): every
//! byte the addition does not own is kept, and every other document is copied as it is.
//!
//! What `add` writes must render and lint clean: it refuses what render would refuse (a
//! malformed reference, an unknown container, a mount path in use...) before editing, and
//! it lints the edited text, refusing any error the edit would introduce. Adding what is
//! already there changes nothing, so running the same `add` twice is safe.

use crate::analyze::lint;
use crate::config::Settings;
use crate::convert::rewrite::{self, PodPlan, Replacement};
use crate::diag::{Code, Diagnostic, Location, ObjectRef, Severity};
use crate::pod::agent_spec::{REF_PREFIX, RESERVED_DIR};
use crate::render::dialect::{
    node_location, SecretRef, FILE_KEY_PREFIX, OPT_IN_KEY, OPT_IN_VALUE, ROLE_KEY,
};
use crate::render::edit::{self, Edit, Layout};
use crate::render::stream::{self, Document};
use crate::render::tree::{NodeId, Tree};
use crate::render::{workload, Input};
use serde_json::Value;
use std::ops::Range;

/// One `--env NAME=REF`: the env var `NAME` of the container becomes the reference
/// `secretstore:vault:REF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvAddition {
    pub name: String,
    /// `<path>[#<key>[#<version>]]` (SPEC 1.1), without the `secretstore:vault:` prefix.
    pub reference: String,
}

/// One `--file PATH=REF`: a file secret at `PATH` (`volumeMountPath` + `/` +
/// `secretFileName`) in the container only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAddition {
    pub path: String,
    /// `<path>[#<key>[#<version>]]` (SPEC 1.2's `vaultSecretRef`).
    pub reference: String,
}

/// What to add, and where: the arguments of `secretstore add` without the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddRequest {
    /// `KIND/NAME` (e.g. `deployment/api`; the kind in any case, kubectl's short names
    /// accepted); needed when the file holds several workloads.
    pub workload: Option<String>,
    /// A container or init container; needed when the pod has several app containers.
    pub container: Option<String>,
    /// The Vault role; needed unless the pod is opted in already.
    pub role: Option<String>,
    pub env: Vec<EnvAddition>,
    pub files: Vec<FileAddition>,
}

/// The outcome of an accepted [`apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The whole edited text (equal to the input when nothing changed).
    pub text: String,
    /// Whether `text` differs from the input.
    pub changed: bool,
    /// The workload edited.
    pub workload: ObjectRef,
    /// The container the references were added to.
    pub container: String,
    /// One line per change made, e.g. `env DB_PASSWORD: secretstore:vault:secret/db#pw`.
    pub changes: Vec<String>,
    /// Byte ranges, in the input text, of the literal env values replaced: they may be
    /// secrets, so a diff shown to the user hides them ([`masked`]).
    pub replaced_literals: Vec<Range<usize>>,
    /// Accepted, but worth knowing: a literal value replaced (rotate it), or a lint
    /// warning the edit introduced (e.g. no service account).
    pub warnings: Vec<Diagnostic>,
}

/// A workload of the file, as the wizard offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub object: ObjectRef,
    /// What `--workload` takes for it: `<kind in lower case>/<name>`.
    pub selector: String,
    pub containers: Vec<ContainerInfo>,
    /// The pod template has `rafay.dev/secretstore` already.
    pub opted_in: bool,
    /// Its Vault role, when it names one.
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub name: String,
    /// An init container.
    pub init: bool,
    pub image: Option<String>,
    /// It has a `command` (env references need one to wrap, SPEC 2.4).
    pub has_command: bool,
}

impl Workload {
    /// Whether `--workload` `selector` (`KIND/NAME`) names this workload.
    pub fn matches(&self, selector: &str) -> bool {
        selector.split_once('/').is_some_and(|(kind, name)| {
            name == self.object.name && kind_matches(kind, &self.object.kind)
        })
    }
}

impl EnvAddition {
    /// Parses `NAME=REF`; `REF` may carry the `secretstore:vault:` prefix.
    pub fn parse(arg: &str) -> Result<EnvAddition, Box<Diagnostic>> {
        let (name, reference) = split_argument(arg, "--env", "NAME=REF")?;
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(argument_error(
                "--env",
                format!("the env var name {name:?} holds a blank or a control character"),
                "write --env NAME=REF with a plain name, e.g. --env DB_PASSWORD=secret/shop/db#password",
            ));
        }
        Ok(EnvAddition {
            name: name.to_string(),
            reference: reference_arg("--env", reference)?,
        })
    }

    /// The env value written: `secretstore:vault:<reference>`.
    pub fn value(&self) -> String {
        format!("{REF_PREFIX}{}", self.reference)
    }
}

impl FileAddition {
    /// Parses `PATH=REF`: an absolute file path, then the reference.
    pub fn parse(arg: &str) -> Result<FileAddition, Box<Diagnostic>> {
        let (path, reference) = split_argument(arg, "--file", "PATH=REF")?;
        let addition = FileAddition {
            path: path.to_string(),
            reference: reference_arg("--file", reference)?,
        };
        addition.split_path()?;
        Ok(addition)
    }

    /// (`volumeMountPath`, `secretFileName`), each checked as render checks them.
    pub fn split_path(&self) -> Result<(String, String), Box<Diagnostic>> {
        let path = self.path.as_str();
        let fail = |code: Code, message: String| {
            Box::new(
                Diagnostic::new(code, request_location("--file"), message).with_help(
                    "write --file /absolute/directory/file-name=REF, e.g. --file /etc/tls/tls.crt=secret/shop/tls#crt",
                ),
            )
        };
        if !path.starts_with('/') {
            return Err(fail(
                Code::FileSecretRelativeMount,
                format!("`{path}` is not an absolute path"),
            ));
        }
        let Some((dir, name)) = path.rsplit_once('/') else {
            return Err(fail(
                Code::FileSecretRelativeMount,
                format!("`{path}` is not an absolute path"),
            ));
        };
        if name.is_empty() || name == "." || name == ".." {
            return Err(fail(
                Code::FileSecretBadName,
                format!("`{path}` does not end in a file name"),
            ));
        }
        if dir.is_empty() {
            return Err(fail(
                Code::FileSecretRelativeMount,
                format!(
                    "`{path}` is a file in `/`: a file secret is mounted as a directory of its own"
                ),
            ));
        }
        if path.chars().any(char::is_control)
            || dir
                .split('/')
                .skip(1)
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(fail(
                Code::FileSecretRelativeMount,
                format!("{path:?} is not a plain path (no `.`, `..`, `//` or control characters)"),
            ));
        }
        if dir == RESERVED_DIR || dir.starts_with(&format!("{RESERVED_DIR}/")) {
            return Err(fail(
                Code::MountPathInUse,
                format!(
                    "`{path}` is inside {RESERVED_DIR}, where secretstore mounts its own volumes"
                ),
            ));
        }
        Ok((dir.to_string(), name.to_string()))
    }
}

/// Where a finding about the request itself (not the file) is: `source` names the
/// argument, and line 0 says it is no position in the file.
pub fn request_location(argument: &str) -> Location {
    Location {
        source: argument.to_string(),
        line: 0,
        column: 0,
    }
}

fn argument_error(argument: &str, message: String, help: &str) -> Box<Diagnostic> {
    Box::new(
        Diagnostic::new(Code::AddBadArgument, request_location(argument), message).with_help(help),
    )
}

fn split_argument<'a>(
    arg: &'a str,
    flag: &str,
    shape: &str,
) -> Result<(&'a str, &'a str), Box<Diagnostic>> {
    match arg.split_once('=') {
        Some((left, right)) if !left.is_empty() && !right.is_empty() => Ok((left, right)),
        _ => Err(argument_error(
            flag,
            format!("`{arg}` is not {shape}"),
            &format!("write {flag} {shape}, e.g. --env DB_PASSWORD=secret/shop/db#password or --file /etc/tls/tls.crt=secret/shop/tls#crt"),
        )),
    }
}

/// The reference of an argument, checked as render checks it (SPEC 1.1).
fn reference_arg(flag: &str, text: &str) -> Result<String, Box<Diagnostic>> {
    let reference = text.strip_prefix(REF_PREFIX).unwrap_or(text);
    SecretRef::parse(reference).map_err(|message| {
        Box::new(
            Diagnostic::new(Code::BadReference, request_location(flag), message)
                .with_help("write <path>[#<key>[#<version>]], e.g. secret/shop/db#password"),
        )
    })?;
    Ok(reference.to_string())
}

/// [`apply_with`] on a text named `<input>`, with the built-in configuration: what the
/// playground calls.
pub fn apply(text: &str, request: &AddRequest) -> Result<Added, Vec<Diagnostic>> {
    apply_with("<input>", text, request, &Settings::default())
}

/// Adds `request`'s references to `text` (a manifest file's content, named `source` in
/// findings). `settings` supplies the configuration's `entrypoints` (a container without
/// `command` may get env references when its image is listed) and extra workload kinds.
///
/// `Err` holds every reason the request is refused; the text is then to be left as it
/// was. Findings about the request itself have line 0 ([`request_location`]).
pub fn apply_with(
    source: &str,
    text: &str,
    request: &AddRequest,
    settings: &Settings,
) -> Result<Added, Vec<Diagnostic>> {
    check_request(request)?;
    let parsed = parse(source, text, settings)?;
    let target = choose(source, &parsed, request)?;
    let doc = &parsed.docs[target.doc];
    let mut site = Site {
        source,
        doc,
        object: target.object.clone(),
        problems: Vec::new(),
        warnings: Vec::new(),
        changes: Vec::new(),
        replaced_literals: Vec::new(),
    };
    let pod = read_pod(doc.tree_ref(), target.template);
    let container = choose_container(&pod, request, &mut site, target.template)?;
    let planned = plan(
        &pod,
        container,
        request,
        settings,
        &mut site,
        target.template,
        &target.field,
    );
    if !site.problems.is_empty() {
        return Err(site.problems);
    }
    let Some((replacements, edits)) = planned else {
        return Err(site.problems);
    };
    let container_name = pod.containers[container].name.clone();
    if replacements.is_empty() && edits.is_empty() {
        return Ok(Added {
            text: text.to_string(),
            changed: false,
            workload: target.object.clone(),
            container: container_name,
            changes: Vec::new(),
            replaced_literals: Vec::new(),
            warnings: site.warnings,
        });
    }
    let tree = doc.tree_ref();
    let layout = Layout::detect(doc.text, tree, None);
    let edited = rewrite::apply(doc.text, tree, replacements, &edits, &layout)
        .map_err(|m| vec![site.cannot_edit(target.template, &target.field, &m)])?;
    let start = parsed.bom + doc.range.start;
    let end = parsed.bom + doc.range.end;
    let new_text = format!("{}{}{}", &text[..start], edited, &text[end..]);
    let introduced = introduced_findings(source, text, &new_text, settings);
    let (errors, warnings): (Vec<_>, Vec<_>) = introduced
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|mut d| {
                d.message = format!(
                    "the edited file would not render, so it was left as it is: {}",
                    d.message
                );
                d
            })
            .collect());
    }
    let mut all_warnings = site.warnings;
    all_warnings.extend(warnings);
    Ok(Added {
        changed: new_text != text,
        text: new_text,
        workload: target.object.clone(),
        container: container_name,
        changes: site.changes,
        replaced_literals: site
            .replaced_literals
            .iter()
            .map(|r| r.start + start..r.end + start)
            .collect(),
        warnings: all_warnings,
    })
}

/// `text` with each of `hidden` (from [`Added::replaced_literals`]) written as
/// `<not shown>`: the side of a diff shown to a user, which must not show a value that
/// may be a secret.
pub fn masked(text: &str, hidden: &[Range<usize>]) -> String {
    let mut ranges: Vec<&Range<usize>> = hidden
        .iter()
        .filter(|r| r.start <= r.end && text.get(r.start..r.end).is_some())
        .collect();
    ranges.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        if r.start < at {
            continue;
        }
        out.push_str(&text[at..r.start]);
        out.push_str("<not shown>");
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The workloads of `text` (objects with a pod template), in file order, for the wizard
/// to offer. `Err` when a document cannot be parsed.
pub fn workloads(
    source: &str,
    text: &str,
    settings: &Settings,
) -> Result<Vec<Workload>, Vec<Diagnostic>> {
    let parsed = parse(source, text, settings)?;
    Ok(parsed
        .candidates
        .iter()
        .map(|c| {
            let tree = parsed.docs[c.doc].tree_ref();
            let pod = read_pod(tree, c.template);
            Workload {
                object: c.object.clone(),
                selector: c.selector(),
                containers: pod
                    .containers
                    .iter()
                    .map(|k| ContainerInfo {
                        name: k.name.clone(),
                        init: k.init,
                        image: k.image.clone(),
                        has_command: k.has_command,
                    })
                    .collect(),
                opted_in: pod.opt_in.is_some(),
                role: pod.role.and_then(|r| tree.str(r)).map(str::to_string),
            }
        })
        .collect())
}

/// The request on its own: references well formed, one reference per env var and file.
fn check_request(request: &AddRequest) -> Result<(), Vec<Diagnostic>> {
    let mut problems = Vec::new();
    for (i, env) in request.env.iter().enumerate() {
        if let Err(d) = reference_arg("--env", &env.reference) {
            problems.push(*d);
        }
        if request.env[..i]
            .iter()
            .any(|e| e.name == env.name && e.reference != env.reference)
        {
            problems.push(*argument_error(
                "--env",
                format!("env `{}` is given two different references", env.name),
                "give each env var one --env",
            ));
        }
    }
    for (i, file) in request.files.iter().enumerate() {
        if let Err(d) = reference_arg("--file", &file.reference) {
            problems.push(*d);
        }
        if let Err(d) = file.split_path() {
            problems.push(*d);
        }
        if request.files[..i]
            .iter()
            .any(|f| f.path == file.path && f.reference != file.reference)
        {
            problems.push(*argument_error(
                "--file",
                format!("`{}` is given two different references", file.path),
                "give each file one --file",
            ));
        }
    }
    if let Some(role) = &request.role {
        if role.trim().is_empty() || role.chars().any(char::is_control) {
            problems.push(*argument_error(
                "--role",
                "the Vault role is empty or holds a control character".into(),
                "give the Vault role bound to the pod's service account, e.g. --role shop",
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// One parsed document.
struct ParsedDoc<'t> {
    /// Byte range in the text after a BOM.
    range: Document,
    text: &'t str,
    tree: Tree<'t>,
}

impl<'t> ParsedDoc<'t> {
    fn tree_ref(&self) -> &Tree<'t> {
        &self.tree
    }
}

/// A workload with a pod template.
struct Candidate {
    doc: usize,
    object: ObjectRef,
    template: NodeId,
    /// Field path of the template, ending in `.` (empty for a Pod).
    field: String,
}

impl Candidate {
    fn selector(&self) -> String {
        format!(
            "{}/{}",
            self.object.kind.to_ascii_lowercase(),
            self.object.name
        )
    }
}

struct Parsed<'t> {
    bom: usize,
    docs: Vec<ParsedDoc<'t>>,
    candidates: Vec<Candidate>,
}

/// Every document parsed, and the workloads found. A document that cannot be parsed is
/// refused: it might be the workload meant, and lint would report it anyway.
fn parse<'t>(
    source: &str,
    text: &'t str,
    settings: &Settings,
) -> Result<Parsed<'t>, Vec<Diagnostic>> {
    let bom = stream::bom_len(text.as_bytes());
    let body = &text[bom..];
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    for range in stream::split(body.as_bytes()) {
        match crate::render::frontend::parse_document(source, body.as_bytes(), &range) {
            Ok((doc_text, tree)) => docs.push(ParsedDoc {
                range,
                text: doc_text,
                tree,
            }),
            Err(d) => problems.push(*d),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut candidates = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        for object in workload::objects(&doc.tree) {
            if let Some((template, field)) = workload::pod_template(&doc.tree, &object, settings) {
                candidates.push(Candidate {
                    doc: i,
                    object: object.reference.clone(),
                    template,
                    field,
                });
            }
        }
    }
    Ok(Parsed {
        bom,
        docs,
        candidates,
    })
}

/// kubectl's short names of the kinds with pod templates.
fn kind_matches(wanted: &str, kind: &str) -> bool {
    let wanted = wanted.to_ascii_lowercase();
    let kind = kind.to_ascii_lowercase();
    let alias = match wanted.as_str() {
        "deploy" | "deployments" => "deployment",
        "sts" | "statefulsets" => "statefulset",
        "ds" | "daemonsets" => "daemonset",
        "rs" | "replicasets" => "replicaset",
        "rc" | "replicationcontrollers" => "replicationcontroller",
        "cj" | "cronjobs" => "cronjob",
        "jobs" => "job",
        "po" | "pods" => "pod",
        other => other,
    };
    alias == kind
}

/// The workload the request names, or the only one.
fn choose<'p>(
    source: &str,
    parsed: &'p Parsed,
    request: &AddRequest,
) -> Result<&'p Candidate, Vec<Diagnostic>> {
    let listed = |cands: &mut dyn Iterator<Item = &Candidate>| -> String {
        cands
            .map(|c| match &c.object.namespace {
                Some(ns) => format!("{} (namespace {ns})", c.selector()),
                None => c.selector(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    // About the whole file: no position in it.
    let file_location = request_location(source);
    let Some(wanted) = &request.workload else {
        return match parsed.candidates.as_slice() {
            [one] => Ok(one),
            [] => Err(vec![Diagnostic::new(
                Code::AddNoWorkload,
                file_location,
                "the file has no workload with a pod template (Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod, ReplicaSet...)",
            )
            .with_help("add references to a file that holds the workload")]),
            many => Err(vec![Diagnostic::new(
                Code::AddChooseWorkload,
                file_location,
                format!("the file holds {} workloads", many.len()),
            )
            .with_help(format!(
                "choose one with --workload: {}",
                listed(&mut many.iter())
            ))]),
        };
    };
    let Some((kind, name)) = wanted.split_once('/') else {
        return Err(vec![*argument_error(
            "--workload",
            format!("`{wanted}` is not KIND/NAME"),
            "write --workload KIND/NAME, e.g. --workload deployment/api",
        )]);
    };
    let matching: Vec<&Candidate> = parsed
        .candidates
        .iter()
        .filter(|c| c.object.name == name && kind_matches(kind, &c.object.kind))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(vec![Diagnostic::new(
            Code::AddNoWorkload,
            file_location,
            format!("the file has no workload `{wanted}`"),
        )
        .with_help(if parsed.candidates.is_empty() {
            "the file has no workload with a pod template".to_string()
        } else {
            format!(
                "workloads in the file: {}",
                listed(&mut parsed.candidates.iter())
            )
        })]),
        many => Err(vec![Diagnostic::new(
            Code::AddChooseWorkload,
            file_location,
            format!("{} workloads in the file are `{wanted}`", many.len()),
        )
        .with_help(format!(
            "keep one `{wanted}` per file to add to it: {}",
            listed(&mut many.iter().copied())
        ))]),
    }
}

/// A container of the pod template, as add reads it.
struct PodContainer {
    name: String,
    node: NodeId,
    init: bool,
    /// `containers[0]`, `initContainers[1]`.
    field: String,
    image: Option<String>,
    has_command: bool,
    env: Option<NodeId>,
    mount_paths: Vec<String>,
}

/// An existing `filesecret-config-<suffix>`, read loosely (lint reports what is wrong).
struct ExistingFile {
    suffix: String,
    value: NodeId,
    reference: Option<String>,
    mount_path: Option<String>,
    file_name: Option<String>,
    containers: Option<Vec<String>>,
}

struct PodRead {
    annotations: Option<NodeId>,
    opt_in: Option<NodeId>,
    role: Option<NodeId>,
    files: Vec<ExistingFile>,
    containers: Vec<PodContainer>,
}

fn read_pod(tree: &Tree, template: NodeId) -> PodRead {
    let annotations = tree
        .path(template, &["metadata", "annotations"])
        .map(|a| tree.resolve(a))
        .filter(|a| tree.is_map(*a));
    let opt_in = annotations.and_then(|a| tree.get(a, OPT_IN_KEY));
    let role = annotations.and_then(|a| tree.get(a, ROLE_KEY));
    let mut files = Vec::new();
    for (k, v) in annotations.map(|a| tree.entries(a)).unwrap_or_default() {
        let Some(suffix) = tree.str(*k).and_then(|k| k.strip_prefix(FILE_KEY_PREFIX)) else {
            continue;
        };
        let json: Option<Value> = tree.str(*v).and_then(|t| serde_json::from_str(t).ok());
        let field = |name: &str| {
            json.as_ref()
                .and_then(|j| j.get(name))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        files.push(ExistingFile {
            suffix: suffix.to_string(),
            value: *v,
            reference: field("vaultSecretRef"),
            mount_path: field("volumeMountPath").map(|p| p.trim_end_matches('/').to_string()),
            file_name: field("secretFileName"),
            containers: json
                .as_ref()
                .and_then(|j| j.get("containers"))
                .and_then(|c| serde_json::from_value(c.clone()).ok()),
        });
    }
    let spec = tree.get(template, "spec").map(|s| tree.resolve(s));
    let mut containers = Vec::new();
    for (list, init) in [("initContainers", true), ("containers", false)] {
        let Some(seq) = spec.and_then(|s| tree.get(s, list)) else {
            continue;
        };
        for (i, c) in tree.items(seq).iter().enumerate() {
            let c = tree.resolve(*c);
            containers.push(PodContainer {
                name: tree.str_at(c, &["name"]).unwrap_or_default().to_string(),
                node: c,
                init,
                field: format!("{list}[{i}]"),
                image: tree.str_at(c, &["image"]).map(str::to_string),
                has_command: tree
                    .get(c, "command")
                    .is_some_and(|cmd| !tree.items(cmd).is_empty()),
                env: tree.get(c, "env"),
                mount_paths: tree
                    .get(c, "volumeMounts")
                    .map(|m| {
                        tree.items(m)
                            .iter()
                            .filter_map(|vm| tree.str_at(*vm, &["mountPath"]))
                            .map(|p| p.trim_end_matches('/').to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    PodRead {
        annotations,
        opt_in,
        role,
        files,
        containers,
    }
}

/// Where findings about the chosen workload go.
struct Site<'a, 't> {
    source: &'a str,
    doc: &'a ParsedDoc<'t>,
    object: ObjectRef,
    problems: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    changes: Vec<String>,
    /// In the document's text.
    replaced_literals: Vec<Range<usize>>,
}

impl Site<'_, '_> {
    fn diagnostic(
        &self,
        code: Code,
        node: NodeId,
        field: &str,
        message: String,
        help: &str,
    ) -> Diagnostic {
        let location = node_location(self.source, self.doc.range.first_line, &self.doc.tree, node);
        Diagnostic::new(code, location, message)
            .with_object(Some(self.object.clone()))
            .with_field(field.trim_end_matches('.').to_string())
            .with_help(help)
    }

    fn problem(&mut self, code: Code, node: NodeId, field: &str, message: String, help: &str) {
        let d = self.diagnostic(code, node, field, message, help);
        self.problems.push(d);
    }

    fn warn(&mut self, code: Code, node: NodeId, field: &str, message: String, help: &str) {
        let d = self.diagnostic(code, node, field, message, help);
        self.warnings.push(d);
    }

    fn cannot_edit(&self, node: NodeId, field: &str, why: &str) -> Diagnostic {
        self.diagnostic(
            Code::AddCannotEdit,
            node,
            field,
            format!("cannot add to this layout: {why}"),
            "write this part of the pod template in block style (one key per line), or add the reference by hand",
        )
    }
}

/// The container the request names, or the only app container.
fn choose_container(
    pod: &PodRead,
    request: &AddRequest,
    site: &mut Site,
    template: NodeId,
) -> Result<usize, Vec<Diagnostic>> {
    let names = |init: Option<bool>| -> String {
        pod.containers
            .iter()
            .filter(|c| init.is_none_or(|i| c.init == i))
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let field = "spec.containers";
    match &request.container {
        Some(wanted) => match pod.containers.iter().position(|c| &c.name == wanted) {
            Some(i) => Ok(i),
            None => Err(vec![site.diagnostic(
                Code::UnknownContainer,
                template,
                field,
                format!("no container or init container is named `{wanted}`"),
                &format!("containers of this pod: {}", names(None)),
            )]),
        },
        None => {
            let app: Vec<usize> = (0..pod.containers.len())
                .filter(|&i| !pod.containers[i].init)
                .collect();
            match app.as_slice() {
                [one] => Ok(*one),
                [] => Err(vec![site.diagnostic(
                    Code::AddChooseContainer,
                    template,
                    field,
                    "the pod template has no containers".into(),
                    "add to a workload whose pod template lists its containers",
                )]),
                _ => Err(vec![site.diagnostic(
                    Code::AddChooseContainer,
                    template,
                    field,
                    format!("the pod has {} containers", app.len()),
                    &format!("choose one with --container: {}", names(Some(false))),
                )]),
            }
        }
    }
}

type Planned = (Vec<Replacement>, Vec<Edit>);

/// The replacements and edits that add the request to the pod, or `None` with the
/// problems in `site`.
fn plan(
    pod: &PodRead,
    ci: usize,
    request: &AddRequest,
    settings: &Settings,
    site: &mut Site,
    template: NodeId,
    field: &str,
) -> Option<Planned> {
    let tree = &site.doc.tree;
    let text = site.doc.text;
    let container = &pod.containers[ci];
    let cfield = format!("{field}spec.{}", container.field);
    let afield = format!("{field}metadata.annotations");
    let mut plan = PodPlan::default();
    let mut edits = Vec::new();
    let mut replacements = Vec::new();

    // The opt-in and the role.
    let opted_in = match pod.opt_in {
        Some(node) if tree.str(node) != Some(OPT_IN_VALUE) => {
            site.problem(
                Code::UnknownProvider,
                node,
                &format!("{afield}[{OPT_IN_KEY}]"),
                format!(
                    "the pod opts in to the secret-store provider `{}`, not `vault`",
                    tree.str(node).unwrap_or("<not a string>")
                ),
                "the only provider is `vault`: fix the annotation, then run add again",
            );
            return None;
        }
        Some(_) => true,
        None => false,
    };
    let existing_role = pod
        .role
        .and_then(|r| tree.str(r))
        .filter(|r| !r.trim().is_empty());
    let role_node = pod.role.or(pod.opt_in).unwrap_or(container.node);
    match (existing_role, request.role.as_deref()) {
        (Some(existing), Some(wanted)) if existing != wanted => {
            site.problem(
                Code::AddRoleMismatch,
                role_node,
                &format!("{afield}[{ROLE_KEY}]"),
                format!("the pod logs in to Vault with role `{existing}` already, not `{wanted}`"),
                &format!("drop --role (or pass --role {existing}) to add to this pod; change the role annotation by hand if the pod should use another role"),
            );
        }
        (Some(_), _) => {}
        (None, None) => site.problem(
            Code::MissingRole,
            role_node,
            &afield,
            if opted_in {
                "the pod is opted in but names no Vault role".into()
            } else {
                "the pod is not opted in yet, so it needs a Vault role".into()
            },
            "pass --role ROLE: the Vault role bound to this pod's service account",
        ),
        (None, Some(role)) => {
            if !opted_in {
                plan.role = Some(role.to_string());
                site.changes.push(format!(
                    "opt the pod in ({OPT_IN_KEY}: {OPT_IN_VALUE}, role {role})"
                ));
            } else {
                match (pod.role, pod.annotations) {
                    (Some(node), _) => match rewrite::scalar_range(text, tree, node) {
                        Ok(range) => replacements.push(Replacement {
                            range,
                            text: edit::yaml_scalar(role),
                        }),
                        Err(m) => {
                            let d = site.cannot_edit(node, &afield, &m);
                            site.problems.push(d);
                        }
                    },
                    (None, Some(map)) => edits.push(Edit::AddKey {
                        map,
                        key: ROLE_KEY.to_string(),
                        value: Value::from(role),
                    }),
                    (None, None) => {}
                }
                site.changes.push(format!("set the Vault role to {role}"));
            }
        }
    }
    plan.already_opted_in = opted_in;

    // Env references.
    let mut appended = Vec::new();
    let mut wants_env_refs = false;
    for (i, env) in request.env.iter().enumerate() {
        if request.env[..i].iter().any(|e| e.name == env.name) {
            continue;
        }
        wants_env_refs = true;
        let value = env.value();
        let entry = container.env.and_then(|seq| {
            tree.items(seq)
                .iter()
                .enumerate()
                .rev()
                .find(|(_, e)| tree.str_at(**e, &["name"]) == Some(env.name.as_str()))
                .map(|(i, e)| (i, tree.resolve(*e)))
        });
        let Some((index, entry)) = entry else {
            appended.push(env);
            continue;
        };
        let efield = format!("{cfield}.env[{index}]");
        match (tree.get(entry, "value"), tree.get(entry, "valueFrom")) {
            (Some(node), _) if tree.str(node) == Some(value.as_str()) => {}
            (Some(node), _) => {
                let old = tree.str(node).unwrap_or_default();
                if old.starts_with(REF_PREFIX) {
                    site.changes
                        .push(format!("env {}: {value} (was {old})", env.name));
                } else {
                    // The old value may be a secret: it is never shown.
                    site.warn(
                        Code::AddReplacedLiteral,
                        node,
                        &format!("{efield}.value"),
                        format!(
                            "env `{}` of container `{}` held a literal value, now replaced by a reference; the old value is still in the Git history",
                            env.name, container.name
                        ),
                        "if it was a secret, rotate it in Vault and in whatever else accepts it",
                    );
                    site.changes.push(format!(
                        "env {}: {value} (replaces a literal value)",
                        env.name
                    ));
                    if let Ok(range) = rewrite::scalar_range(text, tree, node) {
                        site.replaced_literals.push(range);
                    }
                }
                plan.env.push((node, value));
            }
            (None, Some(from)) => match value_from_replacement(text, tree, entry, from, &value) {
                Some(replacement) => {
                    replacements.push(replacement);
                    site.changes.push(format!(
                        "env {}: {value} (replaces its valueFrom)",
                        env.name
                    ));
                }
                None => site.problem(
                    Code::AddCannotEdit,
                    from,
                    &format!("{efield}.valueFrom"),
                    format!(
                        "env `{}` of container `{}` is set from `valueFrom` in a layout add cannot rewrite",
                        env.name, container.name
                    ),
                    "write the env entry in block style (valueFrom: on a line of its own), or remove its valueFrom and run add again",
                ),
            },
            (None, None) => {
                edits.push(Edit::AddKey {
                    map: entry,
                    key: "value".into(),
                    value: Value::from(value.as_str()),
                });
                site.changes.push(format!("env {}: {value}", env.name));
            }
        }
    }
    if !appended.is_empty() {
        let items: Vec<Value> = appended
            .iter()
            .map(|e| serde_json::json!({"name": e.name, "value": e.value()}))
            .collect();
        for e in &appended {
            site.changes.push(format!("env {}: {}", e.name, e.value()));
        }
        match container.env {
            Some(seq) if tree.is_seq(seq) => edits.push(Edit::Append { seq, items }),
            Some(node) => site.problem(
                Code::AddCannotEdit,
                node,
                &format!("{cfield}.env"),
                format!("the `env` of container `{}` is not a list", container.name),
                "write env as a list of {name, value} entries",
            ),
            None => edits.push(Edit::AddKey {
                map: container.node,
                key: "env".into(),
                value: Value::Array(items),
            }),
        }
    }
    let configured = container
        .image
        .as_deref()
        .is_some_and(|i| settings.entrypoint(i).is_some());
    if wants_env_refs && !container.has_command && !configured {
        site.problem(
            Code::NoCommand,
            container.node,
            &cfield,
            format!(
                "container `{}` has no `command`: env references are resolved by wrapping it (`secretstore exec -- <command>`)",
                container.name
            ),
            "write the image's entrypoint as the container's `command` (e.g. command: [\"/app/server\"]), or add the image to the configuration's `entrypoints` (--config)",
        );
    }

    // File secrets.
    let mut next = pod
        .files
        .iter()
        .filter_map(|f| f.suffix.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    for (i, file) in request.files.iter().enumerate() {
        if request.files[..i].iter().any(|f| f.path == file.path) {
            continue;
        }
        let Ok((dir, name)) = file.split_path() else {
            continue;
        };
        let sees = |f: &ExistingFile| match &f.containers {
            Some(names) => names.contains(&container.name),
            None => !container.init,
        };
        let same_path = pod.files.iter().find(|f| {
            sees(f)
                && f.mount_path.as_deref() == Some(dir.as_str())
                && f.file_name.as_deref() == Some(name.as_str())
        });
        if let Some(existing) = same_path {
            if existing.reference.as_deref() != Some(file.reference.as_str()) {
                site.problem(
                    Code::FileSecretPathClash,
                    existing.value,
                    &format!("{afield}[{FILE_KEY_PREFIX}{}]", existing.suffix),
                    format!(
                        "container `{}` already gets a file at `{}` (from filesecret-config-{}) with another reference",
                        container.name, file.path, existing.suffix
                    ),
                    "choose another path, or change that annotation's vaultSecretRef by hand",
                );
            }
            continue;
        }
        if container.mount_paths.contains(&dir) {
            site.problem(
                Code::MountPathInUse,
                container.node,
                &format!("{cfield}.volumeMounts"),
                format!(
                    "container `{}` already mounts a volume at `{dir}`",
                    container.name
                ),
                "put the file in a directory the container does not mount, e.g. /etc/secrets/<name>",
            );
            continue;
        }
        let suffix = next.to_string();
        next += 1;
        let config = serde_json::json!({
            "vaultSecretRef": file.reference,
            "secretFileName": name,
            "volumeMountPath": dir,
            "containers": [container.name],
        });
        site.changes.push(format!(
            "file {} from {} ({FILE_KEY_PREFIX}{suffix})",
            file.path, file.reference
        ));
        if opted_in {
            if let Some(map) = pod.annotations {
                edits.push(Edit::AddKey {
                    map,
                    key: format!("{FILE_KEY_PREFIX}{suffix}"),
                    value: Value::from(edit::compact_json(&config)),
                });
            }
        } else {
            plan.files.push((suffix, config));
        }
    }
    if !site.problems.is_empty() {
        return None;
    }

    let opting_in = !opted_in && plan.role.is_some();
    if plan.env.is_empty() && plan.files.is_empty() && !opting_in {
        return Some((replacements, edits));
    }
    let layout = Layout::detect(text, tree, None);
    if opting_in {
        // An empty `annotations` ({} or null), which convert's rewrite leaves alone.
        let written = tree.path(template, &["metadata", "annotations"]);
        if let Some(node) = written.filter(|a| tree.entries(*a).is_empty()) {
            let mut new = vec![
                (OPT_IN_KEY.to_string(), OPT_IN_VALUE.to_string()),
                (ROLE_KEY.to_string(), plan.role.clone().unwrap_or_default()),
            ];
            for (suffix, config) in std::mem::take(&mut plan.files) {
                new.push((
                    format!("{FILE_KEY_PREFIX}{suffix}"),
                    edit::compact_json(&config),
                ));
            }
            let written = tree.node(node);
            if tree.is_map(node)
                && !tree.is_alias(node)
                && text[written.start..].starts_with('{')
                && text[..written.end].ends_with('}')
            {
                let entries: Vec<String> = new
                    .iter()
                    .map(|(k, v)| format!("{}: {}", edit::json_string(k), edit::json_string(v)))
                    .collect();
                replacements.push(Replacement {
                    range: written.start..written.end,
                    text: format!("{{{}}}", entries.join(", ")),
                });
            } else if let Some(r) = null_annotations(text, tree, template, node, &new, &layout) {
                replacements.push(r);
            } else {
                let d = site.cannot_edit(node, &afield, "the annotations are not a mapping");
                site.problems.push(d);
                return None;
            }
            plan.already_opted_in = true;
        }
    }
    match rewrite::plan_pod(text, tree, template, &plan, &layout) {
        Ok((r, e)) => {
            replacements.extend(r);
            edits.extend(e);
            Some((replacements, edits))
        }
        Err(m) => {
            let d = site.cannot_edit(template, field, &m);
            site.problems.push(d);
            None
        }
    }
}

/// `annotations:` with a null value (nothing, `~`, `null`; a comment may follow), on a
/// line of its own, written again as a block mapping of `new`.
fn null_annotations(
    text: &str,
    tree: &Tree,
    template: NodeId,
    value: NodeId,
    new: &[(String, String)],
    layout: &Layout,
) -> Option<Replacement> {
    if !tree.is_null(value) || tree.is_alias(value) {
        return None;
    }
    let metadata = tree.get(template, "metadata")?;
    let key = tree.node(tree.key_node(metadata, "annotations")?);
    let start = edit::line_start(text, key.start);
    let indent = &text[start..key.start];
    if !indent.chars().all(|c| c == ' ') {
        return None;
    }
    let line_end = text[key.start..]
        .find('\n')
        .map_or(text.len(), |i| key.start + i + 1);
    let rest = text[key.start..line_end].trim_end();
    let rest = rest
        .strip_prefix("annotations")?
        .trim_start()
        .strip_prefix(':')?;
    let rest = rest.trim_start();
    let rest = ["~", "null", "Null", "NULL"]
        .iter()
        .find_map(|n| rest.strip_prefix(n))
        .unwrap_or(rest)
        .trim_start();
    if !(rest.is_empty() || rest.starts_with('#')) {
        return None;
    }
    let nl = layout.newline;
    let mut block = format!("{indent}annotations:{nl}");
    for (k, v) in new {
        block.push_str(&format!(
            "{indent}  {}: {}{nl}",
            edit::yaml_scalar(k),
            edit::yaml_scalar(v)
        ));
    }
    if !text[..line_end].ends_with('\n') {
        block.truncate(block.len() - nl.len());
    }
    Some(Replacement {
        range: start..line_end,
        text: block,
    })
}

/// `valueFrom:` and its block (to the end of its last line) replaced by `value: <value>`
/// at the same indentation; `None` when the key does not start its own line.
fn value_from_replacement(
    text: &str,
    tree: &Tree,
    entry: NodeId,
    from: NodeId,
    value: &str,
) -> Option<Replacement> {
    let key = tree.node(tree.key_node(entry, "valueFrom")?);
    let start = edit::line_start(text, key.start);
    let indent = &text[start..key.start];
    if !indent.chars().all(|c| c == ' ') || tree.is_alias(from) {
        return None;
    }
    let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let (end, missing_newline) = edit::block_end(text, tree, from, nl);
    let tail = if missing_newline.is_empty() { nl } else { "" };
    Some(Replacement {
        range: start..end,
        text: format!("{indent}value: {}{tail}", edit::yaml_scalar(value)),
    })
}

/// Findings of lint (render's refusals included) on `after` that `before` did not have,
/// compared without their positions, which the edit moves.
fn introduced_findings(
    source: &str,
    before: &str,
    after: &str,
    settings: &Settings,
) -> Vec<Diagnostic> {
    let lint_text = |text: &str| {
        let input = Input {
            name: source.to_string(),
            bytes: text.as_bytes().to_vec(),
        };
        lint::lint_input(&input, settings)
    };
    let old = lint_text(before);
    lint_text(after)
        .into_iter()
        .filter(|d| {
            !old.iter().any(|o| {
                o.code == d.code
                    && o.message == d.message
                    && o.object == d.object
                    && o.field == d.field
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(env: &[&str], files: &[&str]) -> AddRequest {
        AddRequest {
            role: Some("shop".into()),
            env: env.iter().map(|e| EnvAddition::parse(e).unwrap()).collect(),
            files: files
                .iter()
                .map(|f| FileAddition::parse(f).unwrap())
                .collect(),
            ..AddRequest::default()
        }
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  serviceAccountName: p\n  containers:\n  - name: c\n    image: x\n    command: [run]\n";

    #[test]
    fn crlf_and_a_bom_are_kept() {
        let text = format!("\u{feff}{}", POD.replace('\n', "\r\n"));
        let added = apply(&text, &request(&["A=secret/a#k"], &[])).unwrap();
        assert!(added.text.starts_with('\u{feff}'));
        assert!(
            !added.text.replace("\r\n", "").contains('\n'),
            "{:?}",
            added.text
        );
        assert!(added
            .text
            .contains("value: 'secretstore:vault:secret/a#k'\r\n"));
        let again = apply(&added.text, &request(&["A=secret/a#k"], &[])).unwrap();
        assert!(!again.changed);
    }

    #[test]
    fn flow_annotations_of_an_opted_in_pod_get_the_file() {
        let text = POD.replace(
            "metadata:\n  name: p\n",
            "metadata:\n  name: p\n  annotations: {rafay.dev/secretstore: vault, vault.secretstore.rafay.dev/role: shop}\n",
        );
        let added = apply(&text, &request(&[], &["/etc/s/f=secret/a#k"])).unwrap();
        assert!(
            added.text.contains("vault.secretstore.rafay.dev/role: shop, \"vault.secretstore.rafay.dev/filesecret-config-1\": "),
            "{}",
            added.text
        );
    }

    #[test]
    fn a_list_item_is_a_workload() {
        let item = POD.replace('\n', "\n  ");
        let text = format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}\n",
            item.trim_end()
        );
        let found = workloads("<input>", &text, &Settings::default()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].selector, "pod/p");
        assert!(
            found[0].matches("po/p") && found[0].matches("Pod/p") && !found[0].matches("pod/q")
        );
        let added = apply(&text, &request(&["A=secret/a#k"], &[])).unwrap();
        assert!(added.changed);
    }

    #[test]
    fn empty_annotations_are_filled() {
        for (written, expected) in [
            ("annotations: {}", "annotations: {\"rafay.dev/secretstore\": \"vault\", \"vault.secretstore.rafay.dev/role\": \"shop\"}\n"),
            ("annotations:", "annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: shop\n"),
            ("annotations: ~ # none yet", "annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: shop\n"),
        ] {
            let text = POD.replace("metadata:\n  name: p\n", &format!("metadata:\n  {written}\n  name: p\n"));
            let added = apply(&text, &request(&["A=secret/a#k"], &[])).unwrap();
            assert!(added.text.contains(&format!("metadata:\n  {expected}  name: p\n")), "{written}: {}", added.text);
        }
    }

    #[test]
    fn arguments_are_checked() {
        assert!(EnvAddition::parse("A").is_err());
        assert!(EnvAddition::parse("=secret/a").is_err());
        assert_eq!(
            EnvAddition::parse("A=secretstore:vault:secret/a#k")
                .unwrap()
                .reference,
            "secret/a#k"
        );
        for bad in [
            "f=secret/a",
            "/f=secret/a",
            "/etc/=secret/a",
            "/etc/../f=secret/a",
            "/secretstore/x/f=secret/a",
            "/etc/f=secret/a#",
        ] {
            assert!(FileAddition::parse(bad).is_err(), "{bad}");
        }
        let (dir, name) = FileAddition::parse("/etc/tls/tls.crt=secret/a#k")
            .unwrap()
            .split_path()
            .unwrap();
        assert_eq!((dir.as_str(), name.as_str()), ("/etc/tls", "tls.crt"));
    }

    #[test]
    fn a_reference_replaces_another_without_a_warning() {
        let text = POD.replace(
            "    command: [run]\n",
            "    command: [run]\n    env:\n    - name: A\n      value: secretstore:vault:secret/old#k\n",
        );
        let added = apply(&text, &request(&["A=secret/new#k"], &[])).unwrap();
        assert!(added.warnings.is_empty(), "{:?}", added.warnings);
        assert!(added
            .text
            .contains("      value: secretstore:vault:secret/new#k\n"));
    }
}
