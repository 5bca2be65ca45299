//! The one duration grammar of the project: Go's `time.ParseDuration`, with the two
//! variants the project needs, and the limits of the settings that take a duration.
//!
//! Go's grammar: an optional sign, then one or more decimal numbers, each with an optional
//! fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`): `300ms`, `1.5h`,
//! `2h45m`; `0` alone needs no unit. A value is a whole number of nanoseconds within Go's
//! range (about 292 years): anything longer is an error, never a wrap or a panic.

use std::fmt;

/// Which spellings besides Go's are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Exactly Go's `time.ParseDuration`.
    Go,
    /// Go's, plus a bare number of seconds (`90`): this project's settings (`refresh`,
    /// `agent.timeout`) have always accepted one.
    Seconds,
    /// Vault's TTL fields (`parseutil.ParseDurationSecond`): empty is zero, a bare signed
    /// integer is seconds, `<n>d` is days, anything else is Go's.
    VaultTtl,
}

/// A parsed duration: nanoseconds, signed, in Go's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(i64);

const NANOS_PER_SECOND: u64 = 1_000_000_000;

impl GoDuration {
    pub const ZERO: GoDuration = GoDuration(0);

    pub fn from_nanos(nanos: i64) -> GoDuration {
        GoDuration(nanos)
    }

    pub fn nanos(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SECOND as f64
    }

    /// The duration as a whole number of seconds: `None` when negative or with a part of a
    /// second.
    pub fn whole_seconds(self) -> Option<u64> {
        let nanos = u64::try_from(self.0).ok()?;
        (nanos % NANOS_PER_SECOND == 0).then_some(nanos / NANOS_PER_SECOND)
    }
}

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    Empty,
    /// A number without its unit, e.g. `90` where Go's grammar needs `90s`.
    MissingUnit,
    UnknownUnit(String),
    /// Not a number and a unit at all.
    Syntax,
    /// Longer than Go's range (about 292 years).
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    pub text: String,
    pub kind: ErrorKind,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = &self.text;
        match &self.kind {
            ErrorKind::Overflow => write!(
                f,
                "`{text}` is too long a duration (the longest is about 292 years)"
            ),
            ErrorKind::UnknownUnit(unit) => write!(
                f,
                "`{text}` is not a duration: unknown unit `{unit}` (use h, m, s, ms, us or ns)"
            ),
            ErrorKind::MissingUnit => write!(
                f,
                "`{text}` is not a duration: a number needs its unit (examples: 90s, 2m, 1h30m)"
            ),
            ErrorKind::Empty | ErrorKind::Syntax => write!(
                f,
                "`{text}` is not a duration (examples: 90, 90s, 2m, 1h30m)"
            ),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses `text` (surrounding blanks ignored) in the given dialect.
pub fn parse(text: &str, dialect: Dialect) -> Result<GoDuration, DurationError> {
    let error = |kind| DurationError {
        text: text.to_owned(),
        kind,
    };
    let trimmed = text.trim();
    match dialect {
        Dialect::Go => {}
        Dialect::Seconds => {
            if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
                return seconds(trimmed, 1).ok_or_else(|| error(ErrorKind::Overflow));
            }
        }
        Dialect::VaultTtl => {
            if trimmed.is_empty() {
                return Ok(GoDuration::ZERO);
            }
            if is_signed_integer(trimmed) {
                return seconds(trimmed, 1).ok_or_else(|| error(ErrorKind::Overflow));
            }
            if let Some(days) = trimmed.strip_suffix('d') {
                if !is_signed_integer(days) {
                    return Err(error(ErrorKind::Syntax));
                }
                return seconds(days, 86_400).ok_or_else(|| error(ErrorKind::Overflow));
            }
        }
    }
    parse_go(trimmed).map_err(error)
}

fn is_signed_integer(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A signed integer text times `unit` seconds, if it fits.
fn seconds(integer: &str, unit: i64) -> Option<GoDuration> {
    let n: i64 = integer.parse().ok()?;
    n.checked_mul(unit)?
        .checked_mul(NANOS_PER_SECOND as i64)
        .map(GoDuration)
}

/// Go's `time.ParseDuration`, on exact integers.
fn parse_go(s: &str) -> Result<GoDuration, ErrorKind> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(GoDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(if s.is_empty() {
            ErrorKind::Empty
        } else {
            ErrorKind::Syntax
        });
    }
    // Up to 2^63 nanoseconds: the magnitude of Go's most negative duration.
    let limit: u128 = 1 << 63;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after) = rest.split_at(int_len);
        let (frac_digits, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(len)
            }
            None => ("", after),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(ErrorKind::Syntax);
        }
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(ErrorKind::MissingUnit),
            other => return Err(ErrorKind::UnknownUnit(other.to_owned())),
        };
        // Leading zeros never overflow; more than 20 significant digits always do.
        let int_digits = int_digits.trim_start_matches('0');
        if int_digits.len() > 20 {
            return Err(ErrorKind::Overflow);
        }
        let int: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| ErrorKind::Overflow)?
        };
        // Digits past the 19th add less than a nanosecond even to hours: dropped, as Go
        // drops them.
        let frac_digits = &frac_digits[..frac_digits.len().min(19)];
        let frac: u128 = if frac_digits.is_empty() {
            0
        } else {
            frac_digits.parse().map_err(|_| ErrorKind::Syntax)?
        };
        let frac_nanos = frac * scale / 10u128.pow(frac_digits.len() as u32);
        total = int
            .checked_mul(scale)
            .and_then(|v| v.checked_add(frac_nanos))
            .and_then(|v| v.checked_add(total))
            .filter(|v| *v <= limit)
            .ok_or(ErrorKind::Overflow)?;
        rest = after;
    }
    let nanos = if negative {
        // -(2^63) is Go's minimum; it fits only as a negative number.
        0i128 - total as i128
    } else {
        total as i128
    };
    i64::try_from(nanos)
        .map(GoDuration)
        .map_err(|_| ErrorKind::Overflow)
}

/// Go's `Duration.String()`: `1h30m0s`, `1.5s`, `300ms`, `0s`; [`parse`] reads it back
/// to the same value.
impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = self.0.unsigned_abs();
        if self.0 < 0 {
            f.write_str("-")?;
        }
        if u == 0 {
            return f.write_str("0s");
        }
        if u < NANOS_PER_SECOND {
            let (unit, digits) = if u < 1_000 {
                ("ns", 0)
            } else if u < 1_000_000 {
                ("µs", 3)
            } else {
                ("ms", 6)
            };
            f.write_str(&fraction(u, digits))?;
            return f.write_str(unit);
        }
        let (seconds, minutes, hours) = (
            u % 60_000_000_000,
            u / 60_000_000_000 % 60,
            u / 3_600_000_000_000,
        );
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if hours > 0 || minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        write!(f, "{}s", fraction(seconds, 9))
    }
}

/// `value / 10^digits` in decimal, without trailing zeros in the fraction.
fn fraction(value: u64, digits: u32) -> String {
    let pow = 10u64.pow(digits);
    let (int, frac) = (value / pow, value % pow);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:0width$}", width = digits as usize);
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// Live mode's longest refresh interval (a day): a longer one is refused with its location.
pub const MAX_REFRESH_SECONDS: u64 = 24 * 3600;

/// A live-mode refresh interval in whole seconds, 1 s to [`MAX_REFRESH_SECONDS`]; `None`
/// for `off` or zero in any spelling (`0`, `00`, `0s`, `0h0m`).
pub fn parse_refresh(text: &str) -> Result<Option<u64>, String> {
    let trimmed = text.trim();
    if trimmed == "off" {
        return Ok(None);
    }
    let parsed = parse(trimmed, Dialect::Seconds).map_err(|e| e.to_string())?;
    if parsed.is_zero() {
        return Ok(None);
    }
    if parsed.is_negative() {
        return Err(format!("`{trimmed}` is a negative interval"));
    }
    let Some(seconds) = parsed.whole_seconds() else {
        return Err(format!(
            "`{trimmed}` is not a whole number of seconds (refresh intervals are counted in seconds)"
        ));
    };
    if seconds > MAX_REFRESH_SECONDS {
        return Err(format!(
            "`{trimmed}` is longer than the longest refresh interval, 24h"
        ));
    }
    Ok(Some(seconds))
}

/// What a refresh value that [`parse_refresh`] accepts says that its author may not mean,
/// for lint: a number without a unit, a zero that is not `off`, a sign.
pub fn refresh_oddity(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let refresh = parse_refresh(trimmed).ok()?;
    if refresh.is_none() && !matches!(trimmed, "off" | "0") {
        return Some(format!(
            "`{trimmed}` is zero, which turns live mode off for this pod"
        ));
    }
    if trimmed.starts_with(['+', '-']) {
        return Some(format!("`{trimmed}` has a sign"));
    }
    let seconds = refresh?;
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!(
            "`{trimmed}` has no unit and is read as {seconds} seconds"
        ));
    }
    None
}

/// A duration setting in whole seconds (`agent.timeout`, `SECRETSTORE_AGENT_TIMEOUT`): Go's
/// grammar or a bare number of seconds, never negative or with a part of a second.
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    let parsed = parse(text, Dialect::Seconds).map_err(|e| e.to_string())?;
    let trimmed = text.trim();
    if parsed.is_negative() {
        return Err(format!("`{trimmed}` is a negative duration"));
    }
    parsed
        .whole_seconds()
        .ok_or_else(|| format!("`{trimmed}` is not a whole number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(text: &str) -> Result<i64, ErrorKind> {
        parse(text, Dialect::Go)
            .map(GoDuration::nanos)
            .map_err(|e| e.kind)
    }

    #[test]
    fn go_grammar() {
        const S: i64 = 1_000_000_000;
        assert_eq!(go("0"), Ok(0));
        assert_eq!(go("-0"), Ok(0));
        assert_eq!(go("1h30m"), Ok(5400 * S));
        assert_eq!(go("1.5s"), Ok(S + S / 2));
        assert_eq!(go(".5s"), Ok(S / 2));
        assert_eq!(go("5.s"), Ok(5 * S));
        assert_eq!(go("-1.5h"), Ok(-5400 * S));
        assert_eq!(go("1µs1μs1us1ns"), Ok(3001));
        assert_eq!(go("9223372036854775807ns"), Ok(i64::MAX));
        assert_eq!(go("-9223372036854775808ns"), Ok(i64::MIN));
        assert_eq!(go("9223372036854775808ns"), Err(ErrorKind::Overflow));
        assert_eq!(go("9999999999999999999h"), Err(ErrorKind::Overflow));
        assert_eq!(go("18446744073709551615s"), Err(ErrorKind::Overflow));
        assert_eq!(go("0.0000000000000000000001h"), Ok(0));
        assert_eq!(go("000000000000000000000000001s"), Ok(S));
        assert_eq!(go("90"), Err(ErrorKind::MissingUnit));
        assert_eq!(go("1h30"), Err(ErrorKind::MissingUnit));
        assert_eq!(go("5d"), Err(ErrorKind::UnknownUnit("d".into())));
        assert_eq!(go(""), Err(ErrorKind::Empty));
        for bad in ["-", ".s", "h", "1..5s", "soon", "1 h", "--1s"] {
            assert!(go(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vault_ttls() {
        let ttl = |t| parse(t, Dialect::VaultTtl).map(|d| d.as_secs_f64());
        assert_eq!(ttl("90"), Ok(90.0));
        assert_eq!(ttl("-90"), Ok(-90.0));
        assert_eq!(ttl("2d"), Ok(172_800.0));
        assert_eq!(ttl(""), Ok(0.0));
        assert_eq!(ttl("1.5s"), Ok(1.5));
        assert!(ttl("1.5d").is_err());
        assert!(ttl("99999999999999d").is_err());
    }

    #[test]
    fn refresh_values() {
        for off in ["off", "0", "00", "0s", "0h0m", " 0 ", "-0s", "0.0s"] {
            assert_eq!(parse_refresh(off), Ok(None), "{off}");
        }
        assert_eq!(parse_refresh("45"), Ok(Some(45)));
        assert_eq!(parse_refresh("1h30m"), Ok(Some(5400)));
        assert_eq!(parse_refresh("1.5m"), Ok(Some(90)));
        assert_eq!(parse_refresh("24h"), Ok(Some(86_400)));
        for bad in [
            "24h0m1s",
            "25h",
            "18446744073709551615",
            "9999999999999999999h",
            "-5s",
            "1.5s",
            "500ms",
            "soon",
        ] {
            assert!(parse_refresh(bad).is_err(), "{bad}");
        }
        assert_eq!(refresh_oddity("5m"), None);
        assert_eq!(refresh_oddity("off"), None);
        assert_eq!(refresh_oddity("0"), None);
        assert!(refresh_oddity("00")
            .unwrap()
            .contains("turns live mode off"));
        assert!(refresh_oddity("0s").is_some());
        assert!(refresh_oddity("45").unwrap().contains("45 seconds"));
        assert!(refresh_oddity("+5m").is_some());
        assert_eq!(refresh_oddity("soon"), None);
    }

    #[test]
    fn go_strings() {
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_500_000_000, "1.5s"),
            (5_400_000_000_000, "1h30m0s"),
            (-60_000_000_000, "-1m0s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ] {
            assert_eq!(GoDuration(nanos).to_string(), text);
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        const DIALECTS: [Dialect; 3] = [Dialect::Go, Dialect::Seconds, Dialect::VaultTtl];

        proptest! {
            /// Any text, in every dialect: a value or an error, never a panic.
            #[test]
            fn any_text_parses_or_is_refused(text in "\\PC{0,40}") {
                for dialect in DIALECTS {
                    let _ = parse(&text, dialect);
                }
                let _ = refresh_oddity(&text);
                if let Ok(Some(seconds)) = parse_refresh(&text) {
                    prop_assert!((1..=MAX_REFRESH_SECONDS).contains(&seconds));
                }
            }

            /// Text made of the grammar's own pieces, where overflow is likeliest.
            #[test]
            fn grammar_like_text_never_panics(
                text in "[-+]?([0-9]{0,25}(\\.[0-9]{0,25})?(h|m|s|ms|us|µs|ns|d|x|)){1,4}"
            ) {
                for dialect in DIALECTS {
                    let _ = parse(&text, dialect);
                }
                let _ = parse_refresh(&text);
                let _ = parse_seconds(&text);
            }

            /// Go's string of any duration reads back to the same duration.
            #[test]
            fn go_strings_round_trip(nanos in any::<i64>()) {
                let d = GoDuration::from_nanos(nanos);
                prop_assert_eq!(parse(&d.to_string(), Dialect::Go), Ok(d));
            }

            /// Whole units read exactly, and past Go's range they are an overflow error.
            #[test]
            fn units_are_exact_and_overflow_is_an_error(n in any::<u64>(), unit in 0usize..6) {
                let (name, nanos): (&str, u128) =
                    [("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
                     ("m", 60_000_000_000), ("h", 3_600_000_000_000)][unit];
                let text = format!("{n}{name}");
                let exact = u128::from(n) * nanos;
                match parse(&text, Dialect::Go) {
                    Ok(d) => prop_assert_eq!(d.nanos() as u128, exact),
                    Err(e) => {
                        prop_assert!(exact > i64::MAX as u128);
                        prop_assert_eq!(e.kind, ErrorKind::Overflow);
                    }
                }
                prop_assert_eq!(parse(&format!("{n}"), Dialect::Seconds).is_ok(),
                    u128::from(n) * 1_000_000_000 <= i64::MAX as u128);
            }
        }
    }
}
