//! Auth roles as `<authPath>/role/<name>` returns them, and whether a pod's service
//! account can log in with one, by the rules of the `kubernetes` and `jwt` auth methods.
//!
//! Kubernetes roles match `bound_service_account_names` and
//! `bound_service_account_namespaces` with `*` globs (a lone `*` allows any), and may allow
//! further namespaces by label selector, which only the cluster can answer. `jwt` roles
//! match the service-account token's `sub` against `bound_subject`, each of `bound_claims`
//! (exactly, or as globs with `bound_claims_type: glob`), and its `aud` against
//! `bound_audiences`, which must not be empty since projected tokens always carry one.

use crate::diag::Code;
use serde_json::Value;

/// The identity a pod's projected service-account token carries.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub service_account: &'a str,
    /// `None` when the manifest leaves the namespace to deploy time.
    pub namespace: Option<&'a str>,
    /// The token audience render configures; `None` means the cluster's default.
    pub audience: Option<&'a str>,
}

/// One reason the login may fail (or may not be checkable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub code: Code,
    /// At the code's other severity ([`Code::alternative`]).
    pub alternative_severity: bool,
    pub message: String,
    pub help: String,
}

impl Issue {
    fn new(code: Code, message: String, help: String) -> Issue {
        Issue {
            code,
            alternative_severity: false,
            message,
            help,
        }
    }

    fn at_alternative_severity(self) -> Issue {
        Issue {
            alternative_severity: true,
            ..self
        }
    }
}

/// What kind of auth method a role belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Kubernetes,
    Jwt,
    Other,
}

impl Method {
    /// From the auth mount's type when visible, else from the role's own fields.
    pub fn detect(mount_type: Option<&str>, role: &Value) -> Method {
        match mount_type {
            Some("kubernetes") => return Method::Kubernetes,
            Some("jwt") | Some("oidc") => return Method::Jwt,
            Some(_) => return Method::Other,
            None => {}
        }
        if role.get("bound_service_account_names").is_some() {
            Method::Kubernetes
        } else if [
            "role_type",
            "bound_subject",
            "user_claim",
            "bound_audiences",
        ]
        .iter()
        .any(|f| role.get(f).is_some())
        {
            Method::Jwt
        } else {
            Method::Other
        }
    }
}

/// The policies a login with this role gets: `token_policies` (or the legacy `policies`),
/// plus `default` unless `token_no_default_policy`.
pub fn policies(role: &Value) -> Vec<String> {
    let mut names = strings(role.get("token_policies"));
    if names.is_empty() {
        names = strings(role.get("policies"));
    }
    if role.get("token_no_default_policy") != Some(&Value::Bool(true)) {
        names.push("default".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

/// Whether `who` can log in with `role` (of `method`, named `name`): the problems found.
pub fn binding_issues(method: Method, name: &str, role: &Value, who: &Identity) -> Vec<Issue> {
    match method {
        Method::Kubernetes => kubernetes(name, role, who),
        Method::Jwt => jwt(name, role, who),
        Method::Other => vec![Issue::new(
            Code::BindingNotCheckable,
            format!("role `{name}` belongs to an auth method that is neither `kubernetes` nor `jwt`, so its binding is not checked"),
            "the pods log in with `{role, jwt}`: mount the kubernetes or jwt auth method at the configured auth path".into(),
        )],
    }
}

fn kubernetes(name: &str, role: &Value, who: &Identity) -> Vec<Issue> {
    let mut issues = Vec::new();
    let names = strings(role.get("bound_service_account_names"));
    let any_name = names.len() == 1 && names[0] == "*";
    if !any_name && !glob_list_contains(&names, who.service_account) {
        issues.push(Issue::new(
            Code::ServiceAccountNotBound,
            format!(
                "role `{name}` is not bound to service account `{}` (bound_service_account_names: {})",
                who.service_account,
                list(&names)
            ),
            format!(
                "add `{}` to the role's bound_service_account_names, or run the pod as one of them (spec.serviceAccountName)",
                who.service_account
            ),
        ));
    }
    let namespaces = strings(role.get("bound_service_account_namespaces"));
    let selector = role
        .get("bound_service_account_namespace_selector")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let any_namespace = namespaces.first().map(String::as_str) == Some("*");
    match who.namespace {
        _ if any_namespace => {}
        None => issues.push(deploy_time_namespace(name, &namespaces, selector)),
        Some(ns) if glob_list_contains(&namespaces, ns) => {}
        Some(ns) if !selector.is_empty() => issues.push(Issue::new(
            Code::BindingNotCheckable,
            format!(
                "role `{name}` does not list namespace `{ns}` (bound_service_account_namespaces: {}); whether its namespace selector `{selector}` matches depends on the namespace's labels in the cluster",
                list(&namespaces)
            ),
            "check the namespace's labels against the selector, or list the namespace on the role".into(),
        )),
        Some(ns) => issues.push(Issue::new(
            Code::NamespaceNotBound,
            format!(
                "role `{name}` is not bound to namespace `{ns}` (bound_service_account_namespaces: {})",
                list(&namespaces)
            ),
            format!("add `{ns}` to the role's bound_service_account_namespaces"),
        )),
    }
    let audience = role
        .get("audience")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !audience.is_empty() {
        match who.audience {
            Some(a) if a == audience => {}
            Some(a) => issues.push(Issue::new(
                Code::AudienceMismatch,
                format!("role `{name}` requires token audience `{audience}`, but the pod's token is issued for `{a}`"),
                format!("set the configuration's vault.audience to `{audience}`, or the role's audience to `{a}`"),
            )),
            None => issues.push(
                Issue::new(
                    Code::AudienceMismatch,
                    format!("role `{name}` requires token audience `{audience}`, but no audience is configured, so the pod's token carries the cluster's default audience"),
                    format!("set the configuration's vault.audience to `{audience}`"),
                )
                .at_alternative_severity(),
            ),
        }
    }
    issues
}

fn deploy_time_namespace(name: &str, namespaces: &[String], selector: &str) -> Issue {
    let selector = if selector.is_empty() {
        String::new()
    } else {
        format!(" or namespace selector `{selector}`")
    };
    Issue::new(
        Code::NamespaceAtDeployTime,
        format!(
            "the manifest sets no namespace, so whether role `{name}` (bound_service_account_namespaces: {}{selector}) admits the pod depends on the namespace it is deployed to",
            list(namespaces)
        ),
        "set metadata.namespace, or pass --namespace with the namespace it is deployed to (as `helm template -n` does)".into(),
    )
}

fn jwt(name: &str, role: &Value, who: &Identity) -> Vec<Issue> {
    let mut issues = Vec::new();
    let role_type = role
        .get("role_type")
        .and_then(Value::as_str)
        .unwrap_or("jwt");
    if role_type != "jwt" {
        return vec![Issue::new(
            Code::NotAJwtRole,
            format!("role `{name}` has role_type `{role_type}`, which does not accept a JWT login"),
            "set the role's role_type to `jwt`".into(),
        )];
    }
    let sa = who.service_account;
    let subject = who
        .namespace
        .map(|ns| format!("system:serviceaccount:{ns}:{sa}"));
    let mut namespace_needed = false;

    let bound_subject = role
        .get("bound_subject")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !bound_subject.is_empty() {
        let matches = match &subject {
            Some(s) => s == bound_subject,
            None => {
                namespace_needed = true;
                bound_subject.starts_with("system:serviceaccount:")
                    && bound_subject.ends_with(&format!(":{sa}"))
            }
        };
        if !matches {
            issues.push(Issue::new(
                Code::JwtSubjectMismatch,
                format!(
                    "role `{name}` has bound_subject `{bound_subject}`, but the pod's token subject is `{}`",
                    subject.clone().unwrap_or_else(|| format!("system:serviceaccount:<namespace>:{sa}"))
                ),
                "set the role's bound_subject to `system:serviceaccount:<namespace>:<service account>` of the pod".into(),
            ));
        }
    }

    let glob = role.get("bound_claims_type").and_then(Value::as_str) == Some("glob");
    if let Some(Value::Object(claims)) = role.get("bound_claims") {
        for (claim, expected) in claims {
            let actual: Option<Vec<String>> = match claim.as_str() {
                "sub" => subject.clone().map(|s| vec![s]),
                "/kubernetes.io/namespace" => who.namespace.map(|n| vec![n.to_string()]),
                "/kubernetes.io/serviceaccount/name" => Some(vec![sa.to_string()]),
                "aud" => who.audience.map(|a| vec![a.to_string()]),
                _ => {
                    issues.push(Issue::new(
                        Code::BindingNotCheckable,
                        format!("role `{name}` binds claim `{claim}`, which the manifest does not determine"),
                        "check that the pod's service-account token carries a matching value".into(),
                    ));
                    continue;
                }
            };
            let Some(actual) = actual else {
                if claim == "aud" {
                    issues.push(Issue::new(
                        Code::BindingNotCheckable,
                        format!("role `{name}` binds claim `aud`, but no audience is configured, so the token carries the cluster's default audience"),
                        "set the configuration's vault.audience".into(),
                    ));
                } else {
                    namespace_needed = true;
                }
                continue;
            };
            let expected = claim_values(expected);
            let matched = expected.iter().any(|e| {
                actual
                    .iter()
                    .any(|a| if glob { glob_match(e, a) } else { e == a })
            });
            if !matched {
                issues.push(Issue::new(
                    Code::JwtClaimMismatch,
                    format!(
                        "role `{name}` requires claim `{claim}` to be {}{}, but the pod's token has `{}`",
                        if glob { "a match of " } else { "" },
                        list(&expected),
                        actual.join(", ")
                    ),
                    format!("add the pod's value to the role's bound_claims[\"{claim}\"]"),
                ));
            }
        }
    }

    let audiences = strings(role.get("bound_audiences"));
    if audiences.is_empty() {
        issues.push(Issue::new(
            Code::AudienceMismatch,
            format!("role `{name}` has no bound_audiences, and the jwt method refuses a token with an `aud` claim (projected service-account tokens always have one) unless the role binds it"),
            "set the role's bound_audiences to the audience of the pods' tokens (the configuration's vault.audience)".into(),
        ));
    } else if let Some(a) = who.audience {
        if !audiences.iter().any(|b| b == a) {
            issues.push(Issue::new(
                Code::AudienceMismatch,
                format!(
                    "role `{name}` binds audiences {}, but the pod's token is issued for `{a}`",
                    list(&audiences)
                ),
                format!("add `{a}` to the role's bound_audiences"),
            ));
        }
    }
    if namespace_needed && who.namespace.is_none() {
        issues.push(Issue::new(
            Code::NamespaceAtDeployTime,
            format!("the manifest sets no namespace, so whether role `{name}`'s bound subject or claims admit the pod depends on the namespace it is deployed to"),
            "set metadata.namespace, or pass --namespace with the namespace it is deployed to (as `helm template -n` does)".into(),
        ));
    }
    issues
}

/// A bound claim's value(s): a string, bool or number, or a list of them.
fn claim_values(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().flat_map(claim_values).collect(),
        Value::String(s) => vec![s.clone()],
        Value::Bool(_) | Value::Number(_) => vec![v.to_string()],
        _ => Vec::new(),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        // Vault accepts comma-separated strings on write and returns lists, but be lenient.
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn glob_list_contains(patterns: &[String], subject: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, subject))
}

/// Vault's glob (go-glob): `*` matches any run of characters, anywhere in the pattern;
/// an empty pattern matches only the empty string.
pub fn glob_match(pattern: &str, subject: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return subject == pattern;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    let Some(mut rest) = subject.strip_prefix(first) else {
        return false;
    };
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn who<'a>(sa: &'a str, ns: Option<&'a str>) -> Identity<'a> {
        Identity {
            service_account: sa,
            namespace: ns,
            audience: Some("vault"),
        }
    }

    fn codes(issues: &[Issue]) -> Vec<Code> {
        issues.iter().map(|i| i.code).collect()
    }

    #[test]
    fn globs_follow_go_glob() {
        assert!(glob_match("*", ""));
        assert!(glob_match("dev-*", "dev-api"));
        assert!(glob_match("*-prod", "api-prod"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxc"));
        assert!(!glob_match("dev-*", "prod-api"));
        assert!(glob_match("api", "api"));
        assert!(!glob_match("api", "api2"));
        assert!(!glob_match("", "x"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn kubernetes_names_namespaces_and_selector() {
        let role = json!({
            "bound_service_account_names": ["api", "worker-*"],
            "bound_service_account_namespaces": ["shop", "*-staging"],
            "bound_service_account_namespace_selector": "",
            "token_policies": ["shop"],
        });
        let k = |sa, ns| binding_issues(Method::Kubernetes, "r", &role, &who(sa, ns));
        assert!(k("api", Some("shop")).is_empty());
        assert!(k("worker-1", Some("eu-staging")).is_empty());
        assert_eq!(
            codes(&k("web", Some("shop"))),
            [Code::ServiceAccountNotBound]
        );
        assert_eq!(codes(&k("api", Some("prod"))), [Code::NamespaceNotBound]);
        assert_eq!(codes(&k("api", None)), [Code::NamespaceAtDeployTime]);
        let mut selector = role.clone();
        selector["bound_service_account_namespace_selector"] = json!("{\"matchLabels\":{}}");
        let issues = binding_issues(Method::Kubernetes, "r", &selector, &who("api", Some("x")));
        assert_eq!(codes(&issues), [Code::BindingNotCheckable]);
        let any = json!({"bound_service_account_names": ["*"], "bound_service_account_namespaces": ["*"]});
        assert!(binding_issues(Method::Kubernetes, "r", &any, &who("x", None)).is_empty());
    }

    #[test]
    fn jwt_subject_claims_and_audiences() {
        let role = json!({
            "role_type": "jwt",
            "bound_subject": "system:serviceaccount:shop:api",
            "bound_audiences": ["vault"],
            "bound_claims_type": "glob",
            "bound_claims": {"/kubernetes.io/namespace": ["sh*"], "/kubernetes.io/serviceaccount/name": "api"},
        });
        let j = |sa, ns| binding_issues(Method::Jwt, "r", &role, &who(sa, ns));
        assert!(j("api", Some("shop")).is_empty());
        assert_eq!(
            codes(&j("api", Some("prod"))),
            [Code::JwtSubjectMismatch, Code::JwtClaimMismatch]
        );
        assert_eq!(codes(&j("api", None)), [Code::NamespaceAtDeployTime]);
        let mut no_aud = role.clone();
        no_aud["bound_audiences"] = json!([]);
        assert_eq!(
            codes(&binding_issues(
                Method::Jwt,
                "r",
                &no_aud,
                &who("api", Some("shop"))
            )),
            [Code::AudienceMismatch]
        );
        let mut oidc = role.clone();
        oidc["role_type"] = json!("oidc");
        assert_eq!(
            codes(&binding_issues(
                Method::Jwt,
                "r",
                &oidc,
                &who("api", Some("shop"))
            )),
            [Code::NotAJwtRole]
        );
    }

    #[test]
    fn policies_include_default_unless_disabled() {
        assert_eq!(
            policies(&json!({"token_policies": ["a", "a"]})),
            ["a", "default"]
        );
        assert_eq!(
            policies(&json!({"token_policies": ["a"], "token_no_default_policy": true})),
            ["a"]
        );
        assert_eq!(policies(&json!({"policies": ["b"]})), ["b", "default"]);
    }
}
