//! The front-end in front of minijinja: finds the `${ }`, `{% %}` and `{# #}` regions of
//! a template, turns each `$${` into an expression printing `${` (minijinja has no escape
//! for its own delimiter), and holds every expression to the subset templates allow:
//! known aliases, known filters and tests, `if`/`for` statements, no calls, no list or
//! map literals, no arithmetic. minijinja then parses the result (its syntax errors are
//! mapped back onto the original text) and evaluates it.
//!
//! The subset is what keeps evaluation bounded without a memory hook in the engine:
//! with no `set`, macros, literals that repeat or arithmetic, the only values are the
//! sources' data, string literals, and what the filters make (each filter caps its
//! output), joined by `~`.

use super::TemplateError;

/// Filters a template may name (implemented in `super::filters`).
pub const FILTERS: [&str; 7] = [
    "urlencode",
    "b64encode",
    "b64decode",
    "json",
    "trim",
    "join",
    "items",
];

/// Tests a template may name after `is`.
pub const TESTS: [&str; 3] = ["defined", "undefined", "none"];

const STATEMENTS: &str = "statements are `if`/`elif`/`else`/`endif` and `for`/`endfor`";

/// Words of the expression language that are not names of values.
const KEYWORDS: [&str; 13] = [
    "and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None",
];

/// What the scan found, and minijinja's source.
#[derive(Debug, Clone, Default)]
pub struct Scanned {
    /// The text with each `$${` written as an expression printing `${`.
    pub source: String,
    /// (offset in `source`, bytes added there): where the rewriting shifted the text.
    pub shifts: Vec<(usize, usize)>,
    /// Each `alias.key` / `alias["key"]`, in order of appearance, without repeats, but
    /// for keys the template tests with `is defined` / `is undefined` (it expects a
    /// source that may lack them).
    pub keys: Vec<(String, String)>,
    /// The aliases the template reads, in order of appearance, without repeats.
    pub aliases: Vec<String>,
}

impl Scanned {
    /// The offset in the original text of an offset in `source`.
    pub fn original_offset(&self, offset: usize) -> usize {
        let mut shift = 0;
        for &(at, added) in &self.shifts {
            if at < offset {
                shift += added.min(offset - at);
            }
        }
        offset - shift
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Number,
    Punct(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    offset: usize,
}

/// The literal `${`, as minijinja reads it inside this project's delimiters.
const LITERAL_OPEN: &str = "${\"${\"}";

pub fn scan(text: &str, aliases: &[&str]) -> Result<Scanned, Vec<TemplateError>> {
    let mut out = Scanned {
        source: String::with_capacity(text.len() + 16),
        ..Scanned::default()
    };
    let mut errors = Vec::new();
    let mut optional = Vec::new();
    let mut checker = Checker {
        aliases,
        bound: Vec::new(),
        errors: &mut errors,
        text,
        keys: &mut out.keys,
        optional: &mut optional,
        used: &mut out.aliases,
    };
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut copied = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.starts_with(b"$${") {
            out.source.push_str(&text[copied..at]);
            let added = LITERAL_OPEN.len() - 3;
            out.shifts.push((out.source.len(), added));
            out.source.push_str(LITERAL_OPEN);
            at += 3;
            copied = at;
        } else if rest.starts_with(b"${") {
            match region(text, at, Region::Expression) {
                Ok((end, tokens)) => {
                    checker.expression(&tokens, at);
                    at = end;
                }
                Err(e) => {
                    errors.push(e);
                    break;
                }
            }
        } else if rest.starts_with(b"{%") {
            match region(text, at, Region::Statement) {
                Ok((end, tokens)) => {
                    checker.statement(&tokens, at);
                    at = end;
                }
                Err(e) => {
                    errors.push(e);
                    break;
                }
            }
        } else if rest.starts_with(b"{#") {
            match text[at + 2..].find("#}") {
                Some(i) => at += 2 + i + 2,
                None => {
                    errors.push(error_at(text, at, "a comment `{#` is not closed with `#}`"));
                    break;
                }
            }
        } else {
            at += 1;
        }
    }
    out.source.push_str(&text[copied..]);
    out.keys.retain(|k| !optional.contains(k));
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

pub fn error_at(text: &str, offset: usize, message: impl Into<String>) -> TemplateError {
    let offset = offset.min(text.len());
    let offset = (0..=offset)
        .rev()
        .find(|&o| text.is_char_boundary(o))
        .unwrap_or(0);
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    TemplateError {
        offset,
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        message: message.into(),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Region {
    Expression,
    Statement,
}

/// The tokens of the region opening at `start`, and the offset after its end delimiter.
fn region(text: &str, start: usize, kind: Region) -> Result<(usize, Vec<Token>), TemplateError> {
    let bytes = text.as_bytes();
    let mut at = start + 2;
    if matches!(bytes.get(at), Some(b'-'))
        || (kind == Region::Statement && bytes.get(at) == Some(&b'+'))
    {
        at += 1;
    }
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    let (what, close) = match kind {
        Region::Expression => ("an expression `${`", "`}`"),
        Region::Statement => ("a statement `{%`", "`%}`"),
    };
    loop {
        while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        let rest = &bytes[at.min(bytes.len())..];
        if rest.is_empty() {
            return Err(error_at(
                text,
                start,
                format!("{what} is not closed with {close}"),
            ));
        }
        let end_len = match kind {
            Region::Expression if depth == 0 => {
                if rest.starts_with(b"}") {
                    Some(1)
                } else if rest.starts_with(b"-}") {
                    Some(2)
                } else {
                    None
                }
            }
            Region::Statement if depth == 0 => {
                if rest.starts_with(b"%}") {
                    Some(2)
                } else if rest.starts_with(b"-%}") || rest.starts_with(b"+%}") {
                    Some(3)
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(n) = end_len {
            return Ok((at + n, tokens));
        }
        let c = rest[0];
        let offset = at;
        let tok = if c.is_ascii_alphabetic() || c == b'_' {
            let n = rest
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            at += n;
            Tok::Ident(text[offset..at].to_string())
        } else if c.is_ascii_digit() {
            let n = rest
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'.')
                .count();
            at += n;
            Tok::Number
        } else if c == b'"' || c == b'\'' {
            let (value, len) = string_literal(&text[at..])
                .ok_or_else(|| error_at(text, offset, "a string is not closed with its quote"))?;
            at += len;
            Tok::Str(value)
        } else {
            let two = rest.get(..2).and_then(|b| std::str::from_utf8(b).ok());
            let punct = match two {
                Some(p @ ("==" | "!=" | "<=" | ">=")) => Some(p),
                _ => None,
            };
            let punct: &'static str = match punct.or_else(|| std::str::from_utf8(&rest[..1]).ok()) {
                Some("==") => "==",
                Some("!=") => "!=",
                Some("<=") => "<=",
                Some(">=") => ">=",
                Some("<") => "<",
                Some(">") => ">",
                Some(".") => ".",
                Some(",") => ",",
                Some("|") => "|",
                Some("~") => "~",
                Some("(") => "(",
                Some(")") => ")",
                Some("[") => "[",
                Some("]") => "]",
                _ => {
                    if let (
                        Region::Statement,
                        Some(Token {
                            tok: Tok::Ident(w),
                            offset,
                        }),
                    ) = (kind, tokens.first())
                    {
                        if !matches!(
                            w.as_str(),
                            "if" | "elif" | "else" | "endif" | "for" | "endfor"
                        ) {
                            return Err(error_at(
                                text,
                                *offset,
                                format!(
                                    "`{{% {w} %}}` is not available in templates: {STATEMENTS}"
                                ),
                            ));
                        }
                    }
                    let ch = text[at..].chars().next().unwrap_or('?');
                    let why = match ch {
                        '+' | '-' | '*' | '/' | '%' => "templates have no arithmetic",
                        '{' | '}' | ':' => "templates have no map literals or slices",
                        '=' => "templates cannot assign (`set`) or pass named arguments",
                        _ => "it is not part of the template language",
                    };
                    return Err(error_at(
                        text,
                        offset,
                        format!("`{ch}` inside {what}: {why}"),
                    ));
                }
            };
            match punct {
                "(" | "[" => depth += 1,
                ")" | "]" => depth = depth.saturating_sub(1),
                _ => {}
            }
            at += punct.len();
            Tok::Punct(punct)
        };
        tokens.push(Token { tok, offset });
    }
}

/// A quoted string at the start of `s`: its value (with `\` escapes read as minijinja
/// reads the common ones) and its length as written.
fn string_literal(s: &str) -> Option<(String, usize)> {
    let quote = s.chars().next()?;
    let mut value = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, e) = chars.next()?;
                value.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
            }
            c if c == quote => return Some((value, i + 1)),
            c => value.push(c),
        }
    }
    None
}

struct Checker<'a> {
    aliases: &'a [&'a str],
    /// Names bound by the enclosing `for` statements, innermost last (one entry per `for`).
    bound: Vec<Vec<String>>,
    errors: &'a mut Vec<TemplateError>,
    text: &'a str,
    keys: &'a mut Vec<(String, String)>,
    /// Keys tested with `is defined` / `is undefined`.
    optional: &'a mut Vec<(String, String)>,
    used: &'a mut Vec<String>,
}

impl Checker<'_> {
    fn fail(&mut self, offset: usize, message: String) {
        self.errors.push(error_at(self.text, offset, message));
    }

    fn statement(&mut self, tokens: &[Token], start: usize) {
        let Some(first) = tokens.first() else {
            self.fail(start, format!("an empty statement: {STATEMENTS}"));
            return;
        };
        let word = match &first.tok {
            Tok::Ident(w) => w.as_str(),
            _ => "",
        };
        match word {
            "if" | "elif" => self.expression(&tokens[1..], first.offset),
            "else" | "endif" => self.nothing_after(word, &tokens[1..]),
            "endfor" => {
                self.bound.pop();
                self.nothing_after(word, &tokens[1..]);
            }
            "for" => {
                let mut names = Vec::new();
                let mut i = 1;
                while let Some(Token {
                    tok: Tok::Ident(name),
                    ..
                }) = tokens.get(i)
                {
                    if name == "in" {
                        break;
                    }
                    names.push(name.clone());
                    i += 1;
                    if tokens.get(i).is_some_and(|t| t.tok == Tok::Punct(",")) {
                        i += 1;
                    }
                }
                // The iterable is read where the names are not bound yet.
                let rest = tokens.get(i + 1..).unwrap_or_default();
                let cut = rest
                    .iter()
                    .position(|t| matches!(&t.tok, Tok::Ident(w) if w == "if"))
                    .unwrap_or(rest.len());
                self.expression(&rest[..cut], first.offset);
                names.push("loop".into());
                self.bound.push(names);
                if cut < rest.len() {
                    self.expression(&rest[cut + 1..], first.offset);
                }
            }
            "" => self.fail(
                first.offset,
                format!("a statement starts with a word: {STATEMENTS}"),
            ),
            other => self.fail(
                first.offset,
                format!("`{{% {other} %}}` is not available in templates: {STATEMENTS}"),
            ),
        }
    }

    fn nothing_after(&mut self, word: &str, rest: &[Token]) {
        if let Some(t) = rest.first() {
            self.fail(t.offset, format!("`{word}` takes nothing after it"));
        }
    }

    fn is_bound(&self, name: &str) -> bool {
        self.bound
            .iter()
            .any(|names| names.iter().any(|n| n == name))
    }

    fn expression(&mut self, tokens: &[Token], start: usize) {
        if tokens.is_empty() {
            self.fail(start, "an empty expression: write `${ alias.key }`".into());
            return;
        }
        for (i, t) in tokens.iter().enumerate() {
            let prev = i.checked_sub(1).map(|p| &tokens[p].tok);
            let prev2 = i.checked_sub(2).map(|p| &tokens[p].tok);
            let after_value = matches!(
                prev,
                Some(Tok::Ident(_) | Tok::Str(_) | Tok::Number | Tok::Punct(")" | "]"))
            ) && !matches!(prev, Some(Tok::Ident(w)) if KEYWORDS.contains(&w.as_str()));
            match &t.tok {
                Tok::Ident(name) => {
                    if prev == Some(&Tok::Punct(".")) {
                        continue;
                    }
                    if prev == Some(&Tok::Punct("|")) {
                        if !FILTERS.contains(&name.as_str()) {
                            self.fail(
                                t.offset,
                                format!(
                                    "unknown filter `{name}`; the filters are {}",
                                    list(&FILTERS)
                                ),
                            );
                        }
                        continue;
                    }
                    let after_is = matches!(prev, Some(Tok::Ident(w)) if w == "is")
                        || (matches!(prev, Some(Tok::Ident(w)) if w == "not")
                            && matches!(prev2, Some(Tok::Ident(w)) if w == "is"));
                    // `is not <test>`: `not` is part of the test, not its name.
                    if after_is && name != "not" {
                        if !TESTS.contains(&name.as_str()) {
                            self.fail(
                                t.offset,
                                format!("unknown test `{name}`; the tests are {}", list(&TESTS)),
                            );
                        }
                        continue;
                    }
                    if KEYWORDS.contains(&name.as_str()) || self.is_bound(name) {
                        continue;
                    }
                    if !self.aliases.contains(&name.as_str()) {
                        let known = if self.aliases.is_empty() {
                            "the config names no sources".to_string()
                        } else {
                            format!("the sources are {}", list(self.aliases))
                        };
                        self.fail(t.offset, format!("unknown alias `{name}`; {known}"));
                        continue;
                    }
                    if !self.used.contains(name) {
                        self.used.push(name.clone());
                    }
                    // The key, and the index of the token after `alias.key` / `alias["key"]`.
                    let key = match (tokens.get(i + 1), tokens.get(i + 2), tokens.get(i + 3)) {
                        (Some(dot), Some(Token { tok: Tok::Ident(k), .. }), _)
                            if dot.tok == Tok::Punct(".") =>
                        {
                            Some((k.clone(), i + 3))
                        }
                        (Some(open), Some(Token { tok: Tok::Str(k), .. }), Some(close))
                            if open.tok == Tok::Punct("[") && close.tok == Tok::Punct("]") =>
                        {
                            Some((k.clone(), i + 4))
                        }
                        _ => None,
                    };
                    if let Some((key, after)) = key {
                        let word = |at: usize| match tokens.get(at) {
                            Some(Token {
                                tok: Tok::Ident(w), ..
                            }) => w.as_str(),
                            _ => "",
                        };
                        let test = if word(after + 1) == "not" { after + 2 } else { after + 1 };
                        let pair = (name.clone(), key);
                        if word(after) == "is" && matches!(word(test), "defined" | "undefined") {
                            if !self.optional.contains(&pair) {
                                self.optional.push(pair);
                            }
                        } else if !self.keys.contains(&pair) {
                            self.keys.push(pair);
                        }
                    }
                }
                Tok::Punct("(") => {
                    let after_filter = matches!(prev, Some(Tok::Ident(_)))
                        && prev2 == Some(&Tok::Punct("|"));
                    if after_value && !after_filter {
                        self.fail(
                            t.offset,
                            "templates have no functions or methods: only filters take arguments (`| join(\", \")`)".into(),
                        );
                    }
                }
                Tok::Punct("[") if !after_value => self.fail(
                    t.offset,
                    "templates have no list literals: `[` only selects a key (`alias[\"key-name\"]`)".into(),
                ),
                Tok::Punct(".") if !after_value => {
                    self.fail(t.offset, "`.` selects a key of a value (`alias.key`)".into())
                }
                _ => {}
            }
        }
    }
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
