//! The Argo CD config management plugin (plugin/argocd): its own `discover`, `init` and
//! `generate` commands, read from plugin.yaml, run in a chart, a kustomization and a
//! plain directory with the environment argocd-cmp-server gives them; and the patch-only
//! install (the plugin/argocd kustomize Component in examples/argocd/install) rendered
//! with the real kustomize, validated as Kubernetes objects.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::k8s::validate_k8s;
use support::output::text;
use support::{repo_root, tool};
use tempfile::TempDir;

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The plugin's `spec`.
fn plugin_spec() -> Value {
    read_yaml(&repo_root().join("plugin/argocd/plugin.yaml"))["spec"].clone()
}

/// `command` followed by `args` of a plugin step (`/init`, `/generate`, `/discover/find`).
fn step(pointer: &str) -> Vec<String> {
    let spec = plugin_spec();
    let step = spec
        .pointer(pointer)
        .unwrap_or_else(|| panic!("plugin.yaml has no spec{pointer}"));
    let strings = |key: &str| -> Vec<String> {
        step[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().expect("string").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut argv = strings("command");
    argv.extend(strings("args"));
    assert!(!argv.is_empty(), "spec{pointer} has no command");
    argv
}

/// A sidecar's world: a PATH with `helm` (Helm 3, as in the Argo CD image), `kustomize`
/// (kubectl's, behind a `kustomize build` shim) and `secretstore`, and Helm homes in /tmp.
struct Sidecar {
    dir: TempDir,
}

impl Sidecar {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        std::os::unix::fs::symlink(tool("helm3"), bin.join("helm")).expect("symlink");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_secretstore"), bin.join("secretstore"))
            .expect("symlink");
        let shim = format!(
            "#!/bin/sh\n# `kustomize build DIR ARGS` as kubectl's kustomize.\n[ \"$1\" = build ] && shift\nexec {} kustomize \"$@\"\n",
            tool("kubectl").display()
        );
        let kustomize = bin.join("kustomize");
        std::fs::write(&kustomize, shim).expect("write shim");
        std::fs::set_permissions(
            &kustomize,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        Sidecar { dir }
    }

    /// Runs a plugin step in `app` with the variables argocd-cmp-server sets, plus `env`.
    fn run(&self, argv: &[String], app: &Path, env: &[(&str, &str)]) -> Output {
        let home = self.dir.path();
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(app)
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/bin:/usr/bin:/bin",
                    home.join("bin").display()
                ),
            )
            .env("HOME", home)
            .env("HELM_CACHE_HOME", home.join("helm/cache"))
            .env("HELM_CONFIG_HOME", home.join("helm/config"))
            .env("HELM_DATA_HOME", home.join("helm/data"))
            .env("ARGOCD_APP_NAME", "shop")
            .env("ARGOCD_APP_NAMESPACE", "shop-prod")
            .env("ARGOCD_APP_PROJECT_NAME", "default")
            .env(
                "ARGOCD_APP_REVISION",
                "4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b",
            )
            .env("ARGOCD_APP_REVISION_SHORT", "4f3c2a1")
            .env("ARGOCD_APP_SOURCE_PATH", "apps/shop")
            .env("ARGOCD_APP_SOURCE_REPO_URL", "https://git.example/shop.git")
            .env("ARGOCD_APP_SOURCE_TARGET_REVISION", "main")
            .env("KUBE_VERSION", "1.33.0")
            .env(
                "KUBE_API_VERSIONS",
                "v1,apps/v1,batch/v1,secretstore.example/v1,apps/v1/Deployment",
            );
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("cannot run the plugin step")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).expect("copy");
        }
    }
}

/// The shop chart with the shop-common subchart as a `file://` dependency.
fn chart_with_dependency(root: &Path) -> PathBuf {
    let app = root.join("shop");
    copy_dir(&repo_root().join("examples/helm/shop"), &app);
    copy_dir(
        &repo_root().join("testdata/charts/shop-common"),
        &root.join("shop-common"),
    );
    let mut chart = std::fs::read_to_string(app.join("Chart.yaml")).expect("Chart.yaml");
    chart.push_str(
        "dependencies:\n  - name: shop-common\n    version: 0.1.0\n    repository: file://../shop-common\n",
    );
    std::fs::write(app.join("Chart.yaml"), chart).expect("write");
    app
}

#[test]
fn renders_a_helm_chart_with_dependencies() {
    let sidecar = Sidecar::new();
    let work = tempfile::tempdir().expect("temp dir");
    let app = chart_with_dependency(work.path());

    let init = sidecar.run(&step("/init"), &app, &[]);
    assert!(
        init.status.success(),
        "init failed:\n{}",
        text(&init.stderr)
    );
    assert!(app.join("charts/shop-common-0.1.0.tgz").is_file());

    let env = [(
        "ARGOCD_ENV_HELM_ARGS",
        "--set replicas=3 --set vaultRole=shop-prod",
    )];
    let out = sidecar.run(&step("/generate"), &app, &env);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "generate failed:\n{}",
        text(&out.stderr)
    );
    // Both the Deployment and the pre-install hook Job: `helm template` prints hooks.
    assert_eq!(
        stdout.matches("- name: secretstore-agent").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("  replicas: 3\n"), "{stdout}");
    assert!(stdout.contains("vault.secretstore.rafay.dev/role: \"shop-prod\""));
    // Release name, namespace, kube version and API versions come from Argo CD's env.
    assert!(stdout.contains("name: shop-capabilities"), "{stdout}");
    assert!(stdout.contains("kubeVersion: \"v1.33.0\""), "{stdout}");
    assert!(stdout.contains("hasExampleApi: \"true\""), "{stdout}");
    assert!(stdout.contains("namespace: \"shop-prod\""), "{stdout}");
    validate_k8s(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
}

#[test]
fn configuration_comes_from_argocd_env() {
    let sidecar = Sidecar::new();
    let work = tempfile::tempdir().expect("temp dir");
    let app = work.path().join("shop");
    copy_dir(&repo_root().join("examples/helm/shop"), &app);
    let env = [
        (
            "ARGOCD_ENV_SECRETSTORE_VAULT_ADDR",
            "https://vault.prod.example:8200",
        ),
        ("ARGOCD_ENV_SECRETSTORE_AUTH_PATH", "auth/k8s-prod"),
    ];
    let out = sidecar.run(&step("/generate"), &app, &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("https://vault.prod.example:8200"),
        "{stdout}"
    );
    assert!(stdout.contains("auth/k8s-prod"), "{stdout}");
}

#[test]
fn a_failing_helm_template_fails_the_render() {
    let sidecar = Sidecar::new();
    let work = tempfile::tempdir().expect("temp dir");
    let app = work.path().join("shop");
    copy_dir(&repo_root().join("examples/helm/shop"), &app);
    std::fs::write(
        app.join("templates/broken.yaml"),
        "{{ required \"values.database is required\" .Values.database }}\n",
    )
    .expect("write");
    let out = sidecar.run(&step("/generate"), &app, &[]);
    assert!(
        !out.status.success(),
        "generate passed:\n{}",
        text(&out.stdout)
    );
    assert!(
        out.stdout.is_empty(),
        "wrote a render:\n{}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("values.database is required"), "{stderr}");

    // Render's refusal of empty input would catch this too; pipefail fails the step on
    // its own: with render told to accept empty input, helm's failure still counts.
    let mut generate = step("/generate");
    let script = generate.last_mut().expect("script");
    *script = script.replace("| secretstore render", "| secretstore render --allow-empty");
    let out = sidecar.run(&generate, &app, &[]);
    assert!(!out.status.success(), "pipefail is off");
    assert!(out.stdout.is_empty());
}

#[test]
fn renders_a_kustomization() {
    let sidecar = Sidecar::new();
    let work = tempfile::tempdir().expect("temp dir");
    let app = work.path();
    std::fs::copy(
        repo_root().join("examples/deployment.yaml"),
        app.join("deployment.yaml"),
    )
    .expect("copy");
    std::fs::write(
        app.join("kustomization.yaml"),
        "resources: [deployment.yaml]\nnamespace: shop-prod\n",
    )
    .expect("write");
    let out = sidecar.run(&step("/generate"), app, &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        stdout.matches("name: secretstore-agent").count(),
        1,
        "{stdout}"
    );
    assert!(stdout.contains("namespace: shop-prod"), "{stdout}");
    validate_k8s(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));

    std::fs::write(
        app.join("kustomization.yaml"),
        "resources: [missing.yaml]\n",
    )
    .expect("write");
    let out = sidecar.run(&step("/generate"), app, &[]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn renders_a_plain_directory() {
    let sidecar = Sidecar::new();
    let work = tempfile::tempdir().expect("temp dir");
    let app = work.path();
    let deployment =
        std::fs::read_to_string(repo_root().join("examples/deployment.yaml")).expect("example");
    std::fs::write(app.join("a-deployment.yaml"), &deployment).expect("write");
    std::fs::write(
        app.join("b-config.json"),
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"k": "v"}}"#,
    )
    .expect("write");
    std::fs::create_dir_all(app.join("nested")).expect("mkdir");
    std::fs::write(
        app.join("nested/job.yaml"),
        deployment.replace("name: shop-api\n  namespace", "name: nested\n  namespace"),
    )
    .expect("write");
    std::fs::create_dir_all(app.join(".git")).expect("mkdir");
    std::fs::write(app.join(".git/config.yaml"), "not: [a manifest").expect("write");

    let out = sidecar.run(&step("/generate"), app, &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        stdout.matches("name: secretstore-agent").count(),
        1,
        "{stdout}"
    );
    assert!(stdout.contains("\"name\": \"cfg\""), "{stdout}");
    assert!(!stdout.contains("name: nested"), "not recursive by default");
    validate_k8s(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));

    let out = sidecar.run(
        &step("/generate"),
        app,
        &[("ARGOCD_ENV_DIRECTORY_RECURSE", "true")],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        stdout.matches("name: secretstore-agent").count(),
        2,
        "{stdout}"
    );

    let empty = tempfile::tempdir().expect("temp dir");
    let out = sidecar.run(&step("/generate"), empty.path(), &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no Helm chart, kustomization"));
}

#[test]
fn discovers_sources_that_use_the_dialect() {
    let sidecar = Sidecar::new();
    let chart = repo_root().join("examples/helm/shop");
    let out = sidecar.run(&step("/discover/find"), &chart, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).trim().is_empty(),
        "shop chart not discovered"
    );

    let other = repo_root().join("testdata/charts/shop-common");
    let out = sidecar.run(&step("/discover/find"), &other, &[]);
    assert_eq!(
        text(&out.stdout).trim(),
        "",
        "a chart without the dialect matched"
    );
}

/// examples/argocd/install (the user's kustomization: Argo CD's install.yaml plus the
/// plugin Component, both pinned) with the remote parts replaced by local ones: the
/// reduced repo-server Deployment for install.yaml, plugin/argocd for the Component.
fn render_install_example() -> Vec<Value> {
    let work = tempfile::tempdir().expect("temp dir");
    let example = repo_root().join("examples/argocd/install");
    let patch = "secretstore-config.yaml";
    std::fs::copy(example.join(patch), work.path().join(patch)).expect("copy");
    std::fs::copy(
        repo_root().join("testdata/argocd/repo-server.yaml"),
        work.path().join("repo-server.yaml"),
    )
    .expect("copy");
    // kustomize loads a Component only from a path relative to the kustomization.
    std::os::unix::fs::symlink(
        repo_root().join("plugin/argocd"),
        work.path().join("plugin"),
    )
    .expect("symlink");
    let mut kustomization = read_yaml(&example.join("kustomization.yaml"));
    let pinned = |list: &Value, prefix: &str| {
        let url = list[0].as_str().expect("url").to_owned();
        assert!(url.starts_with(prefix), "{url}");
        assert!(
            url.contains("/v3.") || url.ends_with("?ref=v0.1.0"),
            "not pinned to a tag: {url}"
        );
    };
    pinned(
        &kustomization["resources"],
        "https://raw.githubusercontent.com/argoproj/argo-cd/",
    );
    pinned(
        &kustomization["components"],
        "https://github.com/secretstore/secretstore//plugin/argocd?ref=",
    );
    kustomization["resources"] = serde_json::json!(["repo-server.yaml"]);
    kustomization["components"] = serde_json::json!(["plugin"]);
    std::fs::write(
        work.path().join("kustomization.yaml"),
        serde_json::to_string(&kustomization).expect("json"),
    )
    .expect("write");
    let out = Command::new(tool("kubectl"))
        .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
        .arg(work.path())
        .output()
        .expect("cannot run kubectl");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    validate_k8s(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    stdout
        .split("\n---\n")
        .map(|d| yaml_serde::from_str(d).expect("yaml"))
        .collect()
}

#[test]
fn the_component_only_patches_an_existing_repo_server() {
    let docs = render_install_example();
    let plugin = repo_root().join("plugin/argocd");
    // Argo CD's own objects pass through; the Component adds two ConfigMaps, nothing else.
    let kinds: Vec<(String, String)> = docs
        .iter()
        .map(|d| {
            let name = d["metadata"]["name"].as_str().expect("name");
            let name = name
                .strip_prefix("secretstore-config-")
                .map_or(name, |_| "secretstore-config");
            (
                d["kind"].as_str().expect("kind").to_owned(),
                name.to_owned(),
            )
        })
        .collect();
    let mut kinds_sorted = kinds.clone();
    kinds_sorted.sort();
    assert_eq!(
        kinds_sorted,
        [
            ("ConfigMap".to_owned(), "secretstore-cmp-plugin".to_owned()),
            ("ConfigMap".to_owned(), "secretstore-config".to_owned()),
            ("Deployment".to_owned(), "argocd-repo-server".to_owned()),
        ]
    );
    for doc in &docs {
        assert_eq!(doc["metadata"]["namespace"], "argocd");
    }
    let config_map = |prefix: &str| {
        docs.iter()
            .find(|d| {
                d["kind"] == "ConfigMap"
                    && d["metadata"]["name"]
                        .as_str()
                        .expect("name")
                        .starts_with(prefix)
            })
            .expect("ConfigMap")
    };
    let plugin_yaml = std::fs::read_to_string(plugin.join("plugin.yaml")).expect("plugin.yaml");
    assert_eq!(
        config_map("secretstore-cmp-plugin")["data"]["plugin.yaml"],
        plugin_yaml.as_str()
    );
    // The example's patch replaced the Component's default configuration.
    let config = config_map("secretstore-config");
    let config_name = config["metadata"]["name"].as_str().expect("name");
    let config_yaml: Value =
        yaml_serde::from_str(config["data"]["config.yaml"].as_str().expect("config.yaml"))
            .expect("yaml");
    assert_eq!(
        config_yaml["vault"]["address"],
        "https://vault.example.com:8200"
    );

    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let names = |key: &str| -> Vec<String> {
        let mut names: Vec<String> = pod[key]
            .as_array()
            .expect("list")
            .iter()
            .map(|c| c["name"].as_str().expect("name").to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names("containers"),
        ["argocd-repo-server", "secretstore-cmp"]
    );
    assert_eq!(names("initContainers"), ["copyutil", "secretstore-install"]);
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]
            ["kubectl.kubernetes.io/default-container"],
        "argocd-repo-server"
    );
    let volumes = pod["volumes"].as_array().expect("volumes");
    let sidecar = pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "secretstore-cmp")
        .expect("sidecar");
    for mount in sidecar["volumeMounts"].as_array().expect("mounts") {
        let name = &mount["name"];
        assert!(
            volumes.iter().any(|v| &v["name"] == name),
            "no volume {name}"
        );
    }
    // The hashed ConfigMap name reaches the volume, so a new configuration rolls the pod.
    let config_volume = volumes
        .iter()
        .find(|v| v["name"] == "secretstore-config")
        .expect("config volume");
    assert_eq!(config_volume["configMap"]["name"], config_name);
    let env = sidecar["env"].as_array().expect("env");
    let config_env = env
        .iter()
        .find(|e| e["name"] == "SECRETSTORE_CONFIG")
        .expect("SECRETSTORE_CONFIG");
    let config_mount = sidecar["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == "secretstore-config")
        .expect("config mount");
    assert_eq!(
        config_env["value"].as_str().expect("value"),
        format!(
            "{}/config.yaml",
            config_mount["mountPath"].as_str().expect("path")
        )
    );
    assert_eq!(
        sidecar["command"],
        serde_json::json!(["/var/run/argocd/argocd-cmp-server"])
    );
    // The `images` entries pin both images; the repo-server's own image is untouched.
    let images: Vec<&str> = pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .chain(pod["initContainers"].as_array().expect("init"))
        .map(|c| c["image"].as_str().expect("image"))
        .collect();
    assert!(
        images.iter().all(|i| *i == "quay.io/argoproj/argocd:v3.1.9"
            || *i == "ghcr.io/secretstore/secretstore:0.1.0"),
        "{images:?}"
    );
}

#[test]
fn the_cluster_wide_configuration_is_read_and_plugin_env_overrides_it() {
    let sidecar = Sidecar::new();
    let work = tempfile::tempdir().expect("temp dir");
    let app = work.path().join("shop");
    copy_dir(&repo_root().join("examples/helm/shop"), &app);
    // The Component's default configuration is valid.
    let default_config = repo_root()
        .join("plugin/argocd/config.yaml")
        .display()
        .to_string();
    let out = sidecar.run(
        &step("/generate"),
        &app,
        &[("SECRETSTORE_CONFIG", &default_config)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // What the sidecar's SECRETSTORE_CONFIG names once the example's patch replaced it.
    let patch = read_yaml(&repo_root().join("examples/argocd/install/secretstore-config.yaml"));
    let config_text = patch["data"]["config.yaml"].as_str().expect("config.yaml");
    let config_yaml: Value = yaml_serde::from_str(config_text).expect("yaml");
    let address = config_yaml["vault"]["address"]
        .as_str()
        .expect("vault.address");
    let config = work.path().join("config.yaml");
    std::fs::write(&config, config_text).expect("write");
    let config = config.display().to_string();
    let out = sidecar.run(&step("/generate"), &app, &[("SECRETSTORE_CONFIG", &config)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(address), "{}", text(&out.stdout));

    let out = sidecar.run(
        &step("/generate"),
        &app,
        &[
            ("SECRETSTORE_CONFIG", &config),
            (
                "ARGOCD_ENV_SECRETSTORE_VAULT_ADDR",
                "https://vault.team-b.example:8200",
            ),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("https://vault.team-b.example:8200"),
        "{stdout}"
    );
    assert!(!stdout.contains(address), "{stdout}");
}

#[test]
fn helm_chart_values_carry_the_same_plugin() {
    let values = read_yaml(&repo_root().join("plugin/argocd/values.yaml"));
    assert_eq!(
        values["configs"]["cmp"]["plugins"]["secretstore"],
        plugin_spec(),
        "values.yaml and plugin.yaml disagree"
    );
    let repo = &values["repoServer"];
    let mut volumes: Vec<&str> = repo["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| v["name"].as_str().expect("name"))
        .collect();
    // The argo-cd chart's own repo-server volumes.
    volumes.extend(["var-files", "plugins"]);
    for container in [&repo["extraContainers"][0], &repo["initContainers"][0]] {
        for mount in container["volumeMounts"].as_array().expect("mounts") {
            let name = mount["name"].as_str().expect("name");
            assert!(volumes.contains(&name), "no volume {name}");
        }
    }
    // The cluster-wide configuration is a real setting: a ConfigMap the chart creates,
    // named by the sidecar's volume and read through SECRETSTORE_CONFIG.
    let config_map = &values["extraObjects"][0];
    assert_eq!(config_map["kind"], "ConfigMap");
    let name = config_map["metadata"]["name"].as_str().expect("name");
    assert!(repo["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .any(|v| v["configMap"]["name"] == name));
    let config: Value = yaml_serde::from_str(
        config_map["data"]["config.yaml"]
            .as_str()
            .expect("config.yaml"),
    )
    .expect("yaml");
    assert!(config["vault"]["address"]
        .as_str()
        .expect("address")
        .starts_with("https://"));
    assert!(repo["extraContainers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .any(|e| e["name"] == "SECRETSTORE_CONFIG"));
}

#[test]
fn example_application_renders_with_its_plugin_env() {
    let application = read_yaml(&repo_root().join("examples/argocd/application.yaml"));
    let source = &application["spec"]["source"];
    let plugin_name =
        read_yaml(&repo_root().join("plugin/argocd/plugin.yaml"))["metadata"]["name"].clone();
    assert_eq!(source["plugin"]["name"], plugin_name);
    // Argo CD passes each plugin env entry as ARGOCD_ENV_<name>.
    let env: Vec<(String, String)> = source["plugin"]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                format!("ARGOCD_ENV_{}", e["name"].as_str().expect("name")),
                e["value"].as_str().expect("value").to_string(),
            )
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let path = source["path"].as_str().expect("path");
    let work = tempfile::tempdir().expect("temp dir");
    let app = work.path().join("app");
    copy_dir(&repo_root().join(path), &app);
    let sidecar = Sidecar::new();
    let out = sidecar.run(&step("/generate"), &app, &env);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("  replicas: 3\n"), "{stdout}");
    assert!(stdout.contains("auth/kubernetes-prod"), "{stdout}");
    validate_k8s(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
}
