//! Planning the expansion of one opted-in pod template (SPEC section 2): the agent spec and
//! the edits that wire it into the pod.

use crate::config::KubeVersion;
use crate::config::Settings;
use crate::diag::Code;
use crate::pod::agent_spec::{
    AgentSpec, EnvFileOutput, EnvRef, ExecWatch, FileOutput, LiveSpec, OnChange, SecretRead,
    VaultConnection, WatchedFile, AGENT_SECRETS_DIR, BIN_DIR, CA_DIR, ENV_DIR, ENV_FILE_NAME,
    LIVE_ENV, SPEC_ENV, TOKEN_DIR, TOKEN_FILE_NAME,
};
use crate::render::dialect::{Ctx, PodRequest, STATUS_INJECTED, STATUS_KEY};
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
    let volume_names: Vec<String> = volumes_node
        .map(|v| {
            tree.items(v)
                .iter()
                .filter_map(|vol| tree.str_at(*vol, &["name"]).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let container_names: Vec<String> = request.containers.iter().map(|c| c.name.clone()).collect();
    let refresh = request.live.refresh_seconds(settings.refresh_seconds);
    if let (Some(seconds), Some(version)) = (refresh, settings.kube_version) {
        if version < KubeVersion::NATIVE_SIDECARS {
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
                    "{pod} asks for live mode (refresh every {seconds}s), which needs native sidecars (Kubernetes {} or later), but the target cluster is Kubernetes {version}",
                    KubeVersion::NATIVE_SIDECARS
                ),
                "upgrade the cluster, set the right --kube-version, or turn live mode off for this pod (vault.secretstore.rafay.dev/refresh: \"off\")",
            );
            return None;
        }
    }
    let pod_on_change = request
        .live
        .on_change
        .as_ref()
        .map_or(OnChange::None, |(a, _)| a.clone());
    // Per container: the files `exec` watches and what it does when they change.
    let mut watches: BTreeMap<usize, Vec<WatchedFile>> = BTreeMap::new();

    // Secrets read once each, in order of first use.
    let mut reads: Vec<SecretRead> = Vec::new();
    let mut read_index = |path: &str, version: Option<u64>| -> usize {
        let read = SecretRead {
            path: path.to_string(),
            version,
        };
        match reads.iter().position(|r| *r == read) {
            Some(i) => i,
            None => {
                reads.push(read);
                reads.len() - 1
            }
        }
    };

    let secrets_volume = unique_name("secretstore-secrets", &volume_names);
    let bin_volume = unique_name("secretstore-bin", &volume_names);
    let token_volume = unique_name("secretstore-token", &volume_names);
    let ca_volume = unique_name("secretstore-ca", &volume_names);

    let mut files = Vec::new();
    let mut mounts: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
    // Per container: mount path → sub-directory number.
    let mut dirs: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for f in &request.files {
        let secret = read_index(&f.reference.path, f.reference.version);
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
                    mounts.entry(c).or_default().push(json!({
                        "name": secrets_volume,
                        "mountPath": if f.mount_path.is_empty() { "/" } else { &f.mount_path },
                        "subPath": format!("files/{cname}/{}", container_dirs.len() - 1),
                        "readOnly": true,
                    }));
                    container_dirs.len() - 1
                }
            };
            files.push(FileOutput {
                secret,
                key: f.reference.key.clone(),
                format: f.format,
                mode: f.mode,
                path: format!("{AGENT_SECRETS_DIR}/files/{cname}/{k}/{}", f.file_name),
                reference: f.reference_text.clone(),
                on_change: on_change.clone(),
            });
            if let Some(action) = &on_change {
                watches.entry(c).or_default().push(WatchedFile {
                    path: format!("{}/{}", f.mount_path, f.file_name),
                    on_change: action.clone(),
                });
            }
        }
    }

    let mut env_files: Vec<EnvFileOutput> = Vec::new();
    let mut wrapped: Vec<usize> = Vec::new();
    for r in &request.env_refs {
        let secret = read_index(&r.reference.path, r.reference.version);
        let cname = &request.containers[r.container].name;
        let entry = match env_files.iter_mut().position(|e| &e.container == cname) {
            Some(i) => &mut env_files[i],
            None => {
                wrapped.push(r.container);
                env_files.push(EnvFileOutput {
                    container: cname.clone(),
                    path: format!("{AGENT_SECRETS_DIR}/env/{cname}/{ENV_FILE_NAME}"),
                    refs: Vec::new(),
                });
                let last = env_files.len() - 1;
                &mut env_files[last]
            }
        };
        if !entry.refs.iter().any(|e| e.reference == r.text) {
            entry.refs.push(EnvRef {
                reference: r.text.clone(),
                secret,
                key: r
                    .reference
                    .key
                    .clone()
                    .unwrap_or_else(|| r.env_name.clone()),
            });
        }
    }

    // Env values change only when the app starts again.
    if refresh.is_some() && pod_on_change == OnChange::Restart {
        for &c in &wrapped {
            watches.entry(c).or_default().push(WatchedFile {
                path: format!("{ENV_DIR}/{ENV_FILE_NAME}"),
                on_change: OnChange::Restart,
            });
        }
    }
    // Containers `exec` wraps only to tell the app about changed files.
    let watch_only: Vec<usize> = watches
        .keys()
        .copied()
        .filter(|c| !wrapped.contains(c))
        .collect();

    let mut edits = Vec::new();
    let exec_binary = format!("{BIN_DIR}/secretstore");
    for &c in wrapped.iter().chain(&watch_only) {
        let env_refs = wrapped.contains(&c);
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
        let list = mounts.entry(c).or_default();
        if env_refs {
            list.push(json!({
                "name": secrets_volume,
                "mountPath": ENV_DIR,
                "subPath": format!("env/{}", container.name),
                "readOnly": true,
            }));
        }
        list.push(json!({"name": bin_volume, "mountPath": BIN_DIR, "readOnly": true}));
        if let Some(files) = watches.remove(&c) {
            let watch = ExecWatch { files };
            let var = json!({"name": LIVE_ENV, "value": serde_json::to_string(&watch).unwrap_or_default()});
            match tree.get(container.node, "env") {
                Some(seq) if tree.is_seq(seq) => edits.push(append_or_fill(tree, seq, vec![var])),
                Some(other) => {
                    return cannot_edit(ctx, other, format!("{cfield}.env"));
                }
                None => edits.push(Edit::AddKey {
                    map: container.node,
                    key: "env".into(),
                    value: Value::Array(vec![var]),
                }),
            }
        }
    }
    let needs_bin = !wrapped.is_empty() || !watch_only.is_empty();
    if ctx.has_errors() {
        return None;
    }

    let ca_file = settings.ca_cert.as_ref().map(|ca| {
        let key = ca.key.clone().unwrap_or_else(|| "ca.crt".into());
        format!("{CA_DIR}/{key}")
    });
    let agent_spec = AgentSpec {
        v: AgentSpec::VERSION,
        vault: VaultConnection {
            address: settings.vault_address.clone(),
            auth_path: settings.auth_path.clone(),
            role: request.role.clone(),
            namespace: settings.vault_namespace.clone(),
            ca_cert_file: ca_file,
            tls_server_name: settings.tls_server_name.clone(),
            token_file: format!("{TOKEN_DIR}/{TOKEN_FILE_NAME}"),
        },
        timeout_seconds: settings.timeout_seconds,
        secrets: reads,
        files,
        env_files,
        copy_binary_to: needs_bin.then(|| exec_binary.clone()),
        live: refresh.map(|refresh_seconds| LiveSpec {
            refresh_seconds,
            revoke_on_stop: request.live.revoke_on_stop.is_none_or(|(b, _)| b),
        }),
        secrets_root: AGENT_SECRETS_DIR.to_owned(),
        bin_root: BIN_DIR.to_owned(),
    };

    let mut agent_mounts = vec![json!({"name": secrets_volume, "mountPath": AGENT_SECRETS_DIR})];
    if needs_bin {
        agent_mounts.push(json!({"name": bin_volume, "mountPath": BIN_DIR}));
    }
    agent_mounts.push(json!({"name": token_volume, "mountPath": TOKEN_DIR, "readOnly": true}));
    if settings.ca_cert.is_some() {
        agent_mounts.push(json!({"name": ca_volume, "mountPath": CA_DIR, "readOnly": true}));
    }
    let mut init = json!({
        "name": unique_name(AGENT_CONTAINER, &container_names),
        "image": settings.agent_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [IMAGE_BINARY, "agent"],
        "env": [{"name": SPEC_ENV, "value": agent_spec.to_compact_json()}],
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
    if refresh.is_some() {
        // A native sidecar: started before the app containers, which wait for its startup
        // probe (the first complete fetch), and stopped after them.
        init["restartPolicy"] = Value::from("Always");
        init["startupProbe"] = json!({
            "exec": {"command": [IMAGE_BINARY, "agent", "--ready"]},
            "periodSeconds": 1,
            "failureThreshold": settings.timeout_seconds + STARTUP_PROBE_SLACK,
        });
    }

    let mut volumes = vec![json!({"name": secrets_volume, "emptyDir": {"medium": "Memory"}})];
    if needs_bin {
        volumes.push(json!({"name": bin_volume, "emptyDir": {}}));
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
        json!({"name": token_volume, "projected": {"sources": [{"serviceAccountToken": token}]}}),
    );
    if let Some(ca) = &settings.ca_cert {
        let key = ca.key.clone().unwrap_or_else(|| "ca.crt".into());
        let items = json!([{"key": key, "path": key}]);
        volumes.push(match (&ca.config_map, &ca.secret) {
            (Some(cm), _) => json!({"name": ca_volume, "configMap": {"name": cm, "items": items}}),
            (None, Some(secret)) => {
                json!({"name": ca_volume, "secret": {"secretName": secret, "items": items}})
            }
            (None, None) => Value::Null,
        });
    }

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
    Some((agent_spec, edits))
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
