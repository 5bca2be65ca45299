//! `secretstore completions <shell>` and `secretstore man`.

mod support;

use std::process::{Command, Output, Stdio};
use support::secretstore;

fn run(args: &[&str]) -> Output {
    let output = secretstore().args(args).output().expect("secretstore");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn completion_scripts_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = String::from_utf8(run(&["completions", shell]).stdout).expect("utf-8");
        for word in ["render", "lint", "deny-warnings", "workload"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
        // Value completion for --format where the shell supports it.
        if ["bash", "zsh", "fish"].contains(&shell) {
            assert!(
                script.contains("sarif"),
                "{shell} script lacks --format values"
            );
        }
    }
    // The bash script is valid bash.
    let script = run(&["completions", "bash"]).stdout;
    let check = Command::new("bash")
        .args(["-n", "/dev/stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("piped").write_all(&script)?;
            child.wait()
        })
        .expect("bash");
    assert!(check.success());
    let output = secretstore()
        .args(["completions", "tcsh"])
        .output()
        .expect("secretstore");
    assert_eq!(output.status.code(), Some(2));
}

/// Runs groff on a page with warnings on, returning its warnings.
fn groff_warnings(page: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run groff ({e}): run scripts/install-test-deps.sh (groff-base)")
        });
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(page)
        .expect("write");
    let output = child.wait_with_output().expect("groff");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn man_pages() {
    let page = run(&["man"]).stdout;
    let text = String::from_utf8_lossy(&page);
    assert!(text.contains(".TH secretstore 1"), "{text}");
    assert!(text.contains("lint"), "{text}");
    assert_eq!(groff_warnings(&page), "");

    let dir = tempfile::tempdir().expect("temp dir");
    run(&["man", "--out-dir", dir.path().to_str().expect("utf-8")]);
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for expected in [
        "secretstore.1",
        "secretstore-lint.1",
        "secretstore-render.1",
    ] {
        assert!(pages.iter().any(|p| p == expected), "{pages:?}");
    }
    for page in &pages {
        let roff = std::fs::read(dir.path().join(page)).expect("read");
        assert_eq!(groff_warnings(&roff), "", "{page}");
        let text = String::from_utf8_lossy(&roff);
        for section in ["\n.SH \"EXIT STATUS\"\n", "\n.SH ENVIRONMENT\n"] {
            assert!(text.contains(section), "{page} lacks {section:?}");
        }
    }
}
