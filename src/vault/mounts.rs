//! Secrets-engine mounts, and the API path a reference is read from.
//!
//! A reference names a path as written (`secret/shop/db`, `secret/data/shop/db`,
//! `database/creds/app`); the API path depends on the engine mounted at its longest
//! matching prefix, as the Vault CLI decides it: KV v2 reads `<mount>data/<rest>` whether
//! the reference is in logical or API form, every other engine (KV v1 included) reads the
//! path as written.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// The engine mounted at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    Kv1,
    Kv2,
    /// Any other engine type (`database`, `aws`, `cubbyhole`...), read as written.
    Other(String),
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Engine::Kv1 => f.write_str("KV v1"),
            Engine::Kv2 => f.write_str("KV v2"),
            Engine::Other(t) => write!(f, "`{t}`"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount path with a trailing `/`, e.g. `secret/`.
    pub path: String,
    pub engine: Engine,
}

/// The mounts a token can see, by path.
#[derive(Debug, Clone, Default)]
pub struct MountTable {
    secret: BTreeMap<String, Mount>,
    /// Auth mounts (path with trailing `/`, without `auth/`) → method type.
    auth: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct UiMounts {
    data: UiMountsData,
}

#[derive(Deserialize)]
struct UiMountsData {
    #[serde(default)]
    secret: BTreeMap<String, UiMount>,
    #[serde(default)]
    auth: BTreeMap<String, UiMount>,
}

#[derive(Deserialize)]
struct UiMount {
    #[serde(rename = "type")]
    engine: String,
    #[serde(default)]
    options: Option<BTreeMap<String, serde_json::Value>>,
}

impl UiMount {
    /// `kv`/`generic` with options.version → KV v1 or v2; anything else as is.
    fn engine(&self) -> Engine {
        let version = self
            .options
            .as_ref()
            .and_then(|o| o.get("version"))
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            });
        match (self.engine.as_str(), version.as_deref()) {
            ("kv" | "generic", Some("2")) => Engine::Kv2,
            ("kv" | "generic", _) => Engine::Kv1,
            (other, _) => Engine::Other(other.to_string()),
        }
    }
}

/// The answer of `GET sys/internal/ui/mounts/<path>`: the one mount holding `<path>`.
#[derive(Deserialize)]
struct UiMountOf {
    data: UiMountAt,
}

#[derive(Deserialize)]
struct UiMountAt {
    path: String,
    #[serde(flatten)]
    mount: UiMount,
}

impl Mount {
    /// Parses the answer of `GET sys/internal/ui/mounts/<path>`. `Err` holds the JSON
    /// error, for the caller to name the endpoint.
    pub fn from_ui_mount(body: &[u8]) -> Result<Mount, String> {
        let parsed: UiMountOf = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok(Mount {
            path: with_slash(&parsed.data.path),
            engine: parsed.data.mount.engine(),
        })
    }
}

impl MountTable {
    /// Parses the answer of `GET sys/internal/ui/mounts`.
    pub fn from_ui_mounts(body: &[u8]) -> Result<MountTable, String> {
        let parsed: UiMounts = serde_json::from_slice(body)
            .map_err(|e| format!("unexpected answer from sys/internal/ui/mounts: {e}"))?;
        let mut table = MountTable::default();
        for (path, m) in parsed.data.secret {
            let engine = m.engine();
            table.insert(Mount { path, engine });
        }
        for (path, m) in parsed.data.auth {
            table.auth.insert(with_slash(&path), m.engine);
        }
        Ok(table)
    }

    pub fn insert(&mut self, mut mount: Mount) {
        mount.path = with_slash(&mount.path);
        self.secret.insert(mount.path.clone(), mount);
    }

    /// The mount at the longest prefix of `path` (whole segments), if any.
    pub fn find(&self, path: &str) -> Option<&Mount> {
        let path = with_slash(path.trim_start_matches('/'));
        let mut end = path.len();
        loop {
            let prefix = &path[..end];
            if let Some(m) = self.secret.get(prefix) {
                return Some(m);
            }
            end = prefix[..prefix.len() - 1].rfind('/')? + 1;
        }
    }

    /// Every secrets engine mount, by path.
    pub fn secret_mounts(&self) -> impl Iterator<Item = &Mount> {
        self.secret.values()
    }

    /// The type of the auth method at `auth_path` (`auth/kubernetes`), when visible.
    pub fn auth_type(&self, auth_path: &str) -> Option<&str> {
        let path = auth_path.trim_matches('/');
        let path = path.strip_prefix("auth/").unwrap_or(path);
        self.auth.get(&with_slash(path)).map(String::as_str)
    }
}

fn with_slash(path: &str) -> String {
    if path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    }
}

/// Where a reference is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The API path, e.g. `secret/data/shop/db`.
    pub api_path: String,
    /// KV v2 only: the mount (with `/`) and the secret's path inside it, for metadata.
    pub kv2: Option<(String, String)>,
}

/// The API path of `path` (as written, without a leading `/`) on `mount`. `Err` when the
/// path names the mount itself (or its `data/` root) rather than a secret in it.
pub fn target(path: &str, mount: &Mount) -> Result<Target, String> {
    let path = path.trim_start_matches('/');
    let rest = with_slash(path)
        .strip_prefix(&mount.path)
        .map(|r| r.trim_end_matches('/').to_string())
        .unwrap_or_default();
    match mount.engine {
        Engine::Kv2 => {
            let rest = match rest.strip_prefix("data/") {
                Some(r) => r.to_string(),
                None if rest == "data" => String::new(),
                None => rest,
            };
            if rest.is_empty() {
                return Err(format!(
                    "`{path}` names the KV v2 mount `{}` itself, not a secret in it",
                    mount.path
                ));
            }
            Ok(Target {
                api_path: format!("{}data/{rest}", mount.path),
                kv2: Some((mount.path.clone(), rest)),
            })
        }
        _ if rest.is_empty() => Err(format!(
            "`{path}` names the mount `{}` itself, not a secret in it",
            mount.path
        )),
        _ => Ok(Target {
            api_path: path.to_string(),
            kv2: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> MountTable {
        MountTable::from_ui_mounts(
            br#"{"data":{"secret":{
                "secret/":{"type":"kv","options":{"version":"2"}},
                "kv1/":{"type":"kv","options":{"version":"1"}},
                "team/a/":{"type":"kv","options":{"version":"2"}},
                "database/":{"type":"database","options":null}},
              "auth":{"kubernetes/":{"type":"kubernetes"},"k8s-eu/":{"type":"jwt"}}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn longest_mount_prefix_by_whole_segments() {
        let t = table();
        assert_eq!(t.find("secret/shop/db").unwrap().path, "secret/");
        assert_eq!(t.find("/team/a/x").unwrap().path, "team/a/");
        assert!(t.find("team/ab/x").is_none());
        assert!(t.find("secretx/a").is_none());
        assert_eq!(t.find("kv1").unwrap().engine, Engine::Kv1);
        assert_eq!(t.auth_type("auth/kubernetes"), Some("kubernetes"));
        assert_eq!(t.auth_type("k8s-eu/"), Some("jwt"));
        assert_eq!(t.auth_type("auth/none"), None);
    }

    #[test]
    fn api_paths_like_the_vault_cli() {
        let t = table();
        let api = |p: &str| target(p, t.find(p).unwrap()).map(|t| t.api_path);
        assert_eq!(api("secret/shop/db").unwrap(), "secret/data/shop/db");
        assert_eq!(api("secret/data/shop/db").unwrap(), "secret/data/shop/db");
        assert_eq!(api("team/a/data/x").unwrap(), "team/a/data/x");
        assert_eq!(api("kv1/data/x").unwrap(), "kv1/data/x");
        assert_eq!(api("database/creds/app").unwrap(), "database/creds/app");
        assert!(api("secret").is_err());
        assert!(api("secret/data").is_err());
        assert!(api("kv1").is_err());
        let kv2 = target("secret/data/a/b", t.find("secret/a").unwrap()).unwrap();
        assert_eq!(kv2.kv2, Some(("secret/".into(), "a/b".into())));
    }

    #[test]
    fn one_mount_from_ui_mounts_of_a_path() {
        let kv2 = Mount::from_ui_mount(
            br#"{"data":{"path":"team/kv","type":"kv","options":{"version":"2"}}}"#,
        )
        .unwrap();
        assert_eq!(kv2.path, "team/kv/");
        assert_eq!(kv2.engine, Engine::Kv2);
        let kv1 =
            Mount::from_ui_mount(br#"{"data":{"path":"kv/","type":"generic","options":null}}"#)
                .unwrap();
        assert_eq!(kv1.engine, Engine::Kv1);
        let db =
            Mount::from_ui_mount(br#"{"data":{"path":"database/","type":"database"}}"#).unwrap();
        assert_eq!(db.engine, Engine::Other("database".into()));
        assert!(Mount::from_ui_mount(br#"{"errors":[]}"#).is_err());
    }
}
