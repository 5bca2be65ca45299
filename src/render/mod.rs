//! The render pipeline: read → split into documents ([`stream`]) → parse ([`frontend`],
//! [`tree`]) → find opted-in pod templates ([`workload`]) → read the dialect ([`dialect`])
//! → plan the expansion ([`plan`]) → turn it into insertions ([`edit`]) → write. A KRM
//! `ResourceList` brings its own settings and gets its errors back (`krm`).
//!
//! Planning runs over every input before anything is written, so an error anywhere leaves
//! stdout untouched. The result refers to the input's bytes and holds only the inserted
//! text, so memory stays near the input's size however large the stream.

pub mod dialect;
pub mod edit;
pub mod frontend;
mod krm;
pub mod plan;
pub mod stream;
pub mod tree;
pub mod workload;

use self::dialect::Ctx;
use self::edit::{Edit, Insertion, Layout};
use self::stream::Document;
use self::tree::Tree;
use crate::config::Settings;
use crate::diag::{Code, Diagnostic, Location, Severity};
use std::io::{self, Write};

/// Largest single document that is parsed (untouched documents are only scanned).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;

pub struct Input {
    /// File name, or `<stdin>`.
    pub name: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub allow_empty: bool,
}

/// A piece of output: a slice of an input, or inserted text.
enum Piece {
    Input {
        input: usize,
        start: usize,
        end: usize,
    },
    Text(String),
}

/// A planned render: write it with [`Rendered::write_to`], or take its [`Rendered::pieces`].
pub struct Rendered<'a> {
    inputs: &'a [Input],
    pieces: Vec<Piece>,
    pub warnings: Vec<Diagnostic>,
    /// Pod templates expanded.
    pub expanded: usize,
}

impl Rendered<'_> {
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        for piece in self.pieces() {
            out.write_all(piece)?;
        }
        Ok(())
    }

    /// The output in order, as slices of the inputs and of the inserted text, for
    /// vectored writes.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.pieces.iter().map(|piece| match piece {
            Piece::Input { input, start, end } => &self.inputs[*input].bytes[*start..*end],
            Piece::Text(text) => text.as_bytes(),
        })
    }

    /// The output's size in bytes.
    pub fn output_len(&self) -> usize {
        self.pieces().map(<[u8]>::len).sum()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }
}

#[derive(Debug)]
pub struct RenderError {
    pub diagnostics: Vec<Diagnostic>,
    /// For a KRM `ResourceList` input: the list with its items untouched and the errors as
    /// `results`, which KRM runners show to the user.
    pub krm_output: Option<Vec<u8>>,
}

/// What one input's planning found.
struct InputPlan {
    /// Insertions per document start offset, in order.
    insertions: Vec<(usize, Vec<Insertion>)>,
    has_content: bool,
}

pub fn render<'a>(
    inputs: &'a [Input],
    settings: &Settings,
    options: &Options,
) -> Result<Rendered<'a>, RenderError> {
    let mut diagnostics = Vec::new();
    let mut plans = Vec::new();
    let mut expanded = 0;
    let mut krm: Option<krm::KrmDoc<'a>> = None;
    for (i, input) in inputs.iter().enumerate() {
        let plan = plan_input(
            input,
            settings,
            &mut diagnostics,
            &mut expanded,
            &mut krm,
            i,
        );
        plans.push(plan);
    }
    let (errors, warnings): (Vec<_>, Vec<_>) = diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    if !errors.is_empty() {
        let krm_output = krm.map(|k| krm::with_results(&inputs[k.input], k, &errors));
        let mut all = errors;
        all.extend(warnings);
        return Err(RenderError {
            diagnostics: all,
            krm_output,
        });
    }
    if !options.allow_empty && !plans.iter().any(|p| p.has_content) {
        let source = inputs
            .first()
            .map(|i| i.name.clone())
            .unwrap_or_else(|| "<stdin>".into());
        return Err(RenderError {
            diagnostics: vec![Diagnostic::new(
                Code::EmptyInput,
                Location { source, line: 1, column: 1 },
                "the input holds no Kubernetes objects",
            )
            .with_help("an upstream failure (helm template, kustomize build) may have printed nothing; pass --allow-empty if an empty render is intended")],
            krm_output: None,
        });
    }

    let mut pieces = Vec::new();
    for (i, (input, plan)) in inputs.iter().zip(&plans).enumerate() {
        if i > 0 {
            separate(&mut pieces, &inputs[i - 1].bytes, &input.bytes);
        }
        let mut at = 0;
        for (doc_start, insertions) in &plan.insertions {
            for ins in insertions {
                let offset = doc_start + ins.offset;
                pieces.push(Piece::Input {
                    input: i,
                    start: at,
                    end: offset,
                });
                pieces.push(Piece::Text(ins.text.clone()));
                at = offset;
            }
        }
        pieces.push(Piece::Input {
            input: i,
            start: at,
            end: input.bytes.len(),
        });
    }
    Ok(Rendered {
        inputs,
        pieces,
        warnings,
        expanded,
    })
}

/// Between two inputs: a newline if the first lacks one, and `---` unless the second
/// starts a document itself.
fn separate(pieces: &mut Vec<Piece>, previous: &[u8], next: &[u8]) {
    let mut text = String::new();
    if !previous.is_empty() && !previous.ends_with(b"\n") {
        text.push('\n');
    }
    let body = &next[stream::bom_len(next)..];
    if !body.starts_with(b"---") {
        text.push_str("---\n");
    }
    pieces.push(Piece::Text(text));
}

fn plan_input<'a>(
    input: &'a Input,
    settings: &Settings,
    diagnostics: &mut Vec<Diagnostic>,
    expanded: &mut usize,
    krm: &mut Option<krm::KrmDoc<'a>>,
    index: usize,
) -> InputPlan {
    let bom = stream::bom_len(&input.bytes);
    let body = &input.bytes[bom..];
    let docs = stream::split(body);
    let marked = stream::containing(body, &docs, dialect::MARKER);
    let mut plan = InputPlan {
        insertions: Vec::new(),
        has_content: docs
            .iter()
            .any(|doc| stream::has_content(&body[doc.start..doc.end])),
    };
    let doc_plans = plan_all(&marked, |doc| plan_marked(input, body, doc, settings));
    for (doc, doc_plan) in marked.iter().zip(doc_plans) {
        diagnostics.extend(doc_plan.diagnostics);
        if let Some(tree) = doc_plan.resource_list {
            *krm = Some(krm::KrmDoc {
                input: index,
                start: bom + doc.start,
                end: bom + doc.end,
                tree,
            });
        }
        if !doc_plan.insertions.is_empty() {
            *expanded += doc_plan.pods;
            plan.insertions.push((bom + doc.start, doc_plan.insertions));
        }
    }
    plan
}

/// What planning one document found.
#[derive(Default)]
struct DocPlan<'a> {
    diagnostics: Vec<Diagnostic>,
    insertions: Vec<Insertion>,
    /// Pod templates the insertions expand.
    pods: usize,
    /// The tree of a KRM ResourceList, kept for the error output's `results`.
    resource_list: Option<Tree<'a>>,
}

/// Below this many bytes of documents to parse, threads cost more than they save.
const PARALLEL_MIN_BYTES: usize = 1024 * 1024;
/// Documents above this size are planned one at a time, so that parallel planning never
/// holds more than one large tree.
const PARALLEL_MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Enough to hide the parse of a large stream next to reading and writing it.
const MAX_WORKERS: usize = 4;

/// Plans each document with `plan_doc`, on up to [`MAX_WORKERS`] threads (this one
/// included) when there is enough to share; results in the documents' order.
fn plan_all<'a, F>(docs: &[Document], plan_doc: F) -> Vec<DocPlan<'a>>
where
    F: Fn(&Document) -> DocPlan<'a> + Sync,
{
    let small = |doc: &Document| doc.end - doc.start <= PARALLEL_MAX_DOCUMENT_BYTES;
    let shared_bytes: usize = docs
        .iter()
        .filter(|d| small(d))
        .map(|d| d.end - d.start)
        .sum();
    let workers = crate::parallel::workers(MAX_WORKERS);
    if workers < 2 || shared_bytes < PARALLEL_MIN_BYTES {
        return docs.iter().map(plan_doc).collect();
    }
    let (shared, large): (Vec<_>, Vec<_>) = docs.iter().enumerate().partition(|(_, d)| small(d));
    let mut results: Vec<(usize, DocPlan<'a>)> =
        crate::parallel::map(shared, workers, |(i, doc)| (i, plan_doc(doc)));
    results.extend(large.into_iter().map(|(i, doc)| (i, plan_doc(doc))));
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, plan)| plan).collect()
}

/// Plans one document that holds the dialect marker.
fn plan_marked<'a>(
    input: &Input,
    body: &'a [u8],
    doc: &Document,
    settings: &Settings,
) -> DocPlan<'a> {
    let mut out = DocPlan::default();
    let (text, tree) = match frontend::parse_document(&input.name, body, doc) {
        Ok(parsed) => parsed,
        Err(diagnostic) => {
            out.diagnostics.push(*diagnostic);
            return out;
        }
    };
    let resource_list = tree
        .root
        .is_some_and(|root| tree.str_at(root, &["kind"]) == Some("ResourceList"));
    plan_tree(input, text, &tree, doc, settings, &mut out);
    if resource_list {
        out.resource_list = Some(tree);
    }
    out
}

/// Plans a parsed document into `out`.
fn plan_tree(
    input: &Input,
    text: &str,
    tree: &Tree,
    doc: &Document,
    settings: &Settings,
    out: &mut DocPlan,
) {
    let bytes = text.as_bytes();
    let at = |line: usize, column: usize| Location {
        source: input.name.clone(),
        line: doc.first_line + line - 1,
        column,
    };
    let mut doc_settings = None;
    if let Some(root) = tree.root {
        if tree.str_at(root, &["kind"]) == Some("ResourceList") {
            match krm::settings(text, tree, root, settings) {
                Ok(s) => doc_settings = s,
                Err(message) => {
                    out.diagnostics.push(
                        Diagnostic::new(Code::YamlSyntax, at(1, 1), message)
                            .with_field("functionConfig"),
                    );
                    return;
                }
            }
        }
    }
    let settings = doc_settings.as_ref().unwrap_or(settings);
    if let Some((insertions, pods)) = plan_document(
        input,
        text,
        tree,
        doc.first_line,
        settings,
        &mut out.diagnostics,
    ) {
        // YAML reads a lone CR as a line break; the edits place text by LF line ends.
        if let Some(cr) =
            memchr::memchr_iter(b'\r', bytes).find(|&i| bytes.get(i + 1) != Some(&b'\n'))
        {
            let before = &bytes[..cr];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let column = cr
                - before
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |p| p + 1)
                + 1;
            out.diagnostics.push(
                Diagnostic::new(
                    Code::CannotEdit,
                    at(line, column),
                    "the document has a carriage return without a line feed (an old Mac line end), which secretstore cannot edit around",
                )
                .with_help("save the file with LF or CRLF line ends"),
            );
            return;
        }
        out.insertions = insertions;
        out.pods = pods;
    }
}

/// Plans one parsed document; returns its insertions and how many pods they expand.
fn plan_document(
    input: &Input,
    text: &str,
    tree: &Tree,
    first_line: usize,
    settings: &Settings,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<(Vec<Insertion>, usize)> {
    let mut ctx = Ctx::new(&input.name, text, first_line, tree);
    let mut edits: Vec<Edit> = Vec::new();
    let mut pods = 0;
    let mut sample_seq = None;
    frontend::for_each_opted_in_pod(&mut ctx, settings, |ctx, pod| {
        if sample_seq.is_none() {
            sample_seq = tree.get(pod.template, "spec").and_then(|spec| {
                Some((
                    tree.key_node(spec, "containers")?,
                    tree.get(spec, "containers")?,
                ))
            });
        }
        if pod.request.injected || !pod.valid {
            return;
        }
        if let Some((_agent_spec, pod_edits)) =
            plan::plan(ctx, settings, &pod.request, pod.template, &pod.field)
        {
            edits.extend(pod_edits);
            pods += 1;
        }
    });
    let has_errors = ctx.has_errors();
    let object = ctx.object.clone();
    diagnostics.append(&mut ctx.diagnostics);
    if has_errors || edits.is_empty() {
        return None;
    }
    let layout = Layout::detect(text, tree, sample_seq);
    match edit::insertions(text, tree, &edits, &layout) {
        Ok(ins) => Some((ins, pods)),
        Err(message) => {
            let root = tree.root.unwrap_or(0);
            let n = tree.node(root);
            diagnostics.push(
                Diagnostic::new(
                    Code::CannotEdit,
                    Location {
                        source: input.name.clone(),
                        line: first_line + n.line - 1,
                        column: n.col + 1,
                    },
                    format!("cannot insert the secretstore wiring: {message}"),
                )
                .with_object(Some(object)),
            );
            None
        }
    }
}
