//! A line-based reader for the block-style YAML that Helm, kustomize and people write for
//! Kubernetes, building the same [`Tree`] as the event parser with about a quarter of its
//! instructions.
//!
//! It reads only a subset: block mappings and sequences (indentless ones included),
//! single-line plain and quoted scalars, literal and folded block scalars, flow
//! collections that close on their own line, comments, and one `---`/`...` pair. Anything
//! else (multi-line flow, anchors, aliases, tags, multi-line scalars, tabs, CR, non-ASCII,
//! directives, explicit keys, and every syntax error) makes it give up, and [`Tree::parse`]
//! reads the document with the full parser instead, which also produces the error
//! messages. So the subset only has to be right where it answers: every node, position and
//! value it gives equals the event parser's, which `tests/tree_block.rs` and the
//! `tree_block` fuzz target check.

use super::{Kind, Node, NodeId, Tree, MAX_DEPTH, MAX_NODES};
use saphyr_parser::ScalarStyle;
use std::borrow::Cow;

/// The document is outside the subset (or not valid YAML): use the event parser.
pub(super) struct Unsupported;

type Read<T> = Result<T, Unsupported>;

/// Reads `text` if it is in the subset.
pub(super) fn parse(text: &str) -> Read<Tree<'_>> {
    // Printable ASCII and newlines only: byte offsets are character columns, and no tab,
    // CR or Unicode line break can change how lines are read.
    if !printable_ascii_lines(text.as_bytes()) {
        return Err(Unsupported);
    }
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        at: 0,
        eol: memchr::memchr(b'\n', text.as_bytes()).unwrap_or(text.len()),
        line: 1,
        nodes: Vec::with_capacity(text.len() / 12),
        depth: 0,
        open_entries: Vec::new(),
        open_items: Vec::new(),
    };
    let root = reader.document()?;
    Ok(Tree {
        nodes: reader.nodes,
        root: Some(root),
    })
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    /// Start of the current, not yet consumed, line.
    at: usize,
    /// End of that line: the offset of its `\n`, or the end of the text.
    eol: usize,
    /// 1-based number of that line.
    line: usize,
    nodes: Vec<Node<'a>>,
    /// Collections open around the current position.
    depth: usize,
    /// The entries and items read so far of the open collections, innermost last: each
    /// collection takes its own off the end when it closes, in one exact allocation.
    open_entries: Vec<(NodeId, NodeId)>,
    open_items: Vec<NodeId>,
}

/// What follows once blank and comment lines are skipped.
#[derive(Clone, Copy)]
enum Next {
    /// A content line whose first non-space character is at this column.
    Line { indent: usize },
    /// The end of the document: the start of a `...` line, or the end of the text.
    End { at: usize },
}

impl<'a> Reader<'a> {
    fn byte(&self, i: usize) -> u8 {
        self.bytes.get(i).copied().unwrap_or(b'\n')
    }

    /// End of the line holding `i`: the offset of its `\n`, or the end of the text.
    fn line_end(&self, i: usize) -> usize {
        if (self.at..=self.eol).contains(&i) {
            return self.eol;
        }
        memchr::memchr(b'\n', &self.bytes[i.min(self.bytes.len())..])
            .map_or(self.bytes.len(), |n| i + n)
    }

    /// How many spaces start at `i`; eight bytes at a time, since indentation is a good
    /// part of every Kubernetes document.
    fn spaces_from(&self, i: usize) -> usize {
        let mut j = i;
        while let Some(word) = self.bytes.get(j..j + 8) {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(word);
            let other = u64::from_le_bytes(eight) ^ u64::from_le_bytes([b' '; 8]);
            if other != 0 {
                return j + (other.trailing_zeros() / 8) as usize - i;
            }
            j += 8;
        }
        while self.byte(j) == b' ' {
            j += 1;
        }
        j - i
    }

    fn next_line(&mut self) {
        self.at = (self.eol + 1).min(self.bytes.len());
        self.line += 1;
        self.eol =
            memchr::memchr(b'\n', &self.bytes[self.at..]).map_or(self.bytes.len(), |n| self.at + n);
    }

    /// Skips blank and comment lines; tells what comes next without consuming it.
    fn peek(&mut self) -> Read<Next> {
        loop {
            if self.at >= self.bytes.len() {
                return Ok(Next::End {
                    at: self.bytes.len(),
                });
            }
            let indent = self.spaces_from(self.at);
            match self.byte(self.at + indent) {
                b'\n' | b'#' => self.next_line(),
                _ if indent == 0 && self.is_marker(b"...") => {
                    return Ok(Next::End { at: self.at });
                }
                _ if indent == 0 && self.is_marker(b"---") => return Err(Unsupported),
                _ => return Ok(Next::Line { indent }),
            }
        }
    }

    /// Whether the current line is the document marker `marker`.
    fn is_marker(&self, marker: &[u8]) -> bool {
        self.bytes[self.at..].starts_with(marker) && matches!(self.byte(self.at + 3), b' ' | b'\n')
    }

    /// Whether the rest of the line from `i` holds only blanks and a comment.
    fn only_comment_from(&self, i: usize) -> bool {
        let j = i + self.spaces_from(i);
        match self.byte(j) {
            b'\n' => true,
            b'#' => j > i || j == 0 || self.byte(j - 1) == b' ',
            _ => false,
        }
    }

    fn document(&mut self) -> Read<NodeId> {
        // Leading comments, then an optional `---` line with at most a comment after it.
        loop {
            if self.at >= self.bytes.len() {
                return Err(Unsupported);
            }
            let indent = self.spaces_from(self.at);
            match self.byte(self.at + indent) {
                b'\n' | b'#' => self.next_line(),
                b'%' => return Err(Unsupported),
                _ => break,
            }
        }
        if self.is_marker(b"---") {
            if !self.only_comment_from(self.at + 3) {
                return Err(Unsupported);
            }
            self.next_line();
        }
        let Next::Line { indent } = self.peek()? else {
            return Err(Unsupported);
        };
        let root = self.block_node(indent)?;
        let Next::End { at } = self.peek()? else {
            return Err(Unsupported);
        };
        if at < self.bytes.len() {
            // After `...`: only blank and comment lines.
            if !self.only_comment_from(at + 3) {
                return Err(Unsupported);
            }
            self.next_line();
            if !matches!(self.peek()?, Next::End { at } if at == self.bytes.len()) {
                return Err(Unsupported);
            }
        }
        Ok(root)
    }

    /// Whether a block sequence entry (`-` then a blank or the line end) starts at `i`.
    fn is_entry(&self, i: usize) -> bool {
        self.byte(i) == b'-' && matches!(self.byte(i + 1), b' ' | b'\n')
    }

    fn push(&mut self, kind: Kind<'a>, start: usize, end: usize, line: usize) -> Read<NodeId> {
        if self.nodes.len() >= MAX_NODES {
            return Err(Unsupported);
        }
        // Nearly every node starts on the current line.
        let line_start = if line == self.line {
            self.at
        } else {
            memchr::memrchr(b'\n', &self.bytes[..start]).map_or(0, |i| i + 1)
        };
        self.nodes.push(Node {
            kind,
            start,
            end,
            line,
            col: start - line_start,
        });
        Ok(self.nodes.len() - 1)
    }

    fn open(&mut self) -> Read<()> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return Err(Unsupported);
        }
        Ok(())
    }

    fn scalar(
        &mut self,
        value: Cow<'a, str>,
        style: ScalarStyle,
        start: usize,
        end: usize,
    ) -> Read<NodeId> {
        self.push(Kind::Scalar { value, style }, start, end, self.line)
    }

    /// The position where a collection that ends before `next` ends.
    fn end_at(&self, next: Next) -> usize {
        match next {
            Next::Line { indent } => self.at + indent,
            Next::End { at } => at,
        }
    }

    /// A block mapping at column `indent` whose first key, `first`, is on the current
    /// line (after `- ` for a mapping inside a sequence entry).
    fn mapping(&mut self, indent: usize, first: Key<'a>) -> Read<NodeId> {
        self.open()?;
        let map = self.push(
            Kind::Map {
                flow: false,
                entries: Vec::new(),
            },
            first.start,
            first.start,
            self.line,
        )?;
        let mark = self.open_entries.len();
        let mut next_key = first;
        let end = loop {
            let Key {
                value,
                style,
                start,
                end,
                colon,
            } = next_key;
            let key = self.scalar(value, style, start, end)?;
            let value = self.value_after_colon(indent, colon)?;
            self.open_entries.push((key, value));
            let next = self.peek()?;
            match next {
                Next::Line { indent: i } if i == indent => {
                    let key_at = self.at + i;
                    if self.is_entry(key_at) {
                        return Err(Unsupported);
                    }
                    next_key = self.key(key_at)?.ok_or(Unsupported)?;
                }
                Next::Line { indent: i } if i > indent => return Err(Unsupported),
                _ => break self.end_at(next),
            }
        };
        self.depth -= 1;
        let entries = self.open_entries.drain(mark..).collect();
        let node = &mut self.nodes[map];
        node.kind = Kind::Map {
            flow: false,
            entries,
        };
        node.end = end;
        Ok(map)
    }

    /// The key at `i` if the text there is `key:` followed by a blank or the line end.
    fn key(&self, i: usize) -> Read<Option<Key<'a>>> {
        let (value, style, end) = match self.byte(i) {
            b'"' | b'\'' => {
                let (value, close) = self.quoted(i)?;
                // The event parser's quoted key runs over the blanks before the colon.
                let end = close + self.spaces_from(close);
                if self.byte(end) != b':' || !matches!(self.byte(end + 1), b' ' | b'\n') {
                    return Ok(None);
                }
                let style = if self.byte(i) == b'"' {
                    ScalarStyle::DoubleQuoted
                } else {
                    ScalarStyle::SingleQuoted
                };
                (value, style, end)
            }
            b if !plain_may_start(b, self.byte(i + 1)) => return Ok(None),
            _ => {
                let Some(colon) = self.plain_stop(i) else {
                    return Ok(None);
                };
                let mut end = colon;
                while self.bytes[end - 1] == b' ' {
                    end -= 1;
                }
                (Cow::Borrowed(&self.text[i..end]), ScalarStyle::Plain, end)
            }
        };
        // YAML limits implicit keys to 1024 characters.
        if end - i > 1024 {
            return Err(Unsupported);
        }
        Ok(Some(Key {
            value,
            style,
            start: i,
            end,
            colon: end + self.spaces_from(end),
        }))
    }

    /// The value of a mapping entry at column `indent` whose colon is at `colon`.
    fn value_after_colon(&mut self, indent: usize, colon: usize) -> Read<NodeId> {
        let after = colon + 1;
        let v = after + self.spaces_from(after);
        if !self.only_comment_from(after) {
            return self.inline(v, indent);
        }
        // Nothing after the colon: the value is on the following lines, or null.
        let (line, col) = (self.line, colon);
        self.next_line();
        let next = self.peek()?;
        match next {
            Next::Line { indent: i } if i > indent => self.block_node(i),
            Next::Line { indent: i } if i == indent && self.is_entry(self.at + i) => {
                self.sequence(i, true)
            }
            _ => self.push(
                Kind::Scalar {
                    value: Cow::Borrowed(""),
                    style: ScalarStyle::Plain,
                },
                col,
                col,
                line,
            ),
        }
    }

    /// A node that starts its own line at column `indent`: a sequence or a mapping.
    fn block_node(&mut self, indent: usize) -> Read<NodeId> {
        let first = self.at + indent;
        if self.is_entry(first) {
            self.sequence(indent, false)
        } else {
            let key = self.key(first)?.ok_or(Unsupported)?;
            self.mapping(indent, key)
        }
    }

    /// A block sequence whose entries are at column `indent`, the first on the current
    /// line. An indentless sequence (the value of a mapping key at the same column)
    /// starts, for the event parser, at its first entry's content.
    fn sequence(&mut self, indent: usize, indentless: bool) -> Read<NodeId> {
        self.open()?;
        let dash = self.at + indent;
        let seq = self.push(
            Kind::Seq {
                flow: false,
                items: Vec::new(),
            },
            dash,
            dash,
            self.line,
        )?;
        let mark = self.open_items.len();
        let end = loop {
            let entry = self.at + indent;
            let item = self.entry(entry, indent)?;
            if indentless && self.open_items.len() == mark {
                let (start, line, col) = {
                    let n = &self.nodes[item];
                    (n.start, n.line, n.col)
                };
                if line != self.nodes[seq].line {
                    return Err(Unsupported);
                }
                let node = &mut self.nodes[seq];
                node.start = start;
                node.col = col;
            }
            self.open_items.push(item);
            let next = self.peek()?;
            match next {
                Next::Line { indent: i } if i == indent && self.is_entry(self.at + i) => {}
                Next::Line { indent: i } if i > indent => return Err(Unsupported),
                _ => break self.end_at(next),
            }
        };
        self.depth -= 1;
        let items = self.open_items.drain(mark..).collect();
        let node = &mut self.nodes[seq];
        node.kind = Kind::Seq { flow: false, items };
        node.end = end;
        Ok(seq)
    }

    /// The item of the sequence entry whose `-` is at `dash` (column `indent`).
    fn entry(&mut self, dash: usize, indent: usize) -> Read<NodeId> {
        let after = dash + 1;
        let v = after + self.spaces_from(after);
        if self.only_comment_from(after) {
            // Null, or content on the following lines.
            let (line, at) = (self.line, self.line_end(dash));
            self.next_line();
            let next = self.peek()?;
            return match next {
                Next::Line { indent: i } if i > indent => self.block_node(i),
                _ => self.push(
                    Kind::Scalar {
                        value: Cow::Borrowed(""),
                        style: ScalarStyle::Plain,
                    },
                    at,
                    at,
                    line,
                ),
            };
        }
        let col = v - self.at;
        if self.is_entry(v) {
            return self.sequence(col, false);
        }
        if let Some(key) = self.key(v)? {
            return self.mapping(col, key);
        }
        self.inline(v, indent)
    }

    /// A value that starts at `v` on the current line, in a collection at column
    /// `indent`; consumes the line (and a block scalar's lines).
    fn inline(&mut self, v: usize, indent: usize) -> Read<NodeId> {
        let node = match self.byte(v) {
            b'|' | b'>' => return self.block_scalar(v, indent),
            b'"' | b'\'' => {
                let (value, close) = self.quoted(v)?;
                if !self.only_comment_from(close) {
                    return Err(Unsupported);
                }
                // The event parser's quoted scalar runs over the blanks and comment after it.
                let end = self.line_end(close);
                let style = if self.byte(v) == b'"' {
                    ScalarStyle::DoubleQuoted
                } else {
                    ScalarStyle::SingleQuoted
                };
                self.scalar(value, style, v, end)?
            }
            b'{' | b'[' => {
                let (node, after) = self.flow(v)?;
                if !self.only_comment_from(after) {
                    return Err(Unsupported);
                }
                node
            }
            b if !plain_may_start(b, self.byte(v + 1)) => return Err(Unsupported),
            _ => {
                if self.plain_stop(v).is_some() {
                    return Err(Unsupported);
                }
                let mut end = self.comment_start(v);
                while self.bytes[end - 1] == b' ' {
                    end -= 1;
                }
                self.scalar(
                    Cow::Borrowed(&self.text[v..end]),
                    ScalarStyle::Plain,
                    v,
                    end,
                )?
            }
        };
        self.next_line();
        Ok(node)
    }

    /// A flow collection that opens at `open` and closes on the same line: the node and
    /// the offset past its closing bracket.
    fn flow(&mut self, open: usize) -> Read<(NodeId, usize)> {
        self.open()?;
        let is_map = self.bytes[open] == b'{';
        let close = if is_map { b'}' } else { b']' };
        let kind = if is_map {
            Kind::Map {
                flow: true,
                entries: Vec::new(),
            }
        } else {
            Kind::Seq {
                flow: true,
                items: Vec::new(),
            }
        };
        let node = self.push(kind, open, open, self.line)?;
        let (mut entries, mut items) = (Vec::new(), Vec::new());
        let mut j = open + 1;
        loop {
            j += self.spaces_from(j);
            if self.byte(j) == close {
                break;
            }
            let (item, after) = self.flow_item(j)?;
            j = after + self.spaces_from(after);
            if is_map {
                if self.byte(j) != b':' || self.byte(j + 1) != b' ' {
                    return Err(Unsupported);
                }
                j += 1;
                j += self.spaces_from(j);
                let (value, after) = self.flow_item(j)?;
                entries.push((item, value));
                j = after + self.spaces_from(after);
            } else {
                items.push(item);
            }
            match self.byte(j) {
                b',' => j += 1,
                b if b == close => break,
                _ => return Err(Unsupported),
            }
        }
        self.depth -= 1;
        let n = &mut self.nodes[node];
        n.kind = if is_map {
            Kind::Map {
                flow: true,
                entries,
            }
        } else {
            Kind::Seq { flow: true, items }
        };
        n.end = j + 1;
        Ok((node, j + 1))
    }

    /// A scalar or collection inside a flow collection, starting at `i`: the node and the
    /// offset where it ends.
    fn flow_item(&mut self, i: usize) -> Read<(NodeId, usize)> {
        match self.byte(i) {
            b'[' | b'{' => self.flow(i),
            quote @ (b'"' | b'\'') => {
                let (value, close) = self.quoted(i)?;
                // The event parser's quoted scalar runs over the blanks after it.
                let end = close + self.spaces_from(close);
                let style = if quote == b'"' {
                    ScalarStyle::DoubleQuoted
                } else {
                    ScalarStyle::SingleQuoted
                };
                Ok((self.scalar(value, style, i, end)?, end))
            }
            b if !plain_may_start(b, self.byte(i + 1))
                || (b == b'-' && matches!(self.byte(i + 1), b',' | b']' | b'}')) =>
            {
                Err(Unsupported)
            }
            _ => {
                let line_end = self.line_end(i);
                let mut j = i;
                while j < line_end {
                    match self.bytes[j] {
                        b',' | b'[' | b']' | b'{' | b'}' => break,
                        b':' if matches!(self.byte(j + 1), b' ' | b',' | b']' | b'}' | b'\n') => {
                            break
                        }
                        // After a blank the event parser may start a new token where
                        // YAML would go on with the scalar (`a -,b`): only plain word
                        // characters are read here.
                        b if self.bytes[j - 1] == b' '
                            && !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'_')) =>
                        {
                            return Err(Unsupported)
                        }
                        _ => j += 1,
                    }
                }
                if j >= line_end {
                    return Err(Unsupported);
                }
                let mut end = j;
                while self.bytes[end - 1] == b' ' {
                    end -= 1;
                }
                let value = Cow::Borrowed(&self.text[i..end]);
                Ok((self.scalar(value, ScalarStyle::Plain, i, end)?, end))
            }
        }
    }

    /// Where the block plain scalar at `i` is followed by `: ` (or `:` at the line end),
    /// if it is before any comment; such a scalar is a mapping key.
    fn plain_stop(&self, i: usize) -> Option<usize> {
        let line_end = self.line_end(i);
        let mut from = i;
        while let Some(k) = memchr::memchr2(b':', b'#', &self.bytes[from..line_end]) {
            let j = from + k;
            if self.bytes[j] == b':' {
                if matches!(self.byte(j + 1), b' ' | b'\n') {
                    return Some(j);
                }
            } else if j > i && self.bytes[j - 1] == b' ' {
                return None;
            }
            from = j + 1;
        }
        None
    }

    /// Where a comment starts on the line of `i` (after `i`), or the line end.
    fn comment_start(&self, i: usize) -> usize {
        let line_end = self.line_end(i);
        let mut from = i;
        while let Some(k) = memchr::memchr(b'#', &self.bytes[from..line_end]) {
            let j = from + k;
            if j > i && self.bytes[j - 1] == b' ' {
                return j;
            }
            from = j + 1;
        }
        line_end
    }

    /// A single-line quoted scalar starting at `q`: its value and the offset past its
    /// closing quote.
    fn quoted(&self, q: usize) -> Read<(Cow<'a, str>, usize)> {
        let text = self.text;
        let quote = self.bytes[q];
        let line_end = self.line_end(q);
        let special = |b: &u8| *b == quote || (quote == b'"' && *b == b'\\');
        let mut j = q + 1;
        let run = self.bytes[j..line_end]
            .iter()
            .position(special)
            .ok_or(Unsupported)?;
        // Without escapes the value is the text between the quotes.
        if self.bytes[j + run] == quote && self.byte(j + run + 1) != quote {
            return Ok((Cow::Borrowed(&text[j..j + run]), j + run + 1));
        }
        let mut value = String::new();
        loop {
            let run = self.bytes[j..line_end]
                .iter()
                .position(special)
                .ok_or(Unsupported)?;
            value.push_str(&text[j..j + run]);
            j += run;
            match (quote, self.bytes[j]) {
                (b'\'', _) if self.byte(j + 1) == b'\'' => {
                    value.push('\'');
                    j += 2;
                }
                (_, b'\\') => {
                    j = self.escape(j, line_end, &mut value)?;
                }
                _ => return Ok((Cow::Owned(value), j + 1)),
            }
        }
    }

    /// Decodes the double-quoted escape at `j` into `value`; the offset after it.
    fn escape(&self, j: usize, line_end: usize, value: &mut String) -> Read<usize> {
        let simple = match self.byte(j + 1) {
            b'0' => '\0',
            b'a' => '\x07',
            b'b' => '\x08',
            b't' => '\t',
            b'n' => '\n',
            b'v' => '\x0b',
            b'f' => '\x0c',
            b'r' => '\r',
            b'e' => '\x1b',
            b' ' => ' ',
            b'"' => '"',
            b'/' => '/',
            b'\\' => '\\',
            b'N' => '\u{85}',
            b'_' => '\u{a0}',
            b'L' => '\u{2028}',
            b'P' => '\u{2029}',
            b'x' | b'u' | b'U' => {
                let digits = match self.byte(j + 1) {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let hex_end = j + 2 + digits;
                if hex_end > line_end {
                    return Err(Unsupported);
                }
                let hex = &self.text[j + 2..hex_end];
                let c = u32::from_str_radix(hex, 16)
                    .ok()
                    .filter(|_| hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(char::from_u32)
                    .ok_or(Unsupported)?;
                value.push(c);
                return Ok(hex_end);
            }
            _ => return Err(Unsupported),
        };
        value.push(simple);
        Ok(j + 2)
    }

    /// A literal or folded block scalar whose indicator is at `h`, inside a collection at
    /// column `indent`.
    fn block_scalar(&mut self, h: usize, indent: usize) -> Read<NodeId> {
        let folded = self.bytes[h] == b'>';
        let (chomp, after) = match self.byte(h + 1) {
            b'-' => (Chomp::Strip, h + 2),
            b'+' => (Chomp::Keep, h + 2),
            _ => (Chomp::Clip, h + 1),
        };
        if !matches!(self.byte(after), b' ' | b'\n') || !self.only_comment_from(after) {
            return Err(Unsupported);
        }
        self.next_line();
        // The first non-blank line sets the content's indentation.
        let mut probe = self.at;
        let (mut leading_spaces, mut leading_lines) = (0, 0);
        let content_indent = loop {
            if probe >= self.bytes.len() {
                return Err(Unsupported);
            }
            let spaces = self.spaces_from(probe);
            if self.byte(probe + spaces) != b'\n' {
                break spaces;
            }
            leading_spaces = leading_spaces.max(spaces);
            leading_lines += 1;
            probe += spaces + 1;
        };
        if content_indent <= indent || leading_spaces > content_indent {
            return Err(Unsupported);
        }
        let start = probe + content_indent;
        let start_line = self.line + leading_lines;
        let mut value = String::new();
        let mut blank_run = 0usize;
        let mut seen_content = false;
        let end = loop {
            if self.at >= self.bytes.len() {
                break self.bytes.len();
            }
            let spaces = self.spaces_from(self.at);
            let first = self.at + spaces;
            let line_end = self.line_end(self.at);
            if first == line_end {
                if spaces > content_indent || line_end == self.bytes.len() {
                    return Err(Unsupported);
                }
                blank_run += 1;
                self.next_line();
                continue;
            }
            if spaces < content_indent {
                break first;
            }
            if line_end == self.bytes.len() {
                // Content on the last line without a line break.
                return Err(Unsupported);
            }
            if folded && spaces > content_indent {
                return Err(Unsupported);
            }
            if seen_content {
                if folded && blank_run == 0 {
                    value.push(' ');
                } else {
                    let breaks = if folded { blank_run } else { blank_run + 1 };
                    value.extend(std::iter::repeat_n('\n', breaks));
                }
            } else {
                value.extend(std::iter::repeat_n('\n', blank_run));
            }
            value.push_str(&self.text[self.at + content_indent..line_end]);
            seen_content = true;
            blank_run = 0;
            self.next_line();
        };
        match chomp {
            Chomp::Strip => {}
            Chomp::Clip => value.push('\n'),
            Chomp::Keep => value.extend(std::iter::repeat_n('\n', blank_run + 1)),
        }
        let style = if folded {
            ScalarStyle::Folded
        } else {
            ScalarStyle::Literal
        };
        self.push(
            Kind::Scalar {
                value: Cow::Owned(value),
                style,
            },
            start,
            end,
            start_line,
        )
    }
}

/// Whether `bytes` holds only printable ASCII and `\n`; branch-free per block, so that
/// it compiles to vector code.
fn printable_ascii_lines(bytes: &[u8]) -> bool {
    let bad = |b: u8| (b.wrapping_sub(b' ') > b'~' - b' ') & (b != b'\n');
    let mut blocks = bytes.chunks_exact(64);
    for block in blocks.by_ref() {
        let mut any = false;
        for b in block {
            any |= bad(*b);
        }
        if any {
            return false;
        }
    }
    !blocks.remainder().iter().any(|b| bad(*b))
}

/// A mapping key read but not yet added as a node.
struct Key<'a> {
    value: Cow<'a, str>,
    style: ScalarStyle,
    start: usize,
    end: usize,
    /// Offset of the `:` after it.
    colon: usize,
}

enum Chomp {
    Strip,
    Clip,
    Keep,
}

/// Whether a plain scalar may start with `b` followed by `next`.
fn plain_may_start(b: u8, next: u8) -> bool {
    match b {
        b'-' => !matches!(next, b' ' | b'\n'),
        b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\''
        | b'"' | b'%' | b'@' | b'`' | b'?' | b':' | b' ' | b'\n' => false,
        _ => true,
    }
}
