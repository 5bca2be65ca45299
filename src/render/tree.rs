//! A positioned tree of one YAML (or JSON) document, built from the parser's spanned events.
//!
//! Only documents that may need a change are parsed into this tree. It keeps, for each
//! node, where it starts in the document's bytes and, for collections, whether it is flow
//! style and where its end event was, so that edits can be placed without re-serialising
//! anything. Aliases are kept as references to their anchor, never expanded, so hostile
//! alias graphs cost one node each.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::borrow::Cow;

mod block;

/// Deepest nesting accepted in a parsed document.
pub const MAX_DEPTH: usize = 200;
/// Most nodes accepted in one parsed document.
pub const MAX_NODES: usize = 2_000_000;

pub type NodeId = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind<'t> {
    Scalar {
        /// Borrowed from the document where the value is written as is.
        value: Cow<'t, str>,
        style: ScalarStyle,
    },
    Map {
        flow: bool,
        entries: Vec<(NodeId, NodeId)>,
    },
    Seq {
        flow: bool,
        items: Vec<NodeId>,
    },
    Alias {
        target: Option<NodeId>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<'t> {
    pub kind: Kind<'t>,
    /// Byte offset where the node starts (for collections with an anchor or tag, where the
    /// properties start).
    pub start: usize,
    /// Byte offset of the end event: just past `]`/`}` for flow collections; for block
    /// collections, where the parser saw the next token (possibly lines later).
    pub end: usize,
    /// 1-based line and 0-based character column of `start` within the document.
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Tree<'t> {
    pub nodes: Vec<Node<'t>>,
    pub root: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeError {
    pub kind: TreeErrorKind,
    pub message: String,
    /// 1-based line, 1-based column within the document.
    pub line: usize,
    pub column: usize,
}

/// Why a document could not be parsed: its syntax, or one of the bounds on hostile input
/// (reported with different codes, the same in every command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeErrorKind {
    Syntax,
    Limit,
}

/// Converts the parser's character indices into byte offsets of the document text.
struct ByteIndex<'a> {
    text: &'a str,
    ascii: bool,
    /// Byte offset of every [`CHECKPOINT_STRIDE`]-th char, for non-ASCII text.
    checkpoints: Vec<usize>,
}

/// One offset per char would take 8 bytes per char: 240 MB for a 30 MB document.
const CHECKPOINT_STRIDE: usize = 64;

impl<'a> ByteIndex<'a> {
    fn new(text: &'a str) -> Self {
        let ascii = text.is_ascii();
        let checkpoints = if ascii {
            Vec::new()
        } else {
            text.char_indices()
                .step_by(CHECKPOINT_STRIDE)
                .map(|(b, _)| b)
                .collect()
        };
        ByteIndex {
            text,
            ascii,
            checkpoints,
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.ascii {
            return char_index.min(self.text.len());
        }
        let Some(&base) = self.checkpoints.get(char_index / CHECKPOINT_STRIDE) else {
            return self.text.len();
        };
        self.text[base..]
            .char_indices()
            .nth(char_index % CHECKPOINT_STRIDE)
            .map_or(self.text.len(), |(b, _)| base + b)
    }
}

/// The offset of the bracket `close` that ends a flow collection, from where the parser's
/// end event starts: at the bracket, or (for `{a: 1,}`) at a trailing comma, with blanks,
/// line breaks and comments before the bracket.
fn flow_close(text: &str, from: usize, close: char) -> Option<usize> {
    let mut rest = text.get(from..)?.char_indices();
    while let Some((i, c)) = rest.next() {
        match c {
            c if c == close => return Some(from + i),
            ',' | ' ' | '\t' | '\r' | '\n' => {}
            '#' => {
                rest.by_ref().find(|(_, c)| *c == '\n');
            }
            _ => return None,
        }
    }
    None
}

enum Open {
    Map(NodeId, Vec<(NodeId, NodeId)>, Option<NodeId>),
    Seq(NodeId, Vec<NodeId>),
}

impl<'t> Tree<'t> {
    /// Parses one document. `text` must hold at most one YAML document.
    ///
    /// Block-style documents, which is nearly all that Helm and kustomize write, are read
    /// by the fast line reader in [`block`]; the rest by the full event parser.
    pub fn parse(text: &'t str) -> Result<Tree<'t>, TreeError> {
        match Self::parse_block(text) {
            Some(tree) => Ok(tree),
            None => Self::parse_events(text),
        }
    }

    /// The fast line reader alone: `None` for a document outside its subset.
    pub fn parse_block(text: &'t str) -> Option<Tree<'t>> {
        block::parse(text).ok()
    }

    /// Parses one document with the full event parser only: what [`Tree::parse`] falls
    /// back to, public so that tests and fuzzing can hold the fast reader to it.
    pub fn parse_events(text: &'t str) -> Result<Tree<'t>, TreeError> {
        let index = ByteIndex::new(text);
        let mut parser = Parser::new_from_str(text);
        let mut nodes: Vec<Node<'t>> = Vec::new();
        let mut anchors: Vec<Option<NodeId>> = Vec::new();
        let mut stack: Vec<Open> = Vec::new();
        let mut root = None;
        let mut documents = 0usize;

        let located = |span: &Span, kind: TreeErrorKind, message: String| TreeError {
            kind,
            message,
            line: span.start.line(),
            column: span.start.col() + 1,
        };

        while let Some(event) = parser.next_event() {
            let (event, span) = event.map_err(|e| {
                // The scanner's own bound on flow nesting, reached before MAX_DEPTH by
                // `{a: {a: ...`: a limit like ours, not a syntax error.
                let (kind, message) = match e.info() {
                    "recursion limit exceeded" => (
                        TreeErrorKind::Limit,
                        "nesting deeper than the parser allows".into(),
                    ),
                    info => (TreeErrorKind::Syntax, info.to_string()),
                };
                TreeError {
                    kind,
                    message,
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                }
            })?;
            let start = index.byte(span.start.index());
            let end = index.byte(span.end.index());
            let line = span.start.line();
            let col = span.start.col();
            let new_node = |kind: Kind<'t>| Node {
                kind,
                start,
                end,
                line,
                col,
            };
            let (node, anchor, opens) = match event {
                Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(located(
                            &span,
                            TreeErrorKind::Syntax,
                            "more than one YAML document where one was expected".into(),
                        ));
                    }
                    continue;
                }
                Event::Scalar(value, style, anchor, _tag) => (
                    new_node(Kind::Scalar {
                        // An owned value is copied to exactly its length: the scanner
                        // reserves ~130 bytes for every plain scalar, so keeping its string,
                        // a document of a million `1,` would hold 130 MB of spare capacity.
                        value: match value {
                            Cow::Borrowed(s) => Cow::Borrowed(s),
                            Cow::Owned(s) => Cow::Owned(s.as_str().to_owned()),
                        },
                        style,
                    }),
                    anchor,
                    false,
                ),
                Event::Alias(id) => (
                    new_node(Kind::Alias {
                        target: anchors.get(id).copied().flatten(),
                    }),
                    0,
                    false,
                ),
                Event::MappingStart(anchor, _tag) => {
                    // A flow start's span runs over the blanks after `{` too; a block
                    // start's span is empty.
                    let flow = text.get(start..end).is_some_and(|s| s.contains('{'));
                    (
                        new_node(Kind::Map {
                            flow,
                            entries: Vec::new(),
                        }),
                        anchor,
                        true,
                    )
                }
                Event::SequenceStart(anchor, _tag) => {
                    let flow = text.get(start..end).is_some_and(|s| s.contains('['));
                    (
                        new_node(Kind::Seq {
                            flow,
                            items: Vec::new(),
                        }),
                        anchor,
                        true,
                    )
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    let (id, kind) = match stack.pop() {
                        Some(Open::Map(id, entries, _)) => {
                            let flow = matches!(nodes[id].kind, Kind::Map { flow: true, .. });
                            (id, Kind::Map { flow, entries })
                        }
                        Some(Open::Seq(id, items)) => {
                            let flow = matches!(nodes[id].kind, Kind::Seq { flow: true, .. });
                            (id, Kind::Seq { flow, items })
                        }
                        None => {
                            return Err(located(
                                &span,
                                TreeErrorKind::Syntax,
                                "unbalanced collection end".into(),
                            ))
                        }
                    };
                    // A flow end's span runs over the blanks after `]`/`}` too; `end` is
                    // just past the bracket.
                    let close = match kind {
                        Kind::Map { flow: true, .. } => Some('}'),
                        Kind::Seq { flow: true, .. } => Some(']'),
                        _ => None,
                    };
                    nodes[id].end = close
                        .and_then(|c| flow_close(text, start, c))
                        .map_or(end, |i| i + 1);
                    nodes[id].kind = kind;
                    Self::attach(&mut stack, &mut root, id);
                    continue;
                }
            };
            if nodes.len() >= MAX_NODES {
                return Err(located(
                    &span,
                    TreeErrorKind::Limit,
                    format!("document has more than {MAX_NODES} nodes"),
                ));
            }
            let id = nodes.len();
            nodes.push(node);
            if anchor > 0 {
                if anchors.len() <= anchor {
                    anchors.resize(anchor + 1, None);
                }
                anchors[anchor] = Some(id);
            }
            if opens {
                if stack.len() >= MAX_DEPTH {
                    return Err(located(
                        &span,
                        TreeErrorKind::Limit,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                stack.push(match nodes[id].kind {
                    Kind::Map { .. } => Open::Map(id, Vec::new(), None),
                    _ => Open::Seq(id, Vec::new()),
                });
            } else {
                Self::attach(&mut stack, &mut root, id);
            }
        }
        Ok(Tree { nodes, root })
    }

    fn attach(stack: &mut [Open], root: &mut Option<NodeId>, id: NodeId) {
        match stack.last_mut() {
            Some(Open::Map(_, entries, pending)) => match pending.take() {
                Some(key) => entries.push((key, id)),
                None => *pending = Some(id),
            },
            Some(Open::Seq(_, items)) => items.push(id),
            None => *root = Some(id),
        }
    }

    pub fn node(&self, id: NodeId) -> &Node<'t> {
        &self.nodes[id]
    }

    /// Follows an alias to its anchored node.
    pub fn resolve(&self, id: NodeId) -> NodeId {
        match self.nodes[id].kind {
            Kind::Alias { target: Some(t) } => t,
            _ => id,
        }
    }

    pub fn is_alias(&self, id: NodeId) -> bool {
        matches!(self.nodes[id].kind, Kind::Alias { .. })
    }

    /// The string value of a scalar (after resolving an alias).
    pub fn str(&self, id: NodeId) -> Option<&str> {
        match &self.nodes[self.resolve(id)].kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Whether a scalar is YAML null (`~`, `null`, empty plain).
    pub fn is_null(&self, id: NodeId) -> bool {
        match &self.nodes[self.resolve(id)].kind {
            Kind::Scalar {
                value,
                style: ScalarStyle::Plain,
            } => matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL"),
            _ => false,
        }
    }

    pub fn entries(&self, id: NodeId) -> &[(NodeId, NodeId)] {
        match &self.nodes[self.resolve(id)].kind {
            Kind::Map { entries, .. } => entries,
            _ => &[],
        }
    }

    pub fn items(&self, id: NodeId) -> &[NodeId] {
        match &self.nodes[self.resolve(id)].kind {
            Kind::Seq { items, .. } => items,
            _ => &[],
        }
    }

    pub fn is_map(&self, id: NodeId) -> bool {
        matches!(self.nodes[self.resolve(id)].kind, Kind::Map { .. })
    }

    pub fn is_seq(&self, id: NodeId) -> bool {
        matches!(self.nodes[self.resolve(id)].kind, Kind::Seq { .. })
    }

    /// The value of `key` in a mapping, as written (not resolved), if present.
    pub fn get(&self, map: NodeId, key: &str) -> Option<NodeId> {
        self.entries(map)
            .iter()
            .find(|(k, _)| self.str(*k) == Some(key))
            .map(|(_, v)| *v)
    }

    /// The key node of `key` in a mapping.
    pub fn key_node(&self, map: NodeId, key: &str) -> Option<NodeId> {
        self.entries(map)
            .iter()
            .find(|(k, _)| self.str(*k) == Some(key))
            .map(|(k, _)| *k)
    }

    /// Follows a path of mapping keys from `from`.
    pub fn path(&self, from: NodeId, keys: &[&str]) -> Option<NodeId> {
        keys.iter().try_fold(from, |at, key| self.get(at, key))
    }

    pub fn str_at(&self, from: NodeId, keys: &[&str]) -> Option<&str> {
        self.path(from, keys).and_then(|n| self.str(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_positions_and_styles() {
        let text = "a:\n  b: \"x\"\n  l:\n  - 1\nn: [1, 2]\nm: &x {p: q}\nq: *x\n";
        let tree = Tree::parse(text).unwrap();
        let root = tree.root.unwrap();
        assert_eq!(tree.str_at(root, &["a", "b"]), Some("x"));
        let l = tree.path(root, &["a", "l"]).unwrap();
        assert!(matches!(tree.node(l).kind, Kind::Seq { flow: false, .. }));
        let n = tree.get(root, "n").unwrap();
        assert!(matches!(tree.node(n).kind, Kind::Seq { flow: true, .. }));
        assert_eq!(&text[tree.node(n).start..tree.node(n).end], "[1, 2]");
        let q = tree.get(root, "q").unwrap();
        assert_eq!(tree.str_at(q, &["p"]), Some("q"));
    }

    #[test]
    fn flow_collections_with_blanks_after_the_bracket() {
        let text = "a: [ x ]\nm: {\n  k: v }\nj: {\"s\":\n {   \"k\": 1}}\nb:\n- &x\n  k: v\n";
        let tree = Tree::parse(text).unwrap();
        let root = tree.root.unwrap();
        let flow = |id| {
            matches!(
                tree.node(id).kind,
                Kind::Map { flow: true, .. } | Kind::Seq { flow: true, .. }
            )
        };
        assert!(flow(tree.get(root, "a").unwrap()));
        assert!(flow(tree.get(root, "m").unwrap()));
        assert!(flow(tree.path(root, &["j", "s"]).unwrap()));
        assert!(!flow(tree.get(root, "b").unwrap()));
        assert!(!flow(tree.items(tree.get(root, "b").unwrap())[0]));
    }

    #[test]
    fn flow_collections_end_just_past_the_bracket() {
        let text = "a: {k: [1, 2] , j: {} \n  }  \nb: 1\n";
        let tree = Tree::parse(text).unwrap();
        let a = tree.get(tree.root.unwrap(), "a").unwrap();
        assert_eq!(
            &text[tree.node(a).start..tree.node(a).end],
            "{k: [1, 2] , j: {} \n  }"
        );
        let k = tree.get(a, "k").unwrap();
        assert_eq!(&text[tree.node(k).start..tree.node(k).end], "[1, 2]");
        let j = tree.get(a, "j").unwrap();
        assert_eq!(&text[tree.node(j).start..tree.node(j).end], "{}");
    }

    #[test]
    fn non_ascii_offsets_are_bytes() {
        let text = "é: \"ü\"\nk: v\n";
        let tree = Tree::parse(text).unwrap();
        let k = tree.key_node(tree.root.unwrap(), "k").unwrap();
        assert_eq!(&text[tree.node(k).start..tree.node(k).start + 1], "k");
    }

    #[test]
    fn non_ascii_offsets_past_checkpoints() {
        let text = format!("k: \"{}\"\nz: v\n", "é".repeat(3 * CHECKPOINT_STRIDE + 5));
        let tree = Tree::parse(&text).unwrap();
        let z = tree.key_node(tree.root.unwrap(), "z").unwrap();
        assert_eq!(&text[tree.node(z).start..], "z: v\n");
    }

    #[test]
    fn depth_is_bounded() {
        let text = "[".repeat(MAX_DEPTH + 5);
        let err = Tree::parse(&text).unwrap_err();
        assert!(err.message.contains("nesting"), "{}", err.message);
        assert_eq!(err.kind, TreeErrorKind::Limit);
        let text = "{a: ".repeat(MAX_DEPTH + 5);
        let err = Tree::parse(&text).unwrap_err();
        assert!(err.message.contains("nesting"), "{}", err.message);
        assert_eq!(err.kind, TreeErrorKind::Limit);
    }
}
