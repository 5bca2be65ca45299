//! `secretstore check`: every reference of every opted-in pod against a live Vault.
//!
//! Per reference: a mount holds the path; a pinned version is on KV v2; the secret, the
//! key and the pinned version exist and are neither deleted nor destroyed. Per pod: the
//! role exists on the auth path, admits the pod's service account and namespace, and its
//! policies grant `read` on every API path the pod reads (decided by [`crate::vault::acl`]).
//!
//! Lookups are collected first and made once each, concurrently (bounded by the client),
//! in three rounds: secrets and roles, then the roles' policies and the metadata of
//! pinned versions that were not found.

use crate::analyze::scan::{ScannedPod, ScannedRef, Usage};
use crate::diag::{Code, Diagnostic};
use crate::pod::agent_spec::{is_env_name, FileFormat};
use crate::render::dialect::{SecretRef, ROLE_KEY};
use crate::vault::acl::{Acl, Capability, Policy};
use crate::vault::client::{Fetch, SecretState, VaultApi, VersionState, Versions};
use crate::vault::mounts::{self, Engine, MountTable, Target};
use crate::vault::role::{self, Identity, Method};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use tokio::task::JoinSet;

#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Auth mount the pods log in with, e.g. `auth/kubernetes`.
    pub auth_path: String,
    /// Namespace of objects whose manifest sets none (`--namespace`).
    pub default_namespace: Option<String>,
    /// The audience of the pods' projected tokens, when configured.
    pub audience: Option<String>,
}

/// What a run did, for `--stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub pods: usize,
    pub references: usize,
    pub secret_lookups: usize,
    pub role_lookups: usize,
    pub policy_lookups: usize,
    pub metadata_lookups: usize,
    pub requests: usize,
}

/// `P pods, R references; lookups: ...; N HTTP requests`, as `--stats` and the benchmark
/// print it.
impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} pods, {} references; lookups: {} secrets, {} roles, {} policies, {} metadata; {} HTTP requests",
            self.pods,
            self.references,
            self.secret_lookups,
            self.role_lookups,
            self.policy_lookups,
            self.metadata_lookups,
            self.requests
        )
    }
}

/// Identifies one secret read: API path, KV v2 or not, pinned version.
type SecretKey = (String, bool, Option<u64>);

/// How one reference is checked, once its mount is known.
enum Plan {
    /// Reported already (no mount, bad version pin...): nothing more to look up.
    Done,
    /// A KV secret to read; the policy must grant read on the target.
    Kv(Target),
    /// Another engine: reading may have side effects (dynamic credentials), so only the
    /// policy is checked.
    PolicyOnly(Target),
    /// A write that issues a secret (params): the policy must grant update on the
    /// target; for PKI's `issue/<role>`, the PKI role must allow the request.
    Write(Target),
}

/// Checks `pods` against Vault. `Err` when nothing could be checked (unreachable, sealed,
/// bad token); findings otherwise, sorted by location.
pub async fn check(
    api: Arc<VaultApi>,
    pods: &[ScannedPod],
    options: &CheckOptions,
) -> Result<(Vec<Diagnostic>, Stats), String> {
    let table = api.mounts().await?;
    let mut out = Vec::new();
    let mut stats = Stats {
        pods: pods.len(),
        references: pods.iter().map(|p| p.references.len()).sum(),
        ..Stats::default()
    };

    let plans: Vec<Vec<Plan>> = pods
        .iter()
        .map(|pod| {
            pod.references
                .iter()
                .map(|r| plan(&table, pod, r, &mut out))
                .collect()
        })
        .collect();
    let kv_refs = || {
        pods.iter()
            .zip(&plans)
            .flat_map(|(pod, plans)| pod.references.iter().zip(plans))
            .filter_map(|(r, plan)| match plan {
                Plan::Kv(t) => Some((&r.reference, t)),
                _ => None,
            })
    };
    let secret_keys: BTreeSet<SecretKey> = kv_refs()
        .map(|(r, t)| (t.api_path.clone(), t.kv2.is_some(), r.version))
        .collect();
    let role_names: BTreeSet<String> = pods
        .iter()
        .filter(|p| !p.role.is_empty())
        .map(|p| p.role.clone())
        .collect();
    stats.secret_lookups = secret_keys.len();
    stats.role_lookups = role_names.len();

    let auth_path = options.auth_path.clone();
    let (secrets, roles) = tokio::join!(
        fetch_all(&api, secret_keys, |api, (path, kv2, version)| async move {
            api.secret(&path, kv2, version).await
        }),
        fetch_all(&api, role_names, move |api, name| {
            let auth_path = auth_path.clone();
            async move { api.role(&auth_path, &name).await }
        }),
    );

    let policy_names: BTreeSet<String> = roles
        .values()
        .filter_map(|r| match r {
            Fetch::Found(role) => Some(role::policies(role)),
            _ => None,
        })
        .flatten()
        .filter(|name| name != "root")
        .collect();
    // Pinned versions that were not found: the metadata tells a missing version from a
    // missing secret.
    let metadata_keys: BTreeSet<(String, String)> = kv_refs()
        .filter_map(|(r, t)| {
            let key = (t.api_path.clone(), true, Some(r.version?));
            (secrets.get(&key) == Some(&Fetch::NotFound)).then(|| t.kv2.clone())?
        })
        .collect();
    let pki_roles: BTreeSet<String> = plans
        .iter()
        .flatten()
        .filter_map(|plan| match plan {
            Plan::Write(t) => pki_role_path(&table, t),
            _ => None,
        })
        .collect();
    stats.policy_lookups = policy_names.len();
    stats.metadata_lookups = metadata_keys.len();
    let (policies, metadata, pki_roles) = tokio::join!(
        fetch_all(&api, policy_names, |api, name| async move {
            api.policy(&name).await
        }),
        fetch_all(&api, metadata_keys, |api, (mount, path)| async move {
            api.kv2_versions(&mount, &path).await
        }),
        fetch_all(
            &api,
            pki_roles,
            |api, path| async move { api.data(&path).await }
        ),
    );

    let lookups = Lookups {
        table: &table,
        secrets: &secrets,
        roles: &roles,
        policies: &policies,
        metadata: &metadata,
        pki_roles: &pki_roles,
        options,
    };
    for (pod, plans) in pods.iter().zip(&plans) {
        lookups.report_pod(pod, plans, &mut out);
    }
    out.sort_by(|a, b| (&a.location, a.code, &a.message).cmp(&(&b.location, b.code, &b.message)));
    out.dedup();
    stats.requests = api.requests();
    Ok((out, stats))
}

/// Runs `f` for every key at once (the client bounds how many requests are in flight).
async fn fetch_all<K, T, F, Fut>(
    api: &Arc<VaultApi>,
    keys: BTreeSet<K>,
    f: F,
) -> BTreeMap<K, Fetch<T>>
where
    K: Ord + Clone + Send + 'static,
    T: Send + 'static,
    F: Fn(Arc<VaultApi>, K) -> Fut,
    Fut: Future<Output = Fetch<T>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for key in keys {
        let answer = f(Arc::clone(api), key.clone());
        set.spawn(async move { (key, answer.await) });
    }
    let mut results = BTreeMap::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((key, answer)) => {
                results.insert(key, answer);
            }
            // A lookup task panicked: its key stays absent and is reported as unchecked.
            Err(_) => continue,
        }
    }
    results
}

/// `path[#key[#version]]`, as the reference reads with its implied key.
fn shown(reference: &SecretRef) -> String {
    let mut text = reference.path.clone();
    if let Some(k) = &reference.key {
        text.push('#');
        text.push_str(k);
    }
    if let Some(v) = reference.version {
        text.push_str(&format!("#{v}"));
    }
    text
}

/// What a finding about `r` is about: `reference `path#key``, or for a template's source
/// `source `alias` (`path`) of filesecret-config-N` (without the key, so that the records
/// of one source, one per key its templates read, give one finding).
fn subject(r: &ScannedRef) -> String {
    match &r.usage {
        Usage::Template { suffix, alias, .. } => {
            let version = r
                .reference
                .version
                .map(|v| format!(", version {v}"))
                .unwrap_or_default();
            format!(
                "source `{alias}` (`{}`{version}) of filesecret-config-{suffix}",
                r.reference.path
            )
        }
        _ => format!("reference `{}`", shown(&r.reference)),
    }
}

/// What a finding about a write (params) is about: the file secret, or a template's source.
fn write_subject(r: &ScannedRef) -> String {
    match &r.usage {
        Usage::Template { .. } => subject(r),
        _ => format!("file secret `{}`", r.reference.path),
    }
}

/// A finding about the pod's role annotation.
fn at_role(pod: &ScannedPod, code: Code, message: String, help: String) -> Diagnostic {
    Diagnostic::new(code, pod.role_location.clone(), message)
        .with_object(Some(pod.object.clone()))
        .with_field(format!("{}metadata.annotations[{ROLE_KEY}]", pod.field))
        .with_help(help)
}

/// A finding about one reference of the pod.
fn at_reference(
    pod: &ScannedPod,
    r: &ScannedRef,
    code: Code,
    message: String,
    help: String,
) -> Diagnostic {
    Diagnostic::new(code, r.location.clone(), message)
        .with_object(Some(pod.object.clone()))
        .with_field(r.field.clone())
        .with_help(help)
}

/// Every reference whose path the role's policies do not grant `read` on.
fn report_read_grants(
    pod: &ScannedPod,
    plans: &[Plan],
    grants: &RoleGrants,
    out: &mut Vec<Diagnostic>,
) {
    let RoleGrants {
        acl,
        names,
        missing,
        templated,
    } = grants;
    for (r, plan) in pod.references.iter().zip(plans) {
        let target = match plan {
            Plan::Kv(t) | Plan::PolicyOnly(t) => t,
            Plan::Done | Plan::Write(_) => continue,
        };
        if acl.capabilities(&target.api_path).allows(Capability::Read) {
            continue;
        }
        let mut message = format!(
            "{}: the policies of role `{}` ({}) do not grant `read` on `{}`",
            subject(r),
            pod.role,
            names.join(", "),
            target.api_path
        );
        if !missing.is_empty() {
            message.push_str(&format!(
                "; polic{} {} do{} not exist",
                if missing.len() == 1 { "y" } else { "ies" },
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if missing.len() == 1 { "es" } else { "" }
            ));
        }
        let help = format!(
            "add `path \"{}\" {{ capabilities = [\"read\"] }}` to one of the role's policies (`secretstore policy` writes them)",
            target.api_path
        );
        let code = if templated
            .iter()
            .any(|glob| role::glob_match(glob, &target.api_path))
        {
            message.push_str(", unless an identity-templated path of them does (check cannot evaluate templates)");
            Code::PolicyNotCheckable
        } else {
            Code::PolicyDeniesRead
        };
        out.push(at_reference(pod, r, code, message, help));
    }
}

/// Every write (params) whose path the role's policies do not grant `update` on.
fn report_update_grants(
    pod: &ScannedPod,
    plans: &[Plan],
    grants: &RoleGrants,
    out: &mut Vec<Diagnostic>,
) {
    for (r, plan) in pod.references.iter().zip(plans) {
        let Plan::Write(target) = plan else { continue };
        if grants
            .acl
            .capabilities(&target.api_path)
            .allows(Capability::Update)
        {
            continue;
        }
        out.push(at_reference(
            pod,
            r,
            Code::PolicyDeniesUpdate,
            format!(
                "{} is issued by a write, but the policies of role `{}` ({}) do not grant `update` on `{}`",
                write_subject(r),
                pod.role,
                grants.names.join(", "),
                target.api_path
            ),
            format!(
                "add `path \"{}\" {{ capabilities = [\"update\"] }}` to one of the role's policies (`secretstore policy` writes it)",
                target.api_path
            ),
        ));
    }
}

/// The PKI role a write issues from (`<mount>/roles/<role>`), when it is PKI's
/// `issue/<role>`.
fn pki_role_path(table: &MountTable, target: &Target) -> Option<String> {
    let mount = table.find(&target.api_path)?;
    if mount.engine != Engine::Other("pki".to_owned()) {
        return None;
    }
    let role = crate::vault::pki::issue_role(&target.api_path, &mount.path)?;
    Some(format!("{}roles/{role}", mount.path))
}

/// A request's names with each pod variable as one DNS label (or, in `ip_sans`, an
/// address), the way check decides what the pod will ask for.
fn with_sample_pod_variables(text: &str, ip: bool) -> String {
    use crate::pod::agent_spec::{parse_param, ParamPiece, POD_VARIABLES};
    let mut out = String::new();
    for piece in parse_param(text).unwrap_or_default() {
        match piece {
            ParamPiece::Text(t) => out.push_str(&t),
            ParamPiece::Var(i) if ip && POD_VARIABLES[i].0 == "POD_IP" => out.push_str("10.0.0.1"),
            ParamPiece::Var(_) => out.push_str("podlabel"),
        }
    }
    out
}

/// A live pod with a leased secret: its sidecar renews the lease and revokes it on stop.
fn report_lease_grants(
    pod: &ScannedPod,
    plans: &[Plan],
    grants: &RoleGrants,
    out: &mut Vec<Diagnostic>,
) {
    let leased = pod
        .references
        .iter()
        .zip(plans)
        .find(|(_, plan)| matches!(plan, Plan::PolicyOnly(_)));
    let (true, Some((r, _))) = (pod.live, leased) else {
        return;
    };
    for path in crate::analyze::policy::LEASE_PATHS {
        if grants.acl.capabilities(path).allows(Capability::Update) {
            continue;
        }
        out.push(at_reference(
            pod,
            r,
            Code::PolicyDeniesLeases,
            format!(
                "{} is a leased secret of a live pod, but the policies of role `{}` ({}) do not grant `update` on `{path}`, so the sidecar cannot {} its lease",
                subject(r),
                pod.role,
                grants.names.join(", "),
                if path.ends_with("renew") { "renew" } else { "revoke" }
            ),
            format!(
                "add `path \"{path}\" {{ capabilities = [\"update\"] }}` to one of the role's policies (`secretstore policy` writes it)"
            ),
        ));
    }
}

fn plan(table: &MountTable, pod: &ScannedPod, r: &ScannedRef, out: &mut Vec<Diagnostic>) -> Plan {
    let reference = &r.reference;
    let mut report = |code, message: String, help: String| {
        out.push(at_reference(pod, r, code, message, help));
        Plan::Done
    };
    let Some(mount) = table.find(&reference.path) else {
        return report(
            Code::MountNotFound,
            format!(
                "{}: no secrets engine is mounted at a prefix of `{}` (or the check token's policies grant nothing under it)",
                subject(r),
                reference.path
            ),
            "fix the path's mount (first segments), or enable the secrets engine there".into(),
        );
    };
    let target = match mounts::target(&reference.path, mount) {
        Ok(t) => t,
        Err(message) => {
            return report(
                Code::SecretNotFound,
                format!("{}: {message}", subject(r)),
                "name a secret inside the mount".into(),
            )
        }
    };
    if reference.params.is_some() {
        return match mount.engine {
            Engine::Kv1 | Engine::Kv2 => report(
                Code::WriteToKvMount,
                format!(
                    "{} has params, so the pod writes to `{}`, but `{}` is a KV mount: the write would replace the secret",
                    write_subject(r), target.api_path, mount.path
                ),
                "params are for engines that issue a secret in answer to a write (pki/issue/<role>, transit/decrypt/<key>, aws/sts/<role>); remove params to read the KV secret".into(),
            ),
            Engine::Other(_) => Plan::Write(target),
        };
    }
    match (&mount.engine, reference.version) {
        (Engine::Kv2, _) | (Engine::Kv1, None) => Plan::Kv(target),
        (engine, Some(v)) => report(
            Code::VersionNotSupported,
            format!(
                "{} pins version {v}, but `{}` is a {engine} mount, which has no versions",
                subject(r),
                mount.path
            ),
            "remove the `#<version>` part, or move the secret to a KV v2 mount".into(),
        ),
        (Engine::Other(_), None) => Plan::PolicyOnly(target),
    }
}

struct Lookups<'a> {
    table: &'a MountTable,
    secrets: &'a BTreeMap<SecretKey, Fetch<SecretState>>,
    roles: &'a BTreeMap<String, Fetch<serde_json::Value>>,
    policies: &'a BTreeMap<String, Fetch<String>>,
    metadata: &'a BTreeMap<(String, String), Fetch<Versions>>,
    /// PKI roles by path (`<mount>/roles/<role>`).
    pki_roles: &'a BTreeMap<String, Fetch<serde_json::Value>>,
    options: &'a CheckOptions,
}

/// What a role's policies grant, compiled.
struct RoleGrants {
    acl: Acl,
    /// The role's policy names.
    names: Vec<String>,
    /// Those that do not exist (Vault ignores them).
    missing: Vec<String>,
    /// Identity-templated rules that grant `read`, as globs (see [`template_glob`]).
    templated: Vec<String>,
}

impl Lookups<'_> {
    fn report_pod(&self, pod: &ScannedPod, plans: &[Plan], out: &mut Vec<Diagnostic>) {
        for (r, plan) in pod.references.iter().zip(plans) {
            match plan {
                Plan::Kv(target) => self.report_secret(pod, r, target, out),
                Plan::Write(target) => self.report_pki(pod, r, target, out),
                _ => {}
            }
        }
        if pod.role.is_empty() {
            return; // render's own SS102 says so.
        }
        let Some(role) = self.pod_role(pod, out) else {
            return;
        };
        self.report_binding(pod, role, out);
        match self.role_grants(role) {
            Ok(grants) => {
                report_read_grants(pod, plans, &grants, out);
                report_update_grants(pod, plans, &grants, out);
                report_lease_grants(pod, plans, &grants, out);
            }
            Err(why) => out.push(at_role(
                pod,
                Code::CannotCheck,
                format!(
                    "cannot decide what role `{}`'s policies grant: {why}",
                    pod.role
                ),
                "give the check token `read` on sys/policies/acl/<name> for the role's policies"
                    .into(),
            )),
        }
    }

    /// The pod's role, or the finding that says why there is none to check.
    fn pod_role(&self, pod: &ScannedPod, out: &mut Vec<Diagnostic>) -> Option<&serde_json::Value> {
        let auth_path = &self.options.auth_path;
        match self.roles.get(&pod.role) {
            Some(Fetch::Found(role)) => Some(role),
            Some(Fetch::NotFound) => {
                out.push(at_role(
                    pod,
                    Code::RoleNotFound,
                    format!(
                        "role `{}` does not exist on {auth_path}{}",
                        pod.role,
                        if self.table.auth_type(auth_path).is_none() {
                            " (or no auth method is mounted there)"
                        } else {
                            ""
                        }
                    ),
                    format!(
                        "create it (`vault write {auth_path}/role/{} ...`, see `secretstore policy`), or fix the role annotation or the auth path (--config/--cluster)",
                        pod.role
                    ),
                ));
                None
            }
            other => {
                out.push(at_role(
                    pod,
                    Code::CannotCheck,
                    format!(
                        "cannot read role `{}` on {auth_path}: {}",
                        pod.role,
                        why(other)
                    ),
                    format!(
                        "give the check token `read` on {auth_path}/role/{}",
                        pod.role
                    ),
                ));
                None
            }
        }
    }

    /// Whether the role admits the pod's service account, namespace and token.
    fn report_binding(
        &self,
        pod: &ScannedPod,
        role: &serde_json::Value,
        out: &mut Vec<Diagnostic>,
    ) {
        let service_account = pod.service_account.as_deref().unwrap_or("default");
        let namespace = pod
            .namespace
            .as_deref()
            .or(self.options.default_namespace.as_deref());
        let who = Identity {
            service_account,
            namespace,
            audience: self.options.audience.as_deref(),
        };
        let method = Method::detect(self.table.auth_type(&self.options.auth_path), role);
        for issue in role::binding_issues(method, &pod.role, role, &who) {
            let finding = at_role(pod, issue.code, issue.message, issue.help);
            out.push(if issue.alternative_severity {
                finding.at_alternative_severity()
            } else {
                finding
            });
        }
    }

    fn role_grants(&self, role: &serde_json::Value) -> Result<RoleGrants, String> {
        let names = role::policies(role);
        let mut parsed = Vec::new();
        let mut missing = Vec::new();
        for name in &names {
            if name == "root" {
                parsed.push(Policy::root());
                continue;
            }
            match self.policies.get(name) {
                Some(Fetch::Found(text)) => match Policy::parse(name, text) {
                    Ok(p) => parsed.push(p),
                    Err(e) => return Err(format!("policy `{name}`: {e}")),
                },
                // Vault ignores a policy name that does not exist; so does the login.
                Some(Fetch::NotFound) => missing.push(name.clone()),
                other => return Err(format!("policy `{name}`: {}", why(other))),
            }
        }
        Ok(RoleGrants {
            templated: parsed
                .iter()
                .flat_map(Policy::rules)
                .filter(|r| r.is_templated() && r.grants().allows(Capability::Read))
                .map(|r| template_glob(r.pattern()))
                .collect(),
            acl: Acl::new(&parsed),
            names,
            missing,
        })
    }

    /// A PKI issue: the role exists and allows the requested names and TTL.
    fn report_pki(
        &self,
        pod: &ScannedPod,
        r: &ScannedRef,
        target: &Target,
        out: &mut Vec<Diagnostic>,
    ) {
        let Some(role_path) = pki_role_path(self.table, target) else {
            return;
        };
        let what = write_subject(r);
        let mut push = |code, message: String, help: String| {
            out.push(at_reference(
                pod,
                r,
                code,
                format!("{what}: {message}"),
                help,
            ));
        };
        let role = match self.pki_roles.get(&role_path) {
            Some(Fetch::Found(data)) => crate::vault::pki::PkiRole::from_data(data),
            Some(Fetch::NotFound) => {
                return push(
                    Code::PkiRoleNotFound,
                    format!("the PKI role `{role_path}` does not exist"),
                    format!("create it (`vault write {role_path} allowed_domains=... max_ttl=...`), or fix the path"),
                )
            }
            other => {
                return push(
                    Code::CannotCheck,
                    format!("cannot read the PKI role `{role_path}`: {}", why(other)),
                    format!("give the check token `read` on {role_path}"),
                )
            }
        };
        let params: serde_json::Value = r
            .reference
            .params
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default();
        let text = |k: &str| params.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let mut names: Vec<(&str, String)> = Vec::new();
        if !text("common_name").is_empty() {
            names.push((
                "common_name",
                with_sample_pod_variables(text("common_name"), false),
            ));
        }
        for alt in text("alt_names")
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            names.push(("alt_names", with_sample_pod_variables(alt, false)));
        }
        for (field, name) in names {
            if !role.allows_name(&name) {
                push(
                    Code::PkiNameNotAllowed,
                    format!(
                        "{field} `{name}` is not allowed by PKI role `{role_path}` (allowed_domains: {}; allow_subdomains {}, allow_bare_domains {}, allow_glob_domains {}, allow_any_name {})",
                        if role.allowed_domains.is_empty() { "none".to_owned() } else { role.allowed_domains.join(", ") },
                        role.allow_subdomains, role.allow_bare_domains, role.allow_glob_domains, role.allow_any_name
                    ),
                    "ask for a name under the role's allowed_domains, or change the role (a $(POD_...) part counts as one DNS label)".into(),
                );
            }
        }
        if !text("ip_sans").is_empty() && !role.allow_ip_sans {
            push(
                Code::PkiNameNotAllowed,
                format!(
                    "ip_sans are requested, but PKI role `{role_path}` has allow_ip_sans false"
                ),
                "drop ip_sans, or set allow_ip_sans=true on the role".into(),
            );
        }
        if let Some(ttl) = params.get("ttl") {
            let seconds = crate::vault::pki::ttl_seconds(ttl);
            if role.max_ttl > 0 && seconds > role.max_ttl {
                push(
                    Code::PkiTtlOverMax,
                    format!(
                        "ttl {ttl} ({seconds}s) is longer than the max_ttl of PKI role `{role_path}` ({}s), so the certificate would be cut short or refused",
                        role.max_ttl
                    ),
                    "ask for a ttl within the role's max_ttl, or raise max_ttl".into(),
                );
            }
        }
    }

    fn report_secret(
        &self,
        pod: &ScannedPod,
        r: &ScannedRef,
        target: &Target,
        out: &mut Vec<Diagnostic>,
    ) {
        let reference = &r.reference;
        let key = (
            target.api_path.clone(),
            target.kv2.is_some(),
            reference.version,
        );
        let what = subject(r);
        let api = &target.api_path;
        let mut push = |code, message: String, help: &str| {
            out.push(at_reference(
                pod,
                r,
                code,
                format!("{what}: {message}"),
                help.to_string(),
            ));
        };
        let kv_put = "write it (`vault kv put ...`), or fix the reference";
        match (self.secrets.get(&key), reference.version) {
            (Some(Fetch::Found(SecretState::Present(keys))), _) => {
                let env_file = matches!(
                    r.usage,
                    Usage::File {
                        format: FileFormat::Env,
                        ..
                    }
                );
                let not_names: Vec<&str> = keys
                    .iter()
                    .filter(|k| !is_env_name(k))
                    .map(String::as_str)
                    .collect();
                if env_file && reference.key.is_none() && !not_names.is_empty() {
                    push(
                        Code::EnvFormatKeys,
                        format!(
                            "format env writes KEY=value lines, but keys of `{api}` are not shell variable names: {}",
                            not_names.join(", ")
                        ),
                        "use format json, yaml or properties, select one key with #<key>, or rename the keys",
                    );
                }
                if let (Some(k), Usage::Template { suffix, alias, .. }) = (&reference.key, &r.usage) {
                    if !keys.contains(k) {
                        let read = TemplateRead { suffix, alias, key: k, version: reference.version };
                        let (message, help) = read.not_found(pod, api, keys);
                        push(Code::KeyNotFound, message, &help);
                    }
                } else if let Some(k) = &reference.key {
                    if !keys.contains(k) {
                        push(
                            Code::KeyNotFound,
                            format!(
                                "secret `{api}` has no key `{k}` (its keys: {})",
                                key_list(keys)
                            ),
                            "fix the `#<key>` part (or, for an env ref without one, the env var's name), or add the key to the secret",
                        );
                    }
                }
            }
            (Some(Fetch::Found(SecretState::Deleted(v))), Some(_)) => push(
                Code::VersionDeleted,
                format!("version {v} of `{api}` is deleted"),
                "undelete it (`vault kv undelete -versions=N`), or pin a live version",
            ),
            (Some(Fetch::Found(SecretState::Destroyed(v))), Some(_)) => push(
                Code::VersionDestroyed,
                format!("version {v} of `{api}` is destroyed"),
                "pin a live version (`vault kv metadata get` lists them)",
            ),
            (Some(Fetch::Found(SecretState::Deleted(v))), None) => push(
                Code::SecretNotFound,
                format!("the latest version ({v}) of `{api}` is deleted, so there is nothing to read"),
                "undelete it, or write a new version",
            ),
            (Some(Fetch::Found(SecretState::Destroyed(v))), None) => push(
                Code::SecretNotFound,
                format!("the latest version ({v}) of `{api}` is destroyed, so there is nothing to read"),
                "write a new version",
            ),
            (Some(Fetch::NotFound), None) => push(
                Code::SecretNotFound,
                format!("no secret at `{api}`"),
                kv_put,
            ),
            (Some(Fetch::NotFound), Some(v)) => {
                let metadata = target
                    .kv2
                    .as_ref()
                    .and_then(|(mount, path)| self.metadata.get(&(mount.clone(), path.clone())));
                match metadata {
                    Some(Fetch::NotFound) => push(
                        Code::SecretNotFound,
                        format!("no secret at `{api}`"),
                        kv_put,
                    ),
                    Some(Fetch::Found(versions)) => match versions.versions.get(&v) {
                        Some(VersionState::Deleted) => push(
                            Code::VersionDeleted,
                            format!("version {v} of `{api}` is deleted"),
                            "undelete it (`vault kv undelete -versions=N`), or pin a live version",
                        ),
                        Some(VersionState::Destroyed) => push(
                            Code::VersionDestroyed,
                            format!("version {v} of `{api}` is destroyed"),
                            "pin a live version (`vault kv metadata get` lists them)",
                        ),
                        _ => push(
                            Code::VersionNotFound,
                            format!(
                                "`{api}` has no version {v} (current version: {}; versions kept: {})",
                                versions.current,
                                version_list(versions)
                            ),
                            "pin an existing version",
                        ),
                    },
                    other => push(
                        Code::VersionNotFound,
                        format!(
                            "version {v} of `{api}` was not found, and its metadata cannot tell why: {}",
                            why(other)
                        ),
                        "pin an existing version",
                    ),
                }
            }
            (other, _) => push(
                Code::CannotCheck,
                format!("cannot read `{api}` to check it: {}", why(other)),
                "give the check token `read` on the secret's API path (KV v2: also its metadata/ path)",
            ),
        }
    }
}

/// A glob that matches at least every path an identity-templated policy pattern can
/// match once rendered: each `{{...}}` and each `+` segment becomes `*`.
fn template_glob(pattern: &str) -> String {
    let mut glob = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("{{") {
        glob.push_str(&rest[..start]);
        glob.push('*');
        rest = match rest[start..].find("}}") {
            Some(end) => &rest[start + end + 2..],
            None => "",
        };
    }
    glob.push_str(rest);
    glob.split('/')
        .map(|segment| if segment == "+" { "*" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

fn why<T>(fetch: Option<&Fetch<T>>) -> String {
    match fetch {
        Some(Fetch::Denied(e)) => format!("permission denied ({e})"),
        Some(Fetch::Failed(e)) => e.clone(),
        Some(Fetch::NotFound) => "not found".into(),
        Some(Fetch::Found(_)) => "unexpected answer".into(),
        None => "the lookup did not complete".into(),
    }
}

/// A key that a template of a config reads from one of its sources.
struct TemplateRead<'a> {
    suffix: &'a str,
    alias: &'a str,
    key: &'a str,
    version: Option<u64>,
}

impl TemplateRead<'_> {
    /// SS304's message and help when the secret (`api`, with `keys`) lacks the key. It
    /// names every file of the config whose template reads the key, so that the records
    /// of those files (one each) give one finding.
    fn not_found(&self, pod: &ScannedPod, api: &str, keys: &BTreeSet<String>) -> (String, String) {
        let TemplateRead {
            suffix,
            alias,
            key,
            version,
        } = self;
        let files: BTreeSet<String> = pod
            .references
            .iter()
            .filter_map(|other| match &other.usage {
                Usage::Template {
                    suffix: s,
                    alias: a,
                    file_name,
                    ..
                } if s == suffix && a == alias && other.reference.key.as_deref() == Some(*key) => {
                    Some(format!("`{file_name}`"))
                }
                _ => None,
            })
            .collect();
        let secret = match version {
            Some(v) => format!("version {v} of `{api}`"),
            None => format!("`{api}`"),
        };
        let reads = if is_identifier(key) {
            format!("`{alias}.{key}`")
        } else {
            format!("`{alias}[\"{key}\"]`")
        };
        (
            format!(
                "the template of {} {} reads {reads}, but {secret} has no key `{key}` (its keys: {})",
                if files.len() == 1 { "file" } else { "files" },
                files.into_iter().collect::<Vec<_>>().join(", "),
                key_list(keys)
            ),
            format!(
                "fix the key in the template, or add `{key}` to the secret"
            ),
        )
    }
}

/// A key a template can write as `alias.key`.
fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Key names (never values), at most ten.
fn key_list(keys: &BTreeSet<String>) -> String {
    if keys.is_empty() {
        return "none".into();
    }
    let mut shown: Vec<String> = keys.iter().take(10).map(|k| format!("`{k}`")).collect();
    if keys.len() > 10 {
        shown.push(format!("and {} more", keys.len() - 10));
    }
    shown.join(", ")
}

fn version_list(versions: &Versions) -> String {
    let live: Vec<String> = versions.versions.keys().map(u64::to_string).collect();
    if live.is_empty() {
        "none".into()
    } else {
        live.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templated_patterns_over_approximate() {
        let glob = template_glob("secret/data/{{identity.entity.name}}/+/x*");
        assert_eq!(glob, "secret/data/*/*/x*");
        assert!(role::glob_match(&glob, "secret/data/app/a/xy"));
        assert!(!role::glob_match(
            &template_glob("identity/entity/id/{{identity.entity.id}}"),
            "secret/data/shop/db"
        ));
    }
}
