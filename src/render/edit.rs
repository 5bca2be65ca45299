//! Applying planned edits to a document's text as insertions, keeping every other byte.
//!
//! Inserted block YAML is indented to fit its neighbours; inserted flow and JSON text
//! follows the collection's own layout (one line, or one item per line at the items'
//! indentation). Strings are quoted whenever a YAML 1.1 reader (Go's yaml.v2) could read
//! them as anything but the same string.

use crate::render::tree::{Kind, NodeId, Tree};
use saphyr_parser::ScalarStyle;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Insert items before the first item of a sequence.
    Prepend { seq: NodeId, items: Vec<Value> },
    /// Insert items after the last item of a sequence.
    Append { seq: NodeId, items: Vec<Value> },
    /// Add a key after the last entry of a mapping.
    AddKey {
        map: NodeId,
        key: String,
        value: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insertion {
    pub offset: usize,
    pub text: String,
    /// Column of the collection edited: at one offset, deeper collections come first,
    /// since their content ends before their parents' appended entries.
    pub depth: usize,
}

/// Layout facts of the document that inserted text copies.
#[derive(Debug, Clone)]
pub struct Layout {
    pub newline: &'static str,
    /// Columns between a mapping key and the dashes of its block sequence value (0 or 2).
    pub seq_offset: usize,
    /// Indentation unit of pretty JSON documents.
    pub json_unit: String,
}

impl Layout {
    pub fn detect(text: &str, tree: &Tree, sample_seq_key: Option<(NodeId, NodeId)>) -> Layout {
        let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let seq_offset = sample_seq_key
            .or_else(|| first_block_seq_value(tree))
            .and_then(|(key, seq)| {
                let first = *tree.items(seq).first()?;
                let dash = dash_offset(text, tree.node(first).start)?;
                let dash_col = dash - line_start(text, dash);
                Some(dash_col.saturating_sub(tree.node(key).col).min(8))
            })
            .unwrap_or(2);
        let json_unit = tree
            .root
            .and_then(|root| {
                let (k, _) = *tree.entries(root).first()?;
                let ls = line_start(text, tree.node(k).start);
                let indent = &text[ls..tree.node(k).start];
                (!indent.is_empty() && indent.chars().all(|c| c == ' ' || c == '\t'))
                    .then(|| indent.to_string())
            })
            .unwrap_or_else(|| "  ".to_string());
        Layout {
            newline,
            seq_offset,
            json_unit,
        }
    }
}

/// The first mapping entry whose value is a non-empty block sequence, as (key, value).
fn first_block_seq_value(tree: &Tree) -> Option<(NodeId, NodeId)> {
    tree.nodes.iter().find_map(|n| {
        match &n.kind {
        Kind::Map { entries, .. } => entries.iter().copied().find(|(_, v)| {
            matches!(&tree.node(*v).kind, Kind::Seq { flow: false, items } if !items.is_empty())
        }),
        _ => None,
    }
    })
}

pub fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0)
}

/// The offset of the `-` that introduces a block sequence item starting at `item_start`.
fn dash_offset(text: &str, item_start: usize) -> Option<usize> {
    let before = &text[..item_start];
    // `- name: x`, or `-` alone on its line with the item below it.
    let trimmed = before.trim_end_matches([' ', '\t', '\r', '\n']);
    if trimmed.ends_with('-') {
        return Some(trimmed.len() - 1);
    }
    // `- # comment` with the item below it, perhaps after more blank or comment lines.
    let mut end = line_start(text, item_start);
    while end > 0 {
        let start = line_start(text, end - 1);
        let line = &text[start..end];
        let content = line.trim_start_matches([' ', '\t']);
        let indent = line.len() - content.len();
        if let Some(after) = content.strip_prefix('-') {
            let rest = after.trim_start_matches([' ', '\t']);
            let dash_alone =
                rest.trim_end().is_empty() || (rest.len() < after.len() && rest.starts_with('#'));
            return dash_alone.then_some(start + indent);
        }
        if !(content.trim_end().is_empty() || content.starts_with('#')) {
            return None;
        }
        end = start;
    }
    None
}

/// Turns edits into insertions (sorted by offset, stable for equal offsets).
pub fn insertions(
    text: &str,
    tree: &Tree,
    edits: &[Edit],
    layout: &Layout,
) -> Result<Vec<Insertion>, String> {
    let mut out = Vec::new();
    for edit in edits {
        out.push(insertion(text, tree, edit, layout)?);
    }
    out.sort_by_key(|i| (i.offset, std::cmp::Reverse(i.depth)));
    Ok(out)
}

fn insertion(text: &str, tree: &Tree, edit: &Edit, layout: &Layout) -> Result<Insertion, String> {
    let target = match edit {
        Edit::Prepend { seq, .. } | Edit::Append { seq, .. } => *seq,
        Edit::AddKey { map, .. } => *map,
    };
    if tree.is_alias(target) {
        return Err("it is an alias (*name) of a node used elsewhere; expand the alias so the pod's own copy can be changed".into());
    }
    let node = tree.node(target);
    let flow = matches!(
        node.kind,
        Kind::Map { flow: true, .. } | Kind::Seq { flow: true, .. }
    );
    let mut ins = if flow {
        flow_insertion(text, tree, edit, layout)?
    } else {
        block_insertion(text, tree, edit, layout)?
    };
    ins.depth = node.col;
    Ok(ins)
}

fn block_insertion(
    text: &str,
    tree: &Tree,
    edit: &Edit,
    layout: &Layout,
) -> Result<Insertion, String> {
    let nl = layout.newline;
    match edit {
        Edit::Prepend { seq, items } | Edit::Append { seq, items } => {
            let first = *tree.items(*seq).first().ok_or("the sequence is empty")?;
            let dash = dash_offset(text, tree.node(first).start)
                .ok_or("the sequence's first item has an unusual layout")?;
            let ls = line_start(text, dash);
            if !text[ls..dash].chars().all(|c| c == ' ') {
                return Err("the sequence's first item does not start its own line".into());
            }
            let col = dash - ls;
            let mut body = String::new();
            for item in items {
                block_item(&mut body, item, col, layout);
            }
            if matches!(edit, Edit::Prepend { .. }) {
                Ok(Insertion {
                    depth: 0,
                    offset: ls,
                    text: body,
                })
            } else {
                let (offset, lead) = block_end(text, tree, *seq, nl);
                Ok(Insertion {
                    depth: 0,
                    offset,
                    text: format!("{lead}{body}"),
                })
            }
        }
        Edit::AddKey { map, key, value } => {
            let (first_key, _) = *tree.entries(*map).first().ok_or("the mapping is empty")?;
            let col = tree.node(first_key).col;
            let mut body = String::new();
            block_entry(&mut body, key, value, col, layout);
            let (offset, lead) = block_end(text, tree, *map, nl);
            Ok(Insertion {
                depth: 0,
                offset,
                text: format!("{lead}{body}"),
            })
        }
    }
}

/// Where to append to a block collection: at the start of the line after its last
/// content (comments after it stay with what follows). Returns the offset and a newline
/// to put first when the document ends without one.
pub fn block_end(text: &str, tree: &Tree, node: NodeId, nl: &str) -> (usize, String) {
    let leaf = last_leaf(tree, node);
    let n = tree.node(leaf);
    let end = n.end.min(text.len());
    let block_scalar = matches!(
        n.kind,
        Kind::Scalar {
            style: ScalarStyle::Literal | ScalarStyle::Folded,
            ..
        }
    );
    let pos = if block_scalar && end < text.len() {
        // A block scalar's span runs to the next token; its content ends before that line.
        line_start(text, end)
    } else if end > 0 && text.as_bytes().get(end - 1) == Some(&b'\n') {
        end
    } else {
        match text[end..].find('\n') {
            Some(i) => end + i + 1,
            None => text.len(),
        }
    };
    if pos == text.len() && !text.is_empty() && !text.ends_with('\n') {
        return (pos, nl.to_string());
    }
    (pos, String::new())
}

/// The last node written inside a block collection (itself for anything else).
fn last_leaf(tree: &Tree, node: NodeId) -> NodeId {
    let mut at = node;
    loop {
        let next = match &tree.node(at).kind {
            Kind::Map {
                flow: false,
                entries,
            } => entries.last().map(|(_, v)| *v),
            Kind::Seq { flow: false, items } => items.last().copied(),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return at,
        }
    }
}

fn flow_insertion(
    text: &str,
    tree: &Tree,
    edit: &Edit,
    layout: &Layout,
) -> Result<Insertion, String> {
    let nl = layout.newline;
    let (target, first_child) = match edit {
        Edit::Prepend { seq, .. } | Edit::Append { seq, .. } => {
            (*seq, tree.items(*seq).first().copied())
        }
        Edit::AddKey { map, .. } => (*map, tree.entries(*map).first().map(|(k, _)| *k)),
    };
    let node = tree.node(target);
    let open_char = if matches!(node.kind, Kind::Map { .. }) {
        '{'
    } else {
        '['
    };
    let open = node.start
        + text[node.start..]
            .find(open_char)
            .ok_or("cannot find the collection's opening bracket")?;
    let close = node.end.checked_sub(1).ok_or("collection has no end")?;
    // One item per line when the first child is on a later line than the bracket.
    let item_indent = first_child.and_then(|c| {
        let start = tree.node(c).start;
        let ls = line_start(text, start);
        (ls > open).then(|| {
            let lead = &text[ls..start];
            lead.chars()
                .take_while(|c| *c == ' ' || *c == '\t')
                .collect::<String>()
        })
    });
    let render = |v: &Value| match &item_indent {
        Some(indent) => pretty_json(v, indent, &layout.json_unit, nl),
        None => compact_json(v),
    };
    let rendered: Vec<String> = match edit {
        Edit::Prepend { items, .. } | Edit::Append { items, .. } => {
            items.iter().map(render).collect()
        }
        Edit::AddKey { key, value, .. } => vec![format!("{}: {}", json_string(key), render(value))],
    };
    let sep = match &item_indent {
        Some(indent) => format!(",{nl}{indent}"),
        None => ", ".to_string(),
    };
    let joined = rendered.join(&sep);
    if first_child.is_none() {
        return Ok(Insertion {
            depth: 0,
            offset: open + 1,
            text: joined,
        });
    }
    match edit {
        Edit::Prepend { .. } => Ok(Insertion {
            depth: 0,
            offset: open + 1,
            text: match &item_indent {
                Some(indent) => format!("{nl}{indent}{joined},"),
                None => format!("{joined}, "),
            },
        }),
        _ => {
            let before = text[..close].trim_end();
            let last = before.len();
            let lead = if before.ends_with(',') {
                match &item_indent {
                    Some(indent) => format!("{nl}{indent}"),
                    None => " ".into(),
                }
            } else {
                sep.clone()
            };
            Ok(Insertion {
                depth: 0,
                offset: last,
                text: format!("{lead}{joined}"),
            })
        }
    }
}

fn block_entry(out: &mut String, key: &str, value: &Value, col: usize, layout: &Layout) {
    push_spaces(out, col);
    push_yaml_scalar(out, key);
    out.push(':');
    block_value(out, value, col, layout);
}

fn push_spaces(out: &mut String, n: usize) {
    const SPACES: &str = "                                ";
    let mut left = n;
    while left > 0 {
        let take = left.min(SPACES.len());
        out.push_str(&SPACES[..take]);
        left -= take;
    }
}

/// Writes what follows `key:` (or `- `): a scalar on the same line, or a nested block.
fn block_value(out: &mut String, value: &Value, col: usize, layout: &Layout) {
    let nl = layout.newline;
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push_str(nl);
            for (k, v) in map {
                block_entry(out, k, v, col + 2, layout);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str(nl);
            for item in items {
                block_item(out, item, col + layout.seq_offset, layout);
            }
        }
        other => {
            out.push(' ');
            push_scalar_text(out, other);
            out.push_str(nl);
        }
    }
}

fn block_item(out: &mut String, item: &Value, dash_col: usize, layout: &Layout) {
    push_spaces(out, dash_col);
    out.push_str("- ");
    match item {
        Value::Object(map) if !map.is_empty() => {
            for (i, (k, v)) in map.iter().enumerate() {
                let col = dash_col + 2;
                if i > 0 {
                    push_spaces(out, col);
                }
                push_yaml_scalar(out, k);
                out.push(':');
                block_value(out, v, col, layout);
            }
        }
        other => {
            push_scalar_text(out, other);
            out.push_str(layout.newline);
        }
    }
}

fn push_scalar_text(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => push_yaml_scalar(out, s),
        Value::Object(_) | Value::Array(_) => out.push_str(&compact_json(value)),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
        Value::Number(n) => {
            use std::fmt::Write;
            // Writing to a String cannot fail.
            let _ = write!(out, "{n}");
        }
    }
}

/// Appends `s` as a YAML scalar that YAML 1.1 and 1.2 readers both read as that string:
/// plain when unambiguous, single-quoted when printable, double-quoted otherwise.
fn push_yaml_scalar(out: &mut String, s: &str) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if is_printable(s) {
        out.push('\'');
        for part in s.split_inclusive('\'') {
            out.push_str(part);
            if part.ends_with('\'') {
                out.push('\'');
            }
        }
        out.push('\'');
    } else {
        out.push_str(&json_string(s));
    }
}

/// `s` as a YAML scalar that YAML 1.1 and 1.2 readers both read as that string.
pub fn yaml_scalar(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_yaml_scalar(&mut out, s);
    out
}

/// No control character and no BOM: fine between single quotes.
fn is_printable(s: &str) -> bool {
    if s.is_ascii() {
        !s.bytes().any(|b| b < b' ' || b == 0x7f)
    } else {
        s.chars().all(|c| !c.is_control() && c != '\u{feff}')
    }
}

fn is_plain_safe(s: &str) -> bool {
    const YAML11_SPECIAL: [&str; 22] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    ];
    let Some(&first) = s.as_bytes().first() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'/' || first == b'_')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/'))
        && !YAML11_SPECIAL.contains(&s)
        && !matches!(s, "null" | "Null" | "NULL")
}

pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// One-line JSON with a space after `:` and `,`, readable as YAML flow by every reader.
pub fn compact_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", json_string(k), compact_json(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(compact_json).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::String(s) => json_string(s),
        other => other.to_string(),
    }
}

/// Multi-line JSON whose first line continues the current line and whose nested lines
/// are indented from `indent` by `unit`.
pub fn pretty_json(value: &Value, indent: &str, unit: &str, nl: &str) -> String {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let inner = format!("{indent}{unit}");
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{inner}{}: {}",
                        json_string(k),
                        pretty_json(v, &inner, unit, nl)
                    )
                })
                .collect();
            format!("{{{nl}{}{nl}{indent}}}", parts.join(&format!(",{nl}")))
        }
        Value::Array(items) if !items.is_empty() => {
            let inner = format!("{indent}{unit}");
            let parts: Vec<String> = items
                .iter()
                .map(|v| format!("{inner}{}", pretty_json(v, &inner, unit, nl)))
                .collect();
            format!("[{nl}{}{nl}{indent}]", parts.join(&format!(",{nl}")))
        }
        other => compact_json(other),
    }
}

/// Writes `text` with the insertions spliced in.
pub fn splice(text: &str, insertions: &[Insertion], out: &mut Vec<u8>) {
    let mut at = 0;
    for ins in insertions {
        out.extend_from_slice(&text.as_bytes()[at..ins.offset]);
        out.extend_from_slice(ins.text.as_bytes());
        at = ins.offset;
    }
    out.extend_from_slice(&text.as_bytes()[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_is_yaml11_safe() {
        assert_eq!(yaml_scalar("secretstore-agent"), "secretstore-agent");
        assert_eq!(
            yaml_scalar("/secretstore/bin/secretstore"),
            "/secretstore/bin/secretstore"
        );
        assert_eq!(yaml_scalar("on"), "'on'");
        assert_eq!(yaml_scalar("0444"), "'0444'");
        assert_eq!(yaml_scalar("--"), "'--'");
        assert_eq!(yaml_scalar("10m"), "'10m'");
        assert_eq!(yaml_scalar("a: b"), "'a: b'");
        assert_eq!(yaml_scalar("it's"), "'it''s'");
        assert_eq!(yaml_scalar("a\nb"), "\"a\\nb\"");
        assert_eq!(yaml_scalar(""), "''");
    }

    fn apply(text: &str, edits: impl Fn(&Tree) -> Vec<Edit>) -> String {
        let tree = Tree::parse(text).unwrap();
        let layout = Layout::detect(text, &tree, None);
        let ins = insertions(text, &tree, &edits(&tree), &layout).unwrap();
        let mut out = Vec::new();
        splice(text, &ins, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn block_append_and_prepend() {
        let text = "a:\n  l:\n  - x\n  - y\n  # about b\nb: 1\n";
        let out = apply(text, |t| {
            let l = t.path(t.root.unwrap(), &["a", "l"]).unwrap();
            vec![
                Edit::Prepend {
                    seq: l,
                    items: vec![Value::from("p")],
                },
                Edit::Append {
                    seq: l,
                    items: vec![serde_json::json!({"n": "q", "m": 1})],
                },
            ]
        });
        // `n` is false to a YAML 1.1 reader, so it is quoted even as a key.
        assert_eq!(
            out,
            "a:\n  l:\n  - p\n  - x\n  - y\n  - 'n': q\n    m: 1\n  # about b\nb: 1\n"
        );
    }

    #[test]
    fn prepend_before_an_item_below_a_commented_dash() {
        let text = "l:\n- # the first\n  # more\n  n: x\n";
        let out = apply(text, |t| {
            vec![Edit::Prepend {
                seq: t.get(t.root.unwrap(), "l").unwrap(),
                items: vec![Value::from("p")],
            }]
        });
        assert_eq!(out, "l:\n- p\n- # the first\n  # more\n  n: x\n");
        assert_eq!(dash_offset("l:\n-\r\n  # more\n  n: x\n", 17), Some(3));
        // A `-#` is not a dash and a comment.
        assert_eq!(dash_offset("l:\n-#x\n  n: x\n", 12), None);
    }

    #[test]
    fn add_key_at_end_without_newline() {
        let out = apply("a:\n  b: 1", |t| {
            let a = t.get(t.root.unwrap(), "a").unwrap();
            vec![Edit::AddKey {
                map: a,
                key: "c".into(),
                value: serde_json::json!(["x"]),
            }]
        });
        assert_eq!(out, "a:\n  b: 1\n  c:\n    - x\n");
    }

    #[test]
    fn flow_and_json() {
        let out = apply("a: [x, y]\nm: {k: v}\n", |t| {
            let root = t.root.unwrap();
            vec![
                Edit::Prepend {
                    seq: t.get(root, "a").unwrap(),
                    items: vec![Value::from("p")],
                },
                Edit::AddKey {
                    map: t.get(root, "m").unwrap(),
                    key: "n".into(),
                    value: Value::from("w"),
                },
            ]
        });
        assert_eq!(out, "a: [\"p\", x, y]\nm: {k: v, \"n\": \"w\"}\n");
        let json = "{\n  \"a\": [\n    1\n  ]\n}";
        let out = apply(json, |t| {
            vec![Edit::Append {
                seq: t.get(t.root.unwrap(), "a").unwrap(),
                items: vec![serde_json::json!({"b": [2]})],
            }]
        });
        assert_eq!(
            out,
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": [\n        2\n      ]\n    }\n  ]\n}"
        );
    }
}
