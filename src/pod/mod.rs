//! The pod side: what the one binary does inside the pod that render wired.
//! [`agent_spec`] is the contract between render and the [`agent`] (one Rust type written
//! by render into the init container and read by the agent); [`exec`] is the env wrapper
//! around the app's command; [`supervise`] runs the app under live mode.

#[cfg(feature = "cli")]
pub mod agent;
pub mod agent_spec;
#[cfg(feature = "cli")]
pub mod exec;
#[cfg(feature = "cli")]
pub mod supervise;
