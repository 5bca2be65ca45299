//! The dialect's annotations of an opted-in pod: role, live mode, file secret keys, and
//! "did you mean" for unknown keys.

use super::{
    Ctx, LiveAnnotations, FILE_KEY_PREFIX, KNOWN_KEYS, METRICS_PORT_KEY, ON_CHANGE_KEY, PREFIX,
    REFRESH_KEY, REVOKE_ON_STOP_KEY, ROLE_KEY, STATUS_KEY,
};
use crate::diag::Code;
use crate::pod::agent_spec::OnChange;
use crate::render::tree::NodeId;

/// The dialect's annotations of an opted-in pod, each checked.
pub(super) struct DialectAnnotations {
    pub(super) role: Option<String>,
    pub(super) live: LiveAnnotations,
    /// `filesecret-config-<suffix>`: the suffix, and the key and value nodes.
    pub(super) file_entries: Vec<(String, NodeId, NodeId)>,
}

/// Reads each `vault.secretstore.rafay.dev/` annotation, reporting the ones that are
/// wrong or unknown.
pub(super) fn read_annotations(
    ctx: &mut Ctx,
    annotations: NodeId,
    afield: &str,
) -> DialectAnnotations {
    let tree = ctx.tree;
    let mut role = None;
    let mut live = LiveAnnotations::default();
    let mut file_entries: Vec<(String, NodeId, NodeId)> = Vec::new();
    for (k, v) in tree.entries(annotations) {
        let Some(key) = tree.str(*k) else { continue };
        if !key.starts_with(PREFIX) {
            continue;
        }
        let kfield = format!("{afield}[{key}]");
        if key == ROLE_KEY {
            match tree.str(*v) {
                Some(r) if r.chars().any(char::is_control) => ctx.report(
                    Code::MissingRole,
                    *v,
                    kfield,
                    format!("the Vault role {r:?} holds a line break or another control character"),
                    "write the role name on one line",
                ),
                Some(r) if !r.trim().is_empty() => role = Some(r.to_string()),
                _ => ctx.report(
                    Code::MissingRole,
                    *v,
                    kfield,
                    "the Vault role is empty".into(),
                    "set it to the Vault role bound to this pod's service account",
                ),
            }
        } else if key == REFRESH_KEY
            || key == ON_CHANGE_KEY
            || key == REVOKE_ON_STOP_KEY
            || key == METRICS_PORT_KEY
        {
            read_live_annotation(ctx, key, *v, kfield, &mut live);
        } else if let Some(suffix) = key.strip_prefix(FILE_KEY_PREFIX) {
            if !is_suffix(suffix) {
                ctx.report(
                    Code::BadFileSecretSuffix,
                    *k,
                    kfield,
                    format!("`{key}` has an invalid suffix `{suffix}`"),
                    "the suffix after filesecret-config- is one or more of a-z, 0-9 and -",
                );
            } else {
                file_entries.push((suffix.to_string(), *k, *v));
            }
        } else if !KNOWN_KEYS.contains(&key) {
            let suggestion = suggest(key);
            ctx.report(
                Code::UnknownAnnotation,
                *k,
                kfield,
                format!("unknown secret-store annotation `{key}`"),
                &match suggestion {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known keys: {ROLE_KEY}, {FILE_KEY_PREFIX}<N>, {STATUS_KEY}, {REFRESH_KEY}, {ON_CHANGE_KEY}, {REVOKE_ON_STOP_KEY}, {METRICS_PORT_KEY}"),
                },
            );
        }
    }
    DialectAnnotations {
        role,
        live,
        file_entries,
    }
}

/// Whether `suffix` is one or more of a-z, 0-9 and `-`.
pub(super) fn is_suffix(suffix: &str) -> bool {
    !suffix.is_empty()
        && suffix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Parses one live-mode annotation into `live`, or reports its bad value.
fn read_live_annotation(
    ctx: &mut Ctx,
    key: &str,
    node: NodeId,
    field: String,
    live: &mut LiveAnnotations,
) {
    let Some(text) = ctx.tree.str(node).map(str::trim) else {
        ctx.report(
            Code::LiveBadValue,
            node,
            field,
            format!("`{key}` is not a string"),
            "quote the value",
        );
        return;
    };
    let parsed = if key == REFRESH_KEY {
        crate::duration::parse_refresh(text).map(|r| live.refresh = Some((r, node)))
    } else if key == ON_CHANGE_KEY {
        OnChange::parse(text).map(|a| live.on_change = Some((a, node)))
    } else if key == METRICS_PORT_KEY {
        parse_metrics_port(text).map(|p| live.metrics_port = Some((p, node)))
    } else {
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("`{text}` is not \"true\" or \"false\"")),
        }
        .map(|b| live.revoke_on_stop = Some((b, node)))
    };
    if let Err(message) = parsed {
        let help = if key == REFRESH_KEY {
            "write a duration from 1s to 24h such as 30s, 5m or 1h30m, or `off`"
        } else if key == ON_CHANGE_KEY {
            "write none, restart or signal:<NAME> (e.g. signal:SIGHUP)"
        } else if key == METRICS_PORT_KEY {
            "write a port number from 1 to 65535 (e.g. \"9102\"), or `off`"
        } else {
            "write \"true\" (the default) or \"false\""
        };
        ctx.report(Code::LiveBadValue, node, field, message, help);
    }
}

/// Parses a metrics port: 1-65535, or `off`/`0` for none.
pub fn parse_metrics_port(text: &str) -> Result<Option<u16>, String> {
    match text.trim() {
        "off" => Ok(None),
        other => match other.parse::<u16>() {
            Ok(0) => Ok(None),
            Ok(port) => Ok(Some(port)),
            Err(_) => Err(format!("`{text}` is not a port number (1-65535)")),
        },
    }
}

/// Numeric suffixes in numeric order first, then the rest in text order.
pub(super) fn suffix_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u128>(), b.parse::<u128>()) {
        (Ok(x), Ok(y)) => x.cmp(&y).then(a.cmp(b)),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    }
}

/// The closest known key to an unknown one under the dialect prefix.
fn suggest(key: &str) -> Option<String> {
    let known = [
        ROLE_KEY,
        STATUS_KEY,
        REFRESH_KEY,
        ON_CHANGE_KEY,
        REVOKE_ON_STOP_KEY,
        METRICS_PORT_KEY,
        "vault.secretstore.rafay.dev/filesecret-config-1",
    ];
    if let Some(rest) = key.strip_prefix(PREFIX) {
        if rest.starts_with("file") || rest.contains("secret-config") || rest.contains("filesecret")
        {
            let suffix = rest.rsplit('-').next().unwrap_or("1");
            return Some(format!("{FILE_KEY_PREFIX}{suffix}"));
        }
    }
    closest(key, &known).map(str::to_string)
}

pub(super) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A key written twice in a pod template's annotations: YAML forbids it and readers differ
/// on which value wins (render read one, a strict reader refuses the document), so no
/// command guesses.
pub(super) fn report_duplicate_keys(ctx: &mut Ctx, annotations: NodeId, afield: &str) {
    let tree = ctx.tree;
    let mut seen: std::collections::HashMap<&str, NodeId> = std::collections::HashMap::new();
    for (k, _) in tree.entries(annotations) {
        let Some(key) = tree.str(*k) else { continue };
        let Some(first) = seen.get(key).copied() else {
            seen.insert(key, *k);
            continue;
        };
        let at = ctx.location(first);
        ctx.report(
            Code::DuplicateAnnotation,
            *k,
            format!("{afield}[{key}]"),
            format!(
                "annotation `{key}` is written twice (first at line {}, column {})",
                at.line, at.column
            ),
            "keep one of them (readers disagree on which value wins)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_sort_numerically_first() {
        let mut s = vec!["10", "b", "2", "a", "1"];
        s.sort_by(|a, b| suffix_order(a, b));
        assert_eq!(s, vec!["1", "2", "10", "a", "b"]);
    }

    #[test]
    fn suggests_close_keys() {
        assert_eq!(
            suggest("vault.secretstore.rafay.dev/rol").as_deref(),
            Some(ROLE_KEY)
        );
        assert_eq!(
            suggest("vault.secretstore.rafay.dev/filesecret-conf-2").as_deref(),
            Some("vault.secretstore.rafay.dev/filesecret-config-2")
        );
        assert_eq!(
            suggest("vault.secretstore.rafay.dev/metrics-prot").as_deref(),
            Some(METRICS_PORT_KEY)
        );
        assert_eq!(
            suggest("vault.secretstore.rafay.dev/metrics").as_deref(),
            Some(METRICS_PORT_KEY)
        );
    }

    #[test]
    fn metrics_ports() {
        assert_eq!(parse_metrics_port("9102"), Ok(Some(9102)));
        assert_eq!(parse_metrics_port(" 65535 "), Ok(Some(65535)));
        assert_eq!(parse_metrics_port("off"), Ok(None));
        assert_eq!(parse_metrics_port("0"), Ok(None));
        for bad in ["65536", "-1", "http", "", "9102/TCP", "1e3"] {
            assert!(parse_metrics_port(bad).is_err(), "{bad}");
        }
    }
}
