//! kustomize integration: the legacy exec transformer under plugin/kustomize run by the
//! real `kubectl kustomize --enable-alpha-plugins` on examples/kustomize, and the KRM
//! function mode (a ResourceList on stdin) of plugin/kustomize/secretstore-fn, as kpt
//! and standalone kustomize (`--enable-exec`) call it.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use support::k8s::validate_k8s;
use support::output::text;
use support::{repo_root, tool};
use tempfile::TempDir;

fn bin_dir() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_secretstore"),
        dir.path().join("secretstore"),
    )
    .expect("symlink");
    dir
}

/// `kubectl kustomize --enable-alpha-plugins DIR` with plugin/kustomize as the plugin
/// home and `secretstore` on the PATH, as the README says to run it.
fn kustomize(dir: &Path) -> Output {
    let bin = bin_dir();
    let path = std::env::var("PATH").unwrap_or_default();
    Command::new(tool("kubectl"))
        .args(["kustomize", "--enable-alpha-plugins"])
        .arg(dir)
        .env(
            "KUSTOMIZE_PLUGIN_HOME",
            repo_root().join("plugin/kustomize"),
        )
        .env("PATH", format!("{}:{path}", bin.path().display()))
        .env_remove("SECRETSTORE_CONFIG")
        .env_remove("SECRETSTORE_VAULT_ADDR")
        .env_remove("SECRETSTORE_AUTH_PATH")
        .output()
        .expect("cannot run kubectl")
}

/// The agent spec (the `SECRETSTORE_SPEC` env of the injected init container).
fn agent_spec(deployment: &Value) -> Value {
    let init = &deployment["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "secretstore-agent", "{deployment:#}");
    let spec = init["env"][0]["value"].as_str().expect("spec env");
    serde_json::from_str(spec).expect("spec JSON")
}

#[test]
fn exec_transformer_renders_the_example() {
    let out = kustomize(&repo_root().join("examples/kustomize"));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    validate_k8s(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    let deployment: Value = yaml_serde::from_str(&stdout).expect("one document");
    // kustomize's own transformations and secretstore's, from the transformer's spec.
    assert_eq!(deployment["metadata"]["namespace"], "shop");
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "shop"
    );
    let spec = agent_spec(&deployment);
    assert_eq!(spec["vault"]["address"], "https://vault.prod.example:8200");
    assert_eq!(spec["vault"]["auth_path"], "auth/kubernetes-prod");
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

fn kustomization_with(deployment: &str, transformer_spec: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "deployment.yaml", deployment);
    write(
        dir.path(),
        "secretstore.yaml",
        &format!(
            "apiVersion: secretstore.rafay.dev/v1alpha1\nkind: SecretStoreTransformer\nmetadata:\n  name: secretstore\n{transformer_spec}"
        ),
    );
    write(
        dir.path(),
        "kustomization.yaml",
        "resources: [deployment.yaml]\ntransformers: [secretstore.yaml]\n",
    );
    dir
}

fn example_deployment() -> String {
    std::fs::read_to_string(repo_root().join("examples/deployment.yaml")).expect("example")
}

#[test]
fn exec_transformer_refusal_fails_kustomize() {
    let faulty = example_deployment().replace("role: shop-api", "role: \"\"");
    let dir = kustomization_with(&faulty, "");
    let out = kustomize(dir.path());
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error[SS102]"), "{stderr}");
    assert!(stderr.contains("Deployment shop/shop-api"), "{stderr}");

    let dir = kustomization_with(&example_deployment(), "spec:\n  vualt: {}\n");
    let out = kustomize(dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("spec: unknown field `vualt`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn exec_transformer_without_spec_uses_defaults() {
    let dir = kustomization_with(&example_deployment(), "");
    let out = kustomize(dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deployment: Value = yaml_serde::from_str(&text(&out.stdout)).expect("yaml");
    assert_eq!(
        agent_spec(&deployment)["vault"]["auth_path"],
        "auth/kubernetes"
    );
}

/// Runs the KRM function script with `input` on stdin.
fn krm_function(input: &str) -> Output {
    let bin = bin_dir();
    let path = std::env::var("PATH").unwrap_or_default();
    support::run_with_stdin(
        Command::new(repo_root().join("plugin/kustomize/secretstore-fn"))
            .env("PATH", format!("{}:{path}", bin.path().display())),
        input.as_bytes(),
    )
}

fn resource_list(deployment: &str) -> String {
    let item: String = deployment
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("    {l}\n"))
        .collect();
    format!(
        "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n  - {}\nfunctionConfig:\n  apiVersion: secretstore.rafay.dev/v1alpha1\n  kind: SecretStoreTransformer\n  metadata:\n    name: secretstore\n  spec:\n    vault:\n      authPath: auth/kubernetes-krm\n",
        item.trim_start()
    )
}

#[test]
fn krm_function_renders_a_resource_list() {
    let out = krm_function(&resource_list(&example_deployment()));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = yaml_serde::from_str(&stdout).expect("yaml");
    assert_eq!(list["kind"], "ResourceList");
    assert_eq!(
        agent_spec(&list["items"][0])["vault"]["auth_path"],
        "auth/kubernetes-krm"
    );
    validate_k8s(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
}

#[test]
fn krm_function_reports_refusal_as_results() {
    let faulty = example_deployment().replace("role: shop-api", "role: \"\"");
    let out = krm_function(&resource_list(&faulty));
    assert!(!out.status.success());
    let list: Value = yaml_serde::from_str(&text(&out.stdout)).expect("a ResourceList");
    let result = &list["results"][0];
    assert_eq!(result["severity"], "error");
    assert_eq!(result["tags"]["code"], "SS102");
    assert_eq!(result["resourceRef"]["name"], "shop-api");
    assert!(
        list["items"][0]["spec"]["template"]["spec"]
            .get("initContainers")
            .is_none(),
        "items are passed back untouched"
    );
}
