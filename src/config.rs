//! Configuration: one YAML file, overridden by env vars (also in their `ARGOCD_ENV_` form,
//! as Argo CD passes plugin env) and then by flags; named `clusters` override the top level.

use crate::duration::{parse_refresh, parse_seconds};
use crate::pod::agent_spec::{AGENT_MEMORY_LIMIT_MIB, LOG_FORMAT_ENV};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const DEFAULT_VAULT_ADDRESS: &str = "https://vault.vault.svc:8200";
pub const DEFAULT_AUTH_PATH: &str = "auth/kubernetes";
pub const DEFAULT_IMAGE_REPOSITORY: &str = "ghcr.io/secretstore/secretstore";
/// The release whose image the default agent image is. It moves only in a release that
/// changes the agent (`agent`, `exec`, or the spec format, `AgentSpec::VERSION`), not with
/// every CLI version, so re-rendering with an upgraded CLI leaves pod templates unchanged
/// and rolls no workload (docs/src/reference/compatibility.md).
pub const AGENT_IMAGE_VERSION: &str = "0.1.0";
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 120;

/// The configuration file's shape. Every field is optional; [`Settings`] holds the
/// resolved values.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    #[serde(default)]
    pub vault: VaultConfig,
    #[serde(default)]
    pub agent: AgentConfig,
    /// Image (exact, or repository without tag/digest) → the command its ENTRYPOINT runs.
    #[serde(default)]
    pub entrypoints: BTreeMap<String, Vec<String>>,
    /// More kinds (for CRDs) → dotted path of their pod template, e.g. `spec.template`.
    #[serde(default)]
    pub pod_template_paths: BTreeMap<String, String>,
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VaultConfig {
    pub address: Option<String>,
    pub auth_path: Option<String>,
    pub namespace: Option<String>,
    pub audience: Option<String>,
    pub ca_cert: Option<CaCertSource>,
    pub tls_server_name: Option<String>,
}

/// Where the init container finds the CA bundle for Vault's TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaCertSource {
    pub config_map: Option<String>,
    pub secret: Option<String>,
    /// Key in the ConfigMap or Secret; default `ca.crt`.
    pub key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentConfig {
    pub image: Option<String>,
    pub image_pull_policy: Option<String>,
    /// Kubernetes `resources` for the init container.
    pub resources: Option<serde_json::Value>,
    /// Deadline for the agent, e.g. `90s`, `2m`, or seconds as a number.
    pub timeout: Option<Duration>,
    /// Live mode for every opted-in pod: how often secrets are refreshed (`5m`; `off` or
    /// `0` for none). A pod's `refresh` annotation overrides it.
    pub refresh: Option<Duration>,
    /// How the agent and `exec` log: `logfmt` (default) or `json`.
    pub log_format: Option<LogFormat>,
    /// Prometheus metrics of live-mode sidecars.
    pub metrics: Option<MetricsConfig>,
}

/// The agent's and `exec`'s log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Logfmt,
    Json,
}

impl LogFormat {
    fn parse(text: &str) -> Result<LogFormat, String> {
        match text {
            "logfmt" => Ok(LogFormat::Logfmt),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "SECRETSTORE_LOG_FORMAT is `{other}`: use `logfmt` or `json`"
            )),
        }
    }
}

/// `agent.metrics`: where live sidecars serve `GET /metrics`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsConfig {
    /// The sidecar's metrics port (1-65535); a pod's `metrics-port` annotation overrides it.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Duration {
    Seconds(u64),
    Text(String),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterConfig {
    #[serde(default)]
    pub vault: VaultConfig,
    #[serde(default)]
    pub agent: AgentConfig,
    #[serde(default)]
    pub entrypoints: BTreeMap<String, Vec<String>>,
}

/// Overrides from the command line; `None` leaves the lower layers in force.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<String>,
    pub cluster: Option<String>,
    pub vault_addr: Option<String>,
    pub auth_path: Option<String>,
    pub agent_image: Option<String>,
    pub kube_version: Option<String>,
}

/// The resolved configuration render uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub vault_address: String,
    pub auth_path: String,
    pub vault_namespace: Option<String>,
    pub audience: Option<String>,
    pub ca_cert: Option<CaCertSource>,
    pub tls_server_name: Option<String>,
    pub agent_image: String,
    pub image_pull_policy: String,
    pub resources: serde_json::Value,
    pub timeout_seconds: u64,
    pub entrypoints: BTreeMap<String, Vec<String>>,
    pub pod_template_paths: BTreeMap<String, String>,
    /// Live mode's refresh interval for every pod, in seconds; `None` = off.
    pub refresh_seconds: Option<u64>,
    /// Live mode's metrics port for every live pod; `None` = no metrics.
    pub metrics_port: Option<u16>,
    /// The target cluster's Kubernetes version; `None` = unknown (assumed recent enough).
    pub kube_version: Option<KubeVersion>,
    /// How the agent and `exec` log; render passes anything but the default on.
    pub log_format: LogFormat,
    /// Argo CD's `KUBE_VERSION` when it is not a version: ignored (with a warning) unless
    /// a pod asks for live mode, which needs to know (SS131).
    pub kube_version_unreadable: Option<String>,
}

/// A Kubernetes `major.minor` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
}

impl KubeVersion {
    /// The first version with native sidecars (init containers with `restartPolicy:
    /// Always`) enabled by default.
    pub const NATIVE_SIDECARS: KubeVersion = KubeVersion {
        major: 1,
        minor: 29,
    };

    /// Parses `1.29`, `v1.29.3`, `1.29+`, `1.30.2-gke.1000` (Argo CD's `KUBE_VERSION` and
    /// `kubectl version` forms).
    pub fn parse(text: &str) -> Result<KubeVersion, String> {
        let bad = || format!("`{text}` is not a Kubernetes version (examples: 1.29, v1.30.2)");
        let t = text.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let mut parts = t.splitn(3, '.');
        let major = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let minor_text: String = parts
            .next()
            .ok_or_else(bad)?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let minor = minor_text.parse().map_err(|_| bad())?;
        Ok(KubeVersion { major, minor })
    }
}

impl std::fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            vault_address: DEFAULT_VAULT_ADDRESS.into(),
            auth_path: DEFAULT_AUTH_PATH.into(),
            vault_namespace: None,
            audience: None,
            ca_cert: None,
            tls_server_name: None,
            agent_image: default_agent_image(),
            image_pull_policy: "IfNotPresent".into(),
            resources: default_resources(),
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            entrypoints: BTreeMap::new(),
            pod_template_paths: BTreeMap::new(),
            refresh_seconds: None,
            metrics_port: None,
            kube_version: None,
            log_format: LogFormat::Logfmt,
            kube_version_unreadable: None,
        }
    }
}

pub fn default_agent_image() -> String {
    format!("{DEFAULT_IMAGE_REPOSITORY}:{AGENT_IMAGE_VERSION}")
}

fn default_resources() -> serde_json::Value {
    serde_json::json!({
        "requests": {"cpu": "10m", "memory": "16Mi"},
        "limits": {"cpu": "200m", "memory": format!("{AGENT_MEMORY_LIMIT_MIB}Mi")}
    })
}

/// Reads an env var, falling back to its `ARGOCD_ENV_` form.
pub fn env_var(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .or_else(|| lookup(&format!("ARGOCD_ENV_{name}")))
        .filter(|v| !v.is_empty())
}

impl Settings {
    /// Resolves defaults ← file ← cluster ← env ← flags. `lookup` reads env vars (injected
    /// for tests).
    pub fn resolve(
        overrides: &Overrides,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, String> {
        let path = overrides
            .config
            .clone()
            .or_else(|| env_var(lookup, "SECRETSTORE_CONFIG"));
        let file = match &path {
            Some(p) => ConfigFile::load(Path::new(p))?,
            None => ConfigFile::default(),
        };
        let cluster = overrides
            .cluster
            .clone()
            .or_else(|| env_var(lookup, "SECRETSTORE_CLUSTER"));
        let mut settings = Settings::from_file(&file, cluster.as_deref())?;
        let env = |name: &str| env_var(lookup, name);
        if let Some(v) = env("SECRETSTORE_VAULT_ADDR") {
            settings.vault_address = v;
        }
        if let Some(v) = env("SECRETSTORE_AUTH_PATH") {
            settings.auth_path = v;
        }
        if let Some(v) = env("SECRETSTORE_VAULT_NAMESPACE") {
            settings.vault_namespace = Some(v);
        }
        if let Some(v) = env("SECRETSTORE_AUDIENCE") {
            settings.audience = Some(v);
        }
        if let Some(v) = env("SECRETSTORE_TLS_SERVER_NAME") {
            settings.tls_server_name = Some(v);
        }
        if let Some(v) = env("SECRETSTORE_AGENT_IMAGE") {
            settings.agent_image = v;
        }
        if let Some(v) = env("SECRETSTORE_AGENT_TIMEOUT") {
            settings.timeout_seconds =
                parse_seconds(&v).map_err(|e| format!("SECRETSTORE_AGENT_TIMEOUT: {e}"))?;
        }
        if let Some(v) = env(LOG_FORMAT_ENV) {
            settings.log_format = LogFormat::parse(&v)?;
        }
        // Argo CD sets KUBE_VERSION for config-management plugins; ours take precedence.
        // A version given to secretstore must be one; Argo CD's is whatever the cluster
        // reports, which no render should fail on unless it needs the version.
        let explicit = overrides
            .kube_version
            .clone()
            .or_else(|| env("SECRETSTORE_KUBE_VERSION"));
        if let Some(v) = explicit {
            settings.kube_version = Some(KubeVersion::parse(&v)?);
        } else if let Some(v) = lookup("KUBE_VERSION").filter(|v| !v.is_empty()) {
            match KubeVersion::parse(&v) {
                Ok(version) => settings.kube_version = Some(version),
                Err(_) => settings.kube_version_unreadable = Some(v),
            }
        }
        if let Some(v) = &overrides.vault_addr {
            settings.vault_address = v.clone();
        }
        if let Some(v) = &overrides.auth_path {
            settings.auth_path = v.clone();
        }
        if let Some(v) = &overrides.agent_image {
            settings.agent_image = v.clone();
        }
        settings.auth_path = normalise_auth_path(&settings.auth_path);
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses values the agent could not send to Vault as they are: a value with a line
    /// break would end up in an HTTP header or the request line, credentials in the
    /// address would be logged, a `..` in the auth path would reach another endpoint.
    pub fn validate(&self) -> Result<(), String> {
        use crate::vault::address::{has_dot_segment, is_header_safe, redacted_address};
        let shown = redacted_address(&self.vault_address);
        let url = url::Url::parse(&self.vault_address)
            .map_err(|e| format!("vault.address {shown:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "vault.address {shown:?} must be an http:// or https:// URL with a host"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "vault.address {shown:?} carries a user name or password: the agent authenticates with its service account, so remove the `user:password@` part"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "vault.address {shown:?} has a query or fragment: give scheme, host, port and an optional path prefix only"
            ));
        }
        let fields = [
            ("vault.authPath", Some(&self.auth_path)),
            ("vault.namespace", self.vault_namespace.as_ref()),
            ("vault.tlsServerName", self.tls_server_name.as_ref()),
            ("vault.audience", self.audience.as_ref()),
        ];
        for (field, value) in fields {
            if let Some(value) = value.filter(|v| !is_header_safe(v)) {
                return Err(format!(
                    "{field} {value:?} holds a line break, a tab or another character that cannot be sent to Vault in a header or URL as it is: write it on one line"
                ));
            }
        }
        if has_dot_segment(&self.auth_path) {
            return Err(format!(
                "vault.authPath {:?} has a `.` or `..` segment: give the auth mount's path, e.g. auth/kubernetes",
                self.auth_path
            ));
        }
        Ok(())
    }

    /// Applies a configuration file, and the named cluster's overrides, onto the defaults.
    pub fn from_file(file: &ConfigFile, cluster: Option<&str>) -> Result<Settings, String> {
        let mut settings = Settings::default();
        settings.apply(&file.vault, &file.agent, &file.entrypoints)?;
        settings.pod_template_paths = file.pod_template_paths.clone();
        if let Some(name) = cluster {
            let Some(c) = file.clusters.get(name) else {
                let known: Vec<&str> = file.clusters.keys().map(String::as_str).collect();
                return Err(format!(
                    "cluster `{name}` is not in the configuration's `clusters` (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            };
            settings.apply(&c.vault, &c.agent, &c.entrypoints)?;
        }
        settings.auth_path = normalise_auth_path(&settings.auth_path);
        Ok(settings)
    }

    fn apply(
        &mut self,
        vault: &VaultConfig,
        agent: &AgentConfig,
        entrypoints: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), String> {
        let set = |target: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                *target = v.clone();
            }
        };
        set(&mut self.vault_address, &vault.address);
        set(&mut self.auth_path, &vault.auth_path);
        if vault.namespace.is_some() {
            self.vault_namespace = vault.namespace.clone();
        }
        if vault.audience.is_some() {
            self.audience = vault.audience.clone();
        }
        if let Some(ca) = &vault.ca_cert {
            if ca.config_map.is_some() == ca.secret.is_some() {
                return Err(
                    "vault.caCert needs exactly one of `configMap` or `secret` (with an optional `key`, default `ca.crt`)".into(),
                );
            }
            self.ca_cert = Some(ca.clone());
        }
        if vault.tls_server_name.is_some() {
            self.tls_server_name = vault.tls_server_name.clone();
        }
        set(&mut self.agent_image, &agent.image);
        set(&mut self.image_pull_policy, &agent.image_pull_policy);
        if let Some(r) = &agent.resources {
            self.resources = r.clone();
        }
        if let Some(t) = &agent.timeout {
            self.timeout_seconds = match t {
                Duration::Seconds(s) => *s,
                Duration::Text(s) => parse_seconds(s).map_err(|e| format!("agent.timeout: {e}"))?,
            };
        }
        if let Some(r) = &agent.refresh {
            self.refresh_seconds = match r {
                Duration::Seconds(s) => parse_refresh(&s.to_string()),
                Duration::Text(s) => parse_refresh(s),
            }
            .map_err(|e| format!("agent.refresh: {e}"))?;
        }
        if let Some(f) = agent.log_format {
            self.log_format = f;
        }
        if let Some(port) = agent.metrics.as_ref().and_then(|m| m.port) {
            if port == 0 {
                return Err("agent.metrics.port is 0: give the sidecar's metrics port (1-65535), or leave it out for no metrics".into());
            }
            self.metrics_port = Some(port);
        }
        for (image, command) in entrypoints {
            self.entrypoints.insert(image.clone(), command.clone());
        }
        Ok(())
    }

    /// The command an image's ENTRYPOINT runs, by exact image, then by repository.
    pub fn entrypoint(&self, image: &str) -> Option<&[String]> {
        self.entrypoints
            .get(image)
            .or_else(|| self.entrypoints.get(image_repository(image)))
            .map(Vec::as_slice)
    }
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
        ConfigFile::parse(&text).map_err(|e| format!("configuration {}: {e}", path.display()))
    }

    /// Parses a configuration, or a Kubernetes-style object carrying one in its `spec`
    /// (a kustomize transformer's or a KRM function's config, whose `apiVersion`, `kind`
    /// and `metadata` are the tool's).
    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        if text.trim().is_empty() {
            return Ok(ConfigFile::default());
        }
        let value: serde_json::Value = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
        if value.get("apiVersion").is_none() || value.get("kind").is_none() {
            // Parsed again as the type, for errors with their line and column.
            return yaml_serde::from_str(text).map_err(|e| e.to_string());
        }
        match value.get("spec") {
            None | Some(serde_json::Value::Null) => Ok(ConfigFile::default()),
            Some(spec) => serde_json::from_value(spec.clone()).map_err(|e| format!("spec: {e}")),
        }
    }
}

/// `registry/repo:tag@digest` → `registry/repo`.
pub fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

fn normalise_auth_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.starts_with("auth/") {
        trimmed.to_string()
    } else {
        format!("auth/{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_agent_image_is_a_released_version() {
        let numbers = |v: &str| -> Vec<u64> {
            let release = v.split('-').next().unwrap_or(v);
            release.split('.').map(|n| n.parse().unwrap()).collect()
        };
        assert!(numbers(AGENT_IMAGE_VERSION) <= numbers(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn layers_apply_in_order() {
        let file = ConfigFile::parse(
            "vault:\n  address: https://file:8200\n  authPath: kubernetes\nclusters:\n  eu:\n    vault:\n      authPath: auth/k8s-eu\n",
        )
        .unwrap();
        let s = Settings::from_file(&file, Some("eu")).unwrap();
        assert_eq!(s.vault_address, "https://file:8200");
        assert_eq!(s.auth_path, "auth/k8s-eu");
        assert!(Settings::from_file(&file, Some("us")).is_err());
    }

    #[test]
    fn config_in_a_transformer_spec() {
        let text = "apiVersion: secretstore.rafay.dev/v1alpha1\nkind: SecretStoreTransformer\nmetadata:\n  name: s\nspec:\n  vault:\n    authPath: auth/k8s-prod\n";
        let file = ConfigFile::parse(text).unwrap();
        assert_eq!(file.vault.auth_path.as_deref(), Some("auth/k8s-prod"));
        let bare = "apiVersion: x/v1\nkind: SecretStoreTransformer\nmetadata: {name: s}\n";
        assert_eq!(ConfigFile::parse(bare).unwrap(), ConfigFile::default());
        let typo = "apiVersion: x/v1\nkind: K\nspec:\n  vualt: {}\n";
        assert!(ConfigFile::parse(typo)
            .unwrap_err()
            .starts_with("spec: unknown field `vualt`"));
        assert!(ConfigFile::parse("vualt: {}\n").is_err());
    }

    #[test]
    fn argocd_env_form_is_honoured() {
        let lookup = |name: &str| match name {
            "ARGOCD_ENV_SECRETSTORE_VAULT_ADDR" => Some("https://argo:8200".to_string()),
            _ => None,
        };
        let s = Settings::resolve(&Overrides::default(), &lookup).unwrap();
        assert_eq!(s.vault_address, "https://argo:8200");
        let flags = Overrides {
            vault_addr: Some("https://flag:8200".into()),
            ..Overrides::default()
        };
        assert_eq!(
            Settings::resolve(&flags, &lookup).unwrap().vault_address,
            "https://flag:8200"
        );
    }

    #[test]
    fn durations_and_repositories() {
        assert_eq!(parse_seconds("1h30m").unwrap(), 5400);
        assert_eq!(parse_seconds("45").unwrap(), 45);
        assert!(parse_seconds("soon").is_err());
        assert_eq!(
            image_repository("reg:5000/app:1.2@sha256:ab"),
            "reg:5000/app"
        );
        assert_eq!(image_repository("reg:5000/app"), "reg:5000/app");
    }

    #[test]
    fn kube_versions_and_refresh() {
        for (text, minor) in [
            ("1.29", 29),
            ("v1.30.2", 30),
            ("1.28+", 28),
            ("1.31.1-gke.100", 31),
        ] {
            assert_eq!(
                KubeVersion::parse(text).unwrap(),
                KubeVersion { major: 1, minor }
            );
        }
        assert!(KubeVersion::parse("latest").is_err());
        assert!(KubeVersion::parse("1").is_err());
        assert!(KubeVersion::parse("1.28") < Ok(KubeVersion::NATIVE_SIDECARS));
        let lookup = |name: &str| match name {
            "KUBE_VERSION" => Some("1.28".to_string()),
            "ARGOCD_ENV_SECRETSTORE_KUBE_VERSION" => Some("1.30".to_string()),
            _ => None,
        };
        let s = Settings::resolve(&Overrides::default(), &lookup).unwrap();
        assert_eq!(
            s.kube_version,
            Some(KubeVersion {
                major: 1,
                minor: 30
            })
        );
        let argo_only = |name: &str| (name == "KUBE_VERSION").then(|| "1.28".to_string());
        let s = Settings::resolve(&Overrides::default(), &argo_only).unwrap();
        assert_eq!(
            s.kube_version,
            Some(KubeVersion {
                major: 1,
                minor: 28
            })
        );
        assert_eq!(parse_refresh("off").unwrap(), None);
        assert_eq!(parse_refresh("0").unwrap(), None);
        assert_eq!(parse_refresh("1h30m").unwrap(), Some(5400));
        let file = ConfigFile::parse("agent:\n  refresh: 5m\n").unwrap();
        assert_eq!(
            Settings::from_file(&file, None).unwrap().refresh_seconds,
            Some(300)
        );
    }

    #[test]
    fn metrics_port() {
        let port = |yaml: &str| {
            let file = ConfigFile::parse(yaml).map_err(|e| e.to_string())?;
            Settings::from_file(&file, None).map(|s| s.metrics_port)
        };
        assert_eq!(port("agent:\n  metrics:\n    port: 9102\n"), Ok(Some(9102)));
        assert_eq!(port("agent:\n  refresh: 5m\n"), Ok(None));
        let zero = port("agent:\n  metrics:\n    port: 0\n").unwrap_err();
        assert!(zero.contains("agent.metrics.port"), "{zero}");
        assert!(port("agent:\n  metrics:\n    port: 70000\n").is_err());
        assert!(port("agent:\n  metrics:\n    prot: 9102\n").is_err());
        let eu = ConfigFile::parse(
            "agent:\n  metrics: {port: 9102}\nclusters:\n  eu:\n    agent:\n      metrics: {port: 9200}\n",
        )
        .unwrap();
        assert_eq!(
            Settings::from_file(&eu, Some("eu")).unwrap().metrics_port,
            Some(9200)
        );
    }

    #[test]
    fn unsafe_vault_values_are_refused_naming_the_field() {
        let refused = |yaml: &str| {
            let file = ConfigFile::parse(yaml).unwrap();
            let settings = Settings::from_file(&file, None).unwrap();
            settings.validate().unwrap_err()
        };
        let err = refused("vault:\n  namespace: |\n    team\n");
        assert!(err.contains("vault.namespace"), "{err}");
        let err = refused("vault:\n  authPath: \"auth/k8s\\nx\"\n");
        assert!(err.contains("vault.authPath"), "{err}");
        let err = refused("vault:\n  authPath: auth/../sys\n");
        assert!(err.contains("`..`"), "{err}");
        let err = refused("vault:\n  address: https://admin:hunter2@vault:8200\n");
        assert!(err.contains("user name or password"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let ok = ConfigFile::parse("vault:\n  namespace: team-a/b\n").unwrap();
        Settings::from_file(&ok, None).unwrap().validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(ConfigFile::parse("vault:\n  adress: x\n").is_err());
    }
}
