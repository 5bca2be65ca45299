//! The fast line reader (`Tree::parse_block`) against the full event parser
//! (`Tree::parse_events`): wherever the fast reader answers, its tree (every node, value,
//! style and position) must equal the event parser's, and the event parser must accept
//! the document. Documents come from the corpus, the testdata, the benchmark's generated
//! stream, hand-written edge cases, and random mutations of all of those.

#[path = "../benches/support/big_stream.rs"]
mod big_stream;
mod support;

use secretstore::render::stream;
use secretstore::render::tree::Tree;
use support::gen::Gen;

/// The documents of a stream, as the render pipeline cuts them.
fn documents(bytes: &[u8]) -> Vec<String> {
    let body = &bytes[stream::bom_len(bytes)..];
    stream::split(body)
        .iter()
        .filter_map(|d| String::from_utf8(body[d.start..d.end].to_vec()).ok())
        .collect()
}

/// A stream from the benchmark's generator: the documents whose parse speed the
/// throughput target depends on.
fn generated_stream(docs: usize) -> Vec<u8> {
    big_stream::generate(docs, big_stream::DEFAULT_SEED)
}

/// Checks one document; true when the fast reader answered.
fn agrees(text: &str) -> bool {
    let Some(fast) = Tree::parse_block(text) else {
        return false;
    };
    match Tree::parse_events(text) {
        Ok(full) => {
            if fast != full {
                let first = (0..fast.nodes.len().max(full.nodes.len()))
                    .find(|i| fast.nodes.get(*i) != full.nodes.get(*i));
                panic!(
                    "the fast reader and the event parser differ on:\n{text}\n\
                     first differing node {first:?}:\nfast: {:?}\nfull: {:?}\nroots {:?} {:?}",
                    first.and_then(|i| fast.nodes.get(i)),
                    first.and_then(|i| full.nodes.get(i)),
                    fast.root,
                    full.root
                );
            }
        }
        Err(e) => panic!("the fast reader accepted what the event parser rejects ({e:?}):\n{text}"),
    }
    true
}

fn all_documents() -> Vec<String> {
    let mut docs = Vec::new();
    // testdata/ holds the vendored corpus (testdata/corpus) too.
    for root in [
        support::repo_root().join("testdata"),
        support::repo_root().join("examples"),
    ] {
        for file in support::manifest_files(&root) {
            docs.extend(documents(&std::fs::read(&file).expect("readable")));
        }
    }
    docs
}

#[test]
fn corpus_and_testdata_documents_read_the_same() {
    let docs = all_documents();
    let fast = docs.iter().filter(|d| agrees(d)).count();
    eprintln!("fast reader answered {fast} of {} documents", docs.len());
    assert!(docs.len() > 1000, "{} documents", docs.len());
}

#[test]
fn generated_stream_reads_the_same_and_nearly_all_on_the_fast_path() {
    let docs = documents(&generated_stream(600));
    let marked: Vec<&String> = docs.iter().filter(|d| d.contains("secretstore")).collect();
    let fast = marked.iter().filter(|d| agrees(d)).count();
    // The throughput target rests on these being read by the fast reader.
    assert!(
        fast * 100 >= marked.len() * 98,
        "the fast reader answered only {fast} of {} opted-in documents",
        marked.len()
    );
    for doc in &docs {
        agrees(doc);
    }
}

const EDGE_CASES: &[&str] = &[
    "a: 1\n",
    "a: 1",
    "---\na: 1\n",
    "--- # c\na: 1\n...\n# after\n",
    "# lead\n\n---\n# c\na:\n  b: x # hi\n  c:\n  - 1\n  - k: v\n    j: \"q\"\n  n:\n  m: {}\n  # t\nz: 1\n",
    "c:\n- 1\n- x: 2\n  y: 3\n# cm\nd: x\n",
    "a: |\n  x\n# c\n  \nb: |+\n  k\n\n\n",
    "a:\n  b: |-\n    x\n\n  # c\n  c: 1",
    "- a\n- - b\n  - c\n-\n- d: |\n    z\n...\n",
    "a:   # c\nb: 1\n",
    "- # c\n- x\n",
    "a:\n  - # c\n  - x\n",
    "a:\n- \n- x\n",
    "a:\n-\n- x\n",
    "\"k y\": 'v'\nk2: \"a\\\"b\\u00e9\\x41\\t\"\n'it''s': 'a''b'\n",
    "a: |\n  x\nb: 1",
    "a: |\n  x",
    "a: |\n  x\n",
    "a:\n  b:\n    c: 1\n",
    "a: >\n  one\n  two\n\n  three\n\n\nb: >-\n  x\n  y\nc: >+\n  k\n\n",
    "a: |\n\n  x\n\n  y\n",
    "a: |\n    \n  x\n",
    "a: |\n  x\n   \n  y\n",
    "a: |2\n   x\n",
    "a: >\n  x\n    more\n  y\n",
    "a: |\n  # not a comment\n  x\n",
    "a: |  # comment\n  x\n",
    "a: |-\n  x\n...\n",
    "a:\n  - name: x\n    value: y\n  - name: z\n    valueFrom:\n      k: v\nb: 2\n",
    "- name: x\n  env:\n  - name: a\n    value: b\n- name: y\n",
    "-   name: x\n    k: v\n",
    "a: b: c\n",
    "a: b:\n",
    "a:b\n",
    "a : b\n",
    "a: x  \nb: y   # c\n",
    "a: x#y\nb: 'q'#c\n",
    "a: [1, 2]\n",
    "a: [ \"RWO\" ]\n",
    "a: [a, b c,  \"d\" , 'e',]  # c\nb: 1\n",
    "a: {x: 1, \"y\": z , w: [1]}\n",
    "- [a]\n- {k: v}\n",
    "a: [a:b, -1, x]\n",
    "a: [a: b]\n",
    "a: [a, [b, {c: d}], {}]\n",
    "a: [a,, b]\n",
    "a: [,]\n",
    "a: {a}\n",
    "a: {a: }\n",
    "a: {a:b}\n",
    "a: [a #c]\n",
    "a: [sh -,c]\n",
    "a: {b: {c: d},}\nz: [x, [y],]\n",
    "a: {b: 1, }\n",
    "a: {b: 1,\n  }\n",
    "a: {b: 1, # }\n  }\n",
    "a: sh -\nb: x -y\nc: x ?\nd: x :y\ne: x ]\nf: x }\ng: x ,y\nh: x [y\ni: x - \n",
    "- sh -\n- x ? y\n- a ]\n",
    "a: [sh -c, x ?]\n",
    "a: [a\n  , b]\n",
    "a: [\"x\\ty\", 'it''s']\n",
    "a: { }\nb: [  ]\n",
    "a: {}x\n",
    "a: &x 1\nb: *x\n",
    "a: !!str 1\n",
    "? a\n: b\n",
    "a:\n  b\n",
    "a: x\n  y\n",
    "a: x\n\n  y\n",
    "a:\n    b: 1\n  c: 2\n",
    "a:\n  - x\n  b: 1\n",
    "a: 1\n- b\n",
    "  a: 1\n  b: 2\n",
    "  a: 1\nb: 2\n",
    "a: \"multi\n  line\"\n",
    "a: 'multi\n  line'\n",
    "a: \"x\\\n  y\"\n",
    "a: \"\\q\"\n",
    "a: -\n",
    "a: - x\n",
    "a: -1\nb: -x\n",
    "a: :x\n",
    "a: ?x\n",
    "a: %x\n",
    "a: @x\n",
    "a: ,x\n",
    "a: x, y]\n",
    "-\n  a: 1\n",
    "- |\n  x\n- >-\n  y\n",
    "- - - x\n",
    "- 'a': b\n  \"c\": d\n",
    "a:\n- - x\n  - y\n- z\n",
    "%YAML 1.2\n---\na: 1\n",
    "--- |\n  x\n",
    "--- a: 1\n",
    "---\n",
    "# only\n",
    "",
    "a: 1\n---\nb: 2\n",
    "a: 1\n...\nb: 2\n",
    "a: 1\n# c\n  # indented comment\nb: 2\n",
    "a:\n  # c\n  b: 1\n",
    "a:\n# c\n  b: 1\n",
    "key with spaces: value with spaces\n",
    "a: 'x' # c\n",
    "a: \"x\" y\n",
    "a:\t1\n",
    "a: 1\r\nb: 2\r\n",
    "é: 1\n",
    "a: |\n  x\n\tb\n",
];

#[test]
fn edge_cases_read_the_same() {
    let fast = EDGE_CASES.iter().filter(|d| agrees(d)).count();
    eprintln!(
        "fast reader answered {fast} of {} edge cases",
        EDGE_CASES.len()
    );
}

/// Random edits to real documents: whatever the fast reader still accepts must read
/// exactly as the event parser reads it.
#[test]
fn mutated_documents_read_the_same() {
    let mut docs = all_documents();
    docs.extend(documents(&generated_stream(60)));
    docs.extend(EDGE_CASES.iter().map(|s| s.to_string()));
    docs.retain(|d| d.len() < 20_000);
    let pieces: &[&str] = &[
        " ", "  ", "\n", "-", "- ", ":", ": ", "#", " #", "'", "\"", "|", ">", "|-", ">+", "{}",
        "[]", "[a, b]", "{k: v}", ", ", "]", "}", "\\", "...", "---", "x", "a: b", "\n  ", "\n- ",
        "&a ", "*a", "!", "?", "%", "''",
    ];
    let mut gen = Gen(0x5eed_cafe_f00d_0001);
    let mut answered = 0;
    let rounds = 30_000;
    for _ in 0..rounds {
        let mut text = docs[gen.below(docs.len())].clone();
        for _ in 0..1 + gen.below(3) {
            if text.is_empty() {
                break;
            }
            let at = gen.below(text.len() + 1);
            let at = (0..=at)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            match gen.below(4) {
                0 => {
                    let end = (at + 1 + gen.below(4)).min(text.len());
                    if text.is_char_boundary(end) {
                        text.replace_range(at..end, "");
                    }
                }
                1 => text.insert_str(at, gen.pick(pieces)),
                2 => {
                    // Change the indentation of the line holding `at`.
                    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                    if gen.chance(50) {
                        text.insert_str(line_start, gen.pick(&[" ", "  ", "    "]));
                    } else if text[line_start..].starts_with(' ') {
                        text.remove(line_start);
                    }
                }
                _ => {
                    // Duplicate the line holding `at` after itself.
                    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
                    let line = text[line_start..line_end].to_string();
                    text.insert_str(line_end, &line);
                }
            }
        }
        if agrees(&text) {
            answered += 1;
        }
    }
    eprintln!("fast reader answered {answered} of {rounds} mutated documents");
    assert!(
        answered > rounds / 10,
        "too few mutations stay in the subset: {answered}"
    );
}
