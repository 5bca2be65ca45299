//! Talking to Vault: its policy language, its mounts, its auth roles and its API, all
//! over one HTTP layer ([`http`]) that the agent and `check` share.

#[cfg(feature = "cli")]
pub mod acl;
pub mod address;
#[cfg(feature = "cli")]
pub mod client;
#[cfg(feature = "cli")]
pub mod http;
pub mod kv;
pub mod mounts;
#[cfg(feature = "cli")]
pub mod pki;
#[cfg(feature = "cli")]
pub mod retry;
pub mod role;
