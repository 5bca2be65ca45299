//! Finding objects and their pod templates in a parsed document.

use crate::config::Settings;
use crate::diag::ObjectRef;
use crate::render::tree::{NodeId, Tree};

/// One Kubernetes object: the document root, or an item of a `List` / `ResourceList`.
#[derive(Debug, Clone)]
pub struct Object {
    pub node: NodeId,
    pub kind: String,
    pub reference: ObjectRef,
    /// Field path of the object within the document (`items[2]`), empty for the root.
    pub field_prefix: String,
}

/// Where a kind keeps its pod template, as mapping keys from the object.
pub fn builtin_template_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[],
        "PodTemplate" => &["template"],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job"
        | "Rollout"
        | "DeploymentConfig" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    })
}

pub fn is_list_kind(kind: &str) -> bool {
    kind == "List" || kind == "ResourceList" || (kind.ends_with("List") && kind.len() > 4)
}

/// The objects in a document: the root, or each item of a list.
pub fn objects(tree: &Tree) -> Vec<Object> {
    let Some(root) = tree.root else {
        return Vec::new();
    };
    if !tree.is_map(root) {
        return Vec::new();
    }
    let kind = tree.str_at(root, &["kind"]).unwrap_or_default();
    if is_list_kind(kind) {
        if let Some(items) = tree.get(root, "items") {
            return tree
                .items(items)
                .iter()
                .enumerate()
                .filter(|(_, item)| tree.is_map(**item))
                .map(|(i, item)| object(tree, *item, format!("items[{i}].")))
                .collect();
        }
    }
    vec![object(tree, root, String::new())]
}

fn object(tree: &Tree, node: NodeId, field_prefix: String) -> Object {
    let kind = tree.str_at(node, &["kind"]).unwrap_or_default().to_string();
    Object {
        node,
        reference: ObjectRef {
            kind: kind.clone(),
            namespace: tree
                .str_at(node, &["metadata", "namespace"])
                .map(str::to_string),
            name: tree
                .str_at(node, &["metadata", "name"])
                .unwrap_or_default()
                .to_string(),
        },
        kind,
        field_prefix,
    }
}

/// The pod template of an object, with its dotted field path, when its kind has one.
pub fn pod_template(tree: &Tree, object: &Object, settings: &Settings) -> Option<(NodeId, String)> {
    let configured;
    let keys: Vec<&str> = match builtin_template_path(&object.kind) {
        Some(path) => path.to_vec(),
        None => {
            configured = settings.pod_template_paths.get(&object.kind)?;
            configured.split('.').filter(|k| !k.is_empty()).collect()
        }
    };
    let node = tree.path(object.node, &keys)?;
    if !tree.is_map(node) {
        return None;
    }
    let mut field = object.field_prefix.clone();
    for key in &keys {
        field.push_str(key);
        field.push('.');
    }
    Some((tree.resolve(node), field))
}
