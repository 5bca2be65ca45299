//! secretstore: expand Vault secret-store references in Kubernetes manifests into the pod
//! wiring that fetches the secrets at pod start.
//!
//! The folders follow the data, which flows one way:
//! - [`render`]: the pipeline that edits manifests, one module per stage, and the front-end
//!   every command reads documents with;
//! - [`analyze`]: what reads references without editing them (`lint`, `check`, `policy`);
//! - [`pod`]: what runs in the pod (the agent, `exec`, the live supervisor) and the
//!   [`pod::agent_spec::AgentSpec`] that render writes and the agent reads;
//! - [`vault`]: the one Vault HTTP layer and the Vault logic `check` and the agent share;
//! - [`convert`]: other tools' dialects into this one;
//! - [`template`]: the `${ }` templates of file secrets, parsed for render, lint and check
//!   and evaluated by the agent;
//! - [`add`]: references added to a workload in place (`secretstore add`, the playground);
//! - [`diag`] and [`report`]: findings, their codes, and the formats they are written in;
//! - [`duration`]: the one duration grammar (Go's) every setting and Vault TTL is read with;
//! - [`sysio`] and [`parallel`]: reading input and writing output fast, and sharing work
//!   among threads;
//! - [`cli`]: arguments, one module per command, exit statuses.
//!
//! The default feature `cli` brings everything that does I/O: the command line, `check`
//! and the Vault client, the agent and `exec`, and `sysio`. Without it the crate is its
//! I/O-free core (render, lint, convert, policy, the reports), which the book's playground
//! compiles to WebAssembly (`wasm/`).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod add;
pub mod analyze;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod convert;
pub mod diag;
pub mod duration;
#[cfg(feature = "cli")]
pub mod in_place;
pub mod parallel;
pub mod pod;
pub mod render;
pub mod report;
#[cfg(feature = "cli")]
pub mod sysio;
pub mod template;
pub mod vault;
