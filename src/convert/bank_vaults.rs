//! bank-vaults (vault-secrets-webhook, and its successor secrets-webhook) → env references.
//!
//! The webhook replaces each env value `vault:<path>#<key>[#<version>]` at container start
//! with the key of the secret it reads at `<path>` as written, unwrapping a KV v2 response
//! when the answer has a `data` map. It logs in with the pod's annotations: `vault-role`
//! (default: the pod's service account), `vault-path` (the auth mount, default
//! `kubernetes`) and `vault-addr`.
//!
//! The path is kept as written unless the mount's KV version is known (`--kv-version`,
//! or the live Vault): the webhook reads `secret/data/x` on a KV v1 mount as the secret
//! `data/x`, so its `data/` alone does not mean KV v2, and the dialect reads the API form
//! of a KV v2 path as the webhook did.

use super::rewrite::PodPlan;
use super::{logical_path, normalise_auth_path, Pod, Site};
use crate::config::Settings;
use crate::diag::Code;
use crate::pod::agent_spec::REF_PREFIX;
use crate::render::dialect::SecretRef;
use crate::render::tree::NodeId;

/// The annotation prefixes of vault-secrets-webhook and of its successor.
pub const PREFIXES: [&str; 2] = [
    "vault.security.banzaicloud.io/",
    "secrets-webhook.security.bank-vaults.io/",
];
pub const VALUE_PREFIX: &str = "vault:";

/// One annotation of the webhook: its prefix, its key after the prefix, and the key and
/// value nodes.
type WebhookAnnotation<'t> = (&'static str, &'t str, NodeId, NodeId);

/// Reads the webhook's env values and annotations of `pod` into `plan`; `false` when the
/// webhook would not touch the pod.
pub fn read(pod: &Pod, site: &mut Site, settings: &Settings, plan: &mut PodPlan) -> bool {
    let tree = pod.tree;
    let annotations: Vec<WebhookAnnotation> = pod
        .annotations
        .map(|a| tree.entries(a))
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, v)| {
            let key = tree.str(*k)?;
            let prefix = PREFIXES.iter().find(|p| key.starts_with(**p))?;
            Some((*prefix, &key[prefix.len()..], *k, *v))
        })
        .collect();
    if annotations
        .iter()
        .any(|(_, key, _, v)| *key == "mutate" && tree.str(*v) == Some("skip"))
    {
        return false;
    }
    let mut found = false;
    for (ci, c) in pod.containers.iter().enumerate() {
        for (ei, value_node, value) in pod.env_values(c) {
            let plain = value.strip_prefix(">>").unwrap_or(value);
            if !plain.starts_with(VALUE_PREFIX) {
                continue;
            }
            found = true;
            let field = format!("{}spec.{}.env[{ei}].value", pod.field, c.field);
            if let Some(converted) = env_reference(value, value_node, field, site) {
                plan.env.push((value_node, converted));
                plan.env_containers.push(ci);
            }
        }
    }
    if !found {
        return report_other_annotations(pod, &annotations, site);
    }
    let role = read_annotations(pod, &annotations, site, settings, plan);
    set_role(pod, role, site, plan);
    true
}

/// A `vault:<path>#<key>[#<version>]` env value as an env reference; `None` (with the
/// problem reported) when env references do not express it.
fn env_reference(
    value: &str,
    value_node: NodeId,
    field: String,
    site: &mut Site,
) -> Option<String> {
    let plain = value.strip_prefix(">>").unwrap_or(value);
    if value.starts_with(">>") {
        site.problem(
            Code::ConvertReference,
            value_node,
            field,
            "`>>vault:` asks the webhook for a fresh dynamic secret on each start, which env references do not express".into(),
            "read the dynamic secret with a plain reference (secretstore:vault:<path>#<key>), once per pod start",
        );
        return None;
    }
    let reference = plain.strip_prefix(VALUE_PREFIX).unwrap_or(plain);
    if reference.contains("${") || reference.contains("{{") {
        site.problem(
            Code::ConvertReference,
            value_node,
            field,
            "the value is a webhook template, which env references do not express".into(),
            "split it into one reference per key, or keep the webhook for this pod",
        );
        return None;
    }
    let parsed = match SecretRef::parse(reference) {
        Ok(r) if r.key.is_some() => r,
        Ok(_) => {
            site.problem(
                Code::ConvertReference,
                value_node,
                field,
                "the value names no key (`vault:<path>#<key>`)".into(),
                "add #<key>",
            );
            return None;
        }
        Err(message) => {
            site.problem(
                Code::ConvertReference,
                value_node,
                field,
                message,
                "write vault:<path>#<key>[#<version>]",
            );
            return None;
        }
    };
    let path = logical_path(&parsed.path, false, site.mounts);
    let mut converted = format!(
        "{REF_PREFIX}{path}#{}",
        parsed.key.as_deref().unwrap_or_default()
    );
    if let Some(v) = parsed.version {
        converted.push_str(&format!("#{v}"));
    }
    Some(converted)
}

/// A pod without `vault:` values: the webhook acts on it only for what its other
/// annotations ask (its agent, a consul-template ConfigMap), which convert reports;
/// `true` when there is any.
fn report_other_annotations(pod: &Pod, annotations: &[WebhookAnnotation], site: &mut Site) -> bool {
    let afield = format!("{}metadata.annotations", pod.field);
    let mut reported = false;
    for (prefix, key, k, _) in annotations {
        if !matches!(*key, "vault-role" | "vault-path" | "vault-addr" | "mutate") {
            site.problem(
                Code::ConvertUnsupportedAnnotation,
                *k,
                format!("{afield}[{prefix}{key}]"),
                format!("`{prefix}{key}` has no equivalent that convert writes"),
                "convert the pod by hand (see the migration guide)",
            );
            reported = true;
        }
    }
    reported
}

/// The login annotations, checked against the configuration; returns the role
/// annotation's value, node and field, if any.
fn read_annotations(
    pod: &Pod,
    annotations: &[WebhookAnnotation],
    site: &mut Site,
    settings: &Settings,
    plan: &mut PodPlan,
) -> Option<(String, NodeId, String)> {
    let tree = pod.tree;
    let afield = format!("{}metadata.annotations", pod.field);
    let mut role = None;
    for (prefix, key, k, v) in annotations {
        let field = format!("{afield}[{prefix}{key}]");
        let value = tree.str(*v).unwrap_or_default();
        match *key {
            "vault-role" => role = Some((value.to_string(), *v, field)),
            "vault-path" => {
                if normalise_auth_path(value) != settings.auth_path {
                    site.problem(
                        Code::ConvertConfigurationMismatch,
                        *v,
                        field,
                        format!(
                            "the pod logs in at `{}`, but the configuration's auth path is `{}`",
                            normalise_auth_path(value),
                            settings.auth_path
                        ),
                        "set vault.authPath in the configuration (or the cluster's entry), or pass --auth-path",
                    );
                    continue;
                }
            }
            "vault-addr" => {
                if value.trim_end_matches('/') != settings.vault_address.trim_end_matches('/') {
                    site.problem(
                        Code::ConvertConfigurationMismatch,
                        *v,
                        field,
                        format!(
                            "the pod reads from `{value}`, but the configuration's Vault address is `{}`",
                            settings.vault_address
                        ),
                        "set vault.address in the configuration (or the cluster's entry), or pass --vault-addr",
                    );
                    continue;
                }
            }
            _ => {
                site.problem(
                    Code::ConvertUnsupportedAnnotation,
                    *k,
                    field,
                    format!("`{prefix}{key}` has no equivalent that convert writes"),
                    "convert the pod by hand (see the migration guide), or drop the annotation",
                );
                continue;
            }
        }
        plan.dropped.push((*k, *v));
    }
    role
}

/// The converted pod's role: the webhook's `vault-role`, else its default, the pod's
/// service account's name.
fn set_role(
    pod: &Pod,
    role: Option<(String, NodeId, String)>,
    site: &mut Site,
    plan: &mut PodPlan,
) {
    match role {
        Some((value, node, field)) if !value.trim().is_empty() => {
            plan.set_role(site, value, node, &field)
        }
        Some((_, node, field)) => site.problem(
            Code::ConvertNoRole,
            node,
            field,
            "the webhook's vault-role is empty".into(),
            "set it to the Vault role bound to this pod's service account",
        ),
        // The webhook's default: the pod's service account's name.
        None => {
            let account = pod
                .service_account
                .clone()
                .unwrap_or_else(|| "default".into());
            plan.set_default_role(account);
        }
    }
}
