//! Vault Agent Injector (vault-k8s) annotations → file secrets.
//!
//! The injector renders each `agent-inject-secret-<name>` through a Go template into
//! `<secret-volume-path>/<agent-inject-file or name>` in every app container. A secret
//! converts to a key or a whole secret in a file format where that writes the same bytes
//! ([`super::template`]), else to a template with its sources ([`super::go_template`]);
//! the injector's default template (Go map text of the response) converts to neither.

use super::go_template::{self, TranslatedFile};
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
    let mut converted = Vec::new();
    for (name, secret) in &read.secrets {
        if let Some(c) = file_secret(name, secret, &read.volume_path, &afield, site) {
            converted.push((*name, c));
        }
    }
    let templates: Vec<(&str, &TranslatedFile, NodeId)> = converted
        .iter()
        .filter_map(|(name, c)| match c {
            Converted::Template(t, node) => Some((*name, t, *node)),
            Converted::Config(_) => None,
        })
        .collect();
    let files: Vec<TranslatedFile> = templates.iter().map(|(_, t, _)| (*t).clone()).collect();
    let mut template_configs = go_template::file_configs(&files, site.mounts);
    for config in &template_configs {
        warn_shared_certificate(&config.files, &templates, &afield, site);
    }
    let mut next_template = 0;
    for (name, c) in converted {
        let config = match c {
            Converted::Config(config) => config,
            Converted::Template(..) => {
                let i = next_template;
                next_template += 1;
                // A config that writes several secrets' files comes where its first is.
                match template_configs
                    .iter_mut()
                    .find(|c| c.files.first() == Some(&i))
                {
                    Some(c) => std::mem::take(&mut c.config),
                    None => continue,
                }
            }
        };
        let suffix = unique_suffix(name, &mut suffixes);
        plan.files.push((suffix, Value::Object(config)));
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

/// One injector secret, converted.
enum Converted {
    /// A config of its own: one key raw, or the whole secret in a file format.
    Config(Map<String, Value>),
    /// A template (and its annotation's value), put in a config by
    /// [`go_template::file_configs`] with the other secrets' templates that read the same
    /// write.
    Template(TranslatedFile, NodeId),
}

/// One secret as a file secret configuration or a template; `None` (with the problem
/// reported) when it does not convert.
///
/// The dialect's own form is kept where it writes the same bytes as the template (one
/// key, raw, nothing around it); other templates are translated ([`go_template`]), so
/// the file holds what `bao agent` wrote. A whole secret as `toJSONPretty` or `toYAML`,
/// which templates do not translate, becomes the file format of that name.
fn file_secret(
    name: &str,
    secret: &Secret,
    volume_path: &str,
    afield: &str,
    site: &mut Site,
) -> Option<Converted> {
    let Some((path, path_node)) = &secret.path else {
        // A template, file or perms annotation without its secret: the injector
        // ignores it, and so does the converted pod.
        return None;
    };
    let field = format!("{afield}[{PREFIX}agent-inject-secret-{name}]");
    let tfield = format!("{afield}[{PREFIX}agent-inject-template-{name}]");
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
    let mode = match &secret.perms {
        None => None,
        Some((perms, node)) => match u32::from_str_radix(perms.trim_start_matches("0o"), 8) {
            Ok(mode) if mode <= 0o777 => Some(format!("{mode:04o}")),
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
        },
    };
    let recognised = template::recognise(template, &file).ok();
    let exact = recognised
        .as_ref()
        .filter(|r| r.key.as_ref().is_some_and(|k| !k.contains('#')) && !r.extra_whitespace);
    let simple = |r: &Recognised, site: &mut Site| {
        let mut config = Map::new();
        config.insert(
            "vaultSecretRef".into(),
            Value::from(reference(r, site.mounts)),
        );
        config.insert("secretFileName".into(), Value::from(file_name.as_str()));
        config.insert("volumeMountPath".into(), Value::from(mount.as_str()));
        if !matches!(r.format, FileFormat::Raw | FileFormat::Json) {
            config.insert("format".into(), json!(format_name(r.format)));
        }
        if let Some(mode) = &mode {
            config.insert("mode".into(), Value::from(mode.as_str()));
        }
        config
    };
    if let Some(r) = exact {
        if !hash_in_path(name, &r.path, *template_node, &tfield, site) {
            return None;
        }
        return Some(Converted::Config(simple(r, site)));
    }
    match go_template::translate(template) {
        Ok(translation) => {
            for source in &translation.sources {
                if !hash_in_path(name, &source.path, *template_node, &tfield, site) {
                    return None;
                }
            }
            Some(Converted::Template(
                TranslatedFile {
                    file_name,
                    mount,
                    mode,
                    translation,
                },
                *template_node,
            ))
        }
        Err(refusal) => {
            if let Some(r) = &recognised {
                if !hash_in_path(name, &r.path, *template_node, &tfield, site) {
                    return None;
                }
                if r.extra_whitespace {
                    site.warn(
                        Code::ConvertBehaviourChange,
                        *template_node,
                        tfield,
                        format!("secret `{name}`: the template writes whitespace (such as a final newline) around the value; the converted file holds the value alone"),
                        "check that the app does not rely on that whitespace",
                    );
                }
                return Some(Converted::Config(simple(r, site)));
            }
            // The same action may be written before the refused one (a stray `{{ end }}`).
            let before = template
                .get(..refusal.offset)
                .map_or(0, |t| t.matches(refusal.action.as_str()).count());
            let location = site.location_of_nth(*template_node, &refusal.action, before);
            site.problem_at(
                Code::ConvertTemplate,
                location,
                tfield,
                format!("secret `{name}`: `{}`: {}", refusal.action, refusal.message),
                "rewrite that part of the template (see the migration guide), convert this secret by hand, or keep the injector for this pod",
            );
            None
        }
    }
}

/// Several secrets whose templates call `pkiCert` with the same arguments become one
/// config with `files`, read from one answer. The injector's agent issued a certificate
/// per template, so its files did not belong together (a key from one issue, a
/// certificate from another); the converted pod's do.
fn warn_shared_certificate(
    members: &[usize],
    templates: &[(&str, &TranslatedFile, NodeId)],
    afield: &str,
    site: &mut Site,
) {
    let [first, rest @ ..] = members else {
        return;
    };
    let (_, file, _) = templates[*first];
    if rest.is_empty() || !file.translation.sources.iter().any(|s| s.pki) {
        return;
    }
    let names: Vec<String> = members
        .iter()
        .map(|&i| format!("`{}`", templates[i].0))
        .collect();
    let (_, _, node) = templates[rest[0]];
    site.warn(
        Code::ConvertBehaviourChange,
        node,
        format!("{afield}[{PREFIX}agent-inject-template-{}]", templates[rest[0]].0),
        format!(
            "secrets {} call `pkiCert` with the same arguments: the injector issued a certificate for each template, the converted pod issues one for all of them (one config with `files`), so its key and certificate belong together",
            names.join(", ")
        ),
        "nothing to do when the files are a certificate and its key; give the templates different arguments if they are meant to be different certificates",
    );
}

/// `false` (with the problem reported at the path inside the template) when `path` holds
/// `#`, which separates path, key and version in a reference.
fn hash_in_path(
    name: &str,
    path: &str,
    template_node: NodeId,
    field: &str,
    site: &mut Site,
) -> bool {
    if !path.contains('#') {
        return true;
    }
    site.problem_at(
        Code::ConvertReference,
        site.location_in(template_node, path),
        field.to_string(),
        format!("secret `{name}`: the path `{path}` holds `#`, which separates path, key and version in a reference"),
        "move the secret to a path without `#`, or keep the injector for this pod",
    );
    false
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
