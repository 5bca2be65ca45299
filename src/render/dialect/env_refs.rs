//! Env references (`secretstore:vault:...` env values) of a pod's containers, and env
//! values that are a file secret's file (`secretstore:file:<N>/<file name>`, SPEC 1.4).

use super::annotations::closest;
use super::{
    Container, Ctx, EnvRefUse, FileRefUse, FileSecret, SecretRef, FILE_KEY_PREFIX, OPT_IN_KEY,
    ROLE_KEY,
};
use crate::diag::Code;
use crate::pod::agent_spec::{FILE_REF_PREFIX, REF_PREFIX};
use crate::render::tree::NodeId;

/// A `secretstore:file:` env value as written, before the pod's configs are known.
#[derive(Debug, Clone)]
pub(super) struct FileRefText {
    pub(super) container: usize,
    pub(super) env_name: String,
    pub(super) env_index: usize,
    pub(super) text: String,
    pub(super) node: NodeId,
}

/// Env references in a pod that is not opted in: the app would see the literal text.
pub(super) fn report_references_not_opted_in(
    ctx: &mut Ctx,
    env_refs: &[EnvRefUse],
    file_refs: &[FileRefText],
    containers: &[Container],
    field: &str,
) {
    let all = env_refs
        .iter()
        .map(|r| (r.container, r.env_index, &r.env_name, r.node))
        .chain(
            file_refs
                .iter()
                .map(|r| (r.container, r.env_index, &r.env_name, r.node)),
        );
    for (container, env_index, env_name, node) in all {
        let c = &containers[container];
        ctx.report(
            Code::ReferenceNotOptedIn,
            node,
            format!("{field}spec.{}.env[{}].value", c.field(), env_index),
            format!(
                "env `{}` of container `{}` is a secret reference, but the pod is not opted in, so the app would start with the literal reference",
                env_name, c.name
            ),
            &format!("add `{OPT_IN_KEY}: vault` and `{ROLE_KEY}: <role>` to {field}metadata.annotations"),
        );
    }
}

/// The pod's `secretstore:vault:` env references, and its `secretstore:file:` values.
pub(super) fn collect_env_refs(
    ctx: &mut Ctx,
    containers: &[Container],
    field: &str,
) -> (Vec<EnvRefUse>, Vec<FileRefText>) {
    let tree = ctx.tree;
    let mut refs = Vec::new();
    let mut file_refs = Vec::new();
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
            let env_name = tree.str_at(*e, &["name"]).unwrap_or_default().to_string();
            if value.starts_with(FILE_REF_PREFIX) {
                file_refs.push(FileRefText {
                    container: ci,
                    env_name,
                    env_index: ei,
                    text: value.to_string(),
                    node: value_node,
                });
                continue;
            }
            if !value.starts_with(REF_PREFIX) {
                continue;
            }
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
    (refs, file_refs)
}

/// The suffix `suffix` was probably meant to be: one with the same characters in another
/// order, else a close one (never another one-character suffix for a one-character one,
/// such as `2` for `9`).
fn similar_suffix<'a>(suffix: &str, known: &[&'a str]) -> Option<&'a str> {
    let sorted = |s: &str| {
        let mut chars: Vec<char> = s.chars().collect();
        chars.sort_unstable();
        chars
    };
    known
        .iter()
        .find(|k| sorted(k) == sorted(suffix))
        .copied()
        .or_else(|| closest(suffix, known).filter(|k| k.len().min(suffix.len()) > 1))
}

/// Each `secretstore:file:<N>/<file name>` checked against the pod's configs: `suffixes`
/// are those of every `filesecret-config-<N>` annotation, `files` the configs that parsed
/// (a value naming a config with errors is not reported again).
pub(super) fn resolve_file_refs(
    ctx: &mut Ctx,
    file_refs: Vec<FileRefText>,
    suffixes: &[String],
    files: &[FileSecret],
    containers: &[Container],
    field: &str,
) -> Vec<FileRefUse> {
    let mut out = Vec::new();
    for r in file_refs {
        let c = &containers[r.container];
        let efield = format!("{field}spec.{}.env[{}].value", c.field(), r.env_index);
        let rest = &r.text[FILE_REF_PREFIX.len()..];
        let Some((suffix, file_name)) = rest
            .split_once('/')
            .filter(|(s, f)| super::annotations::is_suffix(s) && !f.is_empty())
        else {
            ctx.report(
                Code::BadFileReference,
                r.node,
                efield,
                format!("`{}` is not a reference to a file secret's file", r.text),
                "write secretstore:file:<N>/<file name>, where filesecret-config-<N> has that file",
            );
            continue;
        };
        if !suffixes.iter().any(|s| s == suffix) {
            let known: Vec<&str> = suffixes.iter().map(String::as_str).collect();
            let help = match similar_suffix(suffix, &known) {
                Some(s) => format!("did you mean `{FILE_REF_PREFIX}{s}/{file_name}`?"),
                None if known.is_empty() => {
                    format!(
                        "the pod has no {FILE_KEY_PREFIX}<N> annotation: add one with this file"
                    )
                }
                None => format!("the pod's file secrets: {}", known.join(", ")),
            };
            ctx.report(
                Code::BadFileReference,
                r.node,
                efield,
                format!(
                    "env `{}` of container `{}` names `{FILE_KEY_PREFIX}{suffix}`, which the pod does not have",
                    r.env_name, c.name
                ),
                &help,
            );
            continue;
        }
        let Some(config) = files.iter().position(|f| f.suffix == suffix) else {
            continue;
        };
        let f = &files[config];
        let Some(output) = f.outputs.iter().position(|o| o.file_name == file_name) else {
            let names: Vec<&str> = f.outputs.iter().map(|o| o.file_name.as_str()).collect();
            let help = match closest(file_name, &names) {
                Some(n) => format!("did you mean `{FILE_REF_PREFIX}{suffix}/{n}`?"),
                None => format!("its files: {}", names.join(", ")),
            };
            ctx.report(
                Code::BadFileReference,
                r.node,
                efield,
                format!(
                    "env `{}` of container `{}` names file `{file_name}`, which `{FILE_KEY_PREFIX}{suffix}` does not have",
                    r.env_name, c.name
                ),
                &help,
            );
            continue;
        };
        out.push(FileRefUse {
            container: r.container,
            env_name: r.env_name,
            env_index: r.env_index,
            config,
            output,
            text: r.text,
            node: r.node,
        });
    }
    out
}
