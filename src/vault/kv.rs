//! KV v2 answers, read the same way by the agent (which keeps the values) and by `check`
//! (which keeps only key names): `data.data` is the secret, `data.metadata` says which
//! version was read and whether it is deleted or destroyed. A deleted or destroyed
//! version answers 404 with that metadata.

use serde::Deserialize;

/// The `data` object of a KV v2 read answer; `D` is how the secret's own data is kept.
#[derive(Deserialize)]
pub struct Kv2Read<D> {
    pub data: Option<D>,
    pub metadata: Option<Kv2VersionMetadata>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Kv2VersionMetadata {
    #[serde(default)]
    pub deletion_time: String,
    #[serde(default)]
    pub destroyed: bool,
    #[serde(default)]
    pub version: u64,
}

/// What a version's metadata says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    Live,
    Deleted,
    Destroyed,
}

impl Kv2VersionMetadata {
    pub fn state(&self) -> VersionState {
        version_state(self.destroyed, &self.deletion_time)
    }

    /// Why this version has no data, for a message.
    pub fn describe(&self) -> Option<String> {
        match self.state() {
            VersionState::Destroyed => Some(format!("version {} is destroyed", self.version)),
            VersionState::Deleted => Some(format!(
                "version {} was deleted at {}",
                self.version, self.deletion_time
            )),
            VersionState::Live => None,
        }
    }
}

/// A version's state from its `destroyed` flag and `deletion_time` (empty when live).
pub fn version_state(destroyed: bool, deletion_time: &str) -> VersionState {
    if destroyed {
        VersionState::Destroyed
    } else if !deletion_time.is_empty() {
        VersionState::Deleted
    } else {
        VersionState::Live
    }
}

/// The outer answer of any Vault read: `data` (for KV v2, a [`Kv2Read`]) and the lease.
#[derive(Deserialize)]
pub struct ReadAnswer<D> {
    #[serde(default)]
    pub lease_id: String,
    #[serde(default)]
    pub lease_duration: u64,
    #[serde(default)]
    pub renewable: bool,
    pub data: Option<D>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;
    use std::collections::BTreeMap;

    #[test]
    fn deleted_version_metadata() {
        let body = br#"{"data":{"data":null,"metadata":{"deletion_time":"2026-01-01T00:00:00Z","destroyed":false,"version":3}}}"#;
        let a: ReadAnswer<Kv2Read<BTreeMap<String, IgnoredAny>>> =
            serde_json::from_slice(body).unwrap();
        let read = a.data.unwrap();
        assert!(read.data.is_none());
        let m = read.metadata.unwrap();
        assert_eq!(m.state(), VersionState::Deleted);
        assert_eq!(
            m.describe().unwrap(),
            "version 3 was deleted at 2026-01-01T00:00:00Z"
        );
    }
}
