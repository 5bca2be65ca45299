//! The rewrite shared by every source dialect: a pod's plan (role, file secrets, env
//! references, annotations to drop) becomes byte-range replacements and insertions in the
//! document text, so every byte outside them is kept.
//!
//! The first dropped annotation of a pod is replaced by the dialect's annotations, at its
//! own indentation; the others are removed with their lines. A pod that drops none gets
//! the annotations added after its last one (or a new `annotations` mapping) by
//! [`crate::render::edit`], which also handles flow style.

use crate::render::dialect::{FILE_KEY_PREFIX, OPT_IN_KEY, OPT_IN_VALUE, ROLE_KEY};
use crate::render::edit::{self, Edit, Layout};
use crate::render::tree::{Kind, NodeId, Tree};
use saphyr_parser::ScalarStyle;
use serde_json::Value;
use std::ops::Range;

/// One replacement of a byte range of the document (empty range: an insertion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub range: Range<usize>,
    pub text: String,
}

/// What a converted pod template gets.
#[derive(Debug, Default)]
pub struct PodPlan {
    pub role: Option<String>,
    /// (suffix of `filesecret-config-<suffix>`, its JSON object).
    pub files: Vec<(String, Value)>,
    /// Env value nodes and their new value.
    pub env: Vec<(NodeId, String)>,
    /// Indices of the pod's containers that get env references.
    pub env_containers: Vec<usize>,
    /// Annotation entries (key, value) of the pod template to remove.
    pub dropped: Vec<(NodeId, NodeId)>,
    /// The role came from the source's own annotation, not a default.
    pub role_explicit: bool,
    /// The value node of the annotation that named the role: a comment after it moves
    /// to the new role annotation.
    pub role_node: Option<NodeId>,
    /// The pod is opted in already: its annotations stay as they are.
    pub already_opted_in: bool,
}

impl PodPlan {
    /// The dialect's annotations, in order: opt-in, role, file secrets.
    fn annotations(&self) -> Vec<(String, String)> {
        let mut out = vec![
            (OPT_IN_KEY.to_string(), OPT_IN_VALUE.to_string()),
            (ROLE_KEY.to_string(), self.role.clone().unwrap_or_default()),
        ];
        for (suffix, config) in &self.files {
            out.push((
                format!("{FILE_KEY_PREFIX}{suffix}"),
                edit::compact_json(config),
            ));
        }
        out
    }

    /// The config of the file secret annotation `key`.
    fn config(&self, key: &str) -> Option<&Value> {
        let suffix = key.strip_prefix(FILE_KEY_PREFIX)?;
        self.files
            .iter()
            .find(|(s, _)| s == suffix)
            .map(|(_, config)| config)
    }
}

/// A file secret config whose template has several lines, as a literal block scalar
/// (`|` and the lines after it, each at `indent`): one field per line, and one file per
/// line in `files`, so that a reviewer reads it as the templates page writes configs.
/// `None` for a config without such a template (it stays one line), or one whose JSON
/// holds a character a block scalar cannot carry as itself.
fn block_config(config: &Value, indent: usize, nl: &str) -> Option<String> {
    let Value::Object(map) = config else {
        return None;
    };
    let multi_line = |t: &Value| {
        t.as_str()
            .is_some_and(|t| t.trim_end_matches('\n').contains('\n'))
    };
    let templates = map.get("template").into_iter().chain(
        map.get("files")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|files| files.values().filter_map(|f| f.get("template"))),
    );
    if !templates.into_iter().any(multi_line) {
        return None;
    }
    let pad = " ".repeat(indent);
    let mut lines = Vec::new();
    for (i, (key, value)) in map.iter().enumerate() {
        let open = if i == 0 { "{" } else { " " };
        let head = format!("{open}{}: ", edit::json_string(key));
        let text = match value {
            Value::Object(files) if key == "files" && files.len() > 1 => {
                let under = " ".repeat(head.chars().count() + 1);
                let entries: Vec<String> = files
                    .iter()
                    .map(|(name, f)| {
                        format!("{}: {}", edit::json_string(name), edit::compact_json(f))
                    })
                    .collect();
                format!("{{{}}}", entries.join(&format!(",{nl}{pad}{under}")))
            }
            other => edit::compact_json(other),
        };
        lines.push(format!("{pad}{head}{text}"));
    }
    let block = format!("|{nl}{}}}", lines.join(&format!(",{nl}")));
    // Tabs and control characters are escaped in JSON text; what a YAML block scalar
    // cannot hold as itself (DEL, C1 controls, line separators, a BOM) may remain.
    let printable = block.chars().all(|c| {
        (!c.is_control() || c == '\n' || c == '\r')
            && !matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}')
    });
    printable.then_some(block)
}

/// The replacements and edits that apply `plan` to the pod `template`.
pub fn plan_pod(
    text: &str,
    tree: &Tree,
    template: NodeId,
    plan: &PodPlan,
    layout: &Layout,
) -> Result<(Vec<Replacement>, Vec<Edit>), String> {
    let mut replacements = Vec::new();
    let mut edits = Vec::new();
    for (node, value) in &plan.env {
        replacements.push(Replacement {
            range: scalar_range(text, tree, *node)?,
            text: requoted(tree, *node, value),
        });
    }
    if plan.already_opted_in {
        return Ok((replacements, edits));
    }
    let new = plan.annotations();
    let mut dropped = plan.dropped.clone();
    dropped.sort_by_key(|(k, _)| tree.node(*k).start);
    dropped.dedup();
    let flow_annotations = tree
        .path(template, &["metadata", "annotations"])
        .filter(|a| matches!(tree.node(*a).kind, Kind::Map { flow: true, .. }));
    if let (Some(map), false) = (flow_annotations, dropped.is_empty()) {
        replacements.push(flow_map(text, tree, map, &dropped, &new, layout)?);
        return Ok((replacements, edits));
    }
    if let Some(((first_key, _), _)) = dropped.split_first() {
        let col = tree.node(*first_key).col;
        let role_comment = dropped
            .iter()
            .find(|(_, v)| Some(*v) == plan.role_node)
            .and_then(|(_, v)| trailing_comment(text, tree, *v));
        let mut lines = String::new();
        for (key, value) in &new {
            lines.push_str(&" ".repeat(col));
            lines.push_str(&edit::yaml_scalar(key));
            lines.push_str(": ");
            match plan
                .config(key)
                .and_then(|c| block_config(c, col + 2, layout.newline))
            {
                Some(block) => lines.push_str(&block),
                None => lines.push_str(&edit::yaml_scalar(value)),
            }
            if key == ROLE_KEY {
                lines.push_str(role_comment.unwrap_or_default());
            }
            lines.push_str(layout.newline);
        }
        for (i, (key, value)) in dropped.iter().enumerate() {
            let mut replacement = if i == 0 {
                std::mem::take(&mut lines)
            } else {
                String::new()
            };
            // The comment of another removed annotation stays, on a line of its own.
            if let Some(comment) =
                trailing_comment(text, tree, *value).filter(|_| Some(*value) != plan.role_node)
            {
                replacement.push_str(&" ".repeat(col));
                replacement.push_str(comment.trim_start());
                replacement.push_str(layout.newline);
            }
            replacements.push(Replacement {
                range: entry_lines(text, tree, *key, *value)?,
                text: replacement,
            });
        }
    } else {
        let metadata = tree.get(template, "metadata").map(|m| tree.resolve(m));
        let annotations = metadata
            .and_then(|m| tree.get(m, "annotations"))
            .filter(|a| !tree.is_null(*a));
        let as_object = || {
            Value::Object(
                new.iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect(),
            )
        };
        match (metadata, annotations) {
            (Some(_), Some(a)) if tree.is_map(a) && !tree.entries(a).is_empty() => {
                for (key, value) in &new {
                    edits.push(Edit::AddKey {
                        map: a,
                        key: key.clone(),
                        value: Value::from(value.as_str()),
                    });
                }
            }
            (Some(_), Some(_)) => {
                return Err("the pod template's annotations are empty or not a mapping".into())
            }
            (Some(m), None) if !tree.entries(m).is_empty() => edits.push(Edit::AddKey {
                map: m,
                key: "annotations".into(),
                value: as_object(),
            }),
            _ if !tree.entries(template).is_empty() && metadata.is_none() => {
                match metadata_first(text, tree, template, &new, layout) {
                    Some(r) => replacements.push(r),
                    None => edits.push(Edit::AddKey {
                        map: template,
                        key: "metadata".into(),
                        value: serde_json::json!({ "annotations": as_object() }),
                    }),
                }
            }
            _ => return Err("the pod template's metadata is empty".into()),
        }
    }
    Ok((replacements, edits))
}

/// The new value in the old value's quoting where it can be: double quotes stay double,
/// a plain value stays plain when the new one reads back the same in YAML 1.1 and 1.2.
fn requoted(tree: &Tree, node: NodeId, value: &str) -> String {
    match &tree.node(node).kind {
        Kind::Scalar {
            style: ScalarStyle::DoubleQuoted,
            ..
        } => edit::json_string(value),
        Kind::Scalar {
            style: ScalarStyle::Plain,
            ..
        } if is_plain_reference(value) => value.to_string(),
        _ => edit::yaml_scalar(value),
    }
}

/// A reference such as `secretstore:vault:secret/x#key#2`: a letter first, then no blank,
/// no `: ` or ` #`, and no flow or quote character, so it is one plain string.
fn is_plain_reference(value: &str) -> bool {
    value.starts_with(|c: char| c.is_ascii_alphabetic())
        && value.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b':' | b'/' | b'#' | b'-' | b'_' | b'.' | b'@' | b'+' | b'='
                )
        })
        && !value.ends_with(':')
}

/// A flow-style (or JSON) annotations mapping written again: the entries it keeps as
/// they were written, then the new ones, in its own layout (one line, or one entry per
/// line at the entries' indentation).
fn flow_map(
    text: &str,
    tree: &Tree,
    map: NodeId,
    dropped: &[(NodeId, NodeId)],
    new: &[(String, String)],
    layout: &Layout,
) -> Result<Replacement, String> {
    let node = tree.node(map);
    if text.as_bytes().get(node.start) != Some(&b'{') || !text[..node.end].ends_with('}') {
        return Err("the annotations mapping has an anchor or tag".into());
    }
    let mut items = Vec::new();
    for (k, v) in tree.entries(map) {
        if dropped.iter().any(|(dk, _)| dk == k) {
            continue;
        }
        let end = scalar_range(text, tree, *v)?.end;
        items.push(text[tree.node(*k).start..end].to_string());
    }
    for (key, value) in new {
        items.push(format!(
            "{}: {}",
            edit::json_string(key),
            edit::json_string(value)
        ));
    }
    let first = tree.entries(map).first().map(|(k, _)| tree.node(*k).start);
    let nl = layout.newline;
    let rewritten = match first {
        Some(first) if text[node.start..first].contains('\n') => {
            let indent = &text[edit::line_start(text, first)..first];
            let close_at = node.end - 1;
            let close_start = edit::line_start(text, close_at);
            let close_indent = &text[close_start..close_at];
            let close_indent = if close_indent.trim().is_empty() {
                close_indent
            } else {
                ""
            };
            format!(
                "{{{nl}{indent}{}{nl}{close_indent}}}",
                items.join(&format!(",{nl}{indent}"))
            )
        }
        _ => format!("{{{}}}", items.join(", ")),
    };
    Ok(Replacement {
        range: node.start..node.end,
        text: rewritten,
    })
}

/// `metadata:` with the annotations, as the first key of a block-style pod template (where
/// manifests keep it, before `spec`).
fn metadata_first(
    text: &str,
    tree: &Tree,
    template: NodeId,
    annotations: &[(String, String)],
    layout: &Layout,
) -> Option<Replacement> {
    if matches!(tree.node(template).kind, Kind::Map { flow: true, .. }) {
        return None;
    }
    let (first, _) = *tree.entries(template).first()?;
    let k = tree.node(first);
    let start = edit::line_start(text, k.start);
    if !text[start..k.start].chars().all(|c| c == ' ') {
        return None;
    }
    let indent = " ".repeat(k.col);
    let nl = layout.newline;
    let mut block = format!("{indent}metadata:{nl}{indent}  annotations:{nl}");
    for (key, value) in annotations {
        block.push_str(&format!(
            "{indent}    {}: {}{nl}",
            edit::yaml_scalar(key),
            edit::yaml_scalar(value)
        ));
    }
    Some(Replacement {
        range: start..start,
        text: block,
    })
}

/// The bytes a single-line or quoted scalar is written with.
pub fn scalar_range(text: &str, tree: &Tree, node: NodeId) -> Result<Range<usize>, String> {
    if tree.is_alias(node) {
        return Err("the value is an alias (*name) of a node used elsewhere".into());
    }
    let n = tree.node(node);
    let Kind::Scalar { value, style } = &n.kind else {
        return Err("the value is not a scalar".into());
    };
    let start = n.start;
    let bytes = text.as_bytes();
    let end = match style {
        ScalarStyle::SingleQuoted => {
            let mut i = start + 1;
            loop {
                match bytes.get(i) {
                    Some(b'\'') if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(b'\'') => break i + 1,
                    Some(_) => i += 1,
                    None => return Err("unterminated quoted value".into()),
                }
            }
        }
        ScalarStyle::DoubleQuoted => {
            let mut i = start + 1;
            loop {
                match bytes.get(i) {
                    Some(b'\\') => i += 2,
                    Some(b'"') => break i + 1,
                    Some(_) => i += 1,
                    None => return Err("unterminated quoted value".into()),
                }
            }
        }
        ScalarStyle::Plain => {
            // A one-line plain scalar is written exactly as its value.
            if value.contains('\n') || !text[start..].starts_with(value.as_ref()) {
                return Err("the value is a plain scalar over several lines".into());
            }
            start + value.len()
        }
        _ => return Err("the value is a block scalar (| or >)".into()),
    };
    if !matches!(bytes.get(start), Some(b'\'' | b'"')) && *style != ScalarStyle::Plain {
        return Err("the value's quote was not found where the parser placed it".into());
    }
    Ok(start..end)
}

/// The whole lines of a block mapping entry: from the start of the key's line to the end
/// of the line where its value ends (a block scalar's last content line).
pub fn entry_lines(
    text: &str,
    tree: &Tree,
    key: NodeId,
    value: NodeId,
) -> Result<Range<usize>, String> {
    let k = tree.node(key);
    let line_start = edit::line_start(text, k.start);
    if !text[line_start..k.start].chars().all(|c| c == ' ') {
        return Err("the annotations are not a block mapping with one entry per line".into());
    }
    let v = tree.node(value);
    let last = match &v.kind {
        Kind::Scalar {
            style: ScalarStyle::Literal | ScalarStyle::Folded,
            ..
        } => {
            let last = block_scalar_last_line(text, v.start, k.col);
            let end = text[last..].find('\n').map_or(text.len(), |i| last + i + 1);
            return Ok(line_start..end);
        }
        Kind::Scalar { .. } => scalar_range(text, tree, value)?.end.max(v.start),
        _ => return Err("an annotation's value is not a scalar".into()),
    };
    let line_end = text[last..].find('\n').map_or(text.len(), |i| last + i + 1);
    let tail = &text[last..line_end];
    let tail = tail.trim_start_matches([' ', '\t']);
    if !(tail.trim_end().is_empty() || tail.starts_with('#')) {
        return Err("another node follows an annotation on its line".into());
    }
    Ok(line_start..line_end)
}

/// The blanks and `# comment` after a one-line scalar value, up to the end of its line.
fn trailing_comment<'t>(text: &'t str, tree: &Tree, value: NodeId) -> Option<&'t str> {
    let end = scalar_range(text, tree, value).ok()?.end;
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let tail = text[end..line_end].trim_end_matches('\r');
    tail.trim_start_matches([' ', '\t'])
        .starts_with('#')
        .then_some(tail)
        .filter(|t| t.starts_with([' ', '\t']))
}

/// The start of the last content line of a block scalar whose indicator is at `start`
/// and whose key is at column `key_col`.
fn block_scalar_last_line(text: &str, start: usize, key_col: usize) -> usize {
    let mut at = text[start..]
        .find('\n')
        .map_or(text.len(), |i| start + i + 1);
    let mut last = start;
    while at < text.len() {
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
        let line = &text[at..end];
        let content = line.trim_start_matches(' ');
        let blank = content.trim_end().is_empty();
        if !blank && line.len() - content.len() <= key_col {
            break;
        }
        if !blank {
            last = at;
        }
        at = end;
    }
    last
}

/// `text` with the replacements and the edits' insertions applied.
pub fn apply(
    text: &str,
    tree: &Tree,
    mut replacements: Vec<Replacement>,
    edits: &[Edit],
    layout: &Layout,
) -> Result<String, String> {
    for ins in edit::insertions(text, tree, edits, layout)? {
        replacements.push(Replacement {
            range: ins.offset..ins.offset,
            text: ins.text,
        });
    }
    // Stable: insertions at one offset keep their order, after a range ending there.
    replacements.sort_by_key(|r| (r.range.start, r.range.end != r.range.start));
    let mut out = String::with_capacity(text.len() + 256);
    let mut at = 0;
    for r in &replacements {
        if r.range.start < at {
            return Err("two changes overlap".into());
        }
        out.push_str(&text[at..r.range.start]);
        out.push_str(&r.text);
        at = r.range.end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_ranges() {
        let text = "a: 'x''y' # c\nb: \"q\\\"r\"\nc: plain value  # c\nd: [p, q]\n";
        let tree = Tree::parse(text).unwrap();
        let root = tree.root.unwrap();
        let at = |k: &str| &text[scalar_range(text, &tree, tree.get(root, k).unwrap()).unwrap()];
        assert_eq!(at("a"), "'x''y'");
        assert_eq!(at("b"), "\"q\\\"r\"");
        assert_eq!(at("c"), "plain value");
        let d = tree.get(root, "d").unwrap();
        let p = tree.items(d)[0];
        assert_eq!(&text[scalar_range(text, &tree, p).unwrap()], "p");
    }

    #[test]
    fn configs_with_multi_line_templates_are_blocks() {
        let one_line = serde_json::json!({"vaultSecretRef": "kv/a", "secretFileName": "f",
            "volumeMountPath": "/s", "template": "${ secret.k }\n"});
        assert_eq!(block_config(&one_line, 4, "\n"), None);
        let lines = serde_json::json!({"sources": {"secret": "kv/a", "b": "kv/b"},
            "secretFileName": "f", "volumeMountPath": "/s",
            "template": "a=${ secret.a }\nb=${ b.b }\n"});
        assert_eq!(
            block_config(&lines, 4, "\n").unwrap(),
            "|\n    {\"sources\": {\"secret\": \"kv/a\", \"b\": \"kv/b\"},\n     \"secretFileName\": \"f\",\n     \"volumeMountPath\": \"/s\",\n     \"template\": \"a=${ secret.a }\\nb=${ b.b }\\n\"}"
        );
        let files = serde_json::json!({"vaultSecretRef": "pki/issue/r", "params": {"common_name": "a"},
            "volumeMountPath": "/t",
            "files": {"a.pem": {"template": "${ secret.certificate }\n${ secret.issuing_ca }"},
                      "b.pem": {"mode": "0400", "template": "${ secret.private_key }"}}});
        assert_eq!(
            block_config(&files, 2, "\r\n").unwrap(),
            "|\r\n  {\"vaultSecretRef\": \"pki/issue/r\",\r\n   \"params\": {\"common_name\": \"a\"},\r\n   \"volumeMountPath\": \"/t\",\r\n   \"files\": {\"a.pem\": {\"template\": \"${ secret.certificate }\\n${ secret.issuing_ca }\"},\r\n             \"b.pem\": {\"mode\": \"0400\", \"template\": \"${ secret.private_key }\"}}}"
        );
        // A line separator would end a line for a YAML 1.1 reader: the config stays one
        // (double-quoted) line.
        let separator = serde_json::json!({"vaultSecretRef": "kv/a", "secretFileName": "f",
            "volumeMountPath": "/s", "template": "a\u{2028}\n${ secret.k }\n"});
        assert_eq!(block_config(&separator, 4, "\n"), None);
        // The block reads back as the config.
        let yaml = format!("k: {}\n", block_config(&lines, 2, "\n").unwrap());
        let tree = Tree::parse(&yaml).unwrap();
        let value = tree
            .str(tree.get(tree.root.unwrap(), "k").unwrap())
            .unwrap();
        assert_eq!(serde_json::from_str::<Value>(value).unwrap(), lines);
    }

    #[test]
    fn entry_lines_cover_block_scalars() {
        let text = "m:\n  a: 1\n  t: |\n    line\n\n    more\n  # about b\n  b: 2 # c\n";
        let tree = Tree::parse(text).unwrap();
        let m = tree.get(tree.root.unwrap(), "m").unwrap();
        let entries = tree.entries(m).to_vec();
        let (k, v) = entries[1];
        assert_eq!(
            &text[entry_lines(text, &tree, k, v).unwrap()],
            "  t: |\n    line\n\n    more\n"
        );
        let (k, v) = entries[2];
        assert_eq!(
            &text[entry_lines(text, &tree, k, v).unwrap()],
            "  b: 2 # c\n"
        );
    }
}
