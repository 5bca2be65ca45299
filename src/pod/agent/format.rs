//! Secret values in memory, and the file formats they are written in.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::pod::agent_spec::{is_env_name, FileFormat};

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

/// Writes one value as a raw file: a string as it is, a list of strings (PKI's
/// `ca_chain`) one item per line, any other JSON type as its JSON text.
pub fn write_raw(value: &SecretValue, out: &mut dyn io::Write) -> io::Result<()> {
    if let SecretValue::Json(text) = value {
        if text.starts_with('[') {
            if let Ok(items) = serde_json::from_str::<Vec<Zeroizing<String>>>(text) {
                for item in &items {
                    out.write_all(item.as_bytes())?;
                    out.write_all(b"\n")?;
                }
                return Ok(());
            }
        }
    }
    out.write_all(value.as_text().as_bytes())
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

/// Where rendered text goes: a small zeroizing buffer in front of a writer (the file), so
/// that a large secret is never held twice in memory and no copy of it is left in freed
/// buffers. The first write error is kept and reported by [`Sink::finish`].
pub struct Sink<'w> {
    buf: Zeroizing<Vec<u8>>,
    to: &'w mut dyn io::Write,
    error: Option<io::Error>,
}

/// Bytes gathered before they are written out.
const SINK_CHUNK: usize = 64 << 10;

impl<'w> Sink<'w> {
    pub fn new(to: &'w mut dyn io::Write) -> Sink<'w> {
        Sink {
            buf: Zeroizing::new(Vec::with_capacity(SINK_CHUNK)),
            to,
            error: None,
        }
    }

    fn extend_from_slice(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > SINK_CHUNK {
            self.drain();
        }
        if bytes.len() > SINK_CHUNK {
            self.write_out(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    fn push(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }

    fn drain(&mut self) {
        let buf = std::mem::take(&mut *self.buf);
        self.write_out(&buf);
        // Same capacity, contents wiped: `take` moved the bytes into `buf`.
        *self.buf = buf;
        zeroize::Zeroize::zeroize(&mut *self.buf);
    }

    fn write_out(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.to.write_all(bytes) {
                self.error = Some(e);
            }
        }
    }

    /// Writes what is left and reports the first error.
    pub fn finish(mut self) -> io::Result<()> {
        self.drain();
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl io::Write for Sink<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether the whole secret can be written in `format` (checked before any file is
/// written, so that nothing is written when one file cannot be).
pub fn check_whole(data: &SecretData, format: FileFormat) -> Result<(), FormatError> {
    match format {
        FileFormat::Raw => Err(FormatError::RawNeedsKey),
        FileFormat::Env => match data.keys().find(|k| !is_env_name(k)) {
            Some(key) => Err(FormatError::NotAnEnvName(key.clone())),
            None => Ok(()),
        },
        FileFormat::Json | FileFormat::Yaml | FileFormat::Properties => Ok(()),
    }
}

/// Writes the whole secret in `format`.
pub fn write_whole(
    data: &SecretData,
    format: FileFormat,
    out: &mut Sink<'_>,
) -> Result<(), FormatError> {
    check_whole(data, format)?;
    match format {
        FileFormat::Json => write_json(data, out),
        FileFormat::Yaml => write_yaml(data, out),
        FileFormat::Env => write_env(data, out),
        FileFormat::Properties => write_properties(data, out),
        FileFormat::Raw => {}
    }
    Ok(())
}

/// The file content of a whole secret in `format`, in memory.
#[cfg(test)]
pub fn render_whole(
    data: &SecretData,
    format: FileFormat,
) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let mut bytes = Zeroizing::new(Vec::new());
    let mut sink = Sink::new(&mut *bytes);
    write_whole(data, format, &mut sink)?;
    sink.finish().map_err(|_| FormatError::RawNeedsKey)?;
    Ok(bytes)
}

fn write_json(data: &SecretData, out: &mut Sink<'_>) {
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

fn json_string(s: &str, out: &mut Sink<'_>) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Longest key written as an implicit key: YAML limits those to 1024 characters, so a
/// longer one is written as an explicit `? key` entry.
const YAML_IMPLICIT_KEY_MAX: usize = 1000;

fn write_yaml(data: &SecretData, out: &mut Sink<'_>) {
    if data.is_empty() {
        out.extend_from_slice(b"{}\n");
        return;
    }
    for (key, value) in data {
        if key.len() > YAML_IMPLICIT_KEY_MAX {
            out.extend_from_slice(b"? ");
            yaml_string(key, out);
            out.extend_from_slice(b"\n: ");
        } else {
            if yaml_plain_key(key) {
                out.extend_from_slice(key.as_bytes());
            } else {
                yaml_string(key, out);
            }
            out.extend_from_slice(b": ");
        }
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
fn yaml_string(s: &str, out: &mut Sink<'_>) {
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
fn yaml_flow(json: &str, out: &mut Sink<'_>) {
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

/// `KEY='value'` lines that `sh` can source; `'` inside values becomes `'\''`.
/// The keys are checked by [`check_whole`].
fn write_env(data: &SecretData, out: &mut Sink<'_>) {
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
}

/// Java `.properties`: `key=value`, with `\uXXXX` escapes for everything outside printable
/// ASCII, so the file reads the same as ISO-8859-1 (`Properties.load(InputStream)`) and
/// as UTF-8.
fn write_properties(data: &SecretData, out: &mut Sink<'_>) {
    for (key, value) in data {
        properties_escape(key, true, out);
        out.push(b'=');
        properties_escape(value.as_text(), false, out);
        out.push(b'\n');
    }
}

fn properties_escape(s: &str, is_key: bool, out: &mut Sink<'_>) {
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
    fn yaml_long_keys_are_explicit() {
        let long = "k".repeat(2000);
        let d = data(&format!(r#"{{"{long}":"v","short":"w"}}"#));
        let out = text(render_whole(&d, FileFormat::Yaml).unwrap());
        assert!(out.starts_with("? \""), "{}", &out[..20]);
        let back: serde_json::Value = yaml_serde::from_str(&out).unwrap();
        assert_eq!(back[long.as_str()], "v");
        assert_eq!(back["short"], "w");
    }

    #[test]
    fn sink_writes_large_values_through() {
        let big = "x".repeat(3 * SINK_CHUNK + 7);
        let d = data(&format!(r#"{{"a":"{big}","b":"y"}}"#));
        let mut file = Vec::new();
        let mut sink = Sink::new(&mut file);
        write_whole(&d, FileFormat::Json, &mut sink).unwrap();
        sink.finish().unwrap();
        let back: serde_json::Value = serde_json::from_slice(&file).unwrap();
        assert_eq!(back["a"].as_str().unwrap().len(), big.len());
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
