//! `filesecret-config-<N>`: one file secret's JSON configuration, every field checked.

use super::annotations::closest;
use super::{issued, template};
use super::{
    Container, Ctx, FileContent, FileEntry, FileSecret, SecretRef, Source, FILE_KEY_PREFIX,
    SINGLE_SOURCE_ALIAS,
};
use crate::diag::Code;
use crate::pod::agent_spec::{FileFormat, OnChange, MAX_FILE_NAME, RESERVED_DIR};
use crate::render::tree::NodeId;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileSecretJson {
    vault_secret_ref: Option<String>,
    sources: Option<Value>,
    template: Option<Value>,
    secret_file_name: Option<String>,
    volume_mount_path: Option<String>,
    containers: Option<Vec<String>>,
    pub(super) format: Option<String>,
    mode: Option<String>,
    on_change: Option<String>,
    pub(super) params: Option<Value>,
    pub(super) files: Option<Value>,
    pub(super) renew_before: Option<Value>,
}

const FILE_FIELDS: [&str; 12] = [
    "vaultSecretRef",
    "sources",
    "template",
    "secretFileName",
    "volumeMountPath",
    "containers",
    "format",
    "mode",
    "onChange",
    "params",
    "files",
    "renewBefore",
];

/// A `filesecret-config-<suffix>` annotation: its JSON configuration, every field checked.
pub(super) fn parse_file_secret(
    ctx: &mut Ctx,
    containers: &[Container],
    suffix: String,
    node: NodeId,
    field: &str,
) -> Option<FileSecret> {
    let parsed = file_secret_json(ctx, node, field)?;
    let at = FileSite { node, field };
    let (file_name, mount_path) = required_fields(ctx, at, &parsed)?;
    // Every field is checked, so one run reports every mistake of the configuration.
    let read = what_is_read(ctx, at, &parsed);
    let renew_before = issued::renew_before(ctx, at, parsed.renew_before.as_ref());
    let name_ok = file_name
        .as_ref()
        .is_none_or(|name| file_name_ok(ctx, at, "secretFileName", name));
    let mount_ok = env_only(&parsed) || mount_path_ok(ctx, at, &mount_path);
    let outputs = match &file_name {
        Some(file_name) => single_file(ctx, at, &parsed, &read, file_name)
            .filter(|_| name_ok)
            .map(|one| vec![one]),
        None => {
            let mode = file_mode(ctx, at, "mode", parsed.mode.as_deref());
            match &parsed.files {
                Some(files) => issued::files(ctx, at, files, &parsed, &read, mode),
                None => None,
            }
        }
    };
    let targets = target_containers(ctx, at, containers, parsed.containers.as_deref());
    let on_change = file_on_change(ctx, at, parsed.on_change.as_deref());
    let (Some(sources), Ok(renew_before), true, Some(outputs), Some(targets), Ok(on_change)) = (
        read.sources,
        renew_before,
        mount_ok,
        outputs,
        targets,
        on_change,
    ) else {
        return None;
    };
    Some(FileSecret {
        suffix,
        sources,
        outputs,
        together: file_name.is_none(),
        mount_path: mount_path.trim_end_matches('/').to_string(),
        containers: targets,
        on_change,
        renew_before,
        node,
    })
}

/// What a configuration reads: its sources (`None` when any is wrong), the aliases its
/// templates may name (known even when a source is wrong, so that template errors are
/// reported too), and `vaultSecretRef`'s `#key`.
pub(super) struct Read {
    pub(super) sources: Option<Vec<Source>>,
    pub(super) aliases: Vec<String>,
    pub(super) key: Option<String>,
    /// The config has `sources` (rather than `vaultSecretRef`).
    pub(super) several: bool,
}

impl Read {
    pub(super) fn alias_names(&self) -> Vec<&str> {
        self.aliases.iter().map(String::as_str).collect()
    }
}

/// `vaultSecretRef` (and `params`), seen by templates as `secret`; or `sources`.
fn what_is_read(ctx: &mut Ctx, at: FileSite, parsed: &FileSecretJson) -> Read {
    if let Some(value) = &parsed.sources {
        if parsed.params.is_some() {
            at.report(
                ctx,
                Code::BadSources,
                "params",
                "with `sources`, params belong to the source they are sent for".into(),
                r#"write the source as {"path": "pki/issue/web", "params": {...}}"#,
            );
        }
        let aliases = match value {
            Value::Object(map) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let sources = template::sources(ctx, at, value).filter(|_| parsed.params.is_none());
        return Read {
            sources,
            aliases,
            key: None,
            several: true,
        };
    }
    let text = parsed.vault_secret_ref.clone().unwrap_or_default();
    let reference = secret_reference(ctx, at, &text);
    let params = issued::params(
        ctx,
        at,
        "params",
        parsed.params.as_ref(),
        reference.as_ref(),
    );
    let key = reference.as_ref().and_then(|r| r.key.clone());
    let sources = match (reference, params) {
        (Some(mut reference), Ok(params)) => {
            reference.params = params;
            reference.key = None;
            Some(vec![Source {
                alias: SINGLE_SOURCE_ALIAS.to_string(),
                reference,
                text,
            }])
        }
        _ => None,
    };
    Read {
        sources,
        aliases: vec![SINGLE_SOURCE_ALIAS.to_string()],
        key,
        several: false,
    }
}

/// The one file of `secretFileName`: a template, a key of the answer, or the whole
/// answer in a format.
fn single_file(
    ctx: &mut Ctx,
    at: FileSite,
    parsed: &FileSecretJson,
    read: &Read,
    file_name: &str,
) -> Option<FileEntry> {
    let content = match &parsed.template {
        Some(text) => {
            let mut ok = true;
            if parsed.format.is_some() {
                at.report(
                    ctx,
                    Code::FileSecretBadFormat,
                    "format",
                    "`format` does not apply to a template: the file is the template's output"
                        .into(),
                    "drop format",
                );
                ok = false;
            }
            if let Some(key) = &read.key {
                at.report(
                    ctx,
                    Code::BadSources,
                    "vaultSecretRef",
                    format!("with a template, vaultSecretRef is the whole secret (`secret`), but it selects key `{key}`"),
                    "drop the #key and write ${ secret.<key> } in the template",
                );
                ok = false;
            }
            let aliases = read.alias_names();
            let t = template::template_file(
                ctx,
                at,
                (&["template"], "template"),
                text,
                &aliases,
                file_name,
            );
            t.filter(|_| ok).map(FileContent::Template)
        }
        None if read.several => {
            at.report(
                ctx,
                Code::BadSources,
                "template",
                format!("with `sources`, file `{file_name}` is a template, but the configuration has no `template`"),
                r#"add "template": "...${ alias.key }...", or use vaultSecretRef for one secret"#,
            );
            None
        }
        None => file_format(ctx, at, parsed.format.as_deref(), read.key.is_none()).map(|format| {
            match &read.key {
                Some(key) => FileContent::Key(key.clone()),
                None => FileContent::Whole(format),
            }
        }),
    };
    let mode = file_mode(ctx, at, "mode", parsed.mode.as_deref());
    Some(FileEntry {
        file_name: file_name.to_string(),
        content: content?,
        mode: mode?,
    })
}

/// Where a file secret's configuration is: its annotation's value and field path.
#[derive(Clone, Copy)]
pub(super) struct FileSite<'f> {
    pub(super) node: NodeId,
    pub(super) field: &'f str,
}

impl FileSite<'_> {
    /// Reports a finding about one field of the configuration (`""` for the whole).
    pub(super) fn report(
        &self,
        ctx: &mut Ctx,
        code: Code,
        json_field: &str,
        message: String,
        help: &str,
    ) {
        let field = if json_field.is_empty() {
            self.field.to_string()
        } else {
            format!("{}.{json_field}", self.field)
        };
        ctx.report(code, self.node, field, message, help);
    }
}

/// The annotation's value as the configuration's JSON object.
fn file_secret_json(ctx: &mut Ctx, node: NodeId, field: &str) -> Option<FileSecretJson> {
    let at = FileSite { node, field };
    let Some(text) = ctx.tree.str(node) else {
        at.report(
            ctx,
            Code::BadAnnotationType,
            "",
            "the file secret configuration is not a string".into(),
            "write it as a JSON object in a quoted string or a block scalar (|)",
        );
        return None;
    };
    match serde_json::from_str(text) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            let message = e.to_string();
            if let Some(name) = message
                .strip_prefix("unknown field `")
                .and_then(|m| m.split('`').next())
            {
                let help = match closest(name, &FILE_FIELDS) {
                    Some(s) => format!("did you mean `{s}`? fields: {}", FILE_FIELDS.join(", ")),
                    None => format!("fields: {}", FILE_FIELDS.join(", ")),
                };
                at.report(
                    ctx,
                    Code::FileSecretUnknownField,
                    "",
                    format!("unknown field `{name}` in the file secret configuration"),
                    &help,
                );
            } else {
                at.report(
                    ctx,
                    Code::FileSecretBadJson,
                    "",
                    format!("the file secret configuration is not valid JSON: {message}"),
                    r#"write a JSON object, e.g. {"vaultSecretRef": "secret/app#tls.crt", "secretFileName": "tls.crt", "volumeMountPath": "/etc/tls"}"#,
                );
            }
            None
        }
    }
}

/// `vaultSecretRef` or `sources`, `volumeMountPath`, and one of `secretFileName` and
/// `files`, each reported when missing; returns the file name and the mount path.
fn required_fields(
    ctx: &mut Ctx,
    at: FileSite,
    parsed: &FileSecretJson,
) -> Option<(Option<String>, String)> {
    for (present, name) in [
        (
            parsed.vault_secret_ref.is_some() || parsed.sources.is_some(),
            "vaultSecretRef",
        ),
        (
            parsed.secret_file_name.is_some() || parsed.files.is_some(),
            "secretFileName",
        ),
        (
            parsed.volume_mount_path.is_some() || env_only(parsed),
            "volumeMountPath",
        ),
    ] {
        if !present {
            at.report(
                ctx,
                Code::FileSecretMissingField,
                "",
                format!("the file secret configuration has no `{name}`"),
                "vaultSecretRef (or sources, for a template over several secrets), volumeMountPath and secretFileName (or files, for several files) are required",
            );
        }
    }
    let mut ok = true;
    if parsed.vault_secret_ref.is_some() && parsed.sources.is_some() {
        at.report(
            ctx,
            Code::BadSources,
            "sources",
            "the configuration has both `vaultSecretRef` and `sources`".into(),
            "keep vaultSecretRef for one secret (templates see it as `secret`), or sources for several",
        );
        ok = false;
    }
    if parsed.secret_file_name.is_some() && parsed.files.is_some() {
        at.report(
            ctx,
            Code::FileSecretBadFiles,
            "files",
            "the configuration has both `secretFileName` and `files`".into(),
            "keep secretFileName for one file, or files for several files from one answer",
        );
        ok = false;
    }
    if parsed.template.is_some() && parsed.secret_file_name.is_none() {
        at.report(
            ctx,
            Code::BadSources,
            "template",
            "a top-level `template` is the file of `secretFileName`, which the configuration does not have".into(),
            r#"add secretFileName, or make each file of `files` a template: {"app.conf": {"template": "..."}}"#,
        );
        ok = false;
    }
    (parsed.vault_secret_ref.is_some() || parsed.sources.is_some()).then_some(())?;
    let mount_path = match &parsed.volume_mount_path {
        Some(path) => path.clone(),
        None => env_only(parsed).then(String::new)?,
    };
    ok.then(|| (parsed.secret_file_name.clone(), mount_path))
}

/// `"containers": []`: the config is mounted nowhere and serves env values only, so
/// its `volumeMountPath` is optional and unused.
fn env_only(parsed: &FileSecretJson) -> bool {
    parsed.containers.as_ref().is_some_and(Vec::is_empty)
}

/// `vaultSecretRef`.
fn secret_reference(ctx: &mut Ctx, at: FileSite, text: &str) -> Option<SecretRef> {
    SecretRef::parse(text)
        .map_err(|message| {
            at.report(
                ctx,
                Code::BadReference,
                "vaultSecretRef",
                message,
                "write <path>[#<key>[#<version>]]",
            );
        })
        .ok()
}

/// `secretFileName` (or a name in `files`): one plain, printable file name the agent can
/// write.
pub(super) fn file_name_ok(ctx: &mut Ctx, at: FileSite, json_field: &str, file_name: &str) -> bool {
    let (message, help) = if file_name.is_empty()
        || file_name.contains('/')
        || file_name == "."
        || file_name == ".."
    {
        (
            format!("`{file_name}` is not a file name"),
            "give a plain file name without `/`; the directory is volumeMountPath",
        )
    } else if file_name.starts_with("..") {
        (
            format!("`{file_name}` starts with `..`, which names the agent's own versions of a directory (`..data`)"),
            "give a file name that does not start with `..`",
        )
    } else if file_name.chars().any(char::is_control) {
        (
            format!("{file_name:?} holds a NUL, a line break or another control character"),
            "give a plain file name of printable characters",
        )
    } else if file_name.len() > MAX_FILE_NAME {
        (
                format!(
                    "the file name is {} bytes long; the agent writes names of at most {MAX_FILE_NAME} bytes",
                    file_name.len()
                ),
                "give a shorter file name",
            )
    } else {
        return true;
    };
    at.report(ctx, Code::FileSecretBadName, json_field, message, help);
    false
}

/// `volumeMountPath`: an absolute, plain directory outside secretstore's own.
fn mount_path_ok(ctx: &mut Ctx, at: FileSite, mount_path: &str) -> bool {
    let (code, message, help) = if !mount_path.starts_with('/') {
        (
            Code::FileSecretRelativeMount,
            format!("volumeMountPath `{mount_path}` is not absolute"),
            "give an absolute directory, e.g. /etc/secrets",
        )
    } else if mount_path.chars().any(char::is_control)
        || mount_path
            .trim_end_matches('/')
            .split('/')
            .skip(1)
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        (
            Code::FileSecretRelativeMount,
            format!("volumeMountPath {mount_path:?} is not a plain directory path"),
            "give an absolute directory without `.`, `..`, `//` or control characters, e.g. /etc/secrets",
        )
    } else if is_reserved_mount_path(mount_path) {
        (
            Code::MountPathInUse,
            format!("volumeMountPath `{mount_path}` is inside {RESERVED_DIR}, where secretstore mounts its own volumes"),
            "mount the file secret elsewhere, e.g. /etc/secrets",
        )
    } else {
        return true;
    };
    at.report(ctx, code, "volumeMountPath", message, help);
    false
}

/// `format`: raw for one key, a file format for a whole secret (json by default).
fn file_format(
    ctx: &mut Ctx,
    at: FileSite,
    format: Option<&str>,
    whole: bool,
) -> Option<FileFormat> {
    let Some(name) = format else {
        return Some(if whole {
            FileFormat::Json
        } else {
            FileFormat::Raw
        });
    };
    let (message, help) = match FileFormat::parse(name) {
        Some(FileFormat::Raw) if whole => (
            "format `raw` needs a `#key` in vaultSecretRef".to_string(),
            "use json, yaml, env or properties for a whole secret, or add #<key>",
        ),
        Some(f) if !whole && f != FileFormat::Raw => (
            format!("format `{name}` applies to a whole secret, but the reference selects one key"),
            "drop the #key to write the whole secret, or drop format (raw is the default with #key)",
        ),
        Some(f) => return Some(f),
        None => (
            format!("unknown format `{name}`"),
            "formats: json, yaml, env, properties (whole secret); raw (with #key)",
        ),
    };
    at.report(ctx, Code::FileSecretBadFormat, "format", message, help);
    None
}

/// `mode` (or a `mode` in `files`): an octal permission, `0444` by default.
pub(super) fn file_mode(
    ctx: &mut Ctx,
    at: FileSite,
    json_field: &str,
    mode: Option<&str>,
) -> Option<u32> {
    let Some(m) = mode else {
        return Some(0o444);
    };
    match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
        Ok(v) if v <= 0o777 && !m.is_empty() => Some(v),
        _ => {
            at.report(
                ctx,
                Code::FileSecretBadFormat,
                json_field,
                format!("mode `{m}` is not an octal permission"),
                "write an octal string such as \"0440\"",
            );
            None
        }
    }
}

/// `containers`: the named containers, or every app container.
fn target_containers(
    ctx: &mut Ctx,
    at: FileSite,
    containers: &[Container],
    names: Option<&[String]>,
) -> Option<Vec<usize>> {
    let Some(names) = names else {
        return Some(
            containers
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.init)
                .map(|(i, _)| i)
                .collect(),
        );
    };
    let mut found = Vec::new();
    let mut ok = true;
    for name in names {
        match containers.iter().position(|c| &c.name == name) {
            Some(i) if !found.contains(&i) => found.push(i),
            Some(_) => {}
            None => {
                let known: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                at.report(
                    ctx,
                    Code::UnknownContainer,
                    "containers",
                    format!("no container or init container is named `{name}`"),
                    &format!("containers of this pod: {}", known.join(", ")),
                );
                ok = false;
            }
        }
    }
    ok.then_some(found)
}

/// `onChange` (live mode): what the app is told when the file changes.
fn file_on_change(
    ctx: &mut Ctx,
    at: FileSite,
    on_change: Option<&str>,
) -> Result<Option<OnChange>, ()> {
    match on_change.map(OnChange::parse) {
        None => Ok(None),
        Some(Ok(action)) => Ok(Some(action)),
        Some(Err(message)) => {
            at.report(
                ctx,
                Code::LiveBadValue,
                "onChange",
                message,
                "write none, restart or signal:<NAME> (e.g. signal:SIGHUP)",
            );
            Err(())
        }
    }
}

/// Two files at one path in one container, and mount paths the container already uses
/// (except on an injected pod, whose mounts are secretstore's own).
pub(super) fn check_file_clashes(
    ctx: &mut Ctx,
    files: &[FileSecret],
    containers: &[Container],
    afield: &str,
    injected: bool,
) {
    let mut seen: Vec<(usize, &str, &str, &str)> = Vec::new();
    for f in files {
        for &c in &f.containers {
            let container = &containers[c];
            let field = format!("{afield}[{FILE_KEY_PREFIX}{}]", f.suffix);
            let mount = if f.mount_path.is_empty() {
                "/"
            } else {
                &f.mount_path
            };
            if !injected && container.mount_paths.iter().any(|p| p == &f.mount_path) {
                ctx.report(
                    Code::MountPathInUse,
                    f.node,
                    format!("{field}.volumeMountPath"),
                    format!(
                        "container `{}` already mounts a volume at `{mount}`",
                        container.name
                    ),
                    "choose a volumeMountPath the container does not use",
                );
            }
            for out in &f.outputs {
                if let Some((_, _, _, other)) = seen
                    .iter()
                    .find(|(sc, m, n, _)| *sc == c && *m == f.mount_path && *n == out.file_name)
                {
                    ctx.report(
                        Code::FileSecretPathClash,
                        f.node,
                        field.clone(),
                        format!(
                            "container `{}` would get two files at `{mount}/{}` (also from filesecret-config-{other})",
                            container.name, out.file_name
                        ),
                        "give each file its own secretFileName or volumeMountPath",
                    );
                } else {
                    seen.push((c, &f.mount_path, &out.file_name, &f.suffix));
                }
            }
        }
    }
}

/// `/secretstore` itself or anything below it.
fn is_reserved_mount_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path == RESERVED_DIR
        || path
            .strip_prefix(RESERVED_DIR)
            .is_some_and(|rest| rest.starts_with('/'))
}
