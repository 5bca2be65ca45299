//! Recognising the Vault Agent (consul-template) templates that the dialect can express:
//! one key of one secret written raw, or the whole secret as JSON, YAML, env or
//! properties. Anything else is refused with the reason, never guessed.
//!
//! The template is cut into literal text and `{{ ... }}` actions, with Go's trim markers
//! (`{{- ` and ` -}}`) applied to the neighbouring text, and the actions are matched
//! against the few shapes below.

use crate::pod::agent_spec::FileFormat;

/// What a recognised template writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognised {
    /// The path of `secret "<path>"`, as written.
    pub path: String,
    /// `Some(key)` for one key raw; `None` for the whole secret in `format`.
    pub key: Option<String>,
    pub format: FileFormat,
    /// The template reads `.Data.data`: the KV v2 response's inner map.
    pub kv2: bool,
    /// Whitespace the template writes around the value, which the dialect's file drops.
    pub extra_whitespace: bool,
}

#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(String),
    Action(&'a str),
}

/// Cuts a Go template into text and actions (comments dropped), applying trim markers.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out: Vec<Piece> = Vec::new();
    let mut rest = template;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = rest[..open].to_string();
        if trim_next {
            text = text.trim_start().to_string();
        }
        let after = &rest[open + 2..];
        let (trim_before, inner_start) = match after.strip_prefix('-') {
            Some(r) if r.starts_with(char::is_whitespace) => (true, r),
            _ => (false, after),
        };
        if trim_before {
            text = text.trim_end().to_string();
        }
        let close = inner_start
            .find("}}")
            .ok_or("an action `{{` is not closed with `}}`")?;
        let mut inner = &inner_start[..close];
        trim_next = false;
        if let Some(stripped) = inner.strip_suffix('-') {
            if stripped.ends_with(char::is_whitespace) {
                inner = stripped;
                trim_next = true;
            }
        }
        out.push(Piece::Text(text));
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            out.push(Piece::Action(inner));
        }
        rest = &inner_start[close + 2..];
    }
    let mut text = rest.to_string();
    if trim_next {
        text = text.trim_start().to_string();
    }
    out.push(Piece::Text(text));
    Ok(out)
}

/// `secret "<path>"` (also with `with $s := ...`), the path unquoted.
fn with_secret(action: &str) -> Option<String> {
    let rest = action.strip_prefix("with")?.trim_start();
    let rest = match rest.split_once(":=") {
        Some((var, call)) if var.trim().starts_with('$') => call.trim_start(),
        _ => rest,
    };
    let arg = rest.strip_prefix("secret")?.trim();
    let unquoted = arg
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .or_else(|| arg.strip_prefix('`').and_then(|a| a.strip_suffix('`')))?;
    (!unquoted.is_empty() && !unquoted.contains(['"', '`', ' '])).then(|| unquoted.to_string())
}

/// The data a pipeline starts from: `.Data.data` (KV v2) or `.Data`.
fn data_root(expr: &str) -> Option<bool> {
    match expr.trim() {
        ".Data.data" => Some(true),
        ".Data" => Some(false),
        _ => None,
    }
}

/// One key: `.Data.data.K`, `.Data.K`, `index .Data.data "K"`, `index .Data "K"`.
fn key_of(action: &str) -> Option<(String, bool)> {
    if let Some(args) = action.strip_prefix("index ") {
        let args = args.trim();
        let (root, key) = args.split_once(char::is_whitespace)?;
        let kv2 = data_root(root)?;
        let key = key.trim().strip_prefix('"')?.strip_suffix('"')?;
        return (!key.is_empty() && !key.contains(['"', '\\'])).then(|| (key.to_string(), kv2));
    }
    let (key, kv2) = match action.strip_prefix(".Data.data.") {
        Some(key) => (key, true),
        None => (action.strip_prefix(".Data.")?, false),
    };
    let identifier = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    // `.Data.data` alone is the KV v2 map, not a key.
    (identifier && (kv2 || key != "data")).then(|| (key.to_string(), kv2))
}

/// The whole secret: `.Data.data | toJSON`, `toJSON .Data.data` (also toJSONPretty, toYAML).
fn whole_of(action: &str) -> Option<(FileFormat, bool)> {
    let (root, function) = match action.split_once('|') {
        Some((root, function)) => (root, function.trim()),
        None => {
            let (function, root) = action.split_once(char::is_whitespace)?;
            (root, function)
        }
    };
    let kv2 = data_root(root)?;
    let format = match function {
        "toJSON" | "toJSONPretty" => FileFormat::Json,
        "toYAML" => FileFormat::Yaml,
        _ => return None,
    };
    Some((format, kv2))
}

/// `range $k, $v := .Data.data`: the key and value variables and whether it is KV v2.
fn range_of(action: &str) -> Option<(&str, &str, bool)> {
    let rest = action.strip_prefix("range")?.trim_start();
    let (vars, root) = rest.split_once(":=")?;
    let (k, v) = vars.split_once(',')?;
    let (k, v) = (k.trim(), v.trim());
    if !k.starts_with('$') || !v.starts_with('$') || k == v {
        return None;
    }
    Some((k, v, data_root(root)?))
}

fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}

/// Recognises `template`; `file_name` picks env or properties for a `key=value` range.
pub fn recognise(template: &str, file_name: &str) -> Result<Recognised, String> {
    let pieces = pieces(template)?;
    let actions: Vec<&str> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Action(a) => Some(*a),
            Piece::Text(_) => None,
        })
        .collect();
    let texts: Vec<&str> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Text(t) => Some(t.as_str()),
            Piece::Action(_) => None,
        })
        .collect();
    let unexpressible = || {
        "the template combines several values or writes text around them (such as a connection string or an export line), which no file secret format reproduces".to_string()
    };
    let Some(path) = actions.first().and_then(|a| with_secret(a)) else {
        return Err(
            "the template does not start with `{{ with secret \"<path>\" }}`, so convert cannot tell what it reads".into(),
        );
    };
    match actions.as_slice() {
        [_, value, "end"] => {
            let extra_whitespace = !texts.iter().all(|t| t.is_empty());
            if !texts.iter().all(|t| is_blank(t)) {
                return Err(
                    "the template writes text around the value, which no file secret format reproduces".into(),
                );
            }
            if let Some((key, kv2)) = key_of(value) {
                return Ok(Recognised {
                    path,
                    key: Some(key),
                    format: FileFormat::Raw,
                    kv2,
                    extra_whitespace,
                });
            }
            if let Some((format, kv2)) = whole_of(value) {
                return Ok(Recognised {
                    path,
                    key: None,
                    format,
                    kv2,
                    extra_whitespace,
                });
            }
            Err(format!(
                "`{{{{ {value} }}}}` is neither one key (.Data.data.KEY) nor the whole secret (toJSON, toYAML)"
            ))
        }
        [_, range, k, v, "end", "end"] => {
            let Some((kvar, vvar, kv2)) = range_of(range) else {
                return Err(unexpressible());
            };
            // Text: before with, with→range, range→$k, $k→$v (`=`), $v→end (a newline),
            // end→end, after the last end.
            let separators_ok = *k == kvar
                && *v == vvar
                && texts.len() == 7
                && is_blank(texts[0])
                && is_blank(texts[1])
                && texts[2].is_empty()
                && texts[3] == "="
                && texts[4] == "\n"
                && is_blank(texts[5])
                && is_blank(texts[6]);
            if !separators_ok {
                return Err(
                    "the template's range does not write `KEY=value` lines, which is the only range form convert reads".into(),
                );
            }
            let format = if file_name.ends_with(".properties") {
                FileFormat::Properties
            } else {
                FileFormat::Env
            };
            Ok(Recognised {
                path,
                key: None,
                format,
                kv2,
                extra_whitespace: !(texts[0].is_empty()
                    && texts[1].is_empty()
                    && texts[5].is_empty()
                    && texts[6].is_empty()),
            })
        }
        _ => Err(unexpressible()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_raw() {
        let r = recognise(
            "{{- with secret \"secret/data/shop/db\" -}}\n{{ .Data.data.password }}\n{{- end -}}\n",
            "db",
        )
        .unwrap();
        assert_eq!(r.path, "secret/data/shop/db");
        assert_eq!(r.key.as_deref(), Some("password"));
        assert!(r.kv2);
        assert!(!r.extra_whitespace);
        let r = recognise(
            "{{ with secret \"kv/app\" }}{{ index .Data \"api-key\" }}{{ end }}\n",
            "k",
        )
        .unwrap();
        assert_eq!(r.key.as_deref(), Some("api-key"));
        assert!(!r.kv2);
        assert!(r.extra_whitespace, "the trailing newline");
    }

    #[test]
    fn whole_secret_formats() {
        let json = recognise(
            "{{ with secret \"secret/data/a\" }}{{ .Data.data | toJSON }}{{ end }}",
            "a.json",
        )
        .unwrap();
        assert_eq!((json.key, json.format), (None, FileFormat::Json));
        let yaml = recognise(
            "{{ with secret \"secret/data/a\" }}{{ toYAML .Data.data }}{{ end }}",
            "a",
        )
        .unwrap();
        assert_eq!(yaml.format, FileFormat::Yaml);
        let range = "{{ with secret \"secret/data/a\" }}{{ range $k, $v := .Data.data }}{{ $k }}={{ $v }}\n{{ end }}{{ end }}";
        assert_eq!(recognise(range, "a.env").unwrap().format, FileFormat::Env);
        assert_eq!(
            recognise(range, "app.properties").unwrap().format,
            FileFormat::Properties
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for t in [
            "{{ with secret \"db/creds/a\" }}postgres://{{ .Data.username }}:{{ .Data.password }}@db{{ end }}",
            "{{ with secret \"secret/data/a\" }}export A=\"{{ .Data.data.a }}\"{{ end }}",
            "{{ .Data.data.a }}",
            "{{ with secret \"secret/data/a\" }}{{ .Data.data.a | base64Decode }}{{ end }}",
            "{{ with secret \"secret/data/a\" }}{{ .Data.data.a }}",
            "{{ with secret \"a\" }}{{ range $k, $v := .Data }}export {{ $k }}={{ $v }}\n{{ end }}{{ end }}",
        ] {
            assert!(recognise(t, "f").is_err(), "{t}");
        }
    }
}
