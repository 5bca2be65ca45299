//! KRM functions (kpt, kustomize): a `ResourceList` input brings its settings in
//! `functionConfig`, and on errors gets them back as `results` on the list itself.

use super::edit::{self, Edit, Layout};
use super::tree::{Kind, NodeId, Tree};
use super::Input;
use crate::config::{ConfigFile, Settings};
use crate::diag::Diagnostic;

/// A KRM ResourceList document of the input, kept from planning: on an error, its
/// `results` are added to it without parsing it again (which doubled the peak memory).
pub(super) struct KrmDoc<'a> {
    pub input: usize,
    /// Byte range of the document in the input.
    pub start: usize,
    pub end: usize,
    pub tree: Tree<'a>,
}

/// Settings from a ResourceList's `functionConfig` (its `spec`, or a ConfigMap's `data.config`).
pub(super) fn settings(
    text: &str,
    tree: &Tree,
    root: NodeId,
    base: &Settings,
) -> Result<Option<Settings>, String> {
    let Some(entry) = function_config_entry(text, tree, root) else {
        return Ok(None);
    };
    let value: serde_json::Value = yaml_serde::from_str(&entry)
        .map_err(|e| format!("cannot read the ResourceList's functionConfig: {e}"))?;
    let Some(fc) = value.get("functionConfig") else {
        return Ok(None);
    };
    let config = if let Some(spec) = fc.get("spec") {
        serde_json::from_value::<ConfigFile>(spec.clone())
            .map_err(|e| format!("functionConfig.spec is not a secretstore configuration: {e}"))?
    } else if let Some(text) = fc.pointer("/data/config").and_then(|c| c.as_str()) {
        ConfigFile::parse(text).map_err(|e| format!("functionConfig data.config: {e}"))?
    } else {
        return Ok(None);
    };
    let mut settings = Settings::from_file(&config, None)?;
    if config.vault.address.is_none() {
        settings.vault_address = base.vault_address.clone();
    }
    Ok(Some(settings))
}

/// The ResourceList's `functionConfig` entry as a YAML text of its own. Deserialising the
/// whole list instead took ~20 times its size in memory (a 26 MB list: 500 MB) and
/// expanded the aliases of the items, which render otherwise leaves alone.
fn function_config_entry(text: &str, tree: &Tree, root: NodeId) -> Option<String> {
    let entries = tree.entries(root);
    let index = entries
        .iter()
        .position(|(k, _)| tree.str(*k) == Some("functionConfig"))?;
    let (key, _) = entries.get(index)?;
    let flow = matches!(tree.node(root).kind, Kind::Map { flow: true, .. });
    let end = match entries.get(index + 1) {
        Some((next, _)) => tree.node(*next).start,
        // Before the closing `}`.
        None if flow => tree.node(root).end.saturating_sub(1),
        None => text.len(),
    };
    let entry = text.get(tree.node(*key).start..end)?;
    // A flow entry keeps its trailing comma, which YAML allows before `}`.
    Some(if flow {
        format!("{{{entry}}}")
    } else {
        entry.to_string()
    })
}

/// The input ResourceList with `results` added, for KRM runners.
pub(super) fn with_results(input: &Input, krm: KrmDoc<'_>, errors: &[Diagnostic]) -> Vec<u8> {
    let Some(text) = input
        .bytes
        .get(krm.start..krm.end)
        .and_then(|b| std::str::from_utf8(b).ok())
    else {
        return input.bytes.clone();
    };
    let results: Vec<serde_json::Value> = errors
        .iter()
        .map(|d| {
            let mut r = serde_json::json!({
                "message": d.help.as_ref().map_or(d.message.clone(), |h| format!("{} ({h})", d.message)),
                "severity": "error",
                "tags": {"code": d.code},
            });
            if let Some(o) = &d.object {
                r["resourceRef"] = serde_json::json!({"kind": o.kind, "name": o.name});
                if let Some(ns) = &o.namespace {
                    r["resourceRef"]["namespace"] = serde_json::Value::from(ns.as_str());
                }
            }
            if let Some(f) = &d.field {
                r["field"] = serde_json::json!({"path": f});
            }
            r
        })
        .collect();
    let tree = &krm.tree;
    let Some(root) = tree.root else {
        return input.bytes.clone();
    };
    let edits = [Edit::AddKey {
        map: root,
        key: "results".into(),
        value: serde_json::Value::Array(results),
    }];
    let layout = Layout::detect(text, tree, None);
    let Ok(ins) = edit::insertions(text, tree, &edits, &layout) else {
        return input.bytes.clone();
    };
    // The tree is as large as the rest together: gone before the output is built.
    drop(krm.tree);
    let added: usize = ins.iter().map(|i| i.text.len()).sum();
    let mut out = Vec::with_capacity(input.bytes.len() + added);
    out.extend_from_slice(&input.bytes[..krm.start]);
    edit::splice(text, &ins, &mut out);
    out.extend_from_slice(&input.bytes[krm.end..]);
    out
}
