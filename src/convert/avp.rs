//! argocd-vault-plugin placeholders → env references.
//!
//! AVP replaces `<path:<path>#<key>[#<version>]>` in any string of any object, and, in an
//! object annotated `avp.kubernetes.io/path: <path>`, every `<key>` too, with the value it
//! reads when Argo CD generates the manifests: the value then sits in the manifest (and
//! in etcd). A placeholder that is a pod's whole env value becomes a reference that the
//! pod reads at start; anywhere else (Secret data, ConfigMaps, arguments, part of a
//! longer string) it holds a value that no reference replaces, and is reported.
//!
//! AVP's Vault backend reads KV v2 unless told otherwise (`AVP_KV_VERSION`, or the
//! object's `avp.kubernetes.io/kv-version`), with the API path (`secret/data/x`), so a
//! `data/` segment is turned logical unless the object says KV v1.

use super::rewrite::PodPlan;
use super::{go_bool_or_false, logical_path, Pod, Site};
use crate::diag::{Code, Location};
use crate::pod::agent_spec::REF_PREFIX;
use crate::render::tree::{Kind, NodeId, Tree};
use crate::render::workload::Object;
use std::collections::BTreeMap;

pub const PATH_ANNOTATION: &str = "avp.kubernetes.io/path";
const VERSION_ANNOTATION: &str = "avp.kubernetes.io/secret-version";
const KV_VERSION_ANNOTATION: &str = "avp.kubernetes.io/kv-version";
const IGNORE_ANNOTATION: &str = "avp.kubernetes.io/ignore";
/// Text every document with placeholders contains.
pub const MARKERS: [&[u8]; 2] = [b"<path:", b"avp.kubernetes.io/"];

/// One placeholder found in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placeholder {
    /// Byte range in the string.
    start: usize,
    end: usize,
    path: Option<String>,
    key: String,
    version: Option<String>,
}

/// The placeholders of `value`: `<path:...>` always, `<key>` when the object has a path
/// annotation (AVP's generic form: from a `<` to the next `>` on the line).
fn placeholders(value: &str, generic: bool) -> Vec<Placeholder> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = value[from..].find('<').map(|i| from + i) {
        let line_end = value[open..].find('\n').map_or(value.len(), |i| open + i);
        let Some(close) = value[open..line_end].find('>').map(|i| open + i) else {
            from = open + 1;
            continue;
        };
        let inner = value[open + 1..close].trim();
        if let Some(specific) = inner.strip_prefix("path:") {
            let mut parts = specific.splitn(3, '#');
            let path = parts.next().unwrap_or_default();
            let key = parts.next().unwrap_or_default();
            let version = parts.next();
            if !path.is_empty() && !key.is_empty() && version.is_none_or(|v| !v.contains('#')) {
                out.push(Placeholder {
                    start: open,
                    end: close + 1,
                    path: Some(path.to_string()),
                    key: key.to_string(),
                    version: version.map(str::to_string),
                });
            }
        } else if generic && !inner.is_empty() {
            out.push(Placeholder {
                start: open,
                end: close + 1,
                path: None,
                key: inner.to_string(),
                version: None,
            });
        }
        from = close + 1;
    }
    out
}

/// What AVP's placeholders in one object come to.
#[derive(Default)]
pub struct Found {
    pub any: bool,
    /// The object's own AVP annotations, to drop once every placeholder converted.
    pub object_annotations: Vec<(NodeId, NodeId)>,
}

/// Reads the placeholders of `object` (and its pod's env values into `plan`).
pub fn read(
    tree: &Tree,
    object: &Object,
    pod: Option<&Pod>,
    site: &mut Site,
    role: Option<&str>,
    plan: &mut PodPlan,
) -> Found {
    let mut found = Found::default();
    let annotations = tree.path(object.node, &["metadata", "annotations"]);
    let annotation = |key: &str| annotations.and_then(|a| tree.get(a, key));
    if annotation(IGNORE_ANNOTATION)
        .and_then(|v| tree.str(v))
        .is_some_and(go_bool_or_false)
    {
        return found;
    }
    let defaults = ObjectDefaults {
        path: annotation(PATH_ANNOTATION).and_then(|v| tree.str(v)),
        version: annotation(VERSION_ANNOTATION).and_then(|v| tree.str(v)),
        kv1: annotation(KV_VERSION_ANNOTATION).and_then(|v| tree.str(v)) == Some("1"),
    };
    let env_values = pod.map(env_value_fields).unwrap_or_default();
    let mut strings = Vec::new();
    collect_strings(
        tree,
        object.node,
        object.field_prefix.trim_end_matches('.'),
        &mut strings,
    );
    let mut converted = Vec::new();
    for (node, field) in strings {
        let Some(value) = tree.str(node) else {
            continue;
        };
        let found_here = placeholders(value, defaults.path.is_some());
        if found_here.is_empty() {
            continue;
        }
        found.any = true;
        let env = env_values.get(&node);
        for p in &found_here {
            let location = site.location_in(node, &value[p.start..p.end]);
            let whole = p.start == 0 && p.end == value.len();
            let Some((ci, env_field)) = env.filter(|_| whole) else {
                let reason = if env.is_some() {
                    "the placeholder is part of a longer env value; a reference must be the whole value"
                } else {
                    "the placeholder is not a pod's env value: AVP puts the secret's value here (in the manifest and etcd), and no reference form replaces a value"
                };
                site.problem_at(
                    Code::ConvertPlaceholderElsewhere,
                    location,
                    field.clone(),
                    reason.into(),
                    "keep AVP for this object, or move the value to a pod that reads it with an env reference or a file secret",
                );
                continue;
            };
            let text = &value[p.start..p.end];
            if let Some(reference) =
                placeholder_reference(p, text, location, env_field, &defaults, site)
            {
                converted.push((node, reference, *ci));
            }
        }
    }
    if !found.any {
        return found;
    }
    if pod.is_some() && !converted.is_empty() && !plan.already_opted_in {
        match role {
            Some(role) => plan.set_default_role(role.to_string()),
            None => site.problem_at(
                Code::ConvertNoRole,
                site.location(object.node),
                format!("{}metadata", object.field_prefix),
                "argocd-vault-plugin read these secrets with Argo CD's own Vault login; the converted pod logs in itself and needs a role".into(),
                "pass --role with the Vault role bound to the pod's service account (secretstore policy writes it)",
            ),
        }
    }
    for (node, reference, ci) in converted {
        plan.env.push((node, reference));
        plan.env_containers.push(ci);
    }
    if let Some(a) = annotations {
        for (k, v) in tree.entries(a) {
            if tree
                .str(*k)
                .is_some_and(|key| key.starts_with("avp.kubernetes.io/"))
            {
                found.object_annotations.push((*k, *v));
            }
        }
    }
    found
}

/// The object's own AVP annotations that its placeholders default to.
struct ObjectDefaults<'t> {
    /// `avp.kubernetes.io/path`: the secret of the generic `<key>` form.
    path: Option<&'t str>,
    /// `avp.kubernetes.io/secret-version`, for placeholders without a path of their own.
    version: Option<&'t str>,
    /// `avp.kubernetes.io/kv-version: "1"`.
    kv1: bool,
}

/// The env value nodes of the pod's containers → (container index, field).
fn env_value_fields(pod: &Pod) -> BTreeMap<NodeId, (usize, String)> {
    let mut env_values = BTreeMap::new();
    for (ci, c) in pod.containers.iter().enumerate() {
        for (ei, node, _) in pod.env_values(c) {
            env_values.insert(
                node,
                (ci, format!("{}spec.{}.env[{ei}].value", pod.field, c.field)),
            );
        }
    }
    env_values
}

/// A placeholder that is a whole env value, as an env reference; `None` (with the
/// problem reported) when env references do not express it.
fn placeholder_reference(
    p: &Placeholder,
    text: &str,
    location: Location,
    env_field: &str,
    defaults: &ObjectDefaults,
    site: &mut Site,
) -> Option<String> {
    if p.key.contains('|') {
        site.problem_at(
            Code::ConvertReference,
            location,
            env_field.to_string(),
            format!("`{text}` applies a modifier, which env references do not express"),
            "drop the modifier if the app can take the raw value, or keep AVP for this object",
        );
        return None;
    }
    // A generic `<key>` has the object's path (it is only read when there is one).
    let path = p.path.as_deref().or(defaults.path)?;
    let version = p.version.as_deref().or(if p.path.is_none() {
        defaults.version
    } else {
        None
    });
    let version = match version.map(|v| v.trim().parse::<u64>()) {
        None => None,
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => {
            site.problem_at(
                Code::ConvertReference,
                location,
                env_field.to_string(),
                format!("`{text}` pins a version that is not a positive number"),
                "pin a KV v2 version number, or none",
            );
            return None;
        }
    };
    let key = p.key.trim();
    if let Some((what, part)) = [("key", key), ("path", path.trim())]
        .into_iter()
        .find(|(_, part)| part.contains('#'))
    {
        site.problem_at(
            Code::ConvertReference,
            location,
            env_field.to_string(),
            format!("`{text}` reads the {what} `{part}`, which holds `#`: a reference separates path, key and version with `#`"),
            "rename the secret or key without `#`, or keep AVP for this object",
        );
        return None;
    }
    let path = logical_path(path.trim(), !defaults.kv1, site.mounts);
    let mut reference = format!("{REF_PREFIX}{path}#{key}");
    if let Some(v) = version {
        reference.push_str(&format!("#{v}"));
    }
    Some(reference)
}

/// Every string scalar in a value position under `node`, with its field path.
fn collect_strings(tree: &Tree, node: NodeId, field: &str, out: &mut Vec<(NodeId, String)>) {
    match &tree.node(node).kind {
        Kind::Scalar { .. } => out.push((node, field.to_string())),
        Kind::Map { entries, .. } => {
            for (k, v) in entries {
                let key = tree.str(*k).unwrap_or("?");
                let sub = if field.is_empty() {
                    key.to_string()
                } else {
                    format!("{field}.{key}")
                };
                collect_strings(tree, *v, &sub, out);
            }
        }
        Kind::Seq { items, .. } => {
            for (i, item) in items.iter().enumerate() {
                collect_strings(tree, *item, &format!("{field}[{i}]"), out);
            }
        }
        // An alias repeats its anchor, which is read where it is written.
        Kind::Alias { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_placeholders() {
        let p = placeholders("<path:secret/data/db#password#2>", false);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path.as_deref(), Some("secret/data/db"));
        assert_eq!(p[0].key, "password");
        assert_eq!(p[0].version.as_deref(), Some("2"));
        assert!(placeholders("<password>", false).is_empty());
        let g = placeholders("u:<user> p:<path:kv/x#pw | base64encode>", true);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].key, "user");
        assert_eq!(g[1].key, "pw | base64encode");
        assert!(placeholders("a < b\n> c", true).is_empty());
    }
}
