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

/// The live-mode cases (native sidecar: `restartPolicy: Always` on an init container, an
/// exec startupProbe) validate against the schemas of 1.29, the first version with native
/// sidecars on by default, and every container render adds or wraps meets the restricted
/// Pod Security Standard.
#[test]
fn live_mode_validates_for_kubernetes_1_29_and_is_restricted() {
    let dir = support::repo_root().join("testdata/render");
    let mut combined = String::new();
    let mut sidecars = 0;
    for name in ["live-deployment.yaml", "live-job.yaml", "live-cronjob.yaml"] {
        let inputs = [Input {
            name: name.to_owned(),
            bytes: std::fs::read(dir.join(name)).expect("readable"),
        }];
        let rendered = render(&inputs, &Settings::default(), &Options::default())
            .unwrap_or_else(|e| panic!("{name}: {:?}", e.diagnostics));
        let text = String::from_utf8(rendered.to_bytes()).expect("utf-8");
        let doc: serde_json::Value = yaml_serde::from_str(&text).expect("YAML");
        let pod = match doc["kind"].as_str() {
            Some("CronJob") => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => &doc["spec"]["template"]["spec"],
        };
        let agent = &pod["initContainers"][0];
        assert_eq!(agent["restartPolicy"], "Always", "{name}");
        assert_eq!(
            agent["startupProbe"]["exec"]["command"][0], "/usr/local/bin/secretstore",
            "{name}: the probe runs the agent's own binary (no shell in the image)"
        );
        assert_restricted(name, agent);
        for volume in pod["volumes"].as_array().expect("volumes") {
            let kinds: Vec<&String> = volume
                .as_object()
                .expect("volume")
                .keys()
                .filter(|k| *k != "name")
                .collect();
            assert!(
                kinds.iter().all(|k| ["emptyDir", "projected", "configMap", "secret"]
                    .contains(&k.as_str())),
                "{name}: volume types allowed by restricted: {kinds:?}"
            );
        }
        sidecars += 1;
        combined.push_str("---\n");
        combined.push_str(&text);
    }
    assert_eq!(sidecars, 3);
    support::k8s::validate_k8s_at(&combined, "1.29.0")
        .unwrap_or_else(|e| panic!("schema validation (1.29) failed:\n{e}"));
}

/// The restricted profile's container rules (pod-level fields are the user's).
fn assert_restricted(name: &str, container: &serde_json::Value) {
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{name}");
    assert_ne!(sc["runAsUser"], 0, "{name}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{name}"
    );
    assert!(sc["capabilities"]["add"].is_null(), "{name}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
    assert!(sc["privileged"].is_null(), "{name}");
    assert!(container["ports"].is_null(), "{name}: no host ports");
}
