//! Planning the expansion of one opted-in pod template (SPEC section 2): the agent spec and
//! the edits that wire it into the pod. [`plan`] runs the steps in order: the volumes'
//! names, the file secrets, the env references, wrapping the commands of the containers
//! that need `exec`, the agent spec and its container, the pod's volumes, and the edits.

use crate::config::KubeVersion;
use crate::config::{LogFormat, Settings};
use crate::diag::Code;
use crate::pod::agent_spec::{
    parse_param, AgentSpec, EnvFileOutput, EnvRef, ExecWatch, FileFormat, FileOutput, LiveSpec,
    OnChange, ParamPiece, Params, SecretRead, TemplateSpec, VaultConnection, WatchedFile,
    AGENT_SECRETS_DIR, BIN_DIR, CA_DIR, ENV_DIR, ENV_FILE_NAME, LIVE_ENV, LOG_FORMAT_ENV,
    METRICS_PORT_NAME, POD_VARIABLES, SPEC_ENV, TOKEN_DIR, TOKEN_FILE_NAME,
};
use crate::render::dialect::{
    Ctx, FileContent, FileEntry, FileSecret, PodRequest, SecretRef, METRICS_PORT_KEY,
    STATUS_INJECTED, STATUS_KEY,
};
use crate::render::edit::Edit;
use crate::render::tree::{NodeId, Tree};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const AGENT_CONTAINER: &str = "secretstore-agent";
/// Where the agent image keeps the binary.
pub const IMAGE_BINARY: &str = "/usr/local/bin/secretstore";
pub const TOKEN_EXPIRATION_SECONDS: u64 = 600;
/// User and group the init container runs as; the files it writes are theirs.
pub const AGENT_USER: i64 = 65532;
/// Live mode: the startup probe's period; its failure threshold covers the agent's
/// timeout plus this many periods.
const STARTUP_PROBE_SLACK: u64 = 10;

/// A name not yet used, starting from `base`.
fn unique_name(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_string();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !taken.iter().any(|t| t == candidate))
        .unwrap_or_else(|| base.to_string())
}

/// Plans the expansion; returns `None` when the pod has errors (already in `ctx`).
pub fn plan(
    ctx: &mut Ctx,
    settings: &Settings,
    request: &PodRequest,
    template: NodeId,
    field: &str,
) -> Option<(AgentSpec, Vec<Edit>)> {
    let tree: &Tree = ctx.tree;
    let Some(spec_node) = tree.get(template, "spec").filter(|s| tree.is_map(*s)) else {
        ctx.report(
            Code::CannotEdit,
            template,
            format!("{field}spec"),
            "the opted-in pod template has no spec".into(),
            "give the pod template a spec with containers",
        );
        return None;
    };
    let spec_node = tree.resolve(spec_node);
    let volumes_node = tree.get(spec_node, "volumes");
    let refresh = request.live.refresh_seconds(settings.refresh_seconds);
    if let Some(seconds) = refresh {
        live_mode_supported(ctx, settings, request, field, seconds)?;
    }
    let metrics_port = refresh.and(request.live.metrics_port(settings.metrics_port));
    if let Some(port) = metrics_port {
        metrics_port_free(ctx, request, field, port);
    }
    let names = VolumeNames::new(tree, volumes_node);
    let mut wiring = Wiring::default();
    wiring.add_files(request, &names, refresh);
    wiring.add_env_refs(request, refresh);
    let mut edits = Vec::new();
    let needs_bin = wrap_commands(
        ctx,
        settings,
        request,
        field,
        &names,
        &mut wiring,
        &mut edits,
    )?;
    if ctx.has_errors() {
        return None;
    }
    let Wiring {
        reads,
        files,
        env_files,
        mounts,
        templates,
        ..
    } = wiring;
    let agent_spec = AgentSpec {
        v: AgentSpec::VERSION,
        vault: vault_connection(settings, request),
        timeout_seconds: settings.timeout_seconds,
        secrets: reads,
        templates,
        files,
        env_files,
        copy_binary_to: needs_bin.then(exec_binary),
        live: refresh.map(|refresh_seconds| LiveSpec {
            refresh_seconds,
            revoke_on_stop: request.live.revoke_on_stop.is_none_or(|(b, _)| b),
            metrics_port,
        }),
        secrets_root: AGENT_SECRETS_DIR.to_owned(),
        bin_root: BIN_DIR.to_owned(),
    };
    let init = agent_container(settings, request, &agent_spec, &names, needs_bin);
    let volumes = pod_volumes(settings, &names, needs_bin);
    let pod_spec = PodSpecNodes {
        spec: spec_node,
        volumes: volumes_node,
    };
    edits.extend(add_to_pod(
        ctx, request, pod_spec, field, init, volumes, mounts,
    )?);
    Some((agent_spec, edits))
}

/// Live mode needs native sidecars; reports SS131 when the target cluster is older.
fn live_mode_supported(
    ctx: &mut Ctx,
    settings: &Settings,
    request: &PodRequest,
    field: &str,
    seconds: u64,
) -> Option<()> {
    let version = match (settings.kube_version, &settings.kube_version_unreadable) {
        (Some(version), _) if version >= KubeVersion::NATIVE_SIDECARS => return Some(()),
        (Some(version), _) => format!("the target cluster is Kubernetes {version}"),
        (None, Some(text)) => {
            format!("the target cluster's version is unknown (KUBE_VERSION {text:?} is not a Kubernetes version)")
        }
        (None, None) => return Some(()),
    };
    let node = request
        .live
        .refresh
        .map_or(request.annotations, |(_, node)| node);
    let object = &ctx.object;
    let pod = match &object.namespace {
        Some(ns) => format!("{} {ns}/{}", object.kind, object.name),
        None => format!("{} {}", object.kind, object.name),
    };
    ctx.report(
        Code::LiveNeedsKubernetes129,
        node,
        format!("{field}metadata.annotations"),
        format!(
            "{pod} asks for live mode (refresh every {seconds}s), which needs native sidecars (Kubernetes {} or later), but {version}",
            KubeVersion::NATIVE_SIDECARS
        ),
        "upgrade the cluster, set the right --kube-version, or turn live mode off for this pod (vault.secretstore.rafay.dev/refresh: \"off\")",
    );
    None
}

/// The sidecar shares the pod's network: its metrics port must be one no container of
/// the pod declares. Reports SS106 when one does.
fn metrics_port_free(ctx: &mut Ctx, request: &PodRequest, field: &str, port: u16) {
    let tree = ctx.tree;
    let port_text = port.to_string();
    let taken_by = request.containers.iter().find(|c| {
        tree.get(c.node, "ports").is_some_and(|ports| {
            tree.items(ports)
                .iter()
                .any(|p| tree.str_at(*p, &["containerPort"]) == Some(port_text.as_str()))
        })
    });
    let Some(container) = taken_by else {
        return;
    };
    let annotations = format!("{field}metadata.annotations");
    let (node, at, source) = match request.live.metrics_port {
        Some((_, node)) => (
            node,
            format!("{annotations}[{METRICS_PORT_KEY}]"),
            "the pod's metrics-port annotation",
        ),
        None => (
            request.annotations,
            annotations,
            "the configuration's agent.metrics.port",
        ),
    };
    let message = format!(
        "{source} puts the sidecar's metrics on port {port}, which container `{}` already declares",
        container.name
    );
    ctx.report(
        Code::LiveBadValue,
        node,
        at,
        message,
        &format!("choose a port no container of the pod uses ({METRICS_PORT_KEY})"),
    );
}

/// The names of the volumes render adds, each one the pod does not use yet.
struct VolumeNames {
    secrets: String,
    bin: String,
    token: String,
    ca: String,
}

impl VolumeNames {
    fn new(tree: &Tree, volumes_node: Option<NodeId>) -> Self {
        let taken: Vec<String> = volumes_node
            .map(|v| {
                tree.items(v)
                    .iter()
                    .filter_map(|vol| tree.str_at(*vol, &["name"]).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        VolumeNames {
            secrets: unique_name("secretstore-secrets", &taken),
            bin: unique_name("secretstore-bin", &taken),
            token: unique_name("secretstore-token", &taken),
            ca: unique_name("secretstore-ca", &taken),
        }
    }
}

/// What the pod's plan gathers from its file secrets and env references.
#[derive(Default)]
struct Wiring {
    /// Secrets read once each, in order of first use.
    reads: Vec<SecretRead>,
    files: Vec<FileOutput>,
    env_files: Vec<EnvFileOutput>,
    /// Per container: the mounts to add.
    mounts: BTreeMap<usize, Vec<Value>>,
    /// Per container: the files `exec` watches and what it does when they change.
    watches: BTreeMap<usize, Vec<WatchedFile>>,
    /// The containers with env references, whose commands `exec` wraps.
    wrapped: Vec<usize>,
    /// Each template once, however many files and env values hold its output.
    templates: Vec<TemplateSpec>,
    /// (config, file) of each template in `templates`, by index.
    template_ids: Vec<((usize, usize), usize)>,
}

/// What a file or env value holds, as indices into the agent spec.
enum Planned {
    Key { secret: usize, key: String },
    Whole { secret: usize, format: FileFormat },
    Template(usize),
}

/// A template's name in the agent spec and its messages: `filesecret-config-1/app.conf`.
fn template_name(f: &FileSecret, out: &FileEntry) -> String {
    format!("filesecret-config-{}/{}", f.suffix, out.file_name)
}

impl Wiring {
    /// The index of a request in `reads` (path, version and a write's params), added on
    /// first use. A certificate's `renewBefore` is the longest any config asks for.
    fn read_index(&mut self, reference: &SecretRef, renew_before: Option<u64>) -> usize {
        let params = reference
            .params
            .as_deref()
            .and_then(|p| serde_json::from_str::<Params>(p).ok());
        let i = match self.reads.iter().position(|r| {
            r.path == reference.path && r.version == reference.version && r.params == params
        }) {
            Some(i) => i,
            None => {
                self.reads.push(SecretRead {
                    path: reference.path.clone(),
                    version: reference.version,
                    params,
                    renew_before_seconds: None,
                });
                self.reads.len() - 1
            }
        };
        let read = &mut self.reads[i];
        read.renew_before_seconds = read.renew_before_seconds.max(renew_before);
        i
    }

    /// What file `output` of config `config` holds, its sources read and its template
    /// added on first use.
    fn content(&mut self, request: &PodRequest, config: usize, output: usize) -> Planned {
        let f = &request.files[config];
        let out = &f.outputs[output];
        let answer = |wiring: &mut Wiring| {
            f.answer()
                .map(|s| wiring.read_index(&s.reference, f.renew_before))
                .unwrap_or_default()
        };
        match &out.content {
            FileContent::Key(key) => Planned::Key {
                secret: answer(self),
                key: key.clone(),
            },
            FileContent::Whole(format) => Planned::Whole {
                secret: answer(self),
                format: *format,
            },
            FileContent::Template(t) => {
                if let Some(&(_, i)) = self
                    .template_ids
                    .iter()
                    .find(|(at, _)| *at == (config, output))
                {
                    return Planned::Template(i);
                }
                let sources = f
                    .sources
                    .iter()
                    .map(|s| {
                        (
                            s.alias.clone(),
                            self.read_index(&s.reference, f.renew_before),
                        )
                    })
                    .collect();
                self.templates.push(TemplateSpec {
                    name: template_name(f, out),
                    text: t.text.clone(),
                    sources,
                });
                let i = self.templates.len() - 1;
                self.template_ids.push(((config, output), i));
                Planned::Template(i)
            }
        }
    }

    /// Each file secret: one output per container, and one sub-directory mount of the
    /// secrets volume per container and mount path. A config mounted nowhere
    /// (`"containers": []`) is read only for the env values that use it.
    fn add_files(&mut self, request: &PodRequest, names: &VolumeNames, refresh: Option<u64>) {
        let pod_on_change = pod_on_change(request);
        // Per container: mount path → sub-directory number.
        let mut dirs: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (fi, f) in request.files.iter().enumerate() {
            if f.containers.is_empty() {
                continue;
            }
            for s in &f.sources {
                self.read_index(&s.reference, f.renew_before);
            }
            let on_change = refresh
                .map(|_| f.on_change.clone().unwrap_or_else(|| pod_on_change.clone()))
                .filter(|a| *a != OnChange::None);
            for &c in &f.containers {
                let cname = &request.containers[c].name;
                let container_dirs = dirs.entry(c).or_default();
                let k = match container_dirs.iter().position(|p| *p == f.mount_path) {
                    Some(k) => k,
                    None => {
                        container_dirs.push(f.mount_path.clone());
                        self.mounts.entry(c).or_default().push(json!({
                            "name": names.secrets,
                            "mountPath": if f.mount_path.is_empty() { "/" } else { &f.mount_path },
                            "subPath": format!("files/{cname}/{}", container_dirs.len() - 1),
                            "readOnly": true,
                        }));
                        container_dirs.len() - 1
                    }
                };
                for (oi, out) in f.outputs.iter().enumerate() {
                    let (secret, key, format, template) = match self.content(request, fi, oi) {
                        Planned::Key { secret, key } => {
                            (Some(secret), Some(key), FileFormat::Raw, None)
                        }
                        Planned::Whole { secret, format } => (Some(secret), None, format, None),
                        Planned::Template(t) => (None, None, FileFormat::Raw, Some(t)),
                    };
                    let reference = match (template, f.answer()) {
                        (None, Some(answer)) => answer.text.clone(),
                        _ => template_name(f, out),
                    };
                    self.files.push(FileOutput {
                        secret,
                        template,
                        key,
                        format,
                        mode: out.mode,
                        path: format!("{AGENT_SECRETS_DIR}/files/{cname}/{k}/{}", out.file_name),
                        reference,
                        on_change: on_change.clone(),
                        together: f.together,
                    });
                    if let Some(action) = &on_change {
                        self.watches.entry(c).or_default().push(WatchedFile {
                            path: format!("{}/{}", f.mount_path, out.file_name),
                            on_change: action.clone(),
                        });
                    }
                }
            }
        }
    }

    /// The env references and `secretstore:file:` values: one env file per container,
    /// each value once.
    fn add_env_refs(&mut self, request: &PodRequest, refresh: Option<u64>) {
        for r in &request.env_refs {
            let secret = self.read_index(&r.reference, None);
            self.env_value(
                request,
                r.container,
                EnvRef {
                    reference: r.text.clone(),
                    secret: Some(secret),
                    key: Some(
                        r.reference
                            .key
                            .clone()
                            .unwrap_or_else(|| r.env_name.clone()),
                    ),
                    format: None,
                    template: None,
                },
            );
        }
        for r in &request.file_refs {
            let (secret, key, format, template) = match self.content(request, r.config, r.output) {
                Planned::Key { secret, key } => (Some(secret), Some(key), None, None),
                Planned::Whole { secret, format } => (Some(secret), None, Some(format), None),
                Planned::Template(t) => (None, None, None, Some(t)),
            };
            self.env_value(
                request,
                r.container,
                EnvRef {
                    reference: r.text.clone(),
                    secret,
                    key,
                    format,
                    template,
                },
            );
        }
        // Env values change only when the app starts again.
        if refresh.is_some() && pod_on_change(request) == OnChange::Restart {
            for &c in &self.wrapped {
                self.watches.entry(c).or_default().push(WatchedFile {
                    path: format!("{ENV_DIR}/{ENV_FILE_NAME}"),
                    on_change: OnChange::Restart,
                });
            }
        }
    }

    /// Adds a value to the env file of `container` (its first), unless it is there.
    fn env_value(&mut self, request: &PodRequest, container: usize, value: EnvRef) {
        let cname = &request.containers[container].name;
        let entry = match self.env_files.iter().position(|e| &e.container == cname) {
            Some(i) => &mut self.env_files[i],
            None => {
                self.wrapped.push(container);
                self.env_files.push(EnvFileOutput {
                    container: cname.clone(),
                    path: format!("{AGENT_SECRETS_DIR}/env/{cname}/{ENV_FILE_NAME}"),
                    refs: Vec::new(),
                });
                let last = self.env_files.len() - 1;
                &mut self.env_files[last]
            }
        };
        if !entry.refs.iter().any(|e| e.reference == value.reference) {
            entry.refs.push(value);
        }
    }
}

/// The pod's own on-change action (a file secret may set its own).
fn pod_on_change(request: &PodRequest) -> OnChange {
    request
        .live
        .on_change
        .as_ref()
        .map_or(OnChange::None, |(a, _)| a.clone())
}

/// Where the agent copies the binary for `exec`.
fn exec_binary() -> String {
    format!("{BIN_DIR}/secretstore")
}

/// Wraps the command of every container that has env references or files to watch in
/// `exec`, and adds its mounts and watch list; returns whether any container needs the
/// binary, or `None` when a field cannot be edited.
fn wrap_commands(
    ctx: &mut Ctx,
    settings: &Settings,
    request: &PodRequest,
    field: &str,
    names: &VolumeNames,
    wiring: &mut Wiring,
    edits: &mut Vec<Edit>,
) -> Option<bool> {
    let tree = ctx.tree;
    // Containers `exec` wraps only to tell the app about changed files.
    let watch_only: Vec<usize> = wiring
        .watches
        .keys()
        .copied()
        .filter(|c| !wiring.wrapped.contains(c))
        .collect();
    let exec_binary = exec_binary();
    for &c in wiring.wrapped.iter().chain(&watch_only) {
        let env_refs = wiring.wrapped.contains(&c);
        let container = &request.containers[c];
        let cfield = format!("{field}spec.{}", container.field());
        for reserved in [ENV_DIR, BIN_DIR] {
            if (env_refs || reserved == BIN_DIR)
                && container.mount_paths.iter().any(|p| p == reserved)
            {
                ctx.report(
                    Code::MountPathInUse,
                    container.node,
                    format!("{cfield}.volumeMounts"),
                    format!(
                        "container `{}` already mounts a volume at `{reserved}`, which secretstore needs",
                        container.name
                    ),
                    "move that mount elsewhere",
                );
            }
        }
        let prefix = [exec_binary.as_str(), "exec", "--"];
        match tree.get(container.node, "command").filter(|c| !tree.items(*c).is_empty()) {
            Some(command) => edits.push(Edit::Prepend {
                seq: command,
                items: prefix.iter().map(|s| Value::from(*s)).collect(),
            }),
            None => match container.image.as_deref().and_then(|i| settings.entrypoint(i)) {
                Some(entrypoint) if tree.get(container.node, "command").is_none() => {
                    let command: Vec<Value> = prefix
                        .iter()
                        .map(|s| Value::from(*s))
                        .chain(entrypoint.iter().map(|s| Value::from(s.as_str())))
                        .collect();
                    edits.push(Edit::AddKey {
                        map: container.node,
                        key: "command".into(),
                        value: Value::Array(command),
                    });
                }
                _ => ctx.report(
                    Code::NoCommand,
                    container.node,
                    format!("{cfield}.command"),
                    format!(
                        "container `{}` has {} but no `command`, so secretstore cannot wrap it",
                        container.name,
                        if env_refs { "env secret references" } else { "files to watch for on-change" }
                    ),
                    &format!(
                        "write the image's entrypoint as `command`, or map the image `{}` to its entrypoint in the configuration's `entrypoints`",
                        container.image.as_deref().unwrap_or("<none>")
                    ),
                ),
            },
        }
        let list = wiring.mounts.entry(c).or_default();
        if env_refs {
            list.push(json!({
                "name": names.secrets,
                "mountPath": ENV_DIR,
                "subPath": format!("env/{}", container.name),
                "readOnly": true,
            }));
        }
        list.push(json!({"name": names.bin, "mountPath": BIN_DIR, "readOnly": true}));
        let mut vars = Vec::new();
        if let Some(files) = wiring.watches.remove(&c) {
            let watch = ExecWatch { files };
            vars.push(json!({"name": LIVE_ENV, "value": serde_json::to_string(&watch).unwrap_or_default()}));
        }
        vars.extend(log_format_env(settings));
        if !vars.is_empty() {
            match tree.get(container.node, "env") {
                Some(seq) if tree.is_seq(seq) => edits.push(append_or_fill(tree, seq, vars)),
                Some(other) => {
                    return cannot_edit(ctx, other, format!("{cfield}.env"));
                }
                None => edits.push(Edit::AddKey {
                    map: container.node,
                    key: "env".into(),
                    value: Value::Array(vars),
                }),
            }
        }
    }
    Some(!wiring.wrapped.is_empty() || !watch_only.is_empty())
}

/// The env var that asks the agent and `exec` for JSON logs, when configured (none by
/// default, so a default render stays as it was).
fn log_format_env(settings: &Settings) -> Option<Value> {
    (settings.log_format == LogFormat::Json)
        .then(|| json!({"name": LOG_FORMAT_ENV, "value": "json"}))
}

/// How the agent reaches Vault and logs in.
fn vault_connection(settings: &Settings, request: &PodRequest) -> VaultConnection {
    let ca_file = settings.ca_cert.as_ref().map(|ca| {
        let key = ca.key.clone().unwrap_or_else(|| "ca.crt".into());
        format!("{CA_DIR}/{key}")
    });
    VaultConnection {
        address: settings.vault_address.clone(),
        auth_path: settings.auth_path.clone(),
        role: request.role.clone(),
        namespace: settings.vault_namespace.clone(),
        ca_cert_file: ca_file,
        tls_server_name: settings.tls_server_name.clone(),
        token_file: format!("{TOKEN_DIR}/{TOKEN_FILE_NAME}"),
    }
}

/// The agent's init container (a native sidecar in live mode), restricted by the Pod
/// Security Standard.
fn agent_container(
    settings: &Settings,
    request: &PodRequest,
    agent_spec: &AgentSpec,
    names: &VolumeNames,
    needs_bin: bool,
) -> Value {
    let container_names: Vec<String> = request.containers.iter().map(|c| c.name.clone()).collect();
    let mut agent_mounts = vec![json!({"name": names.secrets, "mountPath": AGENT_SECRETS_DIR})];
    if needs_bin {
        agent_mounts.push(json!({"name": names.bin, "mountPath": BIN_DIR}));
    }
    agent_mounts.push(json!({"name": names.token, "mountPath": TOKEN_DIR, "readOnly": true}));
    if settings.ca_cert.is_some() {
        agent_mounts.push(json!({"name": names.ca, "mountPath": CA_DIR, "readOnly": true}));
    }
    let mut init = json!({
        "name": unique_name(AGENT_CONTAINER, &container_names),
        "image": settings.agent_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [IMAGE_BINARY, "agent"],
        "env": agent_env(agent_spec),
        "resources": settings.resources,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": AGENT_USER,
            "runAsGroup": AGENT_USER,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": agent_mounts,
    });
    if let Some(var) = log_format_env(settings) {
        if let Some(env) = init["env"].as_array_mut() {
            env.push(var);
        }
    }
    if agent_spec.live.is_some() {
        // A native sidecar: started before the app containers, which wait for its startup
        // probe (the first complete fetch), and stopped after them.
        init["restartPolicy"] = Value::from("Always");
        init["startupProbe"] = json!({
            "exec": {"command": [IMAGE_BINARY, "agent", "--ready"]},
            "periodSeconds": 1,
            "failureThreshold": settings.timeout_seconds + STARTUP_PROBE_SLACK,
        });
    }
    if let Some(port) = agent_spec.live.as_ref().and_then(|l| l.metrics_port) {
        init["ports"] =
            json!([{"name": METRICS_PORT_NAME, "containerPort": port, "protocol": "TCP"}]);
    }
    init
}

/// The agent's env: the spec, and the pod variables its params use, from the downward API.
/// The kubelet expands `$(VAR)` and reduces `$$` to `$` in env values, so every `$` of the
/// spec is written `$$`.
fn agent_env(agent_spec: &AgentSpec) -> Value {
    let mut env =
        vec![json!({"name": SPEC_ENV, "value": agent_spec.to_compact_json().replace('$', "$$")})];
    let mut used = [false; POD_VARIABLES.len()];
    for params in agent_spec.secrets.iter().filter_map(|s| s.params.as_ref()) {
        let mut strings = Vec::new();
        for (k, v) in params {
            crate::pod::agent_spec::param_strings(v, k.clone(), &mut strings);
        }
        for (_, text) in strings {
            for piece in parse_param(text).unwrap_or_default() {
                if let ParamPiece::Var(i) = piece {
                    used[i] = true;
                }
            }
        }
    }
    for (i, (_, name, field)) in POD_VARIABLES.iter().enumerate() {
        if used[i] {
            env.push(json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": field}}}));
        }
    }
    Value::Array(env)
}

/// The volumes render adds: secrets in memory, the binary, the projected token and the CA.
fn pod_volumes(settings: &Settings, names: &VolumeNames, needs_bin: bool) -> Vec<Value> {
    let mut volumes = vec![json!({"name": names.secrets, "emptyDir": {"medium": "Memory"}})];
    if needs_bin {
        volumes.push(json!({"name": names.bin, "emptyDir": {}}));
    }
    let mut token = serde_json::Map::new();
    if let Some(aud) = &settings.audience {
        token.insert("audience".into(), Value::from(aud.as_str()));
    }
    token.insert(
        "expirationSeconds".into(),
        Value::from(TOKEN_EXPIRATION_SECONDS),
    );
    token.insert("path".into(), Value::from(TOKEN_FILE_NAME));
    volumes.push(
        json!({"name": names.token, "projected": {"sources": [{"serviceAccountToken": token}]}}),
    );
    if let Some(ca) = &settings.ca_cert {
        let key = ca.key.clone().unwrap_or_else(|| "ca.crt".into());
        let items = json!([{"key": key, "path": key}]);
        volumes.push(match (&ca.config_map, &ca.secret) {
            (Some(cm), _) => json!({"name": names.ca, "configMap": {"name": cm, "items": items}}),
            (None, Some(secret)) => {
                json!({"name": names.ca, "secret": {"secretName": secret, "items": items}})
            }
            (None, None) => Value::Null,
        });
    }
    volumes
}

/// The pod spec's node and its `volumes` list, if any.
struct PodSpecNodes {
    spec: NodeId,
    volumes: Option<NodeId>,
}

/// The edits that add the agent container, the volumes, the containers' mounts and the
/// status annotation; `None` when a field cannot be edited.
fn add_to_pod(
    ctx: &mut Ctx,
    request: &PodRequest,
    pod_spec: PodSpecNodes,
    field: &str,
    init: Value,
    volumes: Vec<Value>,
    mounts: BTreeMap<usize, Vec<Value>>,
) -> Option<Vec<Edit>> {
    let tree = ctx.tree;
    let (spec_node, volumes_node) = (pod_spec.spec, pod_spec.volumes);
    let mut edits = Vec::new();
    match tree.get(spec_node, "initContainers") {
        Some(seq) if tree.is_seq(seq) => edits.push(Edit::Prepend {
            seq,
            items: vec![init],
        }),
        Some(other) => return cannot_edit(ctx, other, format!("{field}spec.initContainers")),
        None => edits.push(Edit::AddKey {
            map: spec_node,
            key: "initContainers".into(),
            value: Value::Array(vec![init]),
        }),
    }
    match volumes_node {
        Some(seq) if tree.is_seq(seq) => edits.push(append_or_fill(tree, seq, volumes)),
        Some(other) => return cannot_edit(ctx, other, format!("{field}spec.volumes")),
        None => edits.push(Edit::AddKey {
            map: spec_node,
            key: "volumes".into(),
            value: Value::Array(volumes),
        }),
    }
    for (c, list) in mounts {
        let container = &request.containers[c];
        match tree.get(container.node, "volumeMounts") {
            Some(seq) if tree.is_seq(seq) => edits.push(append_or_fill(tree, seq, list)),
            Some(other) => {
                return cannot_edit(
                    ctx,
                    other,
                    format!("{field}spec.{}.volumeMounts", container.field()),
                )
            }
            None => edits.push(Edit::AddKey {
                map: container.node,
                key: "volumeMounts".into(),
                value: Value::Array(list),
            }),
        }
    }
    edits.push(Edit::AddKey {
        map: request.annotations,
        key: STATUS_KEY.into(),
        value: Value::from(STATUS_INJECTED),
    });
    Some(edits)
}

fn append_or_fill(tree: &Tree, seq: NodeId, items: Vec<Value>) -> Edit {
    if tree.items(seq).is_empty() {
        Edit::Prepend { seq, items }
    } else {
        Edit::Append { seq, items }
    }
}

fn cannot_edit<T>(ctx: &mut Ctx, node: NodeId, field: String) -> Option<T> {
    ctx.report(
        Code::CannotEdit,
        node,
        field,
        "this field is not a list, so secretstore cannot add to it".into(),
        "write it as a list (or remove the empty key)",
    );
    None
}
