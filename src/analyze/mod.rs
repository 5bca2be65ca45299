//! The analyses: they read references through render's front-end and report findings
//! instead of editing. [`scan`] reads every opted-in pod into owned records; [`lint`]
//! warns about pods that render accepts but that are likely to fail; [`check`] holds the
//! references against a live Vault; [`policy`] writes the Vault policy and role they need.

#[cfg(feature = "cli")]
pub mod check;
pub mod lint;
pub mod policy;
pub mod scan;
