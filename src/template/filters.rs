//! The filters a template may use. Each one caps what it makes at
//! [`super::MAX_OUTPUT_BYTES`], which (with the subset `scan` allows) bounds every value an
//! evaluation holds. Their errors name the filter and never the value.

use super::source::SourceData;
use super::MAX_OUTPUT_BYTES;
use base64::Engine as _;
use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// The prefix of every filter error, which render passes on (minijinja's own details may
/// quote values, so render drops them).
pub const ERROR_PREFIX: &str = "filter `";

fn fail(filter: &str, message: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{ERROR_PREFIX}{filter}`: {message}"),
    )
}

/// A missing key reaching a filter is the strict-undefined error, which render turns into
/// "source `db` has no key `x`" (minijinja hands filters undefined values as they are).
fn defined(value: &Value) -> Result<(), Error> {
    if value.is_undefined() {
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    Ok(())
}

fn capped(filter: &str, out: String) -> Result<String, Error> {
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(fail(
            filter,
            &format!("its result is larger than the {MAX_OUTPUT_BYTES}-byte limit"),
        ));
    }
    Ok(out)
}

/// The text of a scalar (a string as it is, a number or boolean as written).
fn text_of(filter: &str, value: &Value) -> Result<String, Error> {
    defined(value)?;
    match value.kind() {
        ValueKind::String => Ok(value.as_str().unwrap_or_default().to_string()),
        ValueKind::Number | ValueKind::Bool => Ok(value.to_string()),
        kind => Err(fail(filter, &format!("it takes text, not a {kind}"))),
    }
}

/// Percent-encodes every byte but the unreserved characters of RFC 3986 (`A-Z a-z 0-9 - .
/// _ ~`), so the result is safe in any part of a URL, a password in its user info included.
pub fn urlencode(value: Value) -> Result<String, Error> {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let text = text_of("urlencode", &value)?;
    if text.len() > MAX_OUTPUT_BYTES / 3 {
        return Err(fail("urlencode", "its input is too large"));
    }
    capped(
        "urlencode",
        percent_encoding::utf8_percent_encode(&text, SET).to_string(),
    )
}

/// Standard base64 with padding (Go's `base64.StdEncoding`, the injector's `base64Encode`).
pub fn b64encode(value: Value) -> Result<String, Error> {
    let text = text_of("b64encode", &value)?;
    if text.len() > MAX_OUTPUT_BYTES / 4 * 3 {
        return Err(fail("b64encode", "its input is too large"));
    }
    capped(
        "b64encode",
        base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
    )
}

/// Standard base64 with padding, to UTF-8 text.
pub fn b64decode(value: Value) -> Result<String, Error> {
    let text = text_of("b64decode", &value)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim_end_matches(['\n', '\r']).as_bytes())
        .map_err(|_| {
            fail(
                "b64decode",
                "the value is not standard base64 (with padding)",
            )
        })?;
    let decoded = String::from_utf8(bytes)
        .map_err(|_| fail("b64decode", "the decoded bytes are not UTF-8 text"))?;
    capped("b64decode", decoded)
}

/// Compact JSON with keys sorted and `<`, `>`, `&`, U+2028 and U+2029 escaped: the bytes
/// Go's `json.Marshal` (the injector's `toJSON`) writes.
pub fn json(value: Value) -> Result<String, Error> {
    defined(&value)?;
    let json = match value.downcast_object_ref::<SourceData>() {
        Some(source) => serde_json::Value::Object(source.data.clone()),
        None => serde_json::to_value(&value)
            .map_err(|_| fail("json", "the value cannot be written as JSON"))?,
    };
    let mut out = String::new();
    write_json(&json, &mut out)?;
    let mut json = json;
    super::source::zeroize_json(&mut json);
    Ok(out)
}

fn write_json(value: &serde_json::Value, out: &mut String) -> Result<(), Error> {
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(fail(
            "json",
            &format!("its result is larger than the {MAX_OUTPUT_BYTES}-byte limit"),
        ));
    }
    match value {
        serde_json::Value::Null => out.push_str("null"),
        serde_json::Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        serde_json::Value::Number(n) => out.push_str(&n.to_string()),
        serde_json::Value::String(s) => write_json_string(s, out),
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out)?;
            }
            out.push(']');
        }
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                write_json(&map[key], out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_json_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&') => {
                let b = c as usize;
                out.push_str("\\u00");
                out.push(HEX[b >> 4] as char);
                out.push(HEX[b & 0xf] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Leading and trailing whitespace removed.
pub fn trim(value: Value) -> Result<String, Error> {
    Ok(text_of("trim", &value)?.trim().to_string())
}

/// The items of a list as text, `sep` between them (none by default).
pub fn join(value: Value, sep: Option<String>) -> Result<String, Error> {
    defined(&value)?;
    if value.kind() != ValueKind::Seq {
        return Err(fail(
            "join",
            &format!("it takes a list, not a {}", value.kind()),
        ));
    }
    let sep = sep.unwrap_or_default();
    let mut out = String::new();
    let items = value
        .try_iter()
        .map_err(|_| fail("join", "the list cannot be read"))?;
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(&sep);
        }
        out.push_str(&text_of("join", &item)?);
        if out.len() > MAX_OUTPUT_BYTES {
            return Err(fail(
                "join",
                &format!("its result is larger than the {MAX_OUTPUT_BYTES}-byte limit"),
            ));
        }
    }
    Ok(out)
}

/// The `[key, value]` pairs of a map, by key (the order Go's `range` gives).
pub fn items(value: Value) -> Result<Value, Error> {
    defined(&value)?;
    if value.kind() != ValueKind::Map {
        return Err(fail(
            "items",
            &format!("it takes a map, not a {}", value.kind()),
        ));
    }
    let mut keys: Vec<Value> = value
        .try_iter()
        .map_err(|_| fail("items", "the map cannot be read"))?
        .collect();
    keys.sort_by(|a, b| a.as_str().cmp(&b.as_str()).then_with(|| a.cmp(b)));
    let mut pairs = Vec::with_capacity(keys.len());
    for key in keys {
        let item = value
            .get_item(&key)
            .map_err(|_| fail("items", "the map cannot be read"))?;
        pairs.push(Value::from(vec![key, item]));
    }
    Ok(Value::from(pairs))
}
