//! `secretstore policy`: from the manifests, the least-privilege Vault policy of each role
//! (`read` on exactly the API paths its pods read) and the service accounts and namespaces
//! the role must bind.
//!
//! API paths depend on each mount's engine: from the live Vault when one is configured,
//! else from `--kv-version MOUNT=N`, else KV v2 mounted at the path's first segment.

use crate::analyze::scan::ScannedPod;
use crate::diag::{Code, Diagnostic, Location};
use crate::render::dialect::ROLE_KEY;
use crate::vault::mounts::{self, Engine, Mount, MountTable};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Prefix of generated policy names: `secretstore-<role>`.
pub const POLICY_PREFIX: &str = "secretstore-";

/// One role's policy and bindings, as `--format json` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolePolicy {
    pub role: String,
    pub policy_name: String,
    /// The policy in HCL.
    pub policy: String,
    pub bound_service_account_names: Vec<String>,
    pub bound_service_account_namespaces: Vec<String>,
    pub auth_path: String,
}

#[derive(Debug, Clone, Default)]
pub struct PolicyOptions {
    pub auth_path: String,
    /// Namespace of objects whose manifest sets none (`--namespace`).
    pub default_namespace: Option<String>,
    /// Only this role.
    pub role: Option<String>,
}

/// Mount knowledge in the order the issue asks for: the server's, then the flags', then
/// KV v2 at the first segment.
pub struct MountSources {
    pub server: Option<MountTable>,
    pub flags: MountTable,
}

impl MountSources {
    /// The mount of `path`, and whether the server was asked and did not know it.
    fn mount_of(&self, path: &str) -> (Mount, bool) {
        if let Some(m) = self.server.as_ref().and_then(|t| t.find(path)) {
            return (m.clone(), false);
        }
        let unknown_to_server = self.server.is_some();
        if let Some(m) = self.flags.find(path) {
            return (m.clone(), unknown_to_server);
        }
        let first = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        let mount = Mount {
            path: format!("{first}/"),
            engine: Engine::Kv2,
        };
        (mount, unknown_to_server)
    }
}

/// What `generate` writes: the policies, and warnings about assumptions it made.
#[derive(Debug, Default)]
pub struct Generated {
    pub policies: Vec<RolePolicy>,
    pub warnings: Vec<Diagnostic>,
}

/// Parses `--kv-version MOUNT=N` (N = 1 or 2; 1 also fits any non-KV engine, whose paths
/// are used as written; 0 is a non-KV engine whose secrets are leased, which live pods
/// renew and revoke).
pub fn parse_kv_version(text: &str) -> Result<Mount, String> {
    let (mount, version) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("`{text}` is not MOUNT=N (e.g. kv=1, secret=2)"))?;
    let mount = mount.trim_matches('/');
    if mount.is_empty() {
        return Err(format!("`{text}` names no mount"));
    }
    let engine = match version {
        "1" => Engine::Kv1,
        "2" => Engine::Kv2,
        "0" => Engine::Other("leased".into()),
        _ => {
            return Err(format!(
                "`{text}`: the KV version is 1 or 2, or 0 for a non-KV (leased) engine"
            ))
        }
    };
    Ok(Mount {
        path: format!("{mount}/"),
        engine,
    })
}

/// The policies of every role used by `pods` (sorted by role). `Err` holds the problems
/// that make a policy impossible to write (no namespace to bind, a path with a glob).
pub fn generate(
    pods: &[ScannedPod],
    mounts: &MountSources,
    options: &PolicyOptions,
) -> Result<Generated, Vec<Diagnostic>> {
    #[derive(Default)]
    struct Acc {
        paths: BTreeSet<String>,
        /// API paths written to issue a secret (params): `update`.
        write_paths: BTreeSet<String>,
        /// A live pod of the role reads a leased secret, which the sidecar renews and
        /// revokes.
        leases: bool,
        names: BTreeSet<String>,
        namespaces: BTreeSet<String>,
    }
    let mut roles: BTreeMap<&str, Acc> = BTreeMap::new();
    // Vault lowercases role and policy names: the first spelling of each, and where.
    let mut spellings: BTreeMap<String, (&str, &Location)> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for pod in pods {
        if pod.role.is_empty() || options.role.as_ref().is_some_and(|r| *r != pod.role) {
            continue;
        }
        let (first, at) = *spellings
            .entry(pod.role.to_lowercase())
            .or_insert((&pod.role, &pod.role_location));
        if first != pod.role {
            problems.push(
                Diagnostic::new(
                    Code::RoleNameCollision,
                    pod.role_location.clone(),
                    format!(
                        "roles `{}` and `{first}` (at {}:{}:{}) are one role in Vault, which lowercases role and policy names: their bindings and policies would overwrite each other",
                        pod.role, at.source, at.line, at.column
                    ),
                )
                .with_object(Some(pod.object.clone()))
                .with_field(format!("{}metadata.annotations[{}]", pod.field, ROLE_KEY))
                .with_help("spell the role one way in every pod that uses it, or give the pods different roles"),
            );
        }
        let acc = roles.entry(&pod.role).or_default();
        let service_account = pod
            .service_account
            .clone()
            .unwrap_or_else(|| "default".into());
        let namespace = pod
            .namespace
            .as_ref()
            .or(options.default_namespace.as_ref());
        for (what, value, field) in [
            (
                "service account",
                Some(&service_account),
                "spec.serviceAccountName",
            ),
            ("namespace", namespace, "metadata.namespace"),
        ] {
            if let Some(value) = value.filter(|v| v.contains('*')) {
                problems.push(
                    Diagnostic::new(
                        Code::RoleBoundToEveryone,
                        pod.location.clone(),
                        format!(
                            "role `{}` would be bound to the {what} `{value}`, which Vault reads as a glob: every matching {what} could log in with it",
                            pod.role
                        ),
                    )
                    .with_object(Some(pod.object.clone()))
                    .with_field(if field.starts_with("spec.") { format!("{}{field}", pod.field) } else { field.to_string() })
                    .with_help("name the pod's own service account and namespace (a `*` is not a valid Kubernetes name either)"),
                );
            }
        }
        acc.names.insert(service_account);
        match namespace {
            Some(ns) => {
                acc.namespaces.insert(ns.clone());
            }
            None => problems.push(
                Diagnostic::new(
                    Code::NamespaceAtDeployTime,
                    pod.location.clone(),
                    format!(
                        "the manifest sets no namespace, so role `{}` cannot be bound to the pod's namespace",
                        pod.role
                    ),
                )
                .with_object(Some(pod.object.clone()))
                .with_field("metadata.namespace")
                .with_help("set metadata.namespace, or pass --namespace with the namespace it is deployed to (as `helm template -n` does)")
                // policy must write the namespace into the binding: it cannot go on.
                .at_alternative_severity(),
            ),
        }
        for r in &pod.references {
            let (mount, unknown_to_server) = mounts.mount_of(&r.reference.path);
            if unknown_to_server {
                warnings.push(
                    Diagnostic::new(
                        Code::MountNotFound,
                        r.location.clone(),
                        format!(
                            "Vault shows no mount at a prefix of `{}` (to this token); assuming {} at `{}`",
                            r.reference.path, mount.engine, mount.path
                        ),
                    )
                    .with_object(Some(pod.object.clone()))
                    .with_field(r.field.clone())
                    .with_help("fix the path, or pass --kv-version MOUNT=N for a mount the token cannot see")
                    // policy goes on, assuming a KV mount.
                    .at_alternative_severity(),
                );
            }
            let write = r.reference.params.is_some();
            // A PKI certificate has no lease; every other non-KV answer may.
            if pod.live && matches!(&mount.engine, Engine::Other(e) if !(write && e == "pki")) {
                acc.leases = true;
            }
            let problem = match mounts::target(&r.reference.path, &mount) {
                Ok(t) if is_exact_pattern(&t.api_path) => {
                    if write {
                        acc.write_paths.insert(t.api_path);
                    } else {
                        acc.paths.insert(t.api_path);
                    }
                    continue;
                }
                Ok(t) => format!(
                    "`{}` ends in `*` or has a `+` segment, which a policy path would read as a wildcard, so no policy can grant it exactly",
                    t.api_path
                ),
                Err(message) => message,
            };
            problems.push(
                Diagnostic::new(Code::BadReference, r.location.clone(), problem)
                    .with_object(Some(pod.object.clone()))
                    .with_field(r.field.clone())
                    .with_help("name one secret by its exact path"),
            );
        }
    }
    // A template's source is one record per key it reads: one finding each.
    let mut seen = BTreeSet::new();
    problems.retain(|d| seen.insert((d.location.clone(), d.code, d.message.clone())));
    if !problems.is_empty() {
        return Err(problems);
    }
    warnings.sort_by(|a, b| (&a.location, &a.message).cmp(&(&b.location, &b.message)));
    warnings.dedup();
    let policies = roles
        .into_iter()
        .map(|(role, acc)| RolePolicy {
            role: role.to_string(),
            policy_name: policy_name(role),
            policy: hcl_policy(&acc.paths, &acc.write_paths, acc.leases),
            bound_service_account_names: acc.names.into_iter().collect(),
            bound_service_account_namespaces: acc.namespaces.into_iter().collect(),
            auth_path: options.auth_path.clone(),
        })
        .collect();
    Ok(Generated { policies, warnings })
}

/// `secretstore-<role>`, lowercased as Vault stores policy names.
pub fn policy_name(role: &str) -> String {
    format!("{POLICY_PREFIX}{}", role.to_lowercase())
}

/// True when Vault's policy matcher reads `path` as itself only.
fn is_exact_pattern(path: &str) -> bool {
    !path.ends_with('*') && !path.split('/').any(|s| s == "+")
}

/// Paths a live sidecar with leased (dynamic) secrets calls, with `update`: it renews
/// its leases before they expire and revokes them when the pod stops.
pub const LEASE_PATHS: [&str; 2] = ["sys/leases/renew", "sys/leases/revoke"];

/// `read` on the paths read, `update` on the paths written (both on a path that is both).
fn hcl_policy(paths: &BTreeSet<String>, write_paths: &BTreeSet<String>, leases: bool) -> String {
    let mut text = String::new();
    for path in paths.union(write_paths) {
        let capabilities = match (paths.contains(path), write_paths.contains(path)) {
            (true, true) => r#""read", "update""#,
            (false, true) => r#""update""#,
            _ => r#""read""#,
        };
        let _ = writeln!(
            text,
            "path \"{}\" {{\n  capabilities = [{capabilities}]\n}}",
            hcl_escape(path)
        );
    }
    if leases {
        for path in LEASE_PATHS {
            let _ = writeln!(
                text,
                "path \"{path}\" {{\n  capabilities = [\"update\"]\n}}"
            );
        }
    }
    text
}

fn hcl_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `--format hcl`: each policy after a comment naming its role and bindings.
pub fn to_hcl(policies: &[RolePolicy]) -> String {
    let mut out = String::new();
    for (i, p) in policies.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "# policy {:?} for role {:?} on {}\n# bind service accounts {:?} in namespaces {:?}",
            p.policy_name,
            p.role,
            p.auth_path,
            p.bound_service_account_names,
            p.bound_service_account_namespaces
        );
        out.push_str(&p.policy);
    }
    out
}

/// `--format json`: the list, pretty-printed.
pub fn to_json(policies: &[RolePolicy]) -> String {
    let mut text = serde_json::to_string_pretty(policies).unwrap_or_else(|_| "[]".into());
    text.push('\n');
    text
}

/// `--format vault-cli`: a POSIX shell script writing each policy and role.
pub fn to_vault_cli(policies: &[RolePolicy]) -> String {
    let mut out = String::from(
        "#!/bin/sh\n# Least-privilege policies and role bindings, written by `secretstore policy`.\nset -eu\n",
    );
    for p in policies {
        let _ = write!(
            out,
            "\nvault policy write {} - <<'SECRETSTORE_POLICY_EOF'\n{}SECRETSTORE_POLICY_EOF\n",
            sh_quote(&p.policy_name),
            p.policy
        );
        let _ = writeln!(
            out,
            "vault write {} \\\n    bound_service_account_names={} \\\n    bound_service_account_namespaces={} \\\n    token_policies={}",
            sh_quote(&format!("{}/role/{}", p.auth_path, p.role)),
            sh_quote(&p.bound_service_account_names.join(",")),
            sh_quote(&p.bound_service_account_namespaces.join(",")),
            sh_quote(&p.policy_name)
        );
    }
    out
}

/// The auth method the roles are written for (`--auth-method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthMethod {
    /// Kubernetes auth (TokenReview): `vault_kubernetes_auth_backend_role`
    #[default]
    Kubernetes,
    /// JWT auth with the service-account token: `vault_jwt_auth_backend_role`
    Jwt,
}

/// What `--format terraform` writes besides the policies.
#[derive(Debug, Clone, Default)]
pub struct TerraformOptions {
    pub method: AuthMethod,
    /// With `--all-clusters`: (cluster name, auth path) of each configured cluster; each
    /// gets its auth backend, its configuration skeleton and every role. Empty: the roles
    /// go to each policy's own auth path, whose backend is managed elsewhere.
    pub clusters: Vec<(String, String)>,
    /// The audience of the pods' tokens (`vault.audience`), bound by the roles.
    pub audience: Option<String>,
}

/// `--format terraform`: `vault_policy` and role resources (and, per cluster, the auth
/// backend and its configuration with the cluster's host and CA as variables).
pub fn to_terraform(policies: &[RolePolicy], options: &TerraformOptions) -> String {
    let mut out = String::from(
        "# Least-privilege policies and role bindings, written by `secretstore policy --format terraform`.\n",
    );
    let jwt = options.method == AuthMethod::Jwt;
    let audience = match &options.audience {
        Some(a) => hcl_string(a),
        // A Kubernetes role without `audience` accepts any; a jwt role must bind one.
        None if !jwt => String::new(),
        None => {
            let _ = write!(
                out,
                "\nvariable \"token_audience\" {{\n  description = \"Audience of the pods' service-account tokens (set vault.audience to write it here)\"\n  type        = string\n}}\n"
            );
            "var.token_audience".to_string()
        }
    };
    let policy_names: Vec<String> = policies.iter().map(|p| p.policy_name.clone()).collect();
    let policy_ids = tf_names(&policy_names);
    for (p, id) in policies.iter().zip(&policy_ids) {
        let _ = write!(
            out,
            "\nresource \"vault_policy\" {} {{\n  name   = {}\n  policy = <<EOT\n{}EOT\n}}\n",
            hcl_string(id),
            hcl_string(&p.policy_name),
            heredoc_escape(&p.policy)
        );
    }
    let mut seen_paths: Vec<&str> = Vec::new();
    let mut backends: Vec<(String, String)> = Vec::new();
    let mut clusters: Vec<(&String, &String)> = Vec::new();
    for (cluster, auth_path) in &options.clusters {
        if !seen_paths.contains(&auth_path.as_str()) {
            seen_paths.push(auth_path);
            clusters.push((cluster, auth_path));
        }
    }
    let cluster_names: Vec<String> = clusters.iter().map(|(c, _)| c.to_string()).collect();
    for ((cluster, auth_path), id) in clusters.into_iter().zip(tf_names(&cluster_names)) {
        let mount = auth_path.strip_prefix("auth/").unwrap_or(auth_path);
        if jwt {
            let _ = write!(
                out,
                "\nvariable {v_keys} {{\n  description = \"PEM public keys that sign cluster {c}'s service-account tokens\"\n  type        = list(string)\n}}\n\nvariable {v_issuer} {{\n  description = \"Issuer (iss) of cluster {c}'s service-account tokens\"\n  type        = string\n}}\n\nresource \"vault_jwt_auth_backend\" {id_q} {{\n  path                   = {path}\n  jwt_validation_pubkeys = var.{id}_jwt_validation_pubkeys\n  bound_issuer           = var.{id}_bound_issuer\n}}\n",
                v_keys = hcl_string(&format!("{id}_jwt_validation_pubkeys")),
                v_issuer = hcl_string(&format!("{id}_bound_issuer")),
                c = hcl_escape(cluster),
                id_q = hcl_string(&id),
                path = hcl_string(mount),
            );
            backends.push((id.clone(), format!("vault_jwt_auth_backend.{id}.path")));
        } else {
            let _ = write!(
                out,
                "\nvariable {v_host} {{\n  description = \"API server URL of cluster {c}, for Vault's TokenReview\"\n  type        = string\n}}\n\nvariable {v_ca} {{\n  description = \"PEM CA certificate of cluster {c}'s API server\"\n  type        = string\n}}\n\nresource \"vault_auth_backend\" {id_q} {{\n  type = \"kubernetes\"\n  path = {path}\n}}\n\nresource \"vault_kubernetes_auth_backend_config\" {id_q} {{\n  backend            = vault_auth_backend.{id}.path\n  kubernetes_host    = var.{id}_kubernetes_host\n  kubernetes_ca_cert = var.{id}_kubernetes_ca_cert\n}}\n",
                v_host = hcl_string(&format!("{id}_kubernetes_host")),
                v_ca = hcl_string(&format!("{id}_kubernetes_ca_cert")),
                c = hcl_escape(cluster),
                id_q = hcl_string(&id),
                path = hcl_string(mount),
            );
            backends.push((id.clone(), format!("vault_auth_backend.{id}.path")));
        }
    }
    // Every role resource, named apart from the others of its type.
    let mut roles: Vec<(&RolePolicy, &str, String, String)> = Vec::new();
    for (p, policy_id) in policies.iter().zip(&policy_ids) {
        if backends.is_empty() {
            let mount = p.auth_path.strip_prefix("auth/").unwrap_or(&p.auth_path);
            roles.push((p, policy_id, p.role.clone(), hcl_string(mount)));
        } else {
            for (id, backend) in &backends {
                roles.push((p, policy_id, format!("{}_{id}", p.role), backend.clone()));
            }
        }
    }
    let role_names: Vec<String> = roles.iter().map(|(_, _, name, _)| name.clone()).collect();
    for ((p, policy_id, _, backend), id) in roles.into_iter().zip(tf_names(&role_names)) {
        let policy_ref = format!("vault_policy.{policy_id}.name");
        if jwt {
            let _ = write!(
                out,
                "\nresource \"vault_jwt_auth_backend_role\" {} {{\n  backend         = {backend}\n  role_name       = {}\n  role_type       = \"jwt\"\n  user_claim      = \"sub\"\n  bound_audiences = [{audience}]\n  bound_claims = {{\n    \"/kubernetes.io/namespace\"           = {}\n    \"/kubernetes.io/serviceaccount/name\" = {}\n  }}\n  token_policies = [{policy_ref}]\n}}\n",
                hcl_string(&id),
                hcl_string(&p.role),
                hcl_string(&p.bound_service_account_namespaces.join(",")),
                hcl_string(&p.bound_service_account_names.join(",")),
            );
        } else {
            let audience_line = if audience.is_empty() {
                String::new()
            } else {
                format!("  audience                         = {audience}\n")
            };
            let _ = write!(
                out,
                "\nresource \"vault_kubernetes_auth_backend_role\" {} {{\n  backend                          = {backend}\n  role_name                        = {}\n  bound_service_account_names      = {}\n  bound_service_account_namespaces = {}\n{audience_line}  token_policies                   = [{policy_ref}]\n}}\n",
                hcl_string(&id),
                hcl_string(&p.role),
                hcl_list(&p.bound_service_account_names),
                hcl_list(&p.bound_service_account_namespaces),
            );
        }
    }
    out
}

/// Terraform names for `names`, one each and all different. Each is [`tf_name`]'s,
/// except where that would give two names one resource name (`a-b`, `a_b` and `a.b` all
/// become `a_b`): then the name with the fewest characters `tf_name` replaces keeps the
/// shared one (the first in byte order on a tie), so a role whose name is a Terraform
/// name already keeps its resources, and the others write each such character as
/// `_<hex>_` (`a_2d_b`, `a_2e_b`). A clash left after that gets `_2`, `_3`, … in order.
fn tf_names(names: &[String]) -> Vec<String> {
    let replaced = |name: &str| {
        name.chars()
            .filter(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
            .count()
    };
    let mut keeper: BTreeMap<String, &str> = BTreeMap::new();
    for name in names {
        keeper
            .entry(tf_name(name))
            .and_modify(|k| {
                if (replaced(name), name.as_str()) < (replaced(k), *k) {
                    *k = name;
                }
            })
            .or_insert(name);
    }
    let mut taken = BTreeSet::new();
    names
        .iter()
        .map(|name| {
            let base = tf_name(name);
            let mut id = if keeper.get(&base) == Some(&name.as_str()) {
                base
            } else {
                tf_name(&escaped(name))
            };
            if taken.contains(&id) {
                let stem = id.clone();
                let mut n = 2;
                while taken.contains(&id) {
                    id = format!("{stem}_{n}");
                    n += 1;
                }
            }
            taken.insert(id.clone());
            id
        })
        .collect()
}

/// `name` with each byte of a character other than a letter, digit or `_` as `_<hex>_`.
fn escaped(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "_{b:02x}_");
            }
        }
    }
    out
}

/// A Terraform name: letters, digits and `_`, not starting with a digit.
fn tf_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// A quoted HCL string; `${` and `%{` are escaped so Terraform does not interpolate them.
fn hcl_string(s: &str) -> String {
    let mut out = String::from("\"");
    out.push_str(
        &hcl_escape(s)
            .replace('\n', "\\n")
            .replace("${", "$${")
            .replace("%{", "%%{"),
    );
    out.push('"');
    out
}

fn hcl_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| hcl_string(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Heredoc content: only template sequences need escaping there.
fn heredoc_escape(s: &str) -> String {
    s.replace("${", "$${").replace("%{", "%%{")
}

/// Single-quotes for POSIX sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::render::Input;

    const PODS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: api
  namespace: shop
  annotations:
    rafay.dev/secretstore: vault
    vault.secretstore.rafay.dev/role: Shop
    vault.secretstore.rafay.dev/filesecret-config-1: '{"vaultSecretRef": "kv/app#k", "secretFileName": "k", "volumeMountPath": "/s"}'
spec:
  serviceAccountName: api
  containers:
  - name: app
    image: app
    command: [app]
    env:
    - name: DB_PASSWORD
      value: secretstore:vault:secret/shop/db
    - name: DB_USER
      value: secretstore:vault:secret/data/shop/db#user#3
    - name: PG
      value: secretstore:vault:database/creds/app#password
"#;

    fn pods() -> Vec<ScannedPod> {
        let input = Input {
            name: "pods.yaml".into(),
            bytes: PODS.as_bytes().to_vec(),
        };
        let scan = crate::analyze::scan::scan(&input, &Settings::default());
        assert!(scan.diagnostics.is_empty(), "{:?}", scan.diagnostics);
        scan.pods
    }

    fn options() -> PolicyOptions {
        PolicyOptions {
            auth_path: "auth/kubernetes".into(),
            ..PolicyOptions::default()
        }
    }

    #[test]
    fn paths_follow_the_kv_version_sources() {
        let mut flags = MountTable::default();
        flags.insert(parse_kv_version("kv=1").unwrap());
        flags.insert(parse_kv_version("database=1").unwrap());
        let sources = MountSources {
            server: None,
            flags,
        };
        let policies = generate(&pods(), &sources, &options()).unwrap().policies;
        assert_eq!(policies.len(), 1);
        let p = &policies[0];
        assert_eq!(p.policy_name, "secretstore-shop");
        assert_eq!(p.bound_service_account_names, ["api"]);
        assert_eq!(p.bound_service_account_namespaces, ["shop"]);
        assert_eq!(
            p.policy,
            "path \"database/creds/app\" {\n  capabilities = [\"read\"]\n}\n\
             path \"kv/app\" {\n  capabilities = [\"read\"]\n}\n\
             path \"secret/data/shop/db\" {\n  capabilities = [\"read\"]\n}\n"
        );
        let script = to_vault_cli(&policies);
        assert!(script.contains("vault write 'auth/kubernetes/role/Shop' \\\n"));
        assert!(script.contains("token_policies='secretstore-shop'"));
    }

    #[test]
    fn without_a_namespace_the_role_cannot_be_bound() {
        let mut pods = pods();
        pods[0].namespace = None;
        let sources = MountSources {
            server: None,
            flags: MountTable::default(),
        };
        let problems = generate(&pods, &sources, &options()).unwrap_err();
        assert_eq!(problems[0].code, Code::NamespaceAtDeployTime);
        let with_flag = PolicyOptions {
            default_namespace: Some("prod".into()),
            ..options()
        };
        let p = generate(&pods, &sources, &with_flag).unwrap().policies;
        assert_eq!(p[0].bound_service_account_namespaces, ["prod"]);
    }

    #[test]
    fn mounts_unknown_to_the_server_are_assumed_and_warned_about() {
        let mut server = MountTable::default();
        server.insert(Mount {
            path: "secret/".into(),
            engine: Engine::Kv2,
        });
        let mut flags = MountTable::default();
        flags.insert(parse_kv_version("kv=1").unwrap());
        let sources = MountSources {
            server: Some(server),
            flags,
        };
        let generated = generate(&pods(), &sources, &options()).unwrap();
        let warned: Vec<usize> = generated.warnings.iter().map(|w| w.location.line).collect();
        assert_eq!(
            warned,
            [9, 22],
            "kv/app (flag) and database/creds/app (default)"
        );
        assert!(generated.policies[0]
            .policy
            .contains("\"database/data/creds/app\""));
    }

    #[test]
    fn a_template_source_is_one_grant_and_one_warning() {
        let text = r#"apiVersion: v1
kind: Pod
metadata:
  name: api
  namespace: shop
  annotations:
    rafay.dev/secretstore: vault
    vault.secretstore.rafay.dev/role: shop
    vault.secretstore.rafay.dev/filesecret-config-1: '{"sources": {"db": "kv/db", "ca": "pki/cert/ca", "cert": {"path": "pki/issue/web", "params": {"common_name": "a.shop.svc"}}}, "files": {"a": {"template": "${ db.user }${ db.password }${ ca.certificate }"}, "b": {"template": "${ db.user }${ cert.certificate }"}}, "volumeMountPath": "/s"}'
spec:
  containers:
  - name: app
    image: app
    command: [app]
    env:
    - name: USER
      value: secretstore:vault:kv/db#user
"#;
        let input = Input {
            name: "t.yaml".into(),
            bytes: text.as_bytes().to_vec(),
        };
        let scan = crate::analyze::scan::scan(&input, &Settings::default());
        assert!(scan.diagnostics.is_empty(), "{:?}", scan.diagnostics);
        let mut server = MountTable::default();
        server.insert(Mount {
            path: "kv/".into(),
            engine: Engine::Kv1,
        });
        let mut flags = MountTable::default();
        flags.insert(parse_kv_version("pki=1").unwrap());
        let sources = MountSources {
            server: Some(server),
            flags,
        };
        let generated = generate(&scan.pods, &sources, &options()).unwrap();
        assert_eq!(
            generated.policies[0].policy,
            "path \"kv/db\" {\n  capabilities = [\"read\"]\n}\n\
             path \"pki/cert/ca\" {\n  capabilities = [\"read\"]\n}\n\
             path \"pki/issue/web\" {\n  capabilities = [\"update\"]\n}\n"
        );
        // pki/ is known from the flag only: one warning per source, not per key or file.
        let warned: Vec<&str> = generated
            .warnings
            .iter()
            .map(|w| w.message.as_str())
            .collect();
        assert_eq!(warned.len(), 2, "{warned:#?}");
    }

    #[test]
    fn kv_version_flags_and_quoting() {
        assert!(parse_kv_version("kv").is_err());
        assert!(parse_kv_version("kv=3").is_err());
        assert_eq!(parse_kv_version("team/a/=2").unwrap().path, "team/a/");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert!(!is_exact_pattern("a/b*"));
        assert!(!is_exact_pattern("a/+/b"));
        assert!(is_exact_pattern("a/b+c"));
    }
}
