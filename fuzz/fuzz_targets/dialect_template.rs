//! A template in a file secret's annotation (the dialect and template front-end that
//! render and lint run): whatever the text and whichever YAML style holds it, render
//! and lint never panic, agree on whether the pod is refused, and point every finding
//! inside the document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretstore::analyze::lint::lint_input;
use secretstore::config::Settings;
use secretstore::diag::Severity;
use secretstore::render::{render, Input, Options};

fuzz_target!(|data: &[u8]| {
    let Some((&style, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let json = serde_json::json!({
        "sources": {"db": "database/creds/app", "secret": "secret/shop/app"},
        "secretFileName": "app.conf",
        "volumeMountPath": "/etc/app",
        "template": text,
    })
    .to_string();
    let key = "    vault.secretstore.rafay.dev/filesecret-config-1:";
    let annotation = match style % 4 {
        0 => format!("{key} |\n      {json}\n"),
        1 => format!("{key} >-\n      {json}\n"),
        2 => format!("{key} '{}'\n", json.replace('\'', "''")),
        _ => format!("{key} {}\n", serde_json::Value::from(json)),
    };
    let doc = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: app\n{annotation}spec:\n  containers:\n  - name: app\n    command: [/app]\n    env:\n    - name: CONF\n      value: secretstore:file:1/app.conf\n"
    );
    let lines = doc.lines().count();
    let input = Input {
        name: "fuzz.yaml".into(),
        bytes: doc.into_bytes(),
    };
    let settings = Settings::default();
    let refused = render(
        std::slice::from_ref(&input),
        &settings,
        &Options { allow_empty: true },
    )
    .is_err();
    let findings = lint_input(&input, &settings);
    assert_eq!(
        findings.iter().any(|d| d.severity == Severity::Error),
        refused,
        "lint and render disagree"
    );
    for d in findings {
        assert!(d.location.line >= 1 && d.location.line <= lines && d.location.column >= 1);
    }
});
