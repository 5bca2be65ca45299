//! Helm integration with the real clients (Helm 3.17 and 4.1): the Helm 3
//! `--post-renderer` executable, the Helm 4 post-renderer plugin (plugin/helm/secretstore),
//! and what each does with hooks, on examples/helm/shop (an opted-in Deployment and an
//! opted-in `pre-install` hook Job).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::helm::HelmHome;
use support::k8s::validate_k8s;
use support::output::text;
use support::{repo_root, secretstore};
use tempfile::TempDir;

/// A directory holding only `secretstore`, to put first on Helm's PATH.
fn bin_dir() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_secretstore"),
        dir.path().join("secretstore"),
    )
    .expect("symlink");
    dir
}

/// `command` with `bin` first on its PATH and none of the variables secretstore reads,
/// so that the post-renderer sees only what a test sets.
fn with_path(mut command: Command, bin: &Path) -> Command {
    let path = std::env::var("PATH").unwrap_or_default();
    command.env("PATH", format!("{}:{path}", bin.display()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if ["VAULT_", "BAO_", "SECRETSTORE_", "ARGOCD_ENV_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(&*name);
        }
    }
    command
}

fn chart() -> PathBuf {
    repo_root().join("examples/helm/shop")
}

/// The stream's documents by their `# Source:` template, e.g. `migrate-job.yaml`.
fn document<'a>(stream: &'a str, template: &str) -> &'a str {
    let marker = format!("# Source: shop/templates/{template}\n");
    let start = stream
        .find(&marker)
        .unwrap_or_else(|| panic!("no {template} in:\n{stream}"));
    let rest = &stream[start..];
    let end = rest[1..].find("\n---").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

fn is_rendered(doc: &str) -> bool {
    doc.contains("name: secretstore-agent")
        && doc.contains("vault.secretstore.rafay.dev/status: injected")
}

fn run_ok(mut command: Command) -> String {
    let output = command.output().expect("cannot run helm");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[test]
fn helm3_post_renderer_renders_manifests_but_not_hooks() {
    let home = HelmHome::new();
    let bin = bin_dir();
    let mut helm = with_path(home.command("helm3"), bin.path());
    helm.args(["template", "shop"])
        .arg(chart())
        .args(["--namespace", "shop"])
        .args([
            "--post-renderer",
            "secretstore",
            "--post-renderer-args",
            "render",
        ]);
    let out = run_ok(helm);
    assert!(is_rendered(document(&out, "deployment.yaml")), "{out}");
    // Helm 3 hands only the release manifests to a post-renderer, never the hooks:
    // the pre-install Job comes out as the chart wrote it.
    let hook = document(&out, "migrate-job.yaml");
    assert!(hook.contains("helm.sh/hook: pre-install"), "{hook}");
    assert!(!is_rendered(hook), "Helm 3 post-rendered a hook:\n{hook}");

    // So with Helm 3, render the `helm template` stream instead: hooks included.
    let mut helm = home.command("helm3");
    helm.args(["template", "shop"])
        .arg(chart())
        .args(["--namespace", "shop"]);
    let stream = run_ok(helm);
    let rendered = render_stdin(&stream);
    assert!(is_rendered(document(&rendered, "deployment.yaml")));
    assert!(is_rendered(document(&rendered, "migrate-job.yaml")));
    validate_k8s(&rendered).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
}

fn render_stdin(input: &str) -> String {
    let output = support::run_with_stdin(secretstore().arg("render"), input.as_bytes());
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

#[test]
fn helm3_post_renderer_refusal_fails_helm_with_the_reason() {
    let home = HelmHome::new();
    let bin = bin_dir();
    let mut helm = with_path(home.command("helm3"), bin.path());
    helm.args(["template", "shop"])
        .arg(chart())
        .args(["--set", "vaultRole="])
        .args([
            "--post-renderer",
            "secretstore",
            "--post-renderer-args",
            "render",
        ]);
    let output: Output = helm.output().expect("helm");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("error[SS102]") && stderr.contains("Deployment shop-api"),
        "{stderr}"
    );
}

fn install_helm4_plugin(home: &HelmHome) {
    let mut helm = home.command("helm4");
    helm.args(["plugin", "install"])
        .arg(repo_root().join("plugin/helm/secretstore"));
    run_ok(helm);
    let mut list = home.command("helm4");
    list.args(["plugin", "list"]);
    let listed = run_ok(list);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("secretstore") && l.contains("postrenderer/v1")),
        "{listed}"
    );
}

#[test]
fn helm4_plugin_renders_manifests_and_hooks() {
    let home = HelmHome::new();
    install_helm4_plugin(&home);
    let bin = bin_dir();
    let mut helm = with_path(home.command("helm4"), bin.path());
    helm.args(["template", "shop"])
        .arg(chart())
        .args(["--namespace", "shop", "--post-renderer", "secretstore"])
        .arg("--post-renderer-args=--vault-addr=https://vault.ci.example:8200");
    let out = run_ok(helm);
    // Helm 4 passes hooks through post-renderers too.
    assert!(is_rendered(document(&out, "deployment.yaml")), "{out}");
    assert!(is_rendered(document(&out, "migrate-job.yaml")), "{out}");
    assert_eq!(out.matches("https://vault.ci.example:8200").count(), 2);
    validate_k8s(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
}

#[test]
fn helm4_plugin_refusal_fails_helm_with_the_reason() {
    let home = HelmHome::new();
    install_helm4_plugin(&home);
    let bin = bin_dir();
    let mut helm = with_path(home.command("helm4"), bin.path());
    helm.args(["template", "shop"]).arg(chart()).args([
        "--set",
        "vaultRole=",
        "--post-renderer",
        "secretstore",
    ]);
    let output = helm.output().expect("helm");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    // Helm 4 itself only says the plugin failed; the plugin's wrapper brings render's
    // reasons to Helm's stderr, for the hook Job as well.
    assert!(
        stderr.contains("post-renderer plugin \"secretstore\""),
        "{stderr}"
    );
    assert!(stderr.contains("Deployment shop-api"), "{stderr}");
    assert!(stderr.contains("Job shop-migrate"), "{stderr}");
}

#[test]
fn helm4_plugin_version_is_the_crate_version() {
    let text = std::fs::read_to_string(repo_root().join("plugin/helm/secretstore/plugin.yaml"))
        .expect("plugin.yaml");
    let plugin: serde_json::Value = yaml_serde::from_str(&text).expect("yaml");
    assert_eq!(plugin["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(plugin["type"], "postrenderer/v1");
}

/// The templates the agent spec of a rendered stream's first pod carries (SPEC 1.4).
fn agent_templates(stream: &str) -> Vec<String> {
    let doc: serde_json::Value = yaml_serde::from_str(stream).expect("one YAML document");
    let agent = &doc["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(agent["name"], "secretstore-agent", "{stream}");
    let spec = agent["env"]
        .as_array()
        .expect("agent env")
        .iter()
        .find(|e| e["name"] == "SECRETSTORE_SPEC")
        .and_then(|e| e["value"].as_str())
        .expect("SECRETSTORE_SPEC");
    // What the agent reads: the kubelet's `$(VAR)` expansion turns render's `$$` into `$`.
    let spec = support::pod::expand(spec, &Default::default());
    let spec: serde_json::Value = serde_json::from_str(&spec).expect("agent spec JSON");
    let mut texts: Vec<String> = spec["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .map(|t| t["text"].as_str().expect("text").to_owned())
        .collect();
    texts.sort();
    texts
}

/// A chart carrying secretstore templates verbatim, in a chart template and in values
/// (testdata/charts/templated): `${ }` and `{% %}` mean nothing to Helm, so `helm template`
/// writes them unchanged, with Helm 3 and Helm 4; through the post-renderer (Helm 3's
/// executable, Helm 4's plugin) the pod is expanded and the agent spec carries each
/// template's text exactly as the chart wrote it.
#[test]
fn templates_in_a_chart_pass_helm_unchanged_and_post_render_into_the_agent_spec() {
    let chart = repo_root().join("testdata/charts/templated");
    let url = "postgresql://${ db.username }:${ db.password | urlencode }@db.shop:5432/shop";
    let properties =
        "{% if db.username %}user=${ db.username }\n{% endif %}password=${ db.password | json }\n";
    // The annotation lines as the chart's template and its values make them.
    let lines = [
        format!("           \"template\": \"{url}\"}}\n"),
        r#"           "template": "{% if db.username %}user=${ db.username }\n{% endif %}password=${ db.password | json }\n"}"#.to_owned(),
    ];
    let mut expected = vec![url.to_owned(), properties.to_owned()];
    expected.sort();
    let home = HelmHome::new();
    install_helm4_plugin(&home);
    let bin = bin_dir();
    for helm in ["helm3", "helm4"] {
        let mut plain = home.command(helm);
        plain.args(["template", "shop"]).arg(&chart);
        let plain = run_ok(plain);
        for line in &lines {
            assert!(plain.contains(line.as_str()), "{helm}: {line}\n{plain}");
        }
        assert!(!is_rendered(&plain), "{plain}");

        let mut post = with_path(home.command(helm), bin.path());
        post.args(["template", "shop"])
            .arg(&chart)
            .args(["--post-renderer", "secretstore"]);
        if helm == "helm3" {
            post.args(["--post-renderer-args", "render"]);
        }
        let out = run_ok(post);
        assert!(is_rendered(&out), "{helm}: {out}");
        for line in &lines {
            assert!(out.contains(line.as_str()), "{helm}: {line}\n{out}");
        }
        assert_eq!(agent_templates(&out), expected, "{helm}");
        validate_k8s(&out).unwrap_or_else(|e| panic!("{helm}: {e}\n{out}"));
    }
}
