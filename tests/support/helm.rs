//! Helm with its own config, cache and data homes, so plugin installs and repo settings
//! of one test neither see nor disturb another's (or the user's `~/.config/helm`).

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use super::tool;

pub struct HelmHome {
    dir: TempDir,
}

impl HelmHome {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("secretstore-helm-")
            .tempdir()
            .expect("cannot create temp dir");
        HelmHome { dir }
    }

    /// A command for `helm` (`"helm3"` or `"helm4"`) using this home.
    pub fn command(&self, helm: &str) -> Command {
        let mut command = Command::new(tool(helm));
        command
            .env("HELM_CONFIG_HOME", self.dir.path().join("config"))
            .env("HELM_CACHE_HOME", self.dir.path().join("cache"))
            .env("HELM_DATA_HOME", self.dir.path().join("data"))
            .env_remove("HELM_PLUGINS")
            .env_remove("HELM_POST_RENDERER");
        command
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for HelmHome {
    fn default() -> Self {
        Self::new()
    }
}
