//! Env references (`secretstore:vault:...` env values) of a pod's containers.

use super::{Container, Ctx, EnvRefUse, SecretRef, OPT_IN_KEY, ROLE_KEY};
use crate::diag::Code;
use crate::pod::agent_spec::REF_PREFIX;

/// Env references in a pod that is not opted in: the app would see the literal text.
pub(super) fn report_references_not_opted_in(
    ctx: &mut Ctx,
    env_refs: &[EnvRefUse],
    containers: &[Container],
    field: &str,
) {
    for r in env_refs {
        let c = &containers[r.container];
        ctx.report(
            Code::ReferenceNotOptedIn,
            r.node,
            format!("{field}spec.{}.env[{}].value", c.field(), r.env_index),
            format!(
                "env `{}` of container `{}` is a secret reference, but the pod is not opted in, so the app would start with the literal reference",
                r.env_name, c.name
            ),
            &format!("add `{OPT_IN_KEY}: vault` and `{ROLE_KEY}: <role>` to {field}metadata.annotations"),
        );
    }
}

pub(super) fn collect_env_refs(
    ctx: &mut Ctx,
    containers: &[Container],
    field: &str,
) -> Vec<EnvRefUse> {
    let tree = ctx.tree;
    let mut refs = Vec::new();
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
            if !value.starts_with(REF_PREFIX) {
                continue;
            }
            let env_name = tree.str_at(*e, &["name"]).unwrap_or_default().to_string();
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
    refs
}
