//! Secret values in memory, and the file formats they are written in.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::spec::FileFormat;

/// One value of a secret's data map. Strings are kept as they are; any other JSON type
/// (number, bool, null, array, object) is kept as its JSON text, which is also how it is
/// written wherever a single string is needed (env vars, raw files).
pub enum SecretValue {
    Str(Zeroizing<String>),
    Json(Zeroizing<String>),
}

/// A secret's data map, keys sorted.
pub type SecretData = BTreeMap<String, SecretValue>;

impl SecretValue {
    /// The value as one string: the string itself, or the JSON text of other types.
    pub fn as_text(&self) -> &str {
        match self {
            SecretValue::Str(s) | SecretValue::Json(s) => s,
        }
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&RawValue>::deserialize(d)?;
        let text = raw.get();
        if text.starts_with('"') {
            let s: Zeroizing<String> = serde_json::from_str(text).map_err(D::Error::custom)?;
            Ok(SecretValue::Str(s))
        } else {
            Ok(SecretValue::Json(Zeroizing::new(text.to_owned())))
        }
    }
}

/// Why a secret cannot be written in the requested form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// `env` needs shell variable names as keys.
    NotAnEnvName(String),
    /// `raw` writes one key; the reference names none.
    RawNeedsKey,
    /// A `#key` reference is written raw only.
    KeyNeedsRaw(FileFormat),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::NotAnEnvName(key) => write!(
                f,
                "format env writes KEY=value lines, and key {key:?} is not a shell variable name; use format json, yaml or properties, or select keys with #key"
            ),
            FormatError::RawNeedsKey => f.write_str(
                "format raw writes one key's value, and the reference names no #key",
            ),
            FormatError::KeyNeedsRaw(format) => write!(
                f,
                "a #key reference is written raw, not as {format:?}"
            ),
        }
    }
}

/// Buffer for rendered text, sized up front so that growing it does not leave copies of
/// values in freed memory.
fn buffer_for(data: &SecretData) -> Zeroizing<Vec<u8>> {
    let size: usize = data
        .iter()
        .map(|(k, v)| 2 * (k.len() + v.as_text().len()) + 16)
        .sum();
    Zeroizing::new(Vec::with_capacity(size * 3 + 16))
}

/// The file content of a whole secret in `format`.
pub fn render_whole(
    data: &SecretData,
    format: FileFormat,
) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let mut out = buffer_for(data);
    match format {
        FileFormat::Json => write_json(data, &mut out),
        FileFormat::Yaml => write_yaml(data, &mut out),
        FileFormat::Env => write_env(data, &mut out)?,
        FileFormat::Properties => write_properties(data, &mut out),
        FileFormat::Raw => return Err(FormatError::RawNeedsKey),
    }
    Ok(out)
}

fn write_json(data: &SecretData, out: &mut Vec<u8>) {
    if data.is_empty() {
        out.extend_from_slice(b"{}\n");
        return;
    }
    out.extend_from_slice(b"{\n");
    for (i, (key, value)) in data.iter().enumerate() {
        out.extend_from_slice(b"  ");
        json_string(key, out);
        out.extend_from_slice(b": ");
        match value {
            SecretValue::Str(s) => json_string(s, out),
            SecretValue::Json(j) => out.extend_from_slice(j.as_bytes()),
        }
        out.extend_from_slice(if i + 1 < data.len() { b",\n" } else { b"\n" });
    }
    out.extend_from_slice(b"}\n");
}

fn json_string(s: &str, out: &mut Vec<u8>) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_yaml(data: &SecretData, out: &mut Vec<u8>) {
    if data.is_empty() {
        out.extend_from_slice(b"{}\n");
        return;
    }
    for (key, value) in data {
        if yaml_plain_key(key) {
            out.extend_from_slice(key.as_bytes());
        } else {
            yaml_string(key, out);
        }
        out.extend_from_slice(b": ");
        match value {
            SecretValue::Str(s) => yaml_string(s, out),
            SecretValue::Json(j) => yaml_flow(j, out),
        }
        out.push(b'\n');
    }
}

/// A key YAML 1.1 and 1.2 readers both take as the same plain string.
fn yaml_plain_key(key: &str) -> bool {
    const SPECIAL: [&str; 14] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "nan", "inf", "=", "<<",
    ];
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !SPECIAL.contains(&key.to_ascii_lowercase().as_str())
}

/// A double-quoted YAML scalar; every character outside YAML's printable set is escaped.
fn yaml_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let mut utf8 = [0u8; 4];
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    out.push(b'"');
}

/// JSON text as a YAML flow value: JSON is YAML 1.2, and a space after each `:` and `,`
/// outside strings makes it YAML 1.1 too.
fn yaml_flow(json: &str, out: &mut Vec<u8>) {
    let mut in_string = false;
    let mut escaped = false;
    for b in json.bytes() {
        if in_string {
            out.push(b);
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b' ' | b'\n' | b'\r' | b'\t' => {}
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b':' | b',' => {
                out.push(b);
                out.push(b' ');
            }
            _ => out.push(b),
        }
    }
}

pub fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `KEY='value'` lines that `sh` can source; `'` inside values becomes `'\''`.
fn write_env(data: &SecretData, out: &mut Vec<u8>) -> Result<(), FormatError> {
    if let Some(key) = data.keys().find(|k| !is_env_name(k)) {
        return Err(FormatError::NotAnEnvName(key.clone()));
    }
    for (key, value) in data {
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"='");
        for b in value.as_text().bytes() {
            if b == b'\'' {
                out.extend_from_slice(b"'\\''");
            } else {
                out.push(b);
            }
        }
        out.extend_from_slice(b"'\n");
    }
    Ok(())
}

/// Java `.properties`: `key=value`, with `\uXXXX` escapes for everything outside printable
/// ASCII, so the file reads the same as ISO-8859-1 (`Properties.load(InputStream)`) and
/// as UTF-8.
fn write_properties(data: &SecretData, out: &mut Vec<u8>) {
    for (key, value) in data {
        properties_escape(key, true, out);
        out.push(b'=');
        properties_escape(value.as_text(), false, out);
        out.push(b'\n');
    }
}

fn properties_escape(s: &str, is_key: bool, out: &mut Vec<u8>) {
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' ' if is_key || i == 0 => out.extend_from_slice(b"\\ "),
            '=' | ':' | '#' | '!' if is_key || i == 0 => {
                out.push(b'\\');
                out.push(c as u8);
            }
            ' '..='~' => out.push(c as u8),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(json: &str) -> SecretData {
        serde_json::from_str(json).unwrap()
    }

    fn text(bytes: Zeroizing<Vec<u8>>) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn parses_strings_and_other_types() {
        let d = data(r#"{"s":"a\"b","n":5,"b":true,"z":null,"o":{"k":[1,"x"]}}"#);
        assert!(matches!(d["s"], SecretValue::Str(_)));
        assert_eq!(d["s"].as_text(), "a\"b");
        assert_eq!(d["n"].as_text(), "5");
        assert_eq!(d["b"].as_text(), "true");
        assert_eq!(d["z"].as_text(), "null");
        assert_eq!(d["o"].as_text(), r#"{"k":[1,"x"]}"#);
        assert_eq!(format!("{:?}", d["s"]), "SecretValue(<redacted>)");
    }

    #[test]
    fn json_keeps_types() {
        let d = data(r#"{"pw":"p\"w\n","port":5432,"tags":["a","b"]}"#);
        let out = text(render_whole(&d, FileFormat::Json).unwrap());
        assert_eq!(
            out,
            "{\n  \"port\": 5432,\n  \"pw\": \"p\\\"w\\n\",\n  \"tags\": [\"a\",\"b\"]\n}\n"
        );
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["pw"], "p\"w\n");
        assert_eq!(
            text(render_whole(&data("{}"), FileFormat::Json).unwrap()),
            "{}\n"
        );
    }

    #[test]
    fn yaml_reads_back_the_same() {
        let d = data(
            r#"{"pw":"a: b # c\n'q'\u0085","on":"yes","port":5432,"obj":{"k":[1,"x, y"],"n":null},"my-key.x":"v"}"#,
        );
        let out = text(render_whole(&d, FileFormat::Yaml).unwrap());
        assert!(out.contains("\"on\": \"yes\"\n"), "{out}");
        assert!(out.contains("my-key.x: \"v\"\n"), "{out}");
        assert!(
            out.contains("obj: {\"k\": [1, \"x, y\"], \"n\": null}\n"),
            "{out}"
        );
        let back: serde_json::Value = yaml_serde::from_str(&out).unwrap();
        assert_eq!(back["pw"], "a: b # c\n'q'\u{85}");
        assert_eq!(back["on"], "yes");
        assert_eq!(back["port"], 5432);
        assert_eq!(back["obj"]["k"][1], "x, y");
        assert!(back["obj"]["n"].is_null());
    }

    #[test]
    fn env_is_shell_quoted() {
        let d = data(r#"{"A":"it's $HOME `x`","B_2":7}"#);
        let out = text(render_whole(&d, FileFormat::Env).unwrap());
        assert_eq!(out, "A='it'\\''s $HOME `x`'\nB_2='7'\n");
        let bad = data(r#"{"db-password":"x"}"#);
        assert_eq!(
            render_whole(&bad, FileFormat::Env).unwrap_err(),
            FormatError::NotAnEnvName("db-password".to_owned())
        );
    }

    #[test]
    fn env_output_sources_in_sh() {
        let d = data(r#"{"A":"it's $HOME `x` \" \\ \n line2","B":""}"#);
        let out = text(render_whole(&d, FileFormat::Env).unwrap());
        let script = format!("{out}printf '%s|%s' \"$A\" \"$B\"");
        let res = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(res.stdout).unwrap(),
            "it's $HOME `x` \" \\ \n line2|"
        );
    }

    #[test]
    fn properties_escape() {
        let d = data(r#"{"a key=":" lead\\and\nnew #!=:","uni":"é😀"}"#);
        let out = text(render_whole(&d, FileFormat::Properties).unwrap());
        assert_eq!(
            out,
            "a\\ key\\==\\ lead\\\\and\\nnew #!=:\nuni=\\u00e9\\ud83d\\ude00\n"
        );
    }

    #[test]
    fn raw_needs_a_key() {
        assert_eq!(
            render_whole(&data("{}"), FileFormat::Raw).unwrap_err(),
            FormatError::RawNeedsKey
        );
    }
}
