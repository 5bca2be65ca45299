//! Property test: random streams of real corpus documents and generated opted-in pods.
//!
//! - untouched documents come back byte for byte;
//! - a YAML 1.1 reading (PyYAML's SafeLoader, as Go's yaml.v2 reads) of each touched object
//!   equals its input once the injected parts are removed (`tests/yaml11/compare.py`);
//! - rendering the output again changes nothing.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use secretstore::config::Settings;
use secretstore::render::stream;
use secretstore::render::{render, Input, Options};
use std::process::Command;
use support::gen::Gen;

const KINDS: [(&str, &str); 6] = [
    ("Deployment", "apps/v1"),
    ("StatefulSet", "apps/v1"),
    ("DaemonSet", "apps/v1"),
    ("Job", "batch/v1"),
    ("Pod", "v1"),
    ("CronJob", "batch/v1"),
];

fn quoted(g: &mut Gen, s: &str) -> String {
    match g.below(3) {
        0 => s.to_string(),
        1 => format!("'{s}'"),
        _ => format!("\"{s}\""),
    }
}

/// One opted-in pod document in a random layout.
fn pod_document(g: &mut Gen, n: usize) -> String {
    let (kind, api) = KINDS[g.below(KINDS.len())];
    let seq = if g.chance(50) { "  " } else { "" };
    // Indentation of the pod template (metadata/spec) within the document.
    let (base, prefix) = match kind {
        "Pod" => (0, String::new()),
        "CronJob" => (
            8,
            "spec:\n  schedule: \"*/5 * * * *\"\n  jobTemplate:\n    spec:\n      template:\n"
                .to_string(),
        ),
        _ => (
            4,
            format!("spec:\n  selector:\n    matchLabels:\n      app: app-{n}\n  template:\n"),
        ),
    };
    let p = " ".repeat(base);
    let containers = 1 + g.below(3);
    let names: Vec<String> = (0..containers).map(|i| format!("c{i}")).collect();
    let mut doc = format!("---\n# Source: chart/templates/pod-{n}.yaml\napiVersion: {api}\nkind: {kind}\nmetadata:\n  name: app-{n}\n  namespace: ns-{}\n", g.below(3));
    if kind == "Pod" {
        doc.push_str("  annotations:\n");
    } else {
        doc.push_str(&prefix);
        doc.push_str(&format!(
            "{p}metadata:\n{p}  labels:\n{p}    app: app-{n}\n{p}  annotations:\n"
        ));
    }
    let ap = if kind == "Pod" {
        "    ".to_string()
    } else {
        format!("{p}    ")
    };
    if g.chance(30) {
        doc.push_str(&format!("{ap}# secretstore opt-in\n"));
    }
    doc.push_str(&format!(
        "{ap}rafay.dev/secretstore: {}\n",
        quoted(g, "vault")
    ));
    doc.push_str(&format!(
        "{ap}vault.secretstore.rafay.dev/role: {}\n",
        quoted(g, &format!("role-{n}"))
    ));
    let files = g.below(3);
    for f in 0..files {
        let target = if g.chance(50) {
            format!(", \"containers\": [\"{}\"]", names[g.below(names.len())])
        } else {
            String::new()
        };
        let key = if g.chance(50) { "#tls.crt" } else { "" };
        doc.push_str(&format!(
            "{ap}vault.secretstore.rafay.dev/filesecret-config-{}: '{{\"vaultSecretRef\": \"secret/app/f{f}{key}\", \"secretFileName\": \"file-{f}\", \"volumeMountPath\": \"/etc/secret-{}\"{target}}}'\n",
            f + 1,
            g.below(2)
        ));
    }
    let sp = if kind == "Pod" {
        "  ".to_string()
    } else {
        format!("{p}  ")
    };
    if kind == "Pod" {
        doc.push_str("spec:\n");
    } else {
        doc.push_str(&format!("{p}spec:\n"));
    }
    if kind == "Job" || kind == "CronJob" {
        doc.push_str(&format!("{sp}restartPolicy: Never\n"));
    }
    doc.push_str(&format!("{sp}serviceAccountName: app-{n}\n"));
    if g.chance(30) {
        doc.push_str(&format!("{sp}automountServiceAccountToken: false\n"));
    }
    if g.chance(30) {
        doc.push_str(&format!("{sp}initContainers:\n{sp}{seq}- name: init\n{sp}{seq}  image: busybox:1.37\n{sp}{seq}  command: [\"sh\", \"-c\", \"true\"]\n"));
    }
    doc.push_str(&format!("{sp}containers:\n"));
    let cp = format!("{sp}{seq}");
    for name in &names {
        if g.chance(20) {
            doc.push_str(&format!("{cp}# container {name}\n"));
        }
        doc.push_str(&format!(
            "{cp}- name: {name}\n{cp}  image: ghcr.io/acme/{name}:1.{}\n",
            g.below(9)
        ));
        let refs = g.below(3);
        if refs > 0 {
            if g.chance(50) {
                doc.push_str(&format!("{cp}  command: [\"/bin/{name}\", \"--flag\"]\n"));
            } else {
                doc.push_str(&format!(
                    "{cp}  command:\n{cp}  {seq}- /bin/{name}\n{cp}  {seq}- {}\n",
                    quoted(g, "on")
                ));
            }
        }
        if refs > 0 || g.chance(30) {
            doc.push_str(&format!("{cp}  env:\n"));
            doc.push_str(&format!(
                "{cp}  {seq}- name: PLAIN\n{cp}  {seq}  value: {}\n",
                quoted(g, "yes")
            ));
            for r in 0..refs {
                let reference = g.pick(&[
                    "secret/app/db#password",
                    "secret/data/app/db#user",
                    "kv/app/api",
                    "secret/app/db#password#2",
                ]);
                doc.push_str(&format!(
                    "{cp}  {seq}- name: REF_{r}\n{cp}  {seq}  value: {}\n",
                    quoted(g, &format!("secretstore:vault:{reference}"))
                ));
            }
        }
        if g.chance(40) {
            doc.push_str(&format!(
                "{cp}  volumeMounts:\n{cp}  {seq}- name: data\n{cp}  {seq}  mountPath: /data\n"
            ));
        }
    }
    if g.chance(60) {
        doc.push_str(&format!(
            "{sp}volumes:\n{sp}{seq}- name: data\n{sp}{seq}  emptyDir: {{}}\n"
        ));
    }
    if g.chance(30) {
        doc.push_str(&format!("{sp}# end of pod spec\n"));
    }
    doc
}

fn corpus_documents() -> Vec<String> {
    let dir = support::repo_root().join("testdata/corpus/real");
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/corpus/real exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    files.sort();
    for f in files {
        let bytes = std::fs::read(&f).expect("corpus readable");
        if bytes.len() > 200_000 {
            continue;
        }
        let body = &bytes[stream::bom_len(&bytes)..];
        for d in stream::split(body) {
            let text = String::from_utf8_lossy(&body[d.start..d.end]).to_string();
            if text.starts_with("---")
                && text.ends_with('\n')
                && stream::has_content(text.as_bytes())
            {
                docs.push(text);
            }
        }
    }
    docs
}

#[test]
fn random_streams_render_faithfully() {
    let corpus = corpus_documents();
    assert!(
        corpus.len() > 100,
        "corpus documents found: {}",
        corpus.len()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    let case_counter = std::cell::Cell::new(0usize);
    runner
        .run(&any::<u64>(), |seed| {
            let case = case_counter.get();
            case_counter.set(case + 1);
            let mut g = Gen(seed | 1);
            let mut pieces: Vec<(String, bool)> = Vec::new();
            for n in 0..(2 + g.below(6)) {
                if g.chance(50) {
                    pieces.push((pod_document(&mut g, n), true));
                } else {
                    pieces.push((corpus[g.below(corpus.len())].clone(), false));
                }
            }
            let stream_text: String = pieces.iter().map(|(t, _)| t.as_str()).collect();
            let inputs = [Input {
                name: format!("case-{case}"),
                bytes: stream_text.clone().into_bytes(),
            }];
            let rendered =
                render(&inputs, &Settings::default(), &Options::default()).map_err(|e| {
                    TestCaseError::fail(format!(
                        "render refused: {:?}\n{stream_text}",
                        e.diagnostics
                    ))
                })?;
            let out = rendered.to_bytes();
            // Untouched documents are byte-identical, in order.
            let out_docs: Vec<&[u8]> = stream::split(&out)
                .iter()
                .map(|d| &out[d.start..d.end])
                .collect();
            prop_assert_eq!(out_docs.len(), pieces.len());
            for ((text, generated), got) in pieces.iter().zip(&out_docs) {
                if !generated {
                    prop_assert!(text.as_bytes() == *got, "an untouched document changed");
                }
            }
            // Rendering again is a no-op.
            let again_inputs = [Input {
                name: "again".into(),
                bytes: out.clone(),
            }];
            let again =
                render(&again_inputs, &Settings::default(), &Options::default()).map_err(|e| {
                    TestCaseError::fail(format!("re-render refused: {:?}", e.diagnostics))
                })?;
            prop_assert!(again.to_bytes() == out, "second render changed the output");
            // Only the generated (touched) documents go to the YAML 1.1 comparison: the
            // untouched ones are byte-identical (checked above), and some real corpus
            // documents (complex keys) are beyond PyYAML's SafeLoader.
            let mut touched_in = Vec::new();
            let mut touched_out = Vec::new();
            for ((text, generated), got) in pieces.iter().zip(&out_docs) {
                if *generated {
                    touched_in.extend_from_slice(text.as_bytes());
                    touched_out.extend_from_slice(got);
                }
            }
            std::fs::write(dir.path().join(format!("{case:03}.in.yaml")), &touched_in)
                .expect("write");
            std::fs::write(dir.path().join(format!("{case:03}.out.yaml")), &touched_out)
                .expect("write");
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));

    let script = support::repo_root().join("tests/yaml11/compare.py");
    let result = Command::new(support::venv_python())
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("python runs");
    let report = String::from_utf8_lossy(&result.stdout);
    assert!(
        report.contains("compared 64 pairs"),
        "compare.py did not run to the end ({}):\n{report}{}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        result.status.success(),
        "YAML 1.1 reading differs:\n{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}
