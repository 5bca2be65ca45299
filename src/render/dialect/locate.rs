//! Where a spot inside a file secret's JSON is in the YAML source: a template's error is
//! reported at the column of the offending expression inside the annotation's value.
//!
//! Two steps, each of which may give up (the caller then reports at the value's start):
//! [`json_string_offset`] maps an offset in a JSON string's decoded text to the byte of
//! the JSON text where it is written (through escapes such as `\n`, `\"`, `\u00e9`), and
//! [`source_offset`] maps an offset in a YAML scalar's value to the byte of the document
//! where it is written, for the styles whose text is the source's own: plain, block
//! (`|`, `>`), and quoted up to the first escape.

use saphyr_parser::ScalarStyle;

/// The byte offset in `json` of the opening quote of the string at `path` (object keys
/// from the top), the last one when a key is written twice (as serde_json reads it).
pub fn json_string_at(json: &str, path: &[&str]) -> Option<usize> {
    let bytes = json.as_bytes();
    let mut at = skip_blank(bytes, 0);
    for key in path {
        if bytes.get(at) != Some(&b'{') {
            return None;
        }
        at = object_value(bytes, at, key)?;
    }
    (bytes.get(at) == Some(&b'"')).then_some(at)
}

/// The offset of the value of the last `key` in the object that starts at `open`.
fn object_value(bytes: &[u8], open: usize, key: &str) -> Option<usize> {
    let mut at = skip_blank(bytes, open + 1);
    let mut found = None;
    if bytes.get(at) == Some(&b'}') {
        return None;
    }
    loop {
        let key_start = at;
        let key_end = skip_string(bytes, at)?;
        let name: String = serde_json::from_slice(&bytes[key_start..key_end]).ok()?;
        at = skip_blank(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at = skip_blank(bytes, at + 1);
        if name == key {
            found = Some(at);
        }
        at = skip_blank(bytes, skip_value(bytes, at, 0)?);
        match bytes.get(at) {
            Some(b',') => at = skip_blank(bytes, at + 1),
            Some(b'}') => return found,
            _ => return None,
        }
    }
}

fn skip_blank(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Past the string that starts at `at` (its opening quote).
fn skip_string(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        match bytes.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// Nesting deeper than this is not worth locating in (the value start is reported).
const MAX_DEPTH: usize = 64;

/// Past the JSON value that starts at `at`.
fn skip_value(bytes: &[u8], at: usize, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    match bytes.get(at)? {
        b'"' => skip_string(bytes, at),
        open @ (b'{' | b'[') => {
            let close = if *open == b'{' { b'}' } else { b']' };
            let mut i = skip_blank(bytes, at + 1);
            if bytes.get(i) == Some(&close) {
                return Some(i + 1);
            }
            loop {
                if *open == b'{' {
                    i = skip_blank(bytes, skip_string(bytes, i)?);
                    if bytes.get(i) != Some(&b':') {
                        return None;
                    }
                    i = skip_blank(bytes, i + 1);
                }
                i = skip_blank(bytes, skip_value(bytes, i, depth + 1)?);
                match bytes.get(i)? {
                    b',' => i = skip_blank(bytes, i + 1),
                    c if *c == close => return Some(i + 1),
                    _ => return None,
                }
            }
        }
        _ => {
            let mut i = at;
            while bytes
                .get(i)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                i += 1;
            }
            (i > at).then_some(i)
        }
    }
}

/// The byte offset in `json` where byte `offset` of the decoded string whose opening
/// quote is at `quote` is written.
pub fn json_string_offset(json: &str, quote: usize, offset: usize) -> Option<usize> {
    let bytes = json.as_bytes();
    let mut decoded = 0;
    let mut i = quote + 1;
    while decoded < offset {
        let (written, len) = match bytes.get(i)? {
            b'"' => return None,
            b'\\' => match bytes.get(i + 1)? {
                b'u' => {
                    let unit = u32::from_str_radix(json.get(i + 2..i + 6)?, 16).ok()?;
                    if (0xD800..0xDC00).contains(&unit) {
                        // A surrogate pair: one character of four bytes, in twelve.
                        (12, 4)
                    } else {
                        (6, char::from_u32(unit).map_or(3, char::len_utf8))
                    }
                }
                _ => (2, 1),
            },
            _ => {
                let c = json.get(i..)?.chars().next()?;
                (c.len_utf8(), c.len_utf8())
            }
        };
        i += written;
        decoded += len;
    }
    (decoded == offset).then_some(i)
}

/// The byte offset in the document `doc` where byte `offset` of a scalar's `value` is
/// written; the scalar starts at byte `start` (its quote or block indicator) in `style`.
pub fn source_offset(
    doc: &str,
    start: usize,
    style: ScalarStyle,
    value: &str,
    offset: usize,
) -> Option<usize> {
    if offset > value.len() || !value.is_char_boundary(offset) {
        return None;
    }
    let (mut at, block_indent) = match style {
        ScalarStyle::Plain => (start, None),
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => (start + 1, None),
        ScalarStyle::Literal | ScalarStyle::Folded => {
            // The node starts at its indicator (`|`, `>`) or at its first content line,
            // depending on the reader.
            let content = if doc.get(start..)?.starts_with(['|', '>']) {
                start + doc.get(start..)?.find('\n')? + 1
            } else {
                doc.get(..start)?.rfind('\n').map_or(0, |n| n + 1)
            };
            let indent = block_indent(doc, content)?;
            (content, Some(indent))
        }
    };
    let literal = style == ScalarStyle::Literal;
    let mut v = 0;
    let mut first = true;
    loop {
        // The content of one source line.
        let line_end = doc.get(at..)?.find('\n').map_or(doc.len(), |n| at + n);
        let mut content_start = at;
        if let Some(indent) = block_indent {
            content_start = (at + indent).min(line_end);
        } else if !first {
            content_start += doc[at..line_end].len() - doc[at..line_end].trim_start().len();
        }
        first = false;
        let line = doc.get(content_start..line_end)?;
        let rest = &value[v..];
        let matched = common_prefix(line, rest);
        if offset >= v && offset < v + matched {
            return Some(content_start + offset - v);
        }
        v += matched;
        if v >= value.len() {
            return (offset == value.len()).then_some(content_start + matched);
        }
        // What is left of the line must be what the value drops: trailing blanks of a
        // flow line (a quote or an escape ends the mapping).
        let unmatched = &line[matched..];
        if block_indent.is_none() && !unmatched.trim_end_matches([' ', '\t', '\r']).is_empty()
            || block_indent.is_some() && !unmatched.trim_end_matches('\r').is_empty()
        {
            return None;
        }
        if line_end >= doc.len() {
            return None;
        }
        // The line break: a space (folded), or line feeds, one per blank line, plus the
        // break itself in a literal block.
        let breaks = value[v..].bytes().take_while(|b| *b == b'\n').count();
        let blank_lines = if literal {
            if breaks == 0 {
                return None;
            }
            breaks - 1
        } else if breaks == 0 {
            if value.as_bytes()[v] != b' ' {
                return None;
            }
            v += 1;
            0
        } else {
            breaks
        };
        v += breaks;
        if offset < v {
            return None;
        }
        at = line_end + 1;
        for _ in 0..blank_lines {
            let next = doc.get(at..)?.find('\n')?;
            if !doc[at..at + next].trim().is_empty() {
                return None;
            }
            at += next + 1;
        }
    }
}

/// The indentation of a block scalar's content: that of its first line that is not blank.
fn block_indent(doc: &str, from: usize) -> Option<usize> {
    doc.get(from..)?
        .split('\n')
        .find(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches(' ').len())
}

/// Length in bytes of the longest common prefix of two strings, on character boundaries.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((i, _), _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_found_by_path() {
        let json = r#"{"a": 1, "files": {"x": {"mode": "0400", "template": "t\"${ db.x }"}, "y": [1, {"z": 2}]}, "template": "top"}"#;
        let at = json_string_at(json, &["template"]).unwrap();
        assert_eq!(&json[at..at + 5], "\"top\"");
        let at = json_string_at(json, &["files", "x", "template"]).unwrap();
        assert_eq!(&json[at..at + 3], "\"t\\");
        assert_eq!(json_string_at(json, &["files", "y", "template"]), None);
        assert_eq!(json_string_at(json, &["nope"]), None);
        let twice = r#"{"template": "a", "template": "b"}"#;
        let at = json_string_at(twice, &["template"]).unwrap();
        assert_eq!(&twice[at..at + 3], "\"b\"");
    }

    #[test]
    fn json_escapes_are_stepped_over() {
        let json = r#""a\n\"\u00e9\ud83d\ude00${x}""#;
        // Decoded: a \n " é 😀 $ ...
        let decoded: String = serde_json::from_str(json).unwrap();
        let spot = decoded.find('$').unwrap();
        let at = json_string_offset(json, 0, spot).unwrap();
        assert_eq!(&json[at..at + 2], "${");
        assert_eq!(json_string_offset(json, 0, 1), Some(2));
        assert_eq!(json_string_offset(json, 0, 99), None);
    }

    fn spot(doc: &str, style: ScalarStyle, value: &str, needle: &str) -> Option<String> {
        let start = doc.find(['|', '>', '\'', '"']).unwrap_or(0);
        let start = if style == ScalarStyle::Plain {
            doc.find('{').unwrap()
        } else {
            start
        };
        let offset = value.find(needle).unwrap();
        source_offset(doc, start, style, value, offset)
            .map(|at| doc[at..].chars().take(needle.len()).collect())
    }

    #[test]
    fn scalar_styles_map_to_the_source() {
        let doc = "k: |\n  {\"template\":\n    \"a ${ x }\"}\nnext: 1\n";
        let value = "{\"template\":\n  \"a ${ x }\"}\n";
        assert_eq!(
            spot(doc, ScalarStyle::Literal, value, "${ x }").as_deref(),
            Some("${ x }")
        );
        let doc = "k: >\n  {\"template\":\n\n  \"a ${ x }\"}\n";
        let value = "{\"template\":\n\"a ${ x }\"}\n";
        assert_eq!(
            spot(doc, ScalarStyle::Folded, value, "${ x }").as_deref(),
            Some("${ x }")
        );
        let doc = "k: '{\"template\":\n     \"a ${ x }\"}'\n";
        let value = "{\"template\": \"a ${ x }\"}";
        assert_eq!(
            spot(doc, ScalarStyle::SingleQuoted, value, "${ x }").as_deref(),
            Some("${ x }")
        );
        let doc = "k: {\"template\": \"a ${ x }\"}\n";
        assert_eq!(
            spot(
                doc,
                ScalarStyle::Plain,
                "{\"template\": \"a ${ x }\"}",
                "${ x }"
            )
            .as_deref(),
            Some("${ x }")
        );
    }

    #[test]
    fn odd_block_lines_give_up_without_panicking() {
        // A line indented less than the block, with a multi-byte character where the
        // indentation would end.
        let doc = "k: |\n    {\"a\":\n   \u{e9}x ${ x }\n";
        let value = "{\"a\":\n\u{e9}x ${ x }\n";
        assert_eq!(spot(doc, ScalarStyle::Literal, value, "${ x }"), None);
    }

    #[test]
    fn escapes_before_the_spot_give_up() {
        let doc = "k: \"{\\\"template\\\": \\\"${ x }\\\"}\"\n";
        let value = "{\"template\": \"${ x }\"}";
        assert_eq!(spot(doc, ScalarStyle::DoubleQuoted, value, "${ x }"), None);
        let doc = "k: 'it''s ${ x }'\n";
        assert_eq!(
            spot(doc, ScalarStyle::SingleQuoted, "it's ${ x }", "${ x }"),
            None
        );
        assert_eq!(
            spot(doc, ScalarStyle::SingleQuoted, "it's ${ x }", "it").as_deref(),
            Some("it")
        );
    }
}
