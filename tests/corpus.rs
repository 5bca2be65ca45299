//! Every file of `testdata/corpus/` (real Helm renders and manifests of many projects,
//! vendored with their sources and licences in its INDEX.md) renders byte for byte: none
//! of them is opted in, so none may change.

mod support;

use std::path::PathBuf;

fn corpus_files() -> Vec<PathBuf> {
    support::manifest_files(&support::repo_root().join("testdata/corpus"))
}

#[test]
fn every_corpus_file_renders_byte_for_byte() {
    let files = corpus_files();
    assert!(files.len() >= 60, "corpus has {} files", files.len());
    for file in &files {
        let input = std::fs::read(file).expect("corpus file readable");
        // A file with no objects at all is refused without --allow-empty (SPEC section 3).
        let output = support::secretstore()
            .args(["render", "--allow-empty"])
            .arg(file)
            .output()
            .expect("secretstore runs");
        assert!(
            output.status.success(),
            "{}: render failed: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.stdout == input,
            "{}: output differs from input",
            file.display()
        );
    }
}

#[test]
fn a_corpus_file_with_no_objects_is_refused_without_allow_empty() {
    let file = support::repo_root()
        .join("testdata/corpus/real/avp__fixtures-input-empty-comment-only.yaml");
    let output = support::secretstore()
        .arg("render")
        .arg(&file)
        .output()
        .expect("secretstore runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SS003"));
}
