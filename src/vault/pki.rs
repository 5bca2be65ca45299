//! A PKI role's rules for the names and TTL of a certificate request, as the PKI engine
//! applies them at `<mount>/issue/<role>` (for `check`): `allowed_domains` with
//! `allow_bare_domains`, `allow_subdomains` and `allow_glob_domains`, `allow_any_name`,
//! `allow_localhost`, `allow_ip_sans`, and `max_ttl`.

use serde_json::Value;

/// The PKI role a write path issues from: `(mount, role)` for `<mount>/issue/<role>`,
/// given the mount's path (with its trailing `/`).
pub fn issue_role<'p>(api_path: &'p str, mount: &str) -> Option<&'p str> {
    let rest = api_path.strip_prefix(mount)?;
    let role = rest.strip_prefix("issue/")?;
    (!role.is_empty() && !role.contains('/')).then_some(role)
}

/// A PKI role's answer (`GET <mount>/roles/<role>`), the parts that decide names and TTL.
#[derive(Debug, Clone, Default)]
pub struct PkiRole {
    pub allowed_domains: Vec<String>,
    pub allow_bare_domains: bool,
    pub allow_subdomains: bool,
    pub allow_glob_domains: bool,
    pub allow_any_name: bool,
    pub allow_localhost: bool,
    pub allow_ip_sans: bool,
    /// Seconds; 0 is the mount's maximum.
    pub max_ttl: u64,
}

impl PkiRole {
    pub fn from_data(data: &Value) -> PkiRole {
        let flag = |k: &str| data.get(k).and_then(Value::as_bool).unwrap_or(false);
        let allowed_domains = match data.get("allowed_domains") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        PkiRole {
            allowed_domains,
            allow_bare_domains: flag("allow_bare_domains"),
            allow_subdomains: flag("allow_subdomains"),
            allow_glob_domains: flag("allow_glob_domains"),
            allow_any_name: flag("allow_any_name"),
            // Vault's default for allow_localhost is true.
            allow_localhost: data
                .get("allow_localhost")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            allow_ip_sans: flag("allow_ip_sans"),
            max_ttl: data.get("max_ttl").map_or(0, ttl_seconds),
        }
    }

    /// Whether the role allows the DNS name `name` (common name or alt name).
    pub fn allows_name(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        if self.allow_any_name {
            return true;
        }
        if self.allow_localhost && (name == "localhost" || name == "localdomain") {
            return true;
        }
        self.allowed_domains.iter().any(|domain| {
            let domain = domain.to_ascii_lowercase();
            (self.allow_bare_domains && name == domain)
                || (self.allow_subdomains
                    && name
                        .strip_suffix(domain.trim_start_matches("*."))
                        .is_some_and(|head| head.len() > 1 && head.ends_with('.')))
                || (self.allow_glob_domains && domain.contains('*') && glob(&domain, &name))
        })
    }
}

/// A TTL as Vault writes it: seconds as a number, or a duration string.
pub fn ttl_seconds(value: &Value) -> u64 {
    match value {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::String(s) => crate::duration::parse(s, crate::duration::Dialect::VaultTtl)
            .ok()
            .and_then(|d| d.whole_seconds())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Vault's glob: `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_as_the_pki_engine_allows_them() {
        let role = PkiRole::from_data(&json!({
            "allowed_domains": ["svc.cluster.local", "example.com"],
            "allow_subdomains": true, "allow_bare_domains": false, "max_ttl": 3600,
        }));
        assert!(role.allows_name("web-0.web.svc.cluster.local"));
        assert!(!role.allows_name("svc.cluster.local"));
        assert!(!role.allows_name("evil.org"));
        assert!(!role.allows_name("xsvc.cluster.local"));
        assert!(role.allows_name("localhost"));
        assert_eq!(role.max_ttl, 3600);
        let globbed = PkiRole::from_data(&json!({
            "allowed_domains": "web-*.example.com", "allow_glob_domains": true,
            "allow_localhost": false, "max_ttl": "1h",
        }));
        assert!(globbed.allows_name("web-1.example.com"));
        assert!(!globbed.allows_name("db-1.example.com"));
        assert!(!globbed.allows_name("localhost"));
        assert_eq!(globbed.max_ttl, 3600);
        assert_eq!(issue_role("pki/issue/web", "pki/"), Some("web"));
        assert_eq!(issue_role("pki/sign/web", "pki/"), None);
    }
}
