//! Splitting an input stream into documents, without parsing them.
//!
//! A YAML stream is cut at `---` and `...` marker lines (column 0, followed by a blank or
//! the end of the line): YAML forbids those lines inside any scalar, so a line scan finds
//! every document boundary exactly. Each document keeps all its bytes (leading comments,
//! the marker line, a trailing `...`), so writing the documents back in order reproduces
//! the input byte for byte. A JSON input has no marker lines and is one document.

use memchr::memchr;

/// One document's place in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document {
    /// Byte range in the input.
    pub start: usize,
    pub end: usize,
    /// 1-based line number of `start` in the input.
    pub first_line: usize,
}

/// Splits `input` (without a BOM) into document ranges covering all of it.
pub fn split(input: &[u8]) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut doc_start = 0usize;
    let mut doc_line = 1usize;
    let mut line_start = 0usize;
    let mut line_no = 1usize;
    // Whether the current range already holds a `---` line or content, so that a `---`
    // line starts a new range rather than being this range's own start marker.
    let mut has_body = false;
    while line_start < input.len() {
        let line_end = memchr(b'\n', &input[line_start..])
            .map(|i| line_start + i + 1)
            .unwrap_or(input.len());
        let line = &input[line_start..line_end];
        if is_marker(line, b"---") {
            if has_body {
                docs.push(Document {
                    start: doc_start,
                    end: line_start,
                    first_line: doc_line,
                });
                doc_start = line_start;
                doc_line = line_no;
            }
            has_body = true;
        } else if is_marker(line, b"...") {
            docs.push(Document {
                start: doc_start,
                end: line_end,
                first_line: doc_line,
            });
            doc_start = line_end;
            doc_line = line_no + 1;
            has_body = false;
        } else if !has_body && !is_blank_or_comment(line) {
            has_body = true;
        }
        line_start = line_end;
        line_no += 1;
    }
    if doc_start < input.len() || docs.is_empty() {
        docs.push(Document {
            start: doc_start,
            end: input.len(),
            first_line: doc_line,
        });
    }
    docs
}

fn is_marker(line: &[u8], marker: &[u8]) -> bool {
    line.starts_with(marker)
        && matches!(
            line.get(marker.len()),
            None | Some(b' ' | b'\t' | b'\n' | b'\r')
        )
}

fn is_blank_or_comment(line: &[u8]) -> bool {
    match line
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        None => true,
        Some(b) => *b == b'#',
    }
}

/// Whether a document holds anything but blanks, comments, markers and directives.
pub fn has_content(doc: &[u8]) -> bool {
    doc.split(|b| *b == b'\n').any(|line| {
        !is_blank_or_comment(line)
            && !is_marker(line, b"---")
            && !is_marker(line, b"...")
            && !line.starts_with(b"%")
    }) || doc
        .split(|b| *b == b'\n')
        .any(|line| is_marker(line, b"---") && !is_blank_or_comment(&line[3..]))
}

/// Strips a UTF-8 byte order mark, returning how many bytes it had.
pub fn bom_len(input: &[u8]) -> usize {
    if input.starts_with(&[0xEF, 0xBB, 0xBF]) {
        3
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(input: &str) -> Vec<&str> {
        split(input.as_bytes())
            .iter()
            .map(|d| &input[d.start..d.end])
            .collect()
    }

    #[test]
    fn splits_helm_stream() {
        let input = "---\n# Source: a.yaml\nkind: A\n---\n# Source: b.yaml\nkind: B\n";
        assert_eq!(
            pieces(input),
            vec![
                "---\n# Source: a.yaml\nkind: A\n",
                "---\n# Source: b.yaml\nkind: B\n"
            ]
        );
    }

    #[test]
    fn leading_comment_belongs_to_first_document() {
        let input = "# head\n---\nkind: A\n...\n---\nkind: B";
        assert_eq!(
            pieces(input),
            vec!["# head\n---\nkind: A\n...\n", "---\nkind: B"]
        );
    }

    #[test]
    fn block_scalar_dashes_are_not_markers() {
        let input = "kind: A\ndata:\n  x: |\n    ---\n    y\n---\nkind: B\n";
        assert_eq!(pieces(input).len(), 2);
    }

    #[test]
    fn covers_every_byte() {
        let input = "\n\n---\r\nkind: A\r\n---   \r\n--- \n";
        let docs = split(input.as_bytes());
        assert_eq!(docs.first().unwrap().start, 0);
        assert_eq!(docs.last().unwrap().end, input.len());
        for w in docs.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
    }

    #[test]
    fn content_detection() {
        assert!(!has_content(b"---\n# only a comment\n"));
        assert!(has_content(b"--- {a: 1}\n"));
        assert!(has_content(b"a: 1\n"));
    }
}
