//! Talking to Vault: its policy language, its mounts, its auth roles and its API, all
//! over one HTTP layer ([`http`]) that the agent and `check` share.

pub mod acl;
pub mod client;
pub mod http;
pub mod kv;
pub mod mounts;
pub mod pki;
pub mod retry;
pub mod role;
