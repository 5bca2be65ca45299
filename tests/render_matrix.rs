//! Input → expected output over `testdata/render/`, as exact-text snapshots.
//!
//! Each `testdata/render/<case>.{yaml,json}` is rendered with built-in defaults (or the
//! settings of `<case>.config.yaml` beside it). A success snapshots the output stream; a
//! refusal snapshots the diagnostics (and, for a ResourceList, the KRM output). Every
//! success must also be a fixed point: rendering the output again changes nothing.

use secretstore::config::{ConfigFile, Settings};
use secretstore::render::{render, Input, Options};
use std::path::{Path, PathBuf};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/render");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/render exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            (name.ends_with(".yaml") || name.ends_with(".json")) && !name.ends_with(".config.yaml")
        })
        .collect();
    cases.sort();
    cases
}

pub fn settings_for(case: &Path) -> Settings {
    let config = case.with_extension("config.yaml");
    if config.exists() {
        let file = ConfigFile::load(&config).expect("case configuration loads");
        Settings::from_file(&file, None).expect("case configuration resolves")
    } else {
        Settings::default()
    }
}

fn input(case: &Path, bytes: Vec<u8>) -> Input {
    let name = format!(
        "testdata/render/{}",
        case.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    );
    Input { name, bytes }
}

/// Renders one case into the snapshot text and the rendered bytes on success.
fn run(case: &Path) -> (String, Option<Vec<u8>>) {
    let bytes = std::fs::read(case).expect("case readable");
    let settings = settings_for(case);
    let inputs = [input(case, bytes)];
    match render(&inputs, &settings, &Options::default()) {
        Ok(rendered) => {
            let out = rendered.to_bytes();
            let mut text = String::new();
            for w in &rendered.warnings {
                text.push_str(&format!("# {}\n", w.to_string().replace('\n', "\n# ")));
            }
            text.push_str(&String::from_utf8_lossy(&out).replace('\r', "␍"));
            (text, Some(out))
        }
        Err(err) => {
            let mut text = String::from("REFUSED\n");
            for d in &err.diagnostics {
                text.push_str(&d.to_string());
                text.push('\n');
            }
            if let Some(krm) = err.krm_output {
                text.push_str("--- KRM output ---\n");
                text.push_str(&String::from_utf8_lossy(&krm));
            }
            (text, None)
        }
    }
}

#[test]
fn render_matrix() {
    let cases = cases();
    assert!(cases.len() > 40, "testdata/render has its cases");
    for case in &cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let (text, output) = run(case);
        insta::with_settings!({snapshot_path => "snapshots/render", prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_snapshot!(name.clone(), text);
        });
        if let Some(out) = output {
            let again_input = [input(case, out.clone())];
            let again = render(&again_input, &settings_for(case), &Options::default())
                .unwrap_or_else(|e| panic!("{name}: re-render failed: {:?}", e.diagnostics));
            assert!(
                again.to_bytes() == out,
                "{name}: rendering the rendered output changed it"
            );
        }
    }
}
