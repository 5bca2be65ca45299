//! Templates in file secrets (SPEC 1.4): `sources` (aliases for several reads or issued
//! answers) and each `template`, parsed against the config's aliases, its errors located
//! at the spot inside the annotation's value where the YAML lets us say where.

use super::file_secret::FileSite;
use super::locate::{json_string_at, json_string_offset, source_offset};
use super::{issued, Ctx, SecretRef, Source, TemplateFile};
use crate::diag::{Code, Location};
use crate::render::tree::Kind;
use serde_json::Value;

const SOURCE_HELP: &str = r#"write "alias": "<path>", {"path": "<path>", "version": 3} or {"path": "<path>", "params": {...}}"#;

/// Words a template reads as part of its language, never as an alias.
const RESERVED_ALIASES: [&str; 14] = [
    "and", "or", "not", "in", "is", "if", "elif", "else", "for", "true", "false", "none", "loop",
    "self",
];

/// Whether `alias` is `[a-z_][a-z0-9_]*`.
pub fn is_alias(alias: &str) -> bool {
    let mut chars = alias.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `sources`: alias → a path, `{"path", "version"}` or `{"path", "params"}`, each
/// checked; `None` when any is wrong (every one is reported).
pub(super) fn sources(ctx: &mut Ctx, at: FileSite, value: &Value) -> Option<Vec<Source>> {
    let Value::Object(map) = value else {
        at.report(
            ctx,
            Code::BadSources,
            "sources",
            "`sources` is not a JSON object of aliases".into(),
            r#"write e.g. {"db": "database/creds/app", "app": {"path": "secret/shop/app", "version": 3}}"#,
        );
        return None;
    };
    if map.is_empty() {
        at.report(
            ctx,
            Code::BadSources,
            "sources",
            "`sources` names no source".into(),
            "name at least one, or use vaultSecretRef (seen as `secret`)",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (alias, entry) in map {
        let field = format!("sources.{alias}");
        if !is_alias(alias) {
            at.report(
                ctx,
                Code::BadSources,
                &field,
                format!("source alias {alias:?} is not a name of a-z, 0-9 and _ (not starting with a digit)"),
                "rename it, e.g. db or app_tls",
            );
            ok = false;
            continue;
        }
        if RESERVED_ALIASES.contains(&alias.as_str()) {
            at.report(
                ctx,
                Code::BadSources,
                &field,
                format!("source alias `{alias}` is a word of the template language"),
                "rename it, e.g. db or app_tls",
            );
            ok = false;
            continue;
        }
        match source(ctx, at, &field, entry) {
            Some((reference, text)) => out.push(Source {
                alias: alias.clone(),
                reference,
                text,
            }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// One source: its request and its path as written.
fn source(ctx: &mut Ctx, at: FileSite, field: &str, entry: &Value) -> Option<(SecretRef, String)> {
    let (path, version, params) = match entry {
        Value::String(path) => (path, None, None),
        Value::Object(o) => {
            if let Some(unknown) = o
                .keys()
                .find(|k| !matches!(k.as_str(), "path" | "version" | "params"))
            {
                at.report(
                    ctx,
                    Code::BadSources,
                    field,
                    format!("source field `{unknown}` is unknown"),
                    SOURCE_HELP,
                );
                return None;
            }
            let Some(Value::String(path)) = o.get("path") else {
                at.report(
                    ctx,
                    Code::BadSources,
                    field,
                    "the source has no `path` string".into(),
                    SOURCE_HELP,
                );
                return None;
            };
            if o.contains_key("version") && o.contains_key("params") {
                at.report(
                    ctx,
                    Code::BadSources,
                    field,
                    "the source has both `version` (a read) and `params` (a write)".into(),
                    "keep version to pin a KV v2 read, or params to issue a secret",
                );
                return None;
            }
            (path, o.get("version"), o.get("params"))
        }
        _ => {
            at.report(
                ctx,
                Code::BadSources,
                field,
                "the source is not a path or an object".into(),
                SOURCE_HELP,
            );
            return None;
        }
    };
    if path.contains('#') {
        at.report(
            ctx,
            Code::BadSources,
            field,
            format!("source path `{path}` has a `#`: a source is a whole secret, and the template picks its keys"),
            r#"write the path alone; pin a version with {"path": ..., "version": n}"#,
        );
        return None;
    }
    let mut reference = match SecretRef::parse(path) {
        Ok(r) => r,
        Err(message) => {
            at.report(
                ctx,
                Code::BadReference,
                field,
                message,
                "write a Vault path",
            );
            return None;
        }
    };
    if let Some(v) = version {
        match v.as_u64().filter(|n| *n > 0) {
            Some(n) => reference.version = Some(n),
            None => {
                at.report(
                    ctx,
                    Code::BadSources,
                    &format!("{field}.version"),
                    format!("version `{v}` is not a positive integer"),
                    "pin a KV v2 version such as 3",
                );
                return None;
            }
        }
    }
    reference.params = issued::params(ctx, at, &format!("{field}.params"), params, None).ok()?;
    Some((reference, path.clone()))
}

/// A `template` at `json_path` of the configuration (`field` as messages write it): a
/// string, parsed against `aliases`.
/// Each error is reported at its spot in the annotation when the YAML maps it, else at the
/// value's start, with the template's own line and column in the message.
pub(super) fn template_file(
    ctx: &mut Ctx,
    at: FileSite,
    (json_path, field): (&[&str], &str),
    value: &Value,
    aliases: &[&str],
    file_name: &str,
) -> Option<TemplateFile> {
    let Value::String(text) = value else {
        at.report(
            ctx,
            Code::BadSources,
            field,
            format!("the template of file `{file_name}` is not a string"),
            r#"write the text as a JSON string, e.g. "template": "postgres://${ db.username }@db/app""#,
        );
        return None;
    };
    match crate::template::parse(text, aliases) {
        Ok(template) => Some(TemplateFile {
            text: text.clone(),
            template,
        }),
        Err(errors) => {
            for e in errors {
                let location = spot(ctx, at, json_path, e.offset);
                let help = if e.message.starts_with("unknown alias") {
                    "name one of the config's sources (with vaultSecretRef, the answer is `secret`)"
                } else if e.message.starts_with("unknown filter") {
                    "use one of the filters listed"
                } else {
                    "expressions are ${ alias.key } or ${ alias[\"key\"] }, piped through filters; $${ is a literal ${"
                };
                ctx.report_at(
                    Code::TemplateError,
                    location,
                    format!("{}.{field}", at.field),
                    format!(
                        "template of file `{file_name}`, line {} column {}: {}",
                        e.line, e.column, e.message
                    ),
                    help,
                );
            }
            None
        }
    }
}

/// Where byte `offset` of the template at `json_path` is written in the document, else
/// where the annotation's value starts.
fn spot(ctx: &Ctx, at: FileSite, json_path: &[&str], offset: usize) -> Location {
    let fallback = ctx.location(at.node);
    let tree = ctx.tree;
    let node = tree.node(at.node);
    let Kind::Scalar { value, style } = &node.kind else {
        return fallback;
    };
    let mapped = json_string_at(value, json_path)
        .and_then(|quote| json_string_offset(value, quote, offset))
        .and_then(|json_offset| source_offset(ctx.text, node.start, *style, value, json_offset));
    let Some(byte) = mapped.filter(|b| *b >= node.start) else {
        return fallback;
    };
    let before = &ctx.text[node.start..byte];
    let lines = before.matches('\n').count();
    let column = match before.rfind('\n') {
        Some(nl) => before[nl + 1..].chars().count() + 1,
        None => node.col + before.chars().count() + 1,
    };
    Location {
        line: fallback.line + lines,
        column,
        ..fallback
    }
}

#[cfg(test)]
mod tests {
    use super::super::{read_pod, Ctx, FileContent, Gate};
    use super::*;
    use crate::render::tree::Tree;

    /// Reads a Pod with these annotation lines and env entries: its request (when it has
    /// no errors) and its findings as `code line:column message`.
    fn read(annotations: &str, env: &str) -> (Option<super::super::PodRequest>, Vec<String>) {
        let doc = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: r\n{annotations}spec:\n  containers:\n  - name: app\n    command: [a]\n    env:\n{env}  - name: other\n    command: [b]\n"
        );
        let tree = Tree::parse(&doc).expect("parses");
        let mut ctx = Ctx::new("t.yaml", &doc, 1, &tree);
        let root = tree.root.unwrap();
        let gate = read_pod(&mut ctx, root, "");
        let findings = ctx
            .diagnostics
            .iter()
            .map(|d| {
                format!(
                    "{} {}:{} {}",
                    d.code.id(),
                    d.location.line,
                    d.location.column,
                    d.message
                )
            })
            .collect();
        let request = match gate {
            Gate::OptedIn(r) if ctx.diagnostics.is_empty() => Some(*r),
            _ => None,
        };
        (request, findings)
    }

    #[test]
    fn aliases() {
        for ok in ["db", "_x", "app_tls2"] {
            assert!(is_alias(ok), "{ok}");
        }
        for bad in ["", "Db", "2x", "a-b", "a.b", "é"] {
            assert!(!is_alias(bad), "{bad}");
        }
        let (_, findings) = read(
            "    vault.secretstore.rafay.dev/filesecret-config-1: '{\"sources\": {\"in\": \"secret/a\"}, \"secretFileName\": \"f\", \"volumeMountPath\": \"/f\", \"template\": \"x\"}'\n",
            "",
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].contains("a word of the template language"),
            "{findings:?}"
        );
    }

    #[test]
    fn sources_and_templates_parse() {
        let (request, findings) = read(
            "    vault.secretstore.rafay.dev/filesecret-config-1: '{\"sources\": {\"db\": \"database/creds/app\", \"kv\": {\"path\": \"secret/app\", \"version\": 2}, \"tls\": {\"path\": \"pki/issue/web\", \"params\": {\"common_name\": \"$(POD_NAME).svc\"}}}, \"secretFileName\": \"url\", \"volumeMountPath\": \"/etc/db\", \"containers\": [], \"template\": \"${ db.username }${ kv.k }${ tls.certificate }\"}'\n    vault.secretstore.rafay.dev/filesecret-config-2: '{\"vaultSecretRef\": \"secret/app\", \"files\": {\"a\": \"k\", \"b\": {\"template\": \"${ secret.k }\", \"mode\": \"0400\"}}, \"volumeMountPath\": \"/etc/app\"}'\n",
            "    - {name: URL, value: \"secretstore:file:1/url\"}\n    - {name: B, value: \"secretstore:file:2/b\"}\n",
        );
        assert_eq!(findings, Vec::<String>::new());
        let request = request.unwrap();
        let one = &request.files[0];
        assert!(one.containers.is_empty());
        let aliases: Vec<&str> = one.sources.iter().map(|s| s.alias.as_str()).collect();
        assert_eq!(aliases, ["db", "kv", "tls"]);
        assert_eq!(one.sources[1].reference.version, Some(2));
        assert!(one.sources[2].reference.params.is_some());
        assert!(
            matches!(&one.outputs[0].content, FileContent::Template(t) if t.template.referenced_keys().len() == 3)
        );
        let two = &request.files[1];
        assert_eq!(two.sources[0].alias, "secret");
        assert!(matches!(&two.outputs[0].content, FileContent::Key(k) if k == "k"));
        assert!(matches!(&two.outputs[1].content, FileContent::Template(_)));
        assert_eq!(two.outputs[1].mode, 0o400);
        let refs: Vec<(usize, usize)> = request
            .file_refs
            .iter()
            .map(|r| (r.config, r.output))
            .collect();
        assert_eq!(refs, [(0, 0), (1, 1)]);
    }

    #[test]
    fn template_errors_point_into_the_value() {
        // A block scalar: the spot's own line and column in the file.
        let (_, findings) = read(
            "    vault.secretstore.rafay.dev/filesecret-config-1: |\n      {\"vaultSecretRef\": \"secret/app\", \"secretFileName\": \"f\", \"volumeMountPath\": \"/f\",\n       \"template\": \"a\\n  ${ nope.x }\"}\n",
            "",
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].starts_with(
                "SS125 10:29 template of file `f`, line 2 column 6: unknown alias `nope`"
            ),
            "{findings:?}"
        );
        // Single-quoted on one line.
        let (_, findings) = read(
            "    vault.secretstore.rafay.dev/filesecret-config-1: '{\"vaultSecretRef\": \"secret/app\", \"secretFileName\": \"f\", \"volumeMountPath\": \"/f\", \"template\": \"${ secret.x | nope }\"}'\n",
            "",
        );
        let column = 55 + "{\"vaultSecretRef\": \"secret/app\", \"secretFileName\": \"f\", \"volumeMountPath\": \"/f\", \"template\": \"${ secret.x | ".len();
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].starts_with(&format!("SS125 8:{column} ")),
            "{findings:?}"
        );
        // Escapes before the spot in a double-quoted scalar: the value's start.
        let (_, findings) = read(
            "    vault.secretstore.rafay.dev/filesecret-config-1: \"{\\\"vaultSecretRef\\\": \\\"secret/app\\\", \\\"secretFileName\\\": \\\"f\\\", \\\"volumeMountPath\\\": \\\"/f\\\", \\\"template\\\": \\\"${ x.y }\\\"}\"\n",
            "",
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].starts_with("SS125 8:54 "), "{findings:?}");
    }

    #[test]
    fn file_references_are_checked() {
        let config = "    vault.secretstore.rafay.dev/filesecret-config-db: '{\"vaultSecretRef\": \"secret/db\", \"files\": {\"password\": \"password\"}, \"volumeMountPath\": \"/db\", \"containers\": []}'\n";
        let (_, findings) = read(
            config,
            "    - {name: A, value: \"secretstore:file:db/pasword\"}\n    - {name: B, value: \"secretstore:file:bd/password\"}\n    - {name: C, value: \"secretstore:file:db\"}\n",
        );
        let codes: Vec<&str> = findings.iter().map(|f| &f[..5]).collect();
        assert_eq!(codes, ["SS127"; 3], "{findings:?}");
        assert!(findings[0].contains("file `pasword`"), "{findings:?}");
        let (request, findings) = read(
            config,
            "    - {name: A, value: \"secretstore:file:db/password\"}\n",
        );
        assert_eq!(findings, Vec::<String>::new());
        assert_eq!(request.unwrap().file_refs.len(), 1);
    }
}
