//! secretstore: expand Vault secret-store references in Kubernetes manifests into the pod
//! wiring that fetches the secrets at pod start.

pub mod agent;
pub mod diag;
pub mod exec;
pub mod spec;
