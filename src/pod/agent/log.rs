//! One structured (logfmt) line per step on stderr. Callers pass names, paths and counts,
//! never a secret value.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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

/// `2026-01-02T03:04:05.678Z`, without a date crate.
fn rfc3339_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }
}
