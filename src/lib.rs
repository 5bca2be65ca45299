//! secretstore: expand Vault secret-store references in Kubernetes manifests into the pod
//! wiring that fetches the secrets at pod start.
//!
//! Render is a pipeline, one module per stage: [`stream`] splits the input into documents,
//! [`tree`] parses the ones that may change, [`workload`] finds their pod templates,
//! [`dialect`] reads the annotations and env references, [`plan`] decides the expansion,
//! [`edit`] turns it into insertions, and [`render`] ties them together.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod agent;
pub mod check;
pub mod cli;
pub mod config;
pub mod convert;
pub mod diag;
pub mod dialect;
pub mod edit;
pub mod exec;
pub mod help;
pub mod lint;
pub mod plan;
pub mod policy;
pub mod render;
pub mod report;
pub mod scan;
pub mod spec;
pub mod stream;
pub mod supervise;
pub mod sysio;
pub mod tree;
pub mod vault;
pub mod workload;
