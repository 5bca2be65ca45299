//! One structured (logfmt) line per step on stderr. Callers pass names, paths and counts,
//! never a secret value.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Instant, SystemTime};

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

/// Writes `ts=… level=… component=… step=… msg=… key=value…` lines to stderr.
#[derive(Debug, Clone)]
pub struct Log {
    component: &'static str,
    start: Instant,
}

impl Log {
    pub fn new(component: &'static str) -> Log {
        Log {
            component,
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
}
