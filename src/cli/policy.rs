//! `secretstore policy`: the Vault policies and roles the references need.

use super::args::{ConfigArgs, PolicyArgs, PolicyFormat};
use super::exit;
use super::{env_lookup, scan_inputs, server_mounts, usage_error};
use crate::analyze::policy::{self, MountSources, PolicyOptions};
use crate::config::Settings;
use crate::diag::{Diagnostic, Severity};
use crate::vault::mounts::MountTable;
use std::io::{self, Write};
use std::process::ExitCode;

pub fn run(args: PolicyArgs) -> ExitCode {
    let settings = match args.config.settings() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let mut flags = MountTable::default();
    for text in &args.kv_versions {
        match policy::parse_kv_version(text) {
            Ok(m) => flags.insert(m),
            Err(e) => return usage_error(&format!("--kv-version {e}")),
        }
    }
    let (scanned, _) = match scan_inputs(&args.files, &settings) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let server = match server_mounts(&settings, "policy") {
        Ok(table) => table,
        Err(e) => return usage_error(&e),
    };
    if args.all_clusters && args.format != PolicyFormat::Terraform {
        return usage_error("--all-clusters needs --format terraform");
    }
    let clusters = if args.all_clusters {
        match configured_clusters(&args.config) {
            Ok(c) => c,
            Err(e) => return usage_error(&e),
        }
    } else {
        Vec::new()
    };
    let method = args.auth_method.unwrap_or_else(|| {
        match server
            .as_ref()
            .and_then(|t| t.auth_type(&settings.auth_path))
        {
            Some("jwt" | "oidc") => policy::AuthMethod::Jwt,
            _ => policy::AuthMethod::Kubernetes,
        }
    });
    let errors: Vec<&Diagnostic> = scanned
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    for d in &scanned.diagnostics {
        eprintln!("{d}");
    }
    if !errors.is_empty() {
        eprintln!("secretstore: the input has errors; no policy was written");
        return ExitCode::from(exit::FINDINGS);
    }
    let options = PolicyOptions {
        auth_path: settings.auth_path.clone(),
        default_namespace: args.namespace.clone(),
        role: args.role.clone(),
    };
    let sources = MountSources { server, flags };
    let policies = match policy::generate(&scanned.pods, &sources, &options) {
        Ok(generated) => {
            for d in &generated.warnings {
                eprintln!("{d}");
            }
            generated.policies
        }
        Err(problems) => {
            for d in &problems {
                eprintln!("{d}");
            }
            eprintln!("secretstore: no policy was written");
            return ExitCode::from(exit::FINDINGS);
        }
    };
    if policies.is_empty() {
        eprintln!(
            "secretstore: no opted-in pod{} in the input; no policy to write",
            args.role
                .as_ref()
                .map(|r| format!(" with role `{r}`"))
                .unwrap_or_default()
        );
    }
    let text = match args.format {
        PolicyFormat::Hcl => policy::to_hcl(&policies),
        PolicyFormat::Json => policy::to_json(&policies),
        PolicyFormat::VaultCli => policy::to_vault_cli(&policies),
        PolicyFormat::Terraform => policy::to_terraform(
            &policies,
            &policy::TerraformOptions {
                method,
                clusters,
                audience: settings.audience.clone(),
            },
        ),
    };
    match io::stdout().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(exit::OK),
        Err(e) => usage_error(&format!("cannot write the output: {e}")),
    }
}

/// (name, auth path) of every cluster of the configuration's `clusters`.
fn configured_clusters(config: &ConfigArgs) -> Result<Vec<(String, String)>, String> {
    let path = config
        .config
        .clone()
        .or_else(|| crate::config::env_var(&env_lookup, "SECRETSTORE_CONFIG"))
        .ok_or("--all-clusters needs the configuration (--config or SECRETSTORE_CONFIG) whose `clusters` it writes roles for")?;
    let file = crate::config::ConfigFile::load(std::path::Path::new(&path))?;
    if file.clusters.is_empty() {
        return Err(format!(
            "--all-clusters: configuration {path} has no `clusters`"
        ));
    }
    file.clusters
        .keys()
        .map(|name| Settings::from_file(&file, Some(name)).map(|s| (name.clone(), s.auth_path)))
        .collect()
}
