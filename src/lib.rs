//! secretstore: expand Vault secret-store references in Kubernetes manifests into the pod
//! wiring that fetches the secrets at pod start.

pub mod diag;
pub mod spec;
pub mod vault;
