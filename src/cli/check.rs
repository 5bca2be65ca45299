//! `secretstore check`: every reference against a live Vault.

use super::args::CheckArgs;
use super::exit;
use super::{env_lookup, runtime, scan_inputs, usage_error, write_report};
use crate::analyze::check::{self, CheckOptions};
use crate::diag::{Code, Diagnostic, Severity};
use crate::report::{Note, Report};
use crate::vault::client::{VaultApi, VaultEnv};
use std::process::ExitCode;

pub fn run(args: CheckArgs) -> ExitCode {
    let started = std::time::Instant::now();
    let settings = match args.config.settings() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let (scanned, sources) = match scan_inputs(&args.files, &settings) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let Some(env) = VaultEnv::from_env(&env_lookup, settings.vault_namespace.as_deref()) else {
        return usage_error("VAULT_ADDR is not set: check needs the address of the Vault the pods use (and VAULT_TOKEN)");
    };
    if env.token.is_empty() {
        return usage_error(
            "VAULT_TOKEN is not set: check reads the mounts, secrets, roles and policies with it",
        );
    }
    let api = match VaultApi::new(env, usize::from(args.concurrency)) {
        Ok(api) => std::sync::Arc::new(api),
        Err(e) => return usage_error(&e),
    };
    let options = CheckOptions {
        auth_path: settings.auth_path.clone(),
        default_namespace: args.namespace.clone(),
        audience: settings.audience.clone(),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return usage_error(&e),
    };
    let (found, stats) = if scanned.pods.is_empty() {
        (Vec::new(), check::Stats::default())
    } else {
        match rt.block_on(check::check(api, &scanned.pods, &options)) {
            Ok(result) => result,
            Err(e) => return usage_error(&format!("could not check: {e}")),
        }
    };
    let mut diagnostics = scanned.diagnostics;
    diagnostics.extend(found);
    diagnostics.sort_by(|a, b| a.location.cmp(&b.location).then(a.code.cmp(&b.code)));
    let notes: Vec<Note> = if scanned.pods.is_empty() {
        sources
            .keys()
            .map(|source| Note {
                source: source.clone(),
                message: "no opted-in pod; nothing to check against Vault".into(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let report = Report {
        command: "check",
        diagnostics: &diagnostics,
        sources: &sources,
        notes: &notes,
    };
    if let Err(e) = write_report(&report, args.format) {
        return usage_error(&e);
    }
    if args.stats {
        eprintln!(
            "secretstore check: {stats}; {} ms",
            started.elapsed().as_millis()
        );
    }
    ExitCode::from(exit_status(&diagnostics))
}

/// Exit status of a check: findings with errors → 1; else lookups that could not be
/// made → 2; else 0. Warnings alone do not fail.
fn exit_status(diagnostics: &[Diagnostic]) -> u8 {
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error);
    let (unchecked, findings): (Vec<_>, Vec<_>) = errors.partition(|d| d.code == Code::CannotCheck);
    if !findings.is_empty() {
        exit::FINDINGS
    } else if !unchecked.is_empty() {
        exit::USAGE
    } else {
        exit::OK
    }
}
