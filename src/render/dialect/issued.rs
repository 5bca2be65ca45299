//! Issued secrets (SPEC 1.3): a file secret's `params` (the body of a write, whose strings
//! may name pod variables), `files` (several files from one answer) and `renewBefore`.

use super::file_secret::{file_mode, file_name_ok, FileSecretJson, FileSite, Read};
use super::template;
use super::{Ctx, FileContent, FileEntry, SecretRef};
use crate::diag::Code;
use crate::pod::agent_spec::{param_strings, parse_param};
use serde_json::Value;

/// `params`: a JSON object whose strings use only the pod variables; with it the
/// reference is a path, without `#key` or `#version`. Returns the body as compact JSON
/// with its keys sorted (the request's identity), `None` without params.
pub(super) fn params(
    ctx: &mut Ctx,
    at: FileSite,
    json_field: &str,
    params: Option<&Value>,
    reference: Option<&SecretRef>,
) -> Result<Option<String>, ()> {
    let Some(params) = params else {
        return Ok(None);
    };
    let Value::Object(map) = params else {
        at.report(
            ctx,
            Code::BadParams,
            json_field,
            "`params` is not a JSON object".into(),
            r#"write the body of the write as an object, e.g. {"common_name": "$(POD_NAME).web.svc", "ttl": "24h"}"#,
        );
        return Err(());
    };
    let mut ok = true;
    if let Some(r) = reference.filter(|r| r.key.is_some() || r.version.is_some()) {
        let part = if r.key.is_some() { "#key" } else { "#version" };
        at.report(
            ctx,
            Code::BadParams,
            "vaultSecretRef",
            format!("with `params`, vaultSecretRef is the path to write to, but it has a {part}"),
            "write the path alone (e.g. pki/issue/web) and choose keys of the answer in `files`",
        );
        ok = false;
    }
    let mut strings = Vec::new();
    for (k, v) in map {
        param_strings(v, k.clone(), &mut strings);
    }
    for (path, text) in strings {
        if let Err((offset, message)) = parse_param(text) {
            at.report(
                ctx,
                Code::UnknownPodVariable,
                &format!("{json_field}.{path}"),
                format!("{message} (at byte {offset} of {text:?})"),
                "pod variables are resolved in the pod from the downward API; anything else is sent as written",
            );
            ok = false;
        }
    }
    ok.then(|| Some(sorted(params).to_string())).ok_or(())
}

/// A JSON value with the keys of every object sorted.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// `renewBefore`: a duration, in seconds.
pub(super) fn renew_before(
    ctx: &mut Ctx,
    at: FileSite,
    value: Option<&Value>,
) -> Result<Option<u64>, ()> {
    let Some(value) = value else {
        return Ok(None);
    };
    let parsed = match value {
        Value::String(text) => crate::duration::parse_seconds(text),
        other => Err(format!("`{other}` is not a duration string")),
    };
    parsed.map(Some).map_err(|message| {
        at.report(
            ctx,
            Code::BadParams,
            "renewBefore",
            message,
            "write a duration such as 30m, 12h or 1h30m",
        );
    })
}

/// `files`: file name → a key of the answer, `{"key": ..., "mode": ...}` or
/// `{"template": ..., "mode": ...}`. A key file is that key's value, raw (it needs
/// `vaultSecretRef`, the single answer); a template file is the template's output over
/// the config's sources. A file's mode is its own, else the config's.
pub(super) fn files(
    ctx: &mut Ctx,
    at: FileSite,
    files: &Value,
    parsed: &FileSecretJson,
    read: &Read,
    default_mode: Option<u32>,
) -> Option<Vec<FileEntry>> {
    let Value::Object(map) = files else {
        at.report(
            ctx,
            Code::FileSecretBadFiles,
            "files",
            "`files` is not a JSON object of file names".into(),
            r#"write e.g. {"tls.crt": "certificate", "tls.key": {"key": "private_key", "mode": "0400"}, "app.conf": {"template": "..."}}"#,
        );
        return None;
    };
    let mut ok = default_mode.is_some();
    if map.is_empty() {
        at.report(
            ctx,
            Code::FileSecretBadFiles,
            "files",
            "`files` names no file".into(),
            "name at least one file, or use secretFileName",
        );
        ok = false;
    }
    if let Some(key) = &read.key {
        at.report(
            ctx,
            Code::FileSecretBadFiles,
            "vaultSecretRef",
            format!(
                "with `files`, each file names its key, but vaultSecretRef selects key `{key}`"
            ),
            "drop the #key from vaultSecretRef",
        );
        ok = false;
    }
    if parsed.format.is_some() {
        at.report(
            ctx,
            Code::FileSecretBadFiles,
            "format",
            "`format` applies to secretFileName; each file of `files` is one key, written as it is, or a template's output"
                .into(),
            "drop format",
        );
        ok = false;
    }
    let mut entries = Vec::new();
    for (name, what) in map {
        let field = format!("files[{name:?}]");
        let name_ok = file_name_ok(ctx, at, &field, name);
        let entry = match what {
            Value::String(key) if !key.is_empty() => Some((Wanted::Key(key.clone()), default_mode)),
            Value::Object(o) => file_object(ctx, at, &field, name, o, default_mode),
            _ => {
                at.report(
                    ctx,
                    Code::FileSecretBadFiles,
                    &field,
                    format!("file `{name}` names no key of the answer and no template"),
                    r#"write "file": "key", {"key": "...", "mode": "0400"} or {"template": "..."}"#,
                );
                None
            }
        };
        let content = match entry {
            Some((Wanted::Key(key), _)) if read.several => {
                at.report(
                    ctx,
                    Code::BadSources,
                    &field,
                    format!("file `{name}` names key `{key}`, but with `sources` there is no single answer to take it from"),
                    &format!(r#"write it as a template: {{"template": "${{ <alias>.{key} }}"}}, or use vaultSecretRef"#),
                );
                None
            }
            Some((Wanted::Key(key), mode)) => Some((FileContent::Key(key), mode)),
            Some((Wanted::Template(text), mode)) => {
                let aliases = read.alias_names();
                let path = ["files", name.as_str(), "template"];
                let tfield = format!("{field}.template");
                template::template_file(ctx, at, (&path, &tfield), text, &aliases, name)
                    .map(|t| (FileContent::Template(t), mode))
            }
            None => None,
        };
        match (content, name_ok) {
            (Some((content, Some(mode))), true) => entries.push(FileEntry {
                file_name: name.clone(),
                content,
                mode,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(entries)
}

/// What one entry of `files` asks for.
enum Wanted<'v> {
    Key(String),
    Template(&'v Value),
}

/// `{"key": ..., "mode": ...}` or `{"template": ..., "mode": ...}`: what the file holds,
/// and its mode (else `default_mode`).
fn file_object<'v>(
    ctx: &mut Ctx,
    at: FileSite,
    field: &str,
    name: &str,
    o: &'v serde_json::Map<String, Value>,
    default_mode: Option<u32>,
) -> Option<(Wanted<'v>, Option<u32>)> {
    if let Some(unknown) = o
        .keys()
        .find(|k| !matches!(k.as_str(), "key" | "template" | "mode"))
    {
        at.report(
            ctx,
            Code::FileSecretBadFiles,
            field,
            format!("file `{name}` has an unknown field `{unknown}`"),
            "a file is {\"key\": ..., \"mode\": ...} or {\"template\": ..., \"mode\": ...}",
        );
        return None;
    }
    let wanted = match (o.get("key"), o.get("template")) {
        (Some(_), Some(_)) => {
            at.report(
                ctx,
                Code::FileSecretBadFiles,
                field,
                format!("file `{name}` has both `key` and `template`"),
                "keep key for one value of the answer, or template to compose one",
            );
            return None;
        }
        (None, Some(text)) => Wanted::Template(text),
        (Some(Value::String(k)), None) if !k.is_empty() => Wanted::Key(k.clone()),
        _ => {
            at.report(
                ctx,
                Code::FileSecretBadFiles,
                field,
                format!("file `{name}` has no `key` string and no `template`"),
                r#"write {"key": "private_key", "mode": "0400"} or {"template": "..."}"#,
            );
            return None;
        }
    };
    let mode = match o.get("mode") {
        None => default_mode,
        Some(Value::String(m)) => file_mode(ctx, at, &format!("{field}.mode"), Some(m)),
        Some(_) => file_mode(ctx, at, &format!("{field}.mode"), Some("not a string")),
    };
    Some((wanted, mode))
}
