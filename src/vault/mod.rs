//! Talking to Vault: its policy language and its API.

pub mod acl;
