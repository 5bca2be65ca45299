//! Every rendered testdata object validates against the Kubernetes 1.33 schemas in strict
//! mode (`kubernetes-validate` from PyPI): the injected init container, volumes and mounts
//! are well-formed Kubernetes.

mod support;

use secretstore::config::{ConfigFile, Settings};
use secretstore::render::{render, Input, Options};

#[test]
fn rendered_testdata_validates_against_kubernetes_schemas() {
    let dir = support::repo_root().join("testdata/render");
    let mut validated = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/render")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut combined = String::new();
    for case in entries {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.ends_with(".config.yaml") || name.starts_with("form-resourcelist") {
            continue;
        }
        let config = case.with_extension("config.yaml");
        let settings = if config.exists() {
            Settings::from_file(&ConfigFile::load(&config).expect("config"), None)
                .expect("settings")
        } else {
            Settings::default()
        };
        let inputs = [Input {
            name: name.clone(),
            bytes: std::fs::read(&case).expect("readable"),
        }];
        let Ok(rendered) = render(&inputs, &settings, &Options::default()) else {
            continue;
        };
        let text = String::from_utf8(rendered.to_bytes()).expect("utf-8");
        if rendered.expanded == 0 {
            continue;
        }
        // One validator run for all cases: JSON documents are YAML documents too.
        combined.push_str("---\n");
        combined.push_str(text.trim_start_matches('\u{feff}'));
        if !combined.ends_with('\n') {
            combined.push('\n');
        }
        validated += 1;
    }
    assert!(validated >= 20, "validated {validated} rendered cases");
    support::k8s::validate_k8s(&combined)
        .unwrap_or_else(|e| panic!("schema validation failed:\n{e}"));
}
