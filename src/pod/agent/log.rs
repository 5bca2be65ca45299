//! One structured line per step on stderr, logfmt or (with `SECRETSTORE_LOG_FORMAT=json`,
//! which render sets from `agent.logFormat`) one JSON object: the one logger of the agent,
//! `exec` and its supervisor. Callers pass names, paths and counts, never a secret value.
//! Writing never fails loudly: a closed stderr must not stop the agent or the supervisor.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Instant, SystemTime};

use crate::pod::agent_spec::LOG_FORMAT_ENV;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `ts=… level=… component=… step=… msg=… key=value…`
    #[default]
    Logfmt,
    /// `{"ts":…,"level":…,"component":…,"step":…,"msg":…,"key":"value",…}`
    Json,
}

impl Format {
    /// The format [`LOG_FORMAT_ENV`] names: `json`, else logfmt.
    pub fn from_env() -> Format {
        match std::env::var(LOG_FORMAT_ENV).as_deref() {
            Ok("json") => Format::Json,
            _ => Format::Logfmt,
        }
    }
}

/// Writes one line per call to stderr.
#[derive(Debug, Clone)]
pub struct Log {
    component: &'static str,
    format: Format,
    start: Instant,
}

impl Log {
    /// A logger in the format the environment names.
    pub fn new(component: &'static str) -> Log {
        Log::with_format(component, Format::from_env())
    }

    pub fn with_format(component: &'static str, format: Format) -> Log {
        Log {
            component,
            format,
            start: Instant::now(),
        }
    }

    pub fn elapsed_ms(&self) -> u128 {
        self.start.elapsed().as_millis()
    }

    pub fn info(&self, step: &str, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
        self.line(Level::Info, step, msg, fields);
    }

    pub fn warn(&self, step: &str, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
        self.line(Level::Warn, step, msg, fields);
    }

    pub fn error(&self, step: &str, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
        self.line(Level::Error, step, msg, fields);
    }

    pub fn line(
        &self,
        level: Level,
        step: &str,
        msg: &str,
        fields: &[(&str, &dyn std::fmt::Display)],
    ) {
        let text = self.format(SystemTime::now(), level, step, msg, fields);
        // A failed write to stderr has nowhere better to go.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    fn format(
        &self,
        now: SystemTime,
        level: Level,
        step: &str,
        msg: &str,
        fields: &[(&str, &dyn std::fmt::Display)],
    ) -> String {
        match self.format {
            Format::Logfmt => self.logfmt(now, level, step, msg, fields),
            Format::Json => self.json(now, level, step, msg, fields),
        }
    }

    /// The same fields as [`Log::logfmt`], values as strings, `elapsed_ms` a number.
    fn json(
        &self,
        now: SystemTime,
        level: Level,
        step: &str,
        msg: &str,
        fields: &[(&str, &dyn std::fmt::Display)],
    ) -> String {
        let mut object = serde_json::Map::new();
        object.insert("ts".into(), rfc3339_utc(now).into());
        object.insert("level".into(), level.as_str().into());
        object.insert("component".into(), self.component.into());
        object.insert("step".into(), step.into());
        object.insert("msg".into(), msg.into());
        for (key, value) in fields {
            object.insert((*key).into(), value.to_string().into());
        }
        let elapsed = u64::try_from(self.elapsed_ms()).unwrap_or(u64::MAX);
        object.insert("elapsed_ms".into(), elapsed.into());
        let mut out = serde_json::Value::Object(object).to_string();
        out.push('\n');
        out
    }

    fn logfmt(
        &self,
        now: SystemTime,
        level: Level,
        step: &str,
        msg: &str,
        fields: &[(&str, &dyn std::fmt::Display)],
    ) -> String {
        let mut out = String::with_capacity(160);
        let _ = write!(out, "ts={} level={}", rfc3339_utc(now), level.as_str());
        push_field(&mut out, "component", self.component);
        push_field(&mut out, "step", step);
        push_field(&mut out, "msg", msg);
        for (key, value) in fields {
            push_field(&mut out, key, &value.to_string());
        }
        push_field(&mut out, "elapsed_ms", &self.elapsed_ms().to_string());
        out.push('\n');
        out
    }
}

fn push_field(out: &mut String, key: &str, value: &str) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if bare {
        out.push_str(value);
    } else {
        out.push('"');
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:04x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// `2026-01-02T03:04:05.678Z`: RFC 3339 in UTC to the millisecond (jiff).
fn rfc3339_utc(t: SystemTime) -> String {
    let t = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{t:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_logfmt_with_quoting() {
        let log = Log::new("agent");
        let t = UNIX_EPOCH + Duration::from_millis(1_767_323_045_678);
        let line = log.format(
            t,
            Level::Warn,
            "read",
            "retrying",
            &[
                ("path", &"secret/a b"),
                ("attempt", &2),
                ("error", &"say \"hi\"\n"),
            ],
        );
        assert!(
            line.starts_with(
                "ts=2026-01-02T03:04:05.678Z level=warn component=agent step=read msg=retrying path=\"secret/a b\" attempt=2 error=\"say \\\"hi\\\"\\n\" elapsed_ms="
            ),
            "{line}"
        );
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn utc_times_to_the_millisecond() {
        let at = |millis| rfc3339_utc(UNIX_EPOCH + Duration::from_millis(millis));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_767_225_599_999), "2025-12-31T23:59:59.999Z");
    }

    #[test]
    fn formats_json_with_the_same_fields() {
        let log = Log::with_format("exec", Format::Json);
        let t = UNIX_EPOCH + Duration::from_millis(1_767_323_045_678);
        let line = log.format(
            t,
            Level::Info,
            "notify",
            "files changed",
            &[("files", &"/etc/a \"b\""), ("pid", &42)],
        );
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["ts"], "2026-01-02T03:04:05.678Z");
        assert_eq!(value["level"], "info");
        assert_eq!(value["component"], "exec");
        assert_eq!(value["step"], "notify");
        assert_eq!(value["msg"], "files changed");
        assert_eq!(value["files"], "/etc/a \"b\"");
        assert_eq!(value["pid"], "42");
        assert!(value["elapsed_ms"].is_u64());
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "ts",
                "level",
                "component",
                "step",
                "msg",
                "files",
                "pid",
                "elapsed_ms"
            ]
        );
    }
}
