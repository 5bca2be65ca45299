//! Vault ACL policies: parse them (HCL or JSON) and decide the capabilities a set of policies
//! grants on a request path, with the server's own rules.
//!
//! The rules follow OpenBao's `internal/vault/policy/{policy,acl}.go` (the same algorithm as
//! Vault's `vault/acl.go`) and the "Policies" concept page of both projects:
//!
//! * a pattern is exact, ends in `*` (prefix glob), or has `+` segments (one path segment
//!   each; such a pattern may also end in `*`);
//! * an exact pattern matching the path always wins;
//! * otherwise, of the prefix globs only the longest matching one is a candidate, and it
//!   competes with every matching `+` pattern; the highest priority wins, where `P1` is lower
//!   than `P2` if (in this order) its first `+` or `*` comes earlier, it ends in `*` and `P2`
//!   does not, it has more `+` segments, it is shorter, it is lexically smaller;
//! * the same pattern in several policies (or twice in one) is one rule: the union of the
//!   capabilities, or `deny` alone if any of them says `deny`;
//! * the winning rule's capabilities are the answer; `deny`, or no capability at all, grants
//!   nothing; no matching rule grants nothing.
//!
//! [`Acl::capabilities`] answers what `sys/capabilities` answers: like the server, it looks a
//! path up as a `list` request would, so a path with a trailing `/` also matches the rules for
//! the path without it. That fallback is OpenBao's (proven against OpenBao 2.7 by
//! `tests/acl_differential.rs`); Vault versions differ slightly on paths ending in `/`, never
//! on others.

use crate::duration::{self, Dialect, ErrorKind, GoDuration};
use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use hcl::eval::{Context, Evaluate};

/// One capability a policy path rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    Create,
    Read,
    Update,
    Patch,
    Delete,
    List,
    Sudo,
    Deny,
    /// Vault: subscribe to events.
    Subscribe,
    /// Vault: recover a snapshot.
    Recover,
    /// OpenBao: recursive list.
    Scan,
}

impl Capability {
    /// Every capability, in alphabetical order of its name.
    pub const ALL: [Capability; 11] = [
        Capability::Create,
        Capability::Delete,
        Capability::Deny,
        Capability::List,
        Capability::Patch,
        Capability::Read,
        Capability::Recover,
        Capability::Scan,
        Capability::Subscribe,
        Capability::Sudo,
        Capability::Update,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
            Capability::Patch => "patch",
            Capability::Delete => "delete",
            Capability::List => "list",
            Capability::Sudo => "sudo",
            Capability::Deny => "deny",
            Capability::Subscribe => "subscribe",
            Capability::Recover => "recover",
            Capability::Scan => "scan",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A capability name that Vault does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCapability(pub String);

impl fmt::Display for UnknownCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown capability {:?} (expected one of: {})",
            self.0,
            capability_names()
        )
    }
}

impl std::error::Error for UnknownCapability {}

fn capability_names() -> String {
    Capability::ALL.map(Capability::as_str).join(", ")
}

impl FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCapability(s.to_owned()))
    }
}

/// What a token may do on one path: nothing (`deny`), a set of capabilities, or everything
/// (`root`). Never holds [`Capability::Deny`] itself: a denied path is the empty set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities {
    root: bool,
    bits: u16,
}

impl Capabilities {
    /// Nothing allowed: what `sys/capabilities` reports as `["deny"]`.
    pub const DENY: Capabilities = Capabilities {
        root: false,
        bits: 0,
    };
    /// Everything allowed: what `sys/capabilities` reports as `["root"]`.
    pub const ROOT: Capabilities = Capabilities {
        root: true,
        bits: 0,
    };

    /// Reads a `sys/capabilities` answer (`["read", "list"]`, `["deny"]`, `["root"]`).
    pub fn from_names<I, S>(names: I) -> Result<Capabilities, UnknownCapability>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut caps = Capabilities::DENY;
        let mut denied = false;
        for name in names {
            match name.as_ref() {
                "root" => caps.root = true,
                other => match other.parse()? {
                    Capability::Deny => denied = true,
                    cap => caps.bits |= cap.bit(),
                },
            }
        }
        if denied && !caps.root {
            caps.bits = 0;
        }
        Ok(caps)
    }

    pub fn is_root(&self) -> bool {
        self.root
    }

    /// True when nothing at all is allowed.
    pub fn is_denied(&self) -> bool {
        !self.root && self.bits == 0
    }

    /// Whether `cap` is granted; a root token has every capability. `Deny` is never
    /// "allowed": ask [`Capabilities::is_denied`].
    pub fn allows(&self, cap: Capability) -> bool {
        cap != Capability::Deny && (self.root || self.bits & cap.bit() != 0)
    }

    /// The granted capabilities in alphabetical order (empty for `deny` and for `root`).
    pub fn iter(&self) -> impl Iterator<Item = Capability> + '_ {
        Capability::ALL
            .into_iter()
            .filter(|c| self.bits & c.bit() != 0)
    }

    /// Exactly what `sys/capabilities` answers: sorted names, `["deny"]` or `["root"]`.
    pub fn to_names(&self) -> Vec<&'static str> {
        if self.root {
            vec!["root"]
        } else if self.bits == 0 {
            vec![Capability::Deny.as_str()]
        } else {
            self.iter().map(Capability::as_str).collect()
        }
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_names().join(", "))
    }
}

/// Why a policy could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclError {
    policy: String,
    path: Option<String>,
    kind: AclErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AclErrorKind {
    /// Not HCL or JSON, or not shaped like a policy.
    Syntax(String),
    /// A key Vault does not accept at this place.
    UnknownKey {
        key: String,
        expected: &'static [&'static str],
    },
    UnknownCapability(String),
    /// A known key with a value of the wrong type or form.
    InvalidValue {
        key: String,
        message: String,
    },
    /// A path pattern Vault refuses.
    InvalidPattern(String),
    /// `root` is built in and has no text.
    ReservedName,
}

impl AclError {
    fn new(policy: &str, path: Option<&str>, kind: AclErrorKind) -> AclError {
        AclError {
            policy: policy.to_owned(),
            path: path.map(str::to_owned),
            kind,
        }
    }

    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// The path pattern of the rule at fault, when the fault is inside one.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    pub fn kind(&self) -> &AclErrorKind {
        &self.kind
    }
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy {:?}: ", self.policy)?;
        if let Some(path) = &self.path {
            write!(f, "path {path:?}: ")?;
        }
        match &self.kind {
            AclErrorKind::Syntax(message) => write!(f, "{message}"),
            AclErrorKind::UnknownKey { key, expected } => write!(
                f,
                "unknown key {key:?} (expected one of: {})",
                expected.join(", ")
            ),
            AclErrorKind::UnknownCapability(name) => {
                write!(f, "{}", UnknownCapability(name.clone()))
            }
            AclErrorKind::InvalidValue { key, message } => write!(f, "{key}: {message}"),
            AclErrorKind::InvalidPattern(message) => write!(f, "{message}"),
            AclErrorKind::ReservedName => write!(
                f,
                "\"root\" is the built-in policy that allows everything; it has no text to parse"
            ),
        }
    }
}

impl std::error::Error for AclError {}

const TOP_LEVEL_KEYS: &[&str] = &["name", "path"];

/// Keys Vault or OpenBao accept in a path rule. Only `capabilities` and `policy` decide
/// capabilities; the others are checked for form and otherwise ignored.
const PATH_KEYS: &[&str] = &[
    "capabilities",
    "policy",
    "comment",
    "allowed_parameters",
    "denied_parameters",
    "required_parameters",
    "min_wrapping_ttl",
    "max_wrapping_ttl",
    "mfa_methods",
    "control_group",
    "subscribe_event_types",
    "pagination_limit",
    "expiration",
    "list_scan_response_keys_filter_path",
];

/// Keys whose value is an object, which HCL also lets one write as a nested block.
const BLOCK_KEYS: &[&str] = &["allowed_parameters", "denied_parameters", "control_group"];

/// How a rule's pattern is matched against request paths.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Exact(String),
    /// The pattern without its trailing `*`.
    Prefix(String),
    /// The whole pattern, `+` segments and any trailing `*` included.
    Segments(String),
    /// Holds `{{identity...}}` placeholders, filled per entity by the server. Without an
    /// entity the server drops such a rule, and so does this evaluator.
    Templated,
}

/// The capabilities of one rule, or of all rules with one pattern once merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Grant {
    deny: bool,
    bits: u16,
}

impl Grant {
    fn merge(&mut self, other: Grant) {
        if self.deny || other.deny {
            *self = Grant {
                deny: true,
                bits: 0,
            };
        } else {
            self.bits |= other.bits;
        }
    }

    fn capabilities(self) -> Capabilities {
        Capabilities {
            root: false,
            bits: if self.deny { 0 } else { self.bits },
        }
    }
}

/// One `path "<pattern>" { ... }` rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pattern: String,
    matcher: Matcher,
    grant: Grant,
}

impl PathRule {
    /// The pattern as written, less one leading `/` (the server strips it too).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// True for a `deny` rule.
    pub fn is_deny(&self) -> bool {
        self.grant.deny
    }

    /// What the rule grants on its own (nothing for `deny`).
    pub fn grants(&self) -> Capabilities {
        self.grant.capabilities()
    }

    /// True when the pattern has identity templating and so never matches here.
    pub fn is_templated(&self) -> bool {
        self.matcher == Matcher::Templated
    }
}

/// A parsed ACL policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: String,
    root: bool,
    rules: Vec<PathRule>,
}

impl Policy {
    /// Parses a policy in HCL or in JSON (text starting with `{`), as
    /// `sys/policies/acl/<name>` accepts it. Rules whose `expiration` has passed are
    /// dropped, as the server drops them.
    pub fn parse(name: &str, text: &str) -> Result<Policy, AclError> {
        if name == "root" {
            return Err(AclError::new(name, None, AclErrorKind::ReservedName));
        }
        let raw_rules = if text.trim_start().starts_with('{') {
            raw_rules_from_json(name, text)?
        } else {
            raw_rules_from_hcl(name, text)?
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut rules = Vec::with_capacity(raw_rules.len());
        for raw in raw_rules {
            if let Some(rule) = build_rule(name, raw, now)? {
                rules.push(rule);
            }
        }
        Ok(Policy {
            name: name.to_owned(),
            root: false,
            rules,
        })
    }

    /// The built-in `root` policy: everything, everywhere.
    pub fn root() -> Policy {
        Policy {
            name: "root".to_owned(),
            root: true,
            rules: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_root(&self) -> bool {
        self.root
    }

    pub fn rules(&self) -> &[PathRule] {
        &self.rules
    }

    /// True when some rule uses identity templating (see [`PathRule::is_templated`]).
    pub fn is_templated(&self) -> bool {
        self.rules.iter().any(PathRule::is_templated)
    }
}

/// A rule before validation: its pattern and its keys, in source order.
struct RawRule {
    pattern: String,
    fields: Vec<(String, RawField)>,
}

enum RawField {
    Value(hcl::Value),
    /// A nested block; only accepted for keys in `BLOCK_KEYS`, whose content is ignored.
    Block,
}

fn syntax(policy: &str, message: impl Into<String>) -> AclError {
    AclError::new(policy, None, AclErrorKind::Syntax(message.into()))
}

fn raw_rules_from_hcl(policy: &str, text: &str) -> Result<Vec<RawRule>, AclError> {
    let body = hcl::parse(text).map_err(|e| {
        syntax(
            policy,
            format!("invalid HCL: {}", e.to_string().trim_start()),
        )
    })?;
    let ctx = Context::new();
    let mut rules = Vec::new();
    for structure in body.into_inner() {
        match structure {
            hcl::Structure::Attribute(attr) => {
                match attr.key.as_str() {
                    "name" => {}
                    "path" => return Err(syntax(
                        policy,
                        "write each rule as a block: path \"<pattern>\" { capabilities = [...] }",
                    )),
                    other => {
                        return Err(AclError::new(
                            policy,
                            None,
                            AclErrorKind::UnknownKey {
                                key: other.to_owned(),
                                expected: TOP_LEVEL_KEYS,
                            },
                        ))
                    }
                }
            }
            hcl::Structure::Block(block) => {
                if block.identifier.as_str() != "path" {
                    return Err(AclError::new(
                        policy,
                        None,
                        AclErrorKind::UnknownKey {
                            key: block.identifier.as_str().to_owned(),
                            expected: TOP_LEVEL_KEYS,
                        },
                    ));
                }
                let [label] = block.labels.as_slice() else {
                    return Err(syntax(
                        policy,
                        format!(
                            "a path block takes exactly one label, the pattern (found {})",
                            block.labels.len()
                        ),
                    ));
                };
                let pattern = label.as_str().to_owned();
                let mut fields = Vec::new();
                for inner in block.body.into_inner() {
                    match inner {
                        hcl::Structure::Attribute(attr) => {
                            let value = attr.expr.evaluate(&ctx).map_err(|e| {
                                AclError::new(
                                    policy,
                                    Some(&pattern),
                                    AclErrorKind::InvalidValue {
                                        key: attr.key.as_str().to_owned(),
                                        message: format!("not a literal value: {e}"),
                                    },
                                )
                            })?;
                            fields.push((attr.key.into_inner(), RawField::Value(value)));
                        }
                        hcl::Structure::Block(inner_block) => {
                            fields.push((inner_block.identifier.into_inner(), RawField::Block));
                        }
                    }
                }
                rules.push(RawRule { pattern, fields });
            }
        }
    }
    Ok(rules)
}

fn raw_rules_from_json(policy: &str, text: &str) -> Result<Vec<RawRule>, AclError> {
    let root: serde_json::Value =
        serde_json::from_str(text).map_err(|e| syntax(policy, format!("invalid JSON: {e}")))?;
    let serde_json::Value::Object(top) = root else {
        return Err(syntax(policy, "a JSON policy must be an object"));
    };
    let mut rules = Vec::new();
    for (key, value) in top {
        match key.as_str() {
            "name" => {}
            "path" => {
                // `"path": {...}` or, as HCL's JSON form also allows, `"path": [{...}, ...]`.
                let groups = match value {
                    serde_json::Value::Array(items) => items,
                    other => vec![other],
                };
                for group in groups {
                    let serde_json::Value::Object(patterns) = group else {
                        return Err(syntax(
                            policy,
                            "\"path\" must map each pattern to an object of settings",
                        ));
                    };
                    for (pattern, body) in patterns {
                        let bodies = match body {
                            serde_json::Value::Array(items) => items,
                            other => vec![other],
                        };
                        for body in bodies {
                            let serde_json::Value::Object(settings) = body else {
                                return Err(AclError::new(
                                    policy,
                                    Some(&pattern),
                                    AclErrorKind::Syntax(
                                        "the settings of a path must be an object".to_owned(),
                                    ),
                                ));
                            };
                            let fields = settings
                                .into_iter()
                                .map(|(k, v)| (k, RawField::Value(json_to_hcl(v))))
                                .collect();
                            rules.push(RawRule {
                                pattern: pattern.clone(),
                                fields,
                            });
                        }
                    }
                }
            }
            other => {
                return Err(AclError::new(
                    policy,
                    None,
                    AclErrorKind::UnknownKey {
                        key: other.to_owned(),
                        expected: TOP_LEVEL_KEYS,
                    },
                ))
            }
        }
    }
    Ok(rules)
}

fn json_to_hcl(value: serde_json::Value) -> hcl::Value {
    match value {
        serde_json::Value::Null => hcl::Value::Null,
        serde_json::Value::Bool(b) => hcl::Value::Bool(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                hcl::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                hcl::Value::from(u)
            } else {
                hcl::Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => hcl::Value::String(s),
        serde_json::Value::Array(items) => {
            hcl::Value::Array(items.into_iter().map(json_to_hcl).collect())
        }
        serde_json::Value::Object(map) => {
            hcl::Value::Object(map.into_iter().map(|(k, v)| (k, json_to_hcl(v))).collect())
        }
    }
}

/// Validates one rule and compiles its pattern; `None` when the rule has expired.
fn build_rule(policy: &str, raw: RawRule, now: i64) -> Result<Option<PathRule>, AclError> {
    let pattern = raw.pattern;
    let err = |kind| AclError::new(policy, Some(&pattern), kind);
    let invalid = |key: &str, message: String| {
        err(AclErrorKind::InvalidValue {
            key: key.to_owned(),
            message,
        })
    };

    let mut seen: Vec<&str> = Vec::new();
    let mut grant = Grant::default();
    let mut old_style = None;
    let mut min_wrap = None;
    let mut max_wrap = None;
    let mut filter_path = false;
    let mut expired = false;

    for (key, field) in &raw.fields {
        if !PATH_KEYS.contains(&key.as_str()) {
            return Err(err(AclErrorKind::UnknownKey {
                key: key.clone(),
                expected: PATH_KEYS,
            }));
        }
        if seen.contains(&key.as_str()) {
            return Err(invalid(key, "is set more than once".to_owned()));
        }
        seen.push(key);
        let value = match field {
            RawField::Block if BLOCK_KEYS.contains(&key.as_str()) => continue,
            RawField::Block => {
                return Err(invalid(
                    key,
                    "must be an attribute (`key = value`), not a block".to_owned(),
                ))
            }
            RawField::Value(value) => value,
        };
        match key.as_str() {
            "capabilities" => {
                for name in string_list(value).map_err(|m| invalid(key, m))? {
                    match name.parse::<Capability>() {
                        Ok(Capability::Deny) => grant.deny = true,
                        Ok(cap) => grant.bits |= cap.bit(),
                        Err(_) => return Err(err(AclErrorKind::UnknownCapability(name.clone()))),
                    }
                }
            }
            "policy" => {
                let Some(name) = value.as_str() else {
                    return Err(invalid(key, "must be a string".to_owned()));
                };
                old_style = Some(old_style_grant(name).ok_or_else(|| {
                    invalid(
                        key,
                        format!("{name:?} is not one of: deny, read, write, sudo"),
                    )
                })?);
            }
            "comment" | "control_group" => {}
            "allowed_parameters" | "denied_parameters" => {
                let Some(map) = value.as_object() else {
                    return Err(invalid(
                        key,
                        "must be an object of parameter names to lists of values".to_owned(),
                    ));
                };
                if let Some((param, _)) = map.iter().find(|(_, v)| !v.is_array()) {
                    return Err(invalid(
                        key,
                        format!("the values of {param:?} must be a list"),
                    ));
                }
            }
            "required_parameters" | "mfa_methods" | "subscribe_event_types" => {
                string_list(value).map_err(|m| invalid(key, m))?;
            }
            "min_wrapping_ttl" => {
                min_wrap = Some(duration_secs(value).map_err(|m| invalid(key, m))?)
            }
            "max_wrapping_ttl" => {
                max_wrap = Some(duration_secs(value).map_err(|m| invalid(key, m))?)
            }
            "pagination_limit" if value.as_i64().is_none() => {
                return Err(invalid(key, "must be an integer".to_owned()));
            }
            "expiration" => {
                expired = absolute_time_secs(value).map_err(|m| invalid(key, m))? < now;
            }
            "list_scan_response_keys_filter_path" => {
                if value.as_str().is_none() {
                    return Err(invalid(key, "must be a string".to_owned()));
                }
                filter_path = true;
            }
            _ => {}
        }
    }

    // The server applies `policy = "..."` after `capabilities`: `deny` replaces them, the
    // others add to them.
    if let Some(old) = old_style {
        grant.merge(old);
    }
    if grant.deny {
        grant.bits = 0;
    }
    if let (Some(min), Some(max)) = (min_wrap, max_wrap) {
        if min != 0.0 && max != 0.0 && max < min {
            return Err(invalid(
                "max_wrapping_ttl",
                "cannot be less than min_wrapping_ttl".to_owned(),
            ));
        }
    }
    if filter_path && !grant.deny && grant.bits & Capability::List.bit() == 0 {
        return Err(invalid(
            "list_scan_response_keys_filter_path",
            "needs a path with the list capability".to_owned(),
        ));
    }
    if expired {
        return Ok(None);
    }

    let matcher = compile_pattern(&pattern).map_err(|m| err(AclErrorKind::InvalidPattern(m)))?;
    let normalized = pattern.strip_prefix('/').unwrap_or(&pattern).to_owned();
    Ok(Some(PathRule {
        pattern: normalized,
        matcher,
        grant,
    }))
}

fn old_style_grant(name: &str) -> Option<Grant> {
    use Capability::*;
    let caps: &[Capability] = match name {
        "deny" => {
            return Some(Grant {
                deny: true,
                bits: 0,
            })
        }
        "read" => &[Read, List],
        "write" => &[Create, Read, Update, Delete, List],
        "sudo" => &[Create, Read, Update, Delete, List, Sudo],
        _ => return None,
    };
    Some(Grant {
        deny: false,
        bits: caps.iter().fold(0, |bits, c| bits | c.bit()),
    })
}

fn compile_pattern(pattern: &str) -> Result<Matcher, String> {
    if pattern.contains("{{") {
        return Ok(Matcher::Templated);
    }
    // Patterns are relative to /v1/, as request paths are.
    let path = pattern.strip_prefix('/').unwrap_or(pattern);
    if path.contains("+*") {
        return Err("invalid use of wildcards ('+*' is forbidden)".to_owned());
    }
    // The server's own test: a `+` that starts a segment makes a segment-wildcard pattern,
    // even where the segment is longer (such a segment then only matches itself).
    if path == "+" || path.contains("/+") || path.starts_with("+/") {
        return Ok(Matcher::Segments(path.to_owned()));
    }
    Ok(match path.strip_suffix('*') {
        Some(prefix) => Matcher::Prefix(prefix.to_owned()),
        None => Matcher::Exact(path.to_owned()),
    })
}

fn string_list(value: &hcl::Value) -> Result<Vec<&String>, String> {
    let Some(items) = value.as_array() else {
        return Err("must be a list of strings".to_owned());
    };
    items
        .iter()
        .map(|item| match item {
            hcl::Value::String(s) => Ok(s),
            other => Err(format!("must be a list of strings, found {other}")),
        })
        .collect()
}

/// A duration as Vault reads one: a number of seconds, `"<n>d"`, or a Go duration
/// (`"1h30m"`); in seconds.
fn duration_secs(value: &hcl::Value) -> Result<f64, String> {
    match value {
        hcl::Value::Null => Ok(0.0),
        hcl::Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| "is not a number of seconds".to_owned()),
        hcl::Value::String(s) => duration::parse(s, Dialect::VaultTtl)
            .map(GoDuration::as_secs_f64)
            .map_err(|e| match e.kind {
                ErrorKind::Overflow => e.to_string(),
                _ => format!(
                    "{:?} is not a duration such as \"300s\", \"1h\" or \"300\"",
                    s.trim()
                ),
            }),
        _ => Err("must be a duration such as \"300s\", \"1h\" or 300".to_owned()),
    }
}

/// An absolute time as OpenBao reads `expiration`: RFC 3339 or Unix seconds; in Unix seconds.
fn absolute_time_secs(value: &hcl::Value) -> Result<i64, String> {
    let bad = || "must be an RFC 3339 time (2030-01-31T12:00:00Z) or Unix seconds".to_owned();
    match value {
        hcl::Value::Number(n) => n.as_i64().ok_or_else(bad),
        hcl::Value::String(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| parse_rfc3339(s))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// An RFC 3339 time (`2030-01-31T12:00:00Z`, `...+01:00`) to Unix seconds (a fraction
/// is dropped).
fn parse_rfc3339(s: &str) -> Option<i64> {
    // jiff's `Timestamp` parser also takes a space for `T` and offsets without a colon;
    // RFC 3339's `T` and `Z`/`±HH:MM` are what OpenBao's `time.RFC3339` parse takes.
    let b = s.as_bytes();
    if b.get(10) != Some(&b'T') || !(s.ends_with('Z') || (b.len() > 6 && b[b.len() - 3] == b':')) {
        return None;
    }
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// The policies of one token, compiled for lookups.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    root: bool,
    exact: HashMap<String, Grant>,
    /// Keyed by the pattern without its `*`.
    prefix: HashMap<String, Grant>,
    /// Keyed by the whole pattern.
    segments: HashMap<String, Grant>,
}

/// A non-exact rule that matches a path, with what ranks it.
struct Candidate<'a> {
    /// Byte offset of the first `+` (or of the `*` of a prefix glob).
    first_wildcard: usize,
    is_prefix: bool,
    wildcards: usize,
    /// The pattern without a trailing `*`.
    stem: &'a str,
    grant: Grant,
}

impl Candidate<'_> {
    /// Higher ranks win.
    fn rank(&self) -> (usize, bool, Reverse<usize>, usize, &str) {
        (
            self.first_wildcard,
            !self.is_prefix,
            Reverse(self.wildcards),
            self.stem.len(),
            self.stem,
        )
    }
}

impl Acl {
    /// Compiles the policies of a token. With the `root` policy among them, everything is
    /// allowed (the server does not let `root` share a token with other policies).
    pub fn new(policies: &[Policy]) -> Acl {
        let mut acl = Acl::default();
        for policy in policies {
            acl.root |= policy.root;
            for rule in &policy.rules {
                let (map, key) = match &rule.matcher {
                    Matcher::Exact(key) => (&mut acl.exact, key),
                    Matcher::Prefix(key) => (&mut acl.prefix, key),
                    Matcher::Segments(key) => (&mut acl.segments, key),
                    Matcher::Templated => continue,
                };
                map.entry(key.clone())
                    .and_modify(|g| g.merge(rule.grant))
                    .or_insert(rule.grant);
            }
        }
        acl
    }

    /// What the policies allow on `path`: the answer `sys/capabilities` gives.
    pub fn capabilities(&self, path: &str) -> Capabilities {
        if self.root {
            return Capabilities::ROOT;
        }
        let path = path.trim_start_matches('/');
        let trimmed = path.strip_suffix('/');
        let grant = self
            .exact
            .get(path)
            .or_else(|| trimmed.and_then(|t| self.exact.get(t)))
            .copied()
            .or_else(|| self.non_exact(path))
            .or_else(|| trimmed.and_then(|t| self.non_exact(t)));
        grant.map_or(Capabilities::DENY, Grant::capabilities)
    }

    /// The highest-priority prefix-glob or `+` rule matching `path`.
    fn non_exact(&self, path: &str) -> Option<Grant> {
        // Of the prefix globs, only the longest matching one takes part.
        let longest_prefix = (0..=path.len()).rev().find_map(|end| {
            let prefix = path.get(..end)?;
            let grant = self.prefix.get_key_value(prefix)?;
            Some(Candidate {
                first_wildcard: end,
                is_prefix: true,
                wildcards: 0,
                stem: grant.0,
                grant: *grant.1,
            })
        });
        let path_parts: Vec<&str> = path.split('/').collect();
        self.segments
            .iter()
            .filter_map(|(pattern, grant)| segment_match(pattern, *grant, &path_parts))
            .chain(longest_prefix)
            .max_by(|a, b| a.rank().cmp(&b.rank()))
            .map(|c| c.grant)
    }
}

fn segment_match<'a>(pattern: &'a str, grant: Grant, path_parts: &[&str]) -> Option<Candidate<'a>> {
    let (stem, is_prefix) = match pattern.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = stem.split('/').collect();
    if path_parts.len() < parts.len() || (!is_prefix && path_parts.len() != parts.len()) {
        return None;
    }
    let last = parts.len() - 1;
    let mut wildcards = 0;
    for (i, (part, actual)) in parts.iter().zip(path_parts).enumerate() {
        if *part == "+" {
            wildcards += 1;
        } else if part != actual && !(is_prefix && i == last && actual.starts_with(part)) {
            return None;
        }
    }
    Some(Candidate {
        first_wildcard: pattern.find('+').unwrap_or(0),
        is_prefix,
        wildcards,
        stem,
        grant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, text: &str) -> Policy {
        match Policy::parse(name, text) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    /// Capabilities of `path` under policies given as `(pattern, capabilities)` lists.
    fn caps(policies: &[&[(&str, &str)]], path: &str) -> String {
        let parsed: Vec<Policy> = policies
            .iter()
            .enumerate()
            .map(|(i, rules)| {
                let text: String = rules
                    .iter()
                    .map(|(pattern, caps)| {
                        let list: Vec<String> =
                            caps.split_whitespace().map(|c| format!("{c:?}")).collect();
                        format!(
                            "path {pattern:?} {{ capabilities = [{}] }}\n",
                            list.join(", ")
                        )
                    })
                    .collect();
                policy(&format!("p{i}"), &text)
            })
            .collect();
        Acl::new(&parsed).capabilities(path).to_string()
    }

    #[test]
    fn exact_path_matches_only_itself() {
        let p: &[_] = &[("secret/data/app", "read")];
        assert_eq!(caps(&[p], "secret/data/app"), "read");
        assert_eq!(caps(&[p], "secret/data/app2"), "deny");
        assert_eq!(caps(&[p], "secret/data"), "deny");
        assert_eq!(caps(&[p], "secret/data/app/x"), "deny");
    }

    #[test]
    fn trailing_star_is_a_prefix_glob() {
        let p: &[_] = &[("secret/app*", "read list")];
        assert_eq!(caps(&[p], "secret/app"), "list, read");
        assert_eq!(caps(&[p], "secret/apple"), "list, read");
        assert_eq!(caps(&[p], "secret/app/a/b"), "list, read");
        assert_eq!(caps(&[p], "secret/ap"), "deny");
        let all: &[_] = &[("*", "read")];
        assert_eq!(caps(&[all], "anything/at/all"), "read");
    }

    #[test]
    fn plus_matches_exactly_one_segment() {
        let p: &[_] = &[("secret/+/db", "read")];
        assert_eq!(caps(&[p], "secret/shop/db"), "read");
        assert_eq!(
            caps(&[p], "secret//db"),
            "read",
            "an empty segment is a segment"
        );
        assert_eq!(caps(&[p], "secret/db"), "deny");
        assert_eq!(caps(&[p], "secret/a/b/db"), "deny");
        assert_eq!(caps(&[p], "secret/shop/db2"), "deny");
        let glob: &[_] = &[("secret/+/db*", "read")];
        assert_eq!(caps(&[glob], "secret/shop/db2/x"), "read");
        assert_eq!(caps(&[glob], "secret/shop"), "deny");
        let bare: &[_] = &[("+", "read")];
        assert_eq!(caps(&[bare], "sys"), "read");
        assert_eq!(caps(&[bare], "sys/x"), "deny");
    }

    #[test]
    fn plus_inside_a_longer_segment_is_literal() {
        let p: &[_] = &[("a/+b", "read")];
        assert_eq!(caps(&[p], "a/+b"), "read");
        assert_eq!(caps(&[p], "a/xb"), "deny");
    }

    #[test]
    fn exact_beats_every_wildcard() {
        let p: &[_] = &[
            ("secret/*", "deny"),
            ("secret/+", "deny"),
            ("secret/a", "read"),
        ];
        assert_eq!(caps(&[p], "secret/a"), "read");
        assert_eq!(caps(&[p], "secret/b"), "deny");
    }

    #[test]
    fn only_the_longest_prefix_glob_counts() {
        let p: &[_] = &[("secret/*", "read"), ("secret/a/*", "list")];
        // No union across different patterns: the longest prefix alone decides.
        assert_eq!(caps(&[p], "secret/a/b"), "list");
        assert_eq!(caps(&[p], "secret/b"), "read");
        let d: &[_] = &[("secret/*", "read"), ("secret/a/*", "deny")];
        assert_eq!(caps(&[d], "secret/a/b"), "deny");
        assert_eq!(caps(&[d], "secret/ab"), "read");
    }

    #[test]
    fn later_first_wildcard_wins() {
        let p: &[_] = &[("a/+/c", "read"), ("a/b/+", "list")];
        assert_eq!(caps(&[p], "a/b/c"), "list");
        // The glob's `*` counts as its first wildcard: `a/b*` (3) beats `a/+/c` (2).
        let q: &[_] = &[("a/+/c", "read"), ("a/b*", "list")];
        assert_eq!(caps(&[q], "a/b/c"), "list");
        let r: &[_] = &[("a/+/c", "read"), ("a*", "list")];
        assert_eq!(caps(&[r], "a/b/c"), "read");
    }

    #[test]
    fn without_star_beats_with_star_at_the_same_position() {
        let p: &[_] = &[("secret/*", "read"), ("secret/+", "list")];
        assert_eq!(caps(&[p], "secret/x"), "list");
        assert_eq!(caps(&[p], "secret/x/y"), "read");
        let q: &[_] = &[("a/+/b*", "read"), ("a/+/b", "list")];
        assert_eq!(caps(&[q], "a/x/b"), "list");
        assert_eq!(caps(&[q], "a/x/bb"), "read");
    }

    #[test]
    fn fewer_plus_segments_win() {
        let p: &[_] = &[("a/+/+/d", "read"), ("a/+/c/d", "list")];
        assert_eq!(caps(&[p], "a/b/c/d"), "list");
        // The documentation's example: `secret/*` beats `secret/+/+/foo/*`.
        let q: &[_] = &[("secret/*", "read"), ("secret/+/+/foo/*", "list")];
        assert_eq!(caps(&[q], "secret/a/b/foo/c"), "read");
    }

    #[test]
    fn longer_pattern_wins() {
        let p: &[_] = &[("a/+/bar/b*", "read"), ("a/+/bar/ba*", "list")];
        assert_eq!(caps(&[p], "a/x/bar/baz"), "list");
        assert_eq!(caps(&[p], "a/x/bar/bz"), "read");
    }

    #[test]
    fn lexically_greater_pattern_wins_a_full_tie() {
        // Same first `+`, no `*`, two `+` each, same length: "a/+/b/+" > "a/+/+/c".
        let p: &[_] = &[("a/+/+/c", "read"), ("a/+/b/+", "list")];
        assert_eq!(caps(&[p], "a/x/b/c"), "list");
    }

    #[test]
    fn same_pattern_in_several_policies_is_merged() {
        let p1: &[_] = &[("secret/+/x", "read")];
        let p2: &[_] = &[("secret/+/x", "list update")];
        assert_eq!(caps(&[p1, p2], "secret/a/x"), "list, read, update");
        let dup: &[_] = &[("s/a", "read"), ("s/a", "create")];
        assert_eq!(caps(&[dup], "s/a"), "create, read");
    }

    #[test]
    fn deny_on_the_winning_pattern_takes_everything() {
        let p1: &[_] = &[("secret/a*", "read sudo")];
        let p2: &[_] = &[("secret/a*", "deny")];
        assert_eq!(caps(&[p1, p2], "secret/abc"), "deny");
        assert_eq!(caps(&[p2, p1], "secret/abc"), "deny");
        let mixed: &[_] = &[("s/a", "read deny")];
        assert_eq!(caps(&[mixed], "s/a"), "deny");
        // A deny on a lower-priority pattern does not reach a more specific one.
        let lower: &[_] = &[("secret/*", "deny"), ("secret/a/+", "read")];
        assert_eq!(caps(&[lower], "secret/a/b"), "read");
    }

    #[test]
    fn a_rule_without_capabilities_shadows_wider_rules() {
        let p: &[_] = &[("secret/*", "read"), ("secret/a", "")];
        assert_eq!(caps(&[p], "secret/a"), "deny");
    }

    #[test]
    fn no_rule_means_deny() {
        assert_eq!(caps(&[], "secret/a"), "deny");
        assert!(Acl::new(&[]).capabilities("x").is_denied());
    }

    #[test]
    fn root_allows_everything() {
        let acl = Acl::new(&[Policy::root()]);
        let c = acl.capabilities("sys/anything");
        assert!(c.is_root());
        assert!(c.allows(Capability::Sudo));
        assert!(!c.allows(Capability::Deny));
        assert_eq!(c.to_names(), ["root"]);
        let err = Policy::parse("root", "").unwrap_err();
        assert_eq!(err.kind(), &AclErrorKind::ReservedName);
    }

    #[test]
    fn leading_slashes_are_ignored() {
        let p: &[_] = &[("/secret/a", "read")];
        assert_eq!(caps(&[p], "secret/a"), "read");
        assert_eq!(caps(&[p], "//secret/a"), "read");
    }

    #[test]
    fn trailing_slash_is_looked_up_as_a_list_request() {
        let p: &[_] = &[("secret/a", "list")];
        assert_eq!(caps(&[p], "secret/a/"), "list");
        let q: &[_] = &[("secret/+", "list")];
        assert_eq!(caps(&[q], "secret/a/"), "list");
        let r: &[_] = &[("secret/a/", "read"), ("secret/a", "list")];
        assert_eq!(caps(&[r], "secret/a/"), "read");
    }

    #[test]
    fn templated_rules_never_match() {
        let p = policy(
            "t",
            r#"path "secret/{{identity.entity.name}}/*" { capabilities = ["read"] }
               path "secret/shared" { capabilities = ["read"] }"#,
        );
        assert!(p.is_templated());
        let acl = Acl::new(&[p]);
        assert!(acl
            .capabilities("secret/{{identity.entity.name}}/x")
            .is_denied());
        assert!(acl.capabilities("secret/shared").allows(Capability::Read));
    }

    #[test]
    fn json_policies_are_accepted() {
        let p = policy(
            "j",
            r#"{"path": {"secret/+/db": {"capabilities": ["read", "list"]},
                         "secret/*": {"capabilities": ["deny"]}}}"#,
        );
        let acl = Acl::new(&[p]);
        assert_eq!(acl.capabilities("secret/a/db").to_string(), "list, read");
        assert!(acl.capabilities("secret/a").is_denied());
        let list = policy(
            "j2",
            r#"{"path": [{"a": {"capabilities": ["read"]}}, {"a": [{"capabilities": ["list"]}]}]}"#,
        );
        assert_eq!(
            Acl::new(&[list]).capabilities("a").to_string(),
            "list, read"
        );
    }

    #[test]
    fn old_style_policy_field_maps_to_capabilities() {
        let p = policy(
            "old",
            r#"path "w" { policy = "write" }
               path "r" { policy = "read" }
               path "s" { policy = "sudo" }
               path "d" {
                 capabilities = ["read"]
                 policy = "deny"
               }"#,
        );
        let acl = Acl::new(&[p]);
        assert_eq!(
            acl.capabilities("w").to_string(),
            "create, delete, list, read, update"
        );
        assert_eq!(acl.capabilities("r").to_string(), "list, read");
        assert!(acl.capabilities("s").allows(Capability::Sudo));
        assert!(acl.capabilities("d").is_denied());
    }

    #[test]
    fn known_extra_fields_are_accepted_and_ignored() {
        let p = policy(
            "extra",
            r#"
            # comment
            name = "extra"
            path "secret/data/app" {
              capabilities = ["create", "update", "list"]
              comment = "why"
              allowed_parameters = { "ttl" = ["1h"], "*" = [] }
              denied_parameters = { "password" = [] }
              required_parameters = ["ttl"]
              min_wrapping_ttl = "1m"
              max_wrapping_ttl = 3600
              mfa_methods = ["totp"]
              subscribe_event_types = ["kv*"]
              pagination_limit = 100
              expiration = "2999-01-01T00:00:00Z"
              list_scan_response_keys_filter_path = "{{ .path }}{{ .key }}"
              control_group {
                ttl = "4h"
              }
            }
            path "sys/events/subscribe/*" { capabilities = ["read", "subscribe", "recover", "scan"] }
            "#,
        );
        assert_eq!(p.rules().len(), 2);
        let acl = Acl::new(&[p]);
        assert_eq!(
            acl.capabilities("secret/data/app").to_string(),
            "create, list, update"
        );
    }

    #[test]
    fn expired_rules_are_dropped() {
        let p = policy(
            "exp",
            r#"path "old" {
                 capabilities = ["read"]
                 expiration = "2001-02-03T04:05:06.7+01:00"
               }
               path "epoch" {
                 capabilities = ["read"]
                 expiration = 1000
               }
               path "new" {
                 capabilities = ["read"]
                 expiration = "2999-12-31T23:59:59Z"
               }"#,
        );
        let patterns: Vec<&str> = p.rules().iter().map(PathRule::pattern).collect();
        assert_eq!(patterns, ["new"]);
    }

    fn error_of(text: &str) -> String {
        match Policy::parse("bad", text) {
            Ok(p) => panic!("accepted: {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_policies_are_errors_with_a_clear_message() {
        let e = error_of(r#"path "secret/*" { capabilities = ["raed"] }"#);
        assert!(
            e.starts_with(r#"policy "bad": path "secret/*": unknown capability "raed" (expected one of: create,"#),
            "{e}"
        );
        let e = error_of(r#"path "a" { capabilites = ["read"] }"#);
        assert!(e.contains(r#"unknown key "capabilites""#), "{e}");
        let e = error_of(r#"paths "a" { capabilities = ["read"] }"#);
        assert!(
            e.contains(r#"unknown key "paths" (expected one of: name, path)"#),
            "{e}"
        );
        let e = error_of(r#"path "a/+*" { capabilities = ["read"] }"#);
        assert!(e.contains("'+*' is forbidden"), "{e}");
        let e = error_of(r#"path "a" { capabilities = "read" }"#);
        assert!(e.contains("capabilities: must be a list of strings"), "{e}");
        let e = error_of(r#"path "a" { capabilities = ["read"] "#);
        assert!(e.starts_with(r#"policy "bad": invalid HCL"#), "{e}");
        let e = error_of(r#"path { capabilities = ["read"] }"#);
        assert!(e.contains("exactly one label"), "{e}");
        let e = error_of(r#"path "a" { policy = "admin" }"#);
        assert!(e.contains(r#""admin" is not one of"#), "{e}");
        let e = error_of(
            r#"path "a" {
                 capabilities = ["read"]
                 min_wrapping_ttl = "2h"
                 max_wrapping_ttl = "1h"
               }"#,
        );
        assert!(e.contains("cannot be less than min_wrapping_ttl"), "{e}");
        let e = error_of(r#"path "a" { max_wrapping_ttl = "soon" }"#);
        assert!(
            e.contains("max_wrapping_ttl: \"soon\" is not a duration"),
            "{e}"
        );
        let e = error_of(r#"path "a" { expiration = "tomorrow" }"#);
        assert!(e.contains("expiration: must be an RFC 3339 time"), "{e}");
        let e = error_of(
            r#"path "a" {
                 capabilities = ["read"]
                 capabilities = ["list"]
               }"#,
        );
        assert!(e.contains("found redefined attribute"), "{e}");
        let e = error_of(
            r#"path "a" {
                 control_group { ttl = "1h" }
                 control_group { ttl = "2h" }
               }"#,
        );
        assert!(e.contains("control_group: is set more than once"), "{e}");
        let e = error_of(
            r#"path "a" {
                 capabilities = ["read"]
                 list_scan_response_keys_filter_path = "x"
               }"#,
        );
        assert!(e.contains("needs a path with the list capability"), "{e}");
        let e = error_of(r#"path "a" { capabilities = [var.x] }"#);
        assert!(e.contains("capabilities: not a literal value"), "{e}");
        let e = error_of(r#"{"path": "a"}"#);
        assert!(e.contains("must map each pattern"), "{e}");
        let e = error_of(r#"{"path": {"a": {"capabilities": ["read"]}}"#);
        assert!(e.starts_with(r#"policy "bad": invalid JSON"#), "{e}");
    }

    #[test]
    fn durations_and_times_parse_as_vault_reads_them() {
        let duration = |s: &str| duration_secs(&hcl::Value::String(s.to_owned()));
        assert_eq!(duration("90"), Ok(90.0));
        assert_eq!(duration("2d"), Ok(172_800.0));
        assert_eq!(duration("1h30m"), Ok(5400.0));
        assert_eq!(duration("1.5s"), Ok(1.5));
        assert!(duration("1x").is_err());
        assert!(duration("h").is_err());
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            parse_rfc3339("2000-03-01T01:00:00+01:00"),
            Some(951_868_800)
        );
        assert_eq!(parse_rfc3339("2000-03-01 00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00"), None);
    }

    #[test]
    fn capability_names_round_trip() {
        for cap in Capability::ALL {
            assert_eq!(cap.to_string().parse::<Capability>(), Ok(cap));
        }
        assert!("Read".parse::<Capability>().is_err());
        let c = Capabilities::from_names(["update", "read"]).unwrap();
        assert_eq!(c.to_names(), ["read", "update"]);
        assert!(c.allows(Capability::Read) && !c.allows(Capability::List));
        assert_eq!(Capabilities::from_names(["deny"]), Ok(Capabilities::DENY));
        assert_eq!(Capabilities::from_names(["root"]), Ok(Capabilities::ROOT));
        assert_eq!(Capabilities::DENY.to_names(), ["deny"]);
        assert!(Capabilities::from_names(["write"]).is_err());
    }
}
