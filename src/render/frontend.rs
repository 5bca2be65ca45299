//! The one front-end every command reads documents through: [`parse_document`] turns a
//! document of the stream into its positioned tree (or the diagnostic, with the same code
//! everywhere), and [`for_each_opted_in_pod`] walks its objects' pod templates and reads
//! the dialect of the opted-in ones. Render plans what it finds; scan (for `lint`,
//! `check` and `policy`) records it, so every command reports the same findings for the
//! same input.

use super::dialect::{self, Ctx, Gate, PodRequest};
use super::stream::Document;
use super::tree::{NodeId, Tree, TreeErrorKind};
use super::{workload, MAX_DOCUMENT_BYTES};
use crate::config::Settings;
use crate::diag::{Code, Diagnostic, Location};

/// The one way every command reads a document that may hold the dialect: its text and
/// positioned tree, or the diagnostic (with the same code everywhere: SS002 for a bound on
/// hostile input, SS001 for anything else the document is not).
pub fn parse_document<'a>(
    source: &str,
    body: &'a [u8],
    doc: &Document,
) -> Result<(&'a str, Tree<'a>), Box<Diagnostic>> {
    let bytes = &body[doc.start..doc.end];
    let at = |line: usize, column: usize| Location {
        source: source.to_owned(),
        line: doc.first_line + line - 1,
        column,
    };
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(Box::new(
            Diagnostic::new(
                Code::InputLimit,
                at(1, 1),
                format!(
                    "document is {} bytes, more than the {} MiB limit",
                    bytes.len(),
                    MAX_DOCUMENT_BYTES / (1024 * 1024)
                ),
            )
            .with_help("split the document"),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let column = valid.len() - valid.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
        Box::new(
            Diagnostic::new(
                Code::YamlSyntax,
                at(line, column),
                "the document is not valid UTF-8",
            )
            .with_help("save the file as UTF-8"),
        )
    })?;
    let tree = Tree::parse(text).map_err(|e| {
        let (code, help) = match e.kind {
            TreeErrorKind::Limit => (
                Code::InputLimit,
                "flatten or split the document: the limits guard against hostile input",
            ),
            TreeErrorKind::Syntax => (Code::YamlSyntax, "fix the YAML syntax at that position"),
        };
        Box::new(
            Diagnostic::new(
                code,
                at(e.line, e.column),
                format!("cannot parse the document: {}", e.message),
            )
            .with_help(help),
        )
    })?;
    Ok((text, tree))
}

/// An opted-in pod template, with its dialect read.
pub struct OptedInPod {
    pub template: NodeId,
    /// Field path of the template in its document, e.g. `spec.template.`.
    pub field: String,
    pub request: PodRequest,
    /// Reading the dialect reported no error (a pod with errors is not expanded).
    pub valid: bool,
}

/// Calls `visit` for every opted-in pod template of `ctx`'s document, in order, with
/// `ctx.object` set to the pod's object. Findings about the dialect (on opted-in pods and
/// on workloads' own metadata) go to `ctx.diagnostics`.
pub fn for_each_opted_in_pod<'a>(
    ctx: &mut Ctx<'a>,
    settings: &Settings,
    mut visit: impl FnMut(&mut Ctx<'a>, OptedInPod),
) {
    let tree = ctx.tree;
    for object in workload::objects(tree) {
        ctx.object = object.reference.clone();
        let Some((template, field)) = workload::pod_template(tree, &object, settings) else {
            continue;
        };
        // A bare Pod is its own template: its metadata is the template's.
        if field != object.field_prefix {
            dialect::check_workload_metadata(ctx, object.node, &object.field_prefix);
        }
        let errors_before = ctx.error_count();
        let Gate::OptedIn(request) = dialect::read_pod(ctx, template, &field) else {
            continue;
        };
        let valid = ctx.error_count() == errors_before;
        visit(
            ctx,
            OptedInPod {
                template,
                field,
                request: *request,
                valid,
            },
        );
    }
}
