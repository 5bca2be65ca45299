//! Offline Kubernetes schema validation with `kubernetes-validate` (strict, 1.33.0).

use std::io::Write;
use std::process::{Command, Stdio};

use super::venv_python;

pub const KUBERNETES_VERSION: &str = "1.33.0";

const VALIDATE: &str = r#"
import sys
from kubernetes_validate import utils
version = sys.argv[1]
objects = []
for doc in utils.resources_from_file("-"):
    if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
        objects.extend(doc["items"])
    else:
        objects.append(doc)
if not objects:
    print("ERROR no Kubernetes object in the input")
    sys.exit(1)
rc = 0
for obj in objects:
    if not isinstance(obj, dict):
        print("ERROR not an object: %r" % (obj,))
        rc |= 1
        continue
    rc |= utils.validate_resource(obj, "<stream>", version, strict=True, quiet=False, no_warn=False)
sys.exit(rc)
"#;

/// Runs kubernetes_validate's own checks (`--strict -k 1.33.0`) on every object of a
/// YAML/JSON stream, parsed by PyYAML as Go's YAML 1.1 readers would. `kind: List`
/// and KRM `ResourceList` are validated item by item, since the tool cannot validate
/// a List itself. Kinds without a schema (CRDs) pass with a WARN line. An input with
/// no object is an error. `Err` holds the tool's output.
pub fn validate_k8s(yaml_text: &str) -> Result<(), String> {
    validate_k8s_at(yaml_text, KUBERNETES_VERSION)
}

/// [`validate_k8s`] against the schemas of another Kubernetes version, e.g. `1.29.0`.
pub fn validate_k8s_at(yaml_text: &str, version: &str) -> Result<(), String> {
    let mut child = Command::new(venv_python())
        .args(["-c", VALIDATE, version])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run kubernetes_validate");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(yaml_text.as_bytes())
        .expect("cannot write to kubernetes_validate");
    let output = child
        .wait_with_output()
        .expect("kubernetes_validate did not finish");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(())
    } else {
        Err(text)
    }
}
