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
    // Whether the current range already holds a `---` line, so that a `---` line starts a
    // new range rather than being this range's own start marker. Without one, the range's
    // lines are looked at only when a `---` follows: they are few (comments, or content
    // after a `...`).
    let mut has_marker = false;
    for candidate in marker_candidates(input) {
        let line_start = candidate.offset;
        let line_end = memchr(b'\n', &input[line_start..])
            .map(|i| line_start + i + 1)
            .unwrap_or(input.len());
        let line = &input[line_start..line_end];
        if is_marker(line, b"---") {
            if has_marker || has_body_line(&input[doc_start..line_start]) {
                docs.push(Document {
                    start: doc_start,
                    end: line_start,
                    first_line: doc_line,
                });
                doc_line = candidate.line;
                doc_start = line_start;
            }
            has_marker = true;
        } else if is_marker(line, b"...") {
            docs.push(Document {
                start: doc_start,
                end: line_end,
                first_line: doc_line,
            });
            doc_line = candidate.line + 1;
            doc_start = line_end;
            has_marker = false;
        }
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

/// The documents of `docs` (in order, from [`split`] of `input`) that contain `needle`.
pub fn containing(input: &[u8], docs: &[Document], needle: &[u8]) -> Vec<Document> {
    let finder = memchr::memmem::Finder::new(needle);
    // A match may start in one chunk and end in the next: each chunk searches on past its
    // end by the needle's length, and keeps the matches that start inside it.
    let hits: Vec<usize> = in_chunks(input, |start, end| {
        let reach = (end + needle.len().saturating_sub(1)).min(input.len());
        finder
            .find_iter(&input[start..reach])
            .map(|i| start + i)
            .filter(|at| *at < end)
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    let mut hits = hits.into_iter().peekable();
    let mut marked = Vec::new();
    for doc in docs {
        while hits.next_if(|at| *at < doc.start).is_some() {}
        if hits.peek().is_some_and(|at| *at < doc.end) {
            marked.push(*doc);
        }
    }
    marked
}

/// Below this size a stream is scanned on one thread.
pub const PARALLEL_SCAN_MIN_BYTES: usize = 1 << 20;
const MAX_SCAN_THREADS: usize = 4;

/// Runs `scan(start, end)` over consecutive chunks covering `input`, on several threads
/// for a large input; the results in the chunks' order.
fn in_chunks<T, F>(input: &[u8], scan: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize, usize) -> T + Sync,
{
    let threads = crate::parallel::workers(MAX_SCAN_THREADS);
    if threads < 2 || input.len() < PARALLEL_SCAN_MIN_BYTES {
        return vec![scan(0, input.len())];
    }
    let size = input.len().div_ceil(threads);
    let bounds: Vec<(usize, usize)> = (0..threads)
        .map(|i| (i * size, ((i + 1) * size).min(input.len())))
        .collect();
    crate::parallel::map(bounds, threads, |(start, end)| scan(start, end))
}

/// A line that starts with `---` or `...`.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    offset: usize,
    /// 1-based line number.
    line: usize,
}

/// The lines that begin with `---` or `...`, in order, with their line numbers. Each
/// chunk finds its own and counts its newlines; the counts then number the lines.
fn marker_candidates(input: &[u8]) -> Vec<Candidate> {
    let dashes = memchr::memmem::Finder::new(b"\n---");
    let dots = memchr::memmem::Finder::new(b"\n...");
    let chunks = in_chunks(input, |start, end| {
        // Newlines in [start, end) whose line starts with a marker; the search runs three
        // bytes past the chunk for the marker itself.
        let reach = (end + 3).min(input.len());
        let hay = &input[start..reach];
        let mut newlines: Vec<usize> = dashes
            .find_iter(hay)
            .chain(dots.find_iter(hay))
            .map(|i| start + i)
            .filter(|at| *at < end)
            .collect();
        newlines.sort_unstable();
        let mut found = Vec::with_capacity(newlines.len() + 1);
        if start == 0 && (input.starts_with(b"---") || input.starts_with(b"...")) {
            found.push(Candidate { offset: 0, line: 0 });
        }
        // `line` counts the chunk's newlines up to and including the candidate's own.
        let (mut counted_to, mut lines) = (start, 0);
        for newline in newlines {
            lines += memchr::memchr_iter(b'\n', &input[counted_to..newline]).count() + 1;
            counted_to = newline + 1;
            found.push(Candidate {
                offset: newline + 1,
                line: lines,
            });
        }
        lines += memchr::memchr_iter(b'\n', &input[counted_to..end]).count();
        (found, lines)
    });
    let mut lines_before = 0;
    let mut all = Vec::new();
    for (found, lines) in chunks {
        all.extend(found.into_iter().map(|c| Candidate {
            offset: c.offset,
            line: 1 + lines_before + c.line,
        }));
        lines_before += lines;
    }
    all
}

/// Whether any line of `lines` is content (not blank or a comment).
fn has_body_line(lines: &[u8]) -> bool {
    lines
        .split(|b| *b == b'\n')
        .any(|line| !is_blank_or_comment(line))
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
