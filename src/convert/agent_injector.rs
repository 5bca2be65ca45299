//! Vault Agent Injector (vault-k8s) annotations → file secrets.
//!
//! The injector renders each `agent-inject-secret-<name>` through a Go template into
//! `<secret-volume-path>/<agent-inject-file or name>` in every app container. A secret
//! converts when its template is one the dialect expresses ([`super::template`]); the
//! injector's default template (Go map text of the response) is not one.

use super::go_template;
use super::rewrite::PodPlan;
use super::template::{self, Recognised};
use super::{logical_path, normalise_auth_path, Pod, Site};
use crate::config::Settings;
use crate::diag::Code;
use crate::pod::agent_spec::FileFormat;
use crate::render::dialect::FILE_KEY_PREFIX;
use crate::render::tree::NodeId;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const PREFIX: &str = "vault.hashicorp.com/";
const DEFAULT_VOLUME_PATH: &str = "/vault/secrets";

/// Go's strconv.ParseBool, which the injector reads `agent-inject` with.
pub fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// One `agent-inject-secret-<name>` and the annotations that refine it.
#[derive(Default)]
struct Secret {
    path: Option<(String, NodeId)>,
    template: Option<(String, NodeId)>,
    file: Option<String>,
    volume_path: Option<String>,
    perms: Option<(String, NodeId)>,
}

/// Reads the injector's annotations of `pod` into `plan`; `false` when the pod is not
/// injected by it.
pub fn read(pod: &Pod, site: &mut Site, settings: &Settings, plan: &mut PodPlan) -> bool {
    let tree = pod.tree;
    let Some(annotations) = pod.annotations else {
        return false;
    };
    let mut entries: Vec<(&str, NodeId, NodeId)> = Vec::new();
    for (k, v) in tree.entries(annotations) {
        if let Some(key) = tree.str(*k).and_then(|key| key.strip_prefix(PREFIX)) {
            entries.push((key, *k, *v));
        }
    }
    let inject = entries.iter().find(|(key, _, _)| *key == "agent-inject");
    if inject.is_none_or(|(_, _, v)| tree.str(*v).and_then(go_bool) != Some(true)) {
        return false;
    }
    let afield = format!("{}metadata.annotations", pod.field);
    let read = read_annotations(pod, &entries, site, settings, plan);
    if plan.role.is_none() && !entries.iter().any(|(key, _, _)| *key == "role") {
        site.problem(
            Code::ConvertNoRole,
            read.inject_node.unwrap_or(annotations),
            afield.clone(),
            "the pod is injected but names no role (`vault.hashicorp.com/role`)".into(),
            "add the Vault role bound to this pod's service account",
        );
    }
    // Suffixes the pod's annotations hold already are not written again.
    let mut suffixes: Vec<String> = tree
        .entries(annotations)
        .iter()
        .filter_map(|(k, _)| tree.str(*k)?.strip_prefix(FILE_KEY_PREFIX))
        .map(str::to_string)
        .collect();
    for (name, secret) in &read.secrets {
        if let Some(config) = file_secret(name, secret, &read.volume_path, &afield, site) {
            let suffix = unique_suffix(name, &mut suffixes);
            plan.files.push((suffix, Value::Object(config)));
        }
    }
    if !read.pre_populate_only {
        site.warn(
            Code::ConvertBehaviourChange,
            read.inject_node.unwrap_or(annotations),
            format!("{afield}[{PREFIX}agent-inject]"),
            "the injector also ran a sidecar that re-rendered the secrets while the pod ran; the converted pod reads them once, at start".into(),
            "restart the pod to pick up changed secrets (as with agent-pre-populate-only: \"true\")",
        );
    }
    true
}

/// What the injector's annotations of one pod say.
struct InjectorAnnotations<'e> {
    secrets: BTreeMap<&'e str, Secret>,
    volume_path: String,
    pre_populate_only: bool,
    inject_node: Option<NodeId>,
}

/// Reads each annotation: the secrets' own into `secrets`, the role into `plan`, the
/// connection settings against the configuration; the annotations convert drops go to
/// `plan.dropped`, the others are problems.
fn read_annotations<'e>(
    pod: &Pod,
    entries: &[(&'e str, NodeId, NodeId)],
    site: &mut Site,
    settings: &Settings,
    plan: &mut PodPlan,
) -> InjectorAnnotations<'e> {
    let tree = pod.tree;
    let afield = format!("{}metadata.annotations", pod.field);
    let mut secrets: BTreeMap<&str, Secret> = BTreeMap::new();
    let mut volume_path = DEFAULT_VOLUME_PATH.to_string();
    let mut pre_populate_only = false;
    let mut inject_node = None;
    for &(key, k, v) in entries {
        let field = format!("{afield}[{PREFIX}{key}]");
        let Some(value) = tree.str(v) else {
            site.problem(
                Code::ConvertUnsupportedAnnotation,
                v,
                field,
                format!("`{PREFIX}{key}` is not a string"),
                "annotation values are strings: quote it",
            );
            continue;
        };
        let value = value.to_string();
        if let Some(name) = key.strip_prefix("agent-inject-secret-") {
            secrets.entry(name).or_default().path = Some((value, v));
        } else if let Some(name) = key.strip_prefix("agent-inject-template-") {
            secrets.entry(name).or_default().template = Some((value, v));
        } else if let Some(name) = key.strip_prefix("agent-inject-file-") {
            secrets.entry(name).or_default().file = Some(value);
        } else if let Some(name) = key.strip_prefix("secret-volume-path-") {
            secrets.entry(name).or_default().volume_path = Some(value);
        } else if let Some(name) = key.strip_prefix("agent-inject-perms-") {
            secrets.entry(name).or_default().perms = Some((value, v));
        } else {
            match key {
                "agent-inject" => inject_node = Some(k),
                "role" => {
                    if value.trim().is_empty() {
                        site.problem(
                            Code::ConvertNoRole,
                            v,
                            field,
                            "the injector's role is empty".into(),
                            "set it to the Vault role bound to this pod's service account",
                        );
                    } else {
                        plan.set_role(site, value, v, &field);
                    }
                }
                "secret-volume-path" => volume_path = value,
                "agent-pre-populate-only" => pre_populate_only = go_bool(&value) == Some(true),
                "namespace" => {
                    if settings.vault_namespace.as_deref() != Some(value.as_str()) {
                        site.problem(
                            Code::ConvertConfigurationMismatch,
                            v,
                            field,
                            format!(
                                "the pod reads from Vault namespace `{value}`, but the configuration's is {}",
                                settings
                                    .vault_namespace
                                    .as_ref()
                                    .map_or("not set".to_string(), |n| format!("`{n}`"))
                            ),
                            "set vault.namespace in the configuration (or the cluster's entry) and pass it with --config/--cluster",
                        );
                    }
                }
                "auth-path" => {
                    if normalise_auth_path(&value) != settings.auth_path {
                        site.problem(
                            Code::ConvertConfigurationMismatch,
                            v,
                            field,
                            format!(
                                "the pod logs in at `{value}`, but the configuration's auth path is `{}`",
                                settings.auth_path
                            ),
                            "set vault.authPath in the configuration (or the cluster's entry), or pass --auth-path",
                        );
                    }
                }
                _ => {
                    site.problem(
                        Code::ConvertUnsupportedAnnotation,
                        k,
                        field,
                        format!("`{PREFIX}{key}` has no equivalent that convert writes"),
                        "convert the pod by hand (see the migration guide), or drop the annotation if it only tuned the injected agent",
                    );
                    continue;
                }
            }
        }
        plan.dropped.push((k, v));
    }
    InjectorAnnotations {
        secrets,
        volume_path,
        pre_populate_only,
        inject_node,
    }
}

/// One secret as a file secret configuration; `None` (with the problem reported) when it
/// does not convert.
fn file_secret(
    name: &str,
    secret: &Secret,
    volume_path: &str,
    afield: &str,
    site: &mut Site,
) -> Option<Map<String, Value>> {
    let Some((path, path_node)) = &secret.path else {
        // A template, file or perms annotation without its secret: the injector
        // ignores it, and so does the converted pod.
        return None;
    };
    let field = format!("{afield}[{PREFIX}agent-inject-secret-{name}]");
    let file = secret.file.clone().unwrap_or_else(|| name.to_string());
    let Some((template, template_node)) = &secret.template else {
        site.problem(
            Code::ConvertTemplate,
            *path_node,
            field,
            format!("secret `{name}` uses the injector's default template, which writes the response as Go map text (`data: map[...]`); no file secret format reproduces it"),
            &format!("add `{PREFIX}agent-inject-template-{name}` with one key ({{{{ with secret \"{path}\" }}}}{{{{ .Data.data.KEY }}}}{{{{ end }}}}) or the whole secret ({{{{ .Data.data | toJSON }}}}), and convert again"),
        );
        return None;
    };
    let recognised = match template::recognise(template, &file) {
        Ok(r) => r,
        Err(reason) => {
            let tfield = format!("{afield}[{PREFIX}agent-inject-template-{name}]");
            // What the template needs: a template config (not accepted by render yet),
            // or something convert does not translate, located at its action.
            match go_template::translate(template) {
                Ok(_) => site.problem(
                    Code::ConvertTemplate,
                    *template_node,
                    tfield,
                    format!("secret `{name}`: {reason}; it needs a template, which render does not accept yet"),
                    "convert this secret by hand (e.g. one file secret per key), or keep the injector for this pod",
                ),
                Err(refusal) => {
                    let location = site.location_in(*template_node, &refusal.action);
                    site.problem_at(
                        Code::ConvertTemplate,
                        location,
                        tfield,
                        format!("secret `{name}`: `{}`: {}", refusal.action, refusal.message),
                        "rewrite that part of the template (see the migration guide), convert this secret by hand, or keep the injector for this pod",
                    );
                }
            }
            return None;
        }
    };
    let source_parts = [
        ("path", Some(&recognised.path)),
        ("key", recognised.key.as_ref()),
    ];
    if let Some((what, part)) = source_parts
        .into_iter()
        .find_map(|(what, part)| Some((what, part.filter(|p| p.contains('#'))?)))
    {
        site.problem_at(
            Code::ConvertReference,
            site.location_in(*template_node, part),
            format!("{afield}[{PREFIX}agent-inject-template-{name}]"),
            format!("secret `{name}`: the {what} `{part}` holds `#`, which separates path, key and version in a reference"),
            "rename the secret or key without `#`, or keep the injector for this pod",
        );
        return None;
    }
    if recognised.extra_whitespace {
        site.warn(
            Code::ConvertBehaviourChange,
            *template_node,
            format!("{afield}[{PREFIX}agent-inject-template-{name}]"),
            format!("secret `{name}`: the template writes whitespace (such as a final newline) around the value; the converted file holds the value alone"),
            "check that the app does not rely on that whitespace",
        );
    }
    let dir = secret.volume_path.as_deref().unwrap_or(volume_path);
    let (mount, file_name) = split_file(dir, &file);
    if !mount.starts_with('/') {
        site.problem(
            Code::ConvertUnsupportedAnnotation,
            *path_node,
            field,
            format!("secret `{name}` is written under the relative directory `{mount}`"),
            "give secret-volume-path an absolute directory",
        );
        return None;
    }
    let mut config = Map::new();
    config.insert(
        "vaultSecretRef".into(),
        Value::from(reference(&recognised, site.mounts)),
    );
    config.insert("secretFileName".into(), Value::from(file_name));
    config.insert("volumeMountPath".into(), Value::from(mount));
    if !matches!(recognised.format, FileFormat::Raw | FileFormat::Json) {
        config.insert("format".into(), json!(format_name(recognised.format)));
    }
    if let Some((perms, node)) = &secret.perms {
        match u32::from_str_radix(perms.trim_start_matches("0o"), 8) {
            Ok(mode) if mode <= 0o777 => {
                config.insert("mode".into(), Value::from(format!("{mode:04o}")));
            }
            _ => {
                site.problem(
                    Code::ConvertUnsupportedAnnotation,
                    *node,
                    format!("{afield}[{PREFIX}agent-inject-perms-{name}]"),
                    format!("`{perms}` is not an octal file mode"),
                    "write an octal mode such as 0440",
                );
                return None;
            }
        }
    }
    Some(config)
}

fn format_name(format: FileFormat) -> &'static str {
    FileFormat::ALL
        .iter()
        .find(|(_, f)| *f == format)
        .map_or("json", |(name, _)| name)
}

/// `<path>[#key]`, with a KV v2 API path turned logical where the template implies KV v2.
fn reference(r: &Recognised, mounts: &super::KnownMounts) -> String {
    let path = logical_path(&r.path, r.kv2, mounts);
    match &r.key {
        Some(key) => format!("{path}#{key}"),
        None => path,
    }
}

/// The mount directory and file name of `file` under `dir` (the injector allows a
/// relative path in agent-inject-file).
fn split_file(dir: &str, file: &str) -> (String, String) {
    let dir = dir.trim_end_matches('/');
    let file = file.trim_start_matches('/');
    match file.rsplit_once('/') {
        Some((sub, name)) => (format!("{dir}/{sub}"), name.to_string()),
        None => (
            if dir.is_empty() { "/" } else { dir }.to_string(),
            file.to_string(),
        ),
    }
}

/// `filesecret-config-<suffix>` from the injector's secret name: lowercase a-z, 0-9 and
/// `-`, unique within the pod.
fn unique_suffix(name: &str, taken: &mut Vec<String>) -> String {
    let mut base: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    if base.is_empty() {
        base.push('1');
    }
    let mut suffix = base.clone();
    let mut n = 2;
    while taken.contains(&suffix) {
        suffix = format!("{base}-{n}");
        n += 1;
    }
    taken.push(suffix.clone());
    suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_suffixes() {
        assert_eq!(
            split_file("/vault/secrets", "db/creds.json"),
            ("/vault/secrets/db".into(), "creds.json".into())
        );
        assert_eq!(
            split_file("/vault/secrets/", "x"),
            ("/vault/secrets".into(), "x".into())
        );
        let mut taken = Vec::new();
        assert_eq!(unique_suffix("DB.Creds", &mut taken), "db-creds");
        assert_eq!(unique_suffix("db_creds", &mut taken), "db-creds-2");
    }
}
