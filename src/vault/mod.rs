//! Talking to Vault: its policy language, its mounts, its auth roles and its API.

pub mod acl;
pub mod client;
pub mod mounts;
pub mod role;
