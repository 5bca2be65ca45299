//! Templates (SPEC 1.4): text in which each `${ expression }` is replaced by a value of
//! the config's sources, `$${` a literal `${`, with `{% if %}` and `{% for %}` statements.
//!
//! Free of I/O and async so that render, lint, check and the agent share it:
//! [`parse`] checks a template against the config's aliases (syntax, unknown aliases,
//! filters and tests, each located in the text), [`Template::referenced_keys`] lists the
//! keys `check` looks for, and [`render`] evaluates it over the sources' data.
//!
//! The engine is minijinja, configured as a sandbox: `${`/`}` delimiters, no loader,
//! none of its builtin filters, tests or functions (only ours, which cannot reach files,
//! env, network, clock or randomness), strict undefined values, fuel for the number of
//! instructions, and output written into a capped buffer. [`scan`] holds templates to a
//! subset that keeps every value bounded (see there).

mod filters;
mod scan;
mod source;

pub use scan::{FILTERS, TESTS};
pub use source::zeroize_json;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde_json::Map;
use source::{MissingSlot, SourceData};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// The largest template text.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// The largest output of one template, and of any value a filter makes.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Instructions one evaluation may run (a loop over a few thousand keys uses a few
/// tens of thousands).
pub const FUEL: u64 = 1_000_000;

/// A problem in a template's text: where (a byte offset, and its 1-based line and
/// column in characters) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// A template that parsed and names only known aliases, filters and tests.
#[derive(Debug, Clone)]
pub struct Template {
    scanned: scan::Scanned,
}

/// The data of each source, by alias (KV v2 data unwrapped).
pub type Sources = BTreeMap<String, Map<String, serde_json::Value>>;

/// Checks `text` against the aliases of its config.
pub fn parse(text: &str, aliases: &[&str]) -> Result<Template, Vec<TemplateError>> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(vec![scan::error_at(
            text,
            0,
            format!("the template is larger than the {MAX_TEMPLATE_BYTES}-byte limit"),
        )]);
    }
    let scanned = scan::scan(text, aliases)?;
    let compiled = environment().and_then(|env| env.template_from_str(&scanned.source).map(|_| ()));
    if let Err(e) = compiled {
        let offset = match (e.range(), e.line()) {
            (Some(range), _) => scanned.original_offset(range.start),
            (None, Some(line)) => text
                .split_inclusive('\n')
                .take(line.saturating_sub(1))
                .map(str::len)
                .sum(),
            (None, None) => 0,
        };
        let message = match e.detail() {
            Some(detail) => format!("syntax error: {detail}"),
            None => format!("syntax error: {}", e.kind()),
        };
        return Err(vec![scan::error_at(text, offset, message)]);
    }
    Ok(Template { scanned })
}

impl Template {
    /// Each `alias.key` and `alias["key"]` the template names (a key a KV source must have),
    /// but for keys it tests with `is defined` / `is undefined`.
    pub fn referenced_keys(&self) -> &[(String, String)] {
        &self.scanned.keys
    }

    /// The aliases the template reads.
    pub fn aliases(&self) -> &[String] {
        &self.scanned.aliases
    }
}

/// Why a render failed; never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The template reads a key its source does not have.
    MissingKey { alias: String, key: String },
    /// The template reads an alias that was given no data.
    MissingSource { alias: String },
    /// The output grew past [`MAX_OUTPUT_BYTES`].
    OutputTooLarge,
    /// The evaluation ran out of fuel (a loop too long).
    TooLong,
    /// Anything else, with the template's line when known.
    Failed {
        line: Option<usize>,
        message: String,
    },
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::MissingKey { alias, key } => {
                write!(f, "source `{alias}` has no key `{key}`")
            }
            RenderError::MissingSource { alias } => write!(f, "source `{alias}` was not read"),
            RenderError::OutputTooLarge => write!(
                f,
                "the template's output is larger than the {MAX_OUTPUT_BYTES}-byte limit"
            ),
            RenderError::TooLong => write!(
                f,
                "the template ran more than {FUEL} instructions (a loop too long)"
            ),
            RenderError::Failed {
                line: Some(line),
                message,
            } => write!(f, "line {line} of the template: {message}"),
            RenderError::Failed {
                line: None,
                message,
            } => f.write_str(message),
        }
    }
}

impl std::error::Error for RenderError {}

/// The template's text with each expression replaced by its value over `sources`.
pub fn render(template: &Template, sources: &Sources) -> Result<Zeroizing<String>, RenderError> {
    if let Some(alias) = template
        .scanned
        .aliases
        .iter()
        .find(|a| !sources.contains_key(*a))
    {
        return Err(RenderError::MissingSource {
            alias: alias.clone(),
        });
    }
    let missing: MissingSlot = Arc::new(Mutex::new(None));
    let failed = |e: minijinja::Error| RenderError::Failed {
        line: e.line(),
        message: format!("syntax error: {}", e.kind()),
    };
    let env = environment().map_err(failed)?;
    let compiled = env
        .template_from_str(&template.scanned.source)
        .map_err(|e| RenderError::Failed {
            line: e.line(),
            message: format!("syntax error: {}", e.kind()),
        })?;
    let context: Vec<(&str, minijinja::Value)> = template
        .scanned
        .aliases
        .iter()
        .filter_map(|alias| {
            let data = sources.get(alias)?;
            Some((
                alias.as_str(),
                minijinja::Value::from_object(SourceData {
                    alias: alias.clone(),
                    data: data.clone(),
                    missing: missing.clone(),
                }),
            ))
        })
        .collect();
    let mut out = CappedBuffer::default();
    let result = compiled.render_captured_to(minijinja::Value::from_pairs(context), &mut out);
    match result {
        Ok(_) => {
            let bytes = std::mem::take(&mut *out.bytes);
            match String::from_utf8(bytes) {
                Ok(text) => Ok(Zeroizing::new(text)),
                Err(e) => {
                    let _ = Zeroizing::new(e.into_bytes());
                    Err(RenderError::Failed {
                        line: None,
                        message: "the output is not UTF-8 text".into(),
                    })
                }
            }
        }
        Err(e) => {
            if out.overflowed {
                return Err(RenderError::OutputTooLarge);
            }
            let line = e.line();
            match e.kind() {
                ErrorKind::UndefinedError => {
                    let known = missing.lock().ok().and_then(|mut m| m.take());
                    Err(match known {
                        Some((alias, key)) => RenderError::MissingKey { alias, key },
                        None => RenderError::Failed {
                            line,
                            message: "a value is undefined (a key of a nested value, or a loop variable out of scope)".into(),
                        },
                    })
                }
                ErrorKind::OutOfFuel => Err(RenderError::TooLong),
                kind => {
                    let ours = e
                        .detail()
                        .filter(|d| d.starts_with(filters::ERROR_PREFIX))
                        .map(str::to_string);
                    Err(RenderError::Failed {
                        line,
                        message: ours.unwrap_or_else(|| kind.to_string()),
                    })
                }
            }
        }
    }
}

/// The sandboxed environment: this project's syntax, filters and tests, nothing else.
fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::empty();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .variable_delimiters("${", "}")
        .block_delimiters("{%", "%}")
        .comment_delimiters("{#", "#}")
        .keep_trailing_newline(true)
        .trim_blocks(false)
        .lstrip_blocks(false)
        .build()?;
    env.set_syntax(syntax);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    env.add_filter("urlencode", filters::urlencode);
    env.add_filter("b64encode", filters::b64encode);
    env.add_filter("b64decode", filters::b64decode);
    env.add_filter("json", filters::json);
    env.add_filter("trim", filters::trim);
    env.add_filter("join", filters::join);
    env.add_filter("items", filters::items);
    env.add_test("defined", |v: minijinja::Value| !v.is_undefined());
    env.add_test("undefined", |v: minijinja::Value| v.is_undefined());
    env.add_test("none", |v: minijinja::Value| v.is_none());
    Ok(env)
}

/// The output, in a buffer that refuses to grow past [`MAX_OUTPUT_BYTES`] and wipes every
/// buffer it leaves behind.
#[derive(Default)]
struct CappedBuffer {
    bytes: Zeroizing<Vec<u8>>,
    overflowed: bool,
}

impl std::io::Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let need = self.bytes.len() + buf.len();
        if need > MAX_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("the output is too large"));
        }
        if need > self.bytes.capacity() {
            let capacity = need
                .max(self.bytes.capacity() * 2)
                .clamp(256, MAX_OUTPUT_BYTES);
            let mut grown = Zeroizing::new(Vec::with_capacity(capacity));
            grown.extend_from_slice(&self.bytes);
            // The old buffer is wiped when it drops here.
            self.bytes = grown;
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sources(pairs: &[(&str, serde_json::Value)]) -> Sources {
        pairs
            .iter()
            .map(|(alias, data)| {
                let serde_json::Value::Object(map) = data.clone() else {
                    panic!("data is a map")
                };
                (alias.to_string(), map)
            })
            .collect()
    }

    fn db() -> Sources {
        sources(&[(
            "db",
            json!({"username": "app", "password": "p@ss: w!rd", "port": 5432,
                   "chain": ["A", "B"], "b64": "aGVsbG8=", "pad": "  x \n",
                   "with-dash": "d", "nested": {"z": "<&>", "a": 1}}),
        )])
    }

    fn run(text: &str) -> Result<String, RenderError> {
        let t = parse(text, &["db"]).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        render(&t, &db()).map(|s| s.to_string())
    }

    fn errors(text: &str) -> Vec<TemplateError> {
        parse(text, &["db"]).expect_err(text)
    }

    #[test]
    fn output_is_the_text_with_expressions_replaced() {
        assert_eq!(
            run("postgres://${ db.username }:${ db.password | urlencode }@db:${db.port}/shop\n")
                .unwrap(),
            "postgres://app:p%40ss%3A%20w%21rd@db:5432/shop\n"
        );
        assert_eq!(run("a\n\n").unwrap(), "a\n\n", "no newline removed");
        assert_eq!(run("").unwrap(), "");
        assert_eq!(run("x${ db[\"with-dash\"] }y").unwrap(), "xdy");
        assert_eq!(
            run("$${ db.username } ${ db.username }").unwrap(),
            "${ db.username } app"
        );
        assert_eq!(run("$$${db.username}").unwrap(), "$${db.username}");
        assert_eq!(run("cost: $5 {not} }").unwrap(), "cost: $5 {not} }");
        assert_eq!(run("${ \"}\" }").unwrap(), "}");
    }

    #[test]
    fn statements() {
        assert_eq!(
            run("{% for k, v in db | items %}{% if k != \"nested\" and k != \"chain\" %}${k}=${v}\n{% endif %}{% endfor %}")
                .unwrap(),
            "b64=aGVsbG8=\npad=  x \n\npassword=p@ss: w!rd\nport=5432\nusername=app\nwith-dash=d\n"
        );
        assert_eq!(
            run("{% for k in db %}${k},{% endfor %}").unwrap(),
            "b64,chain,nested,pad,password,port,username,with-dash,"
        );
        assert_eq!(
            run("a {%- if db.port -%} yes {%- endif %}").unwrap(),
            "ayes"
        );
        assert_eq!(
            run("{% if db.missing is defined %}a{% else %}b{% endif %}").unwrap(),
            "b"
        );
        assert_eq!(run("{# a comment #}x").unwrap(), "x");
        assert_eq!(run("${- \" a \" -}").unwrap(), " a ");
    }

    #[test]
    fn filters() {
        assert_eq!(
            run("${ db.password | urlencode }").unwrap(),
            "p%40ss%3A%20w%21rd"
        );
        assert_eq!(
            run("${ \"a/b?c=d&e ~é\" | urlencode }").unwrap(),
            "a%2Fb%3Fc%3Dd%26e%20~%C3%A9"
        );
        assert_eq!(run("${ db.username | b64encode }").unwrap(), "YXBw");
        assert_eq!(run("${ db.b64 | b64decode }").unwrap(), "hello");
        assert_eq!(
            run("${ db.username | b64encode | b64decode }").unwrap(),
            "app"
        );
        assert_eq!(
            run("${ db.nested | json }").unwrap(),
            r#"{"a":1,"z":"\u003c\u0026\u003e"}"#
        );
        assert_eq!(run("${ db.chain | json }").unwrap(), r#"["A","B"]"#);
        assert_eq!(run("${ db.username | json }").unwrap(), r#""app""#);
        assert_eq!(
            run("${ db | json }").unwrap(),
            r#"{"b64":"aGVsbG8=","chain":["A","B"],"nested":{"a":1,"z":"\u003c\u0026\u003e"},"pad":"  x \n","password":"p@ss: w!rd","port":5432,"username":"app","with-dash":"d"}"#
        );
        assert_eq!(run("[${ db.pad | trim }]").unwrap(), "[x]");
        assert_eq!(run("${ db.chain | join(\"\\n\") }").unwrap(), "A\nB");
        assert_eq!(run("${ db.chain | join }").unwrap(), "AB");
        assert_eq!(
            run("${ db.username ~ \":\" ~ db.port }").unwrap(),
            "app:5432"
        );
    }

    #[test]
    fn filter_errors_name_the_filter_never_the_value() {
        for (text, expected) in [
            (
                "${ db.password | b64decode }",
                "filter `b64decode`: the value is not standard base64 (with padding)",
            ),
            (
                "${ \"/w==\" | b64decode }",
                "filter `b64decode`: the decoded bytes are not UTF-8 text",
            ),
            (
                "${ db.password | join }",
                "filter `join`: it takes a list, not a string",
            ),
            (
                "${ db.nested | trim }",
                "filter `trim`: it takes text, not a map",
            ),
            (
                "${ db.password | items }",
                "filter `items`: it takes a map, not a string",
            ),
        ] {
            let err = run(text).unwrap_err();
            assert_eq!(
                err,
                RenderError::Failed {
                    line: Some(1),
                    message: expected.into()
                },
                "{text}"
            );
            assert!(!err.to_string().contains("p@ss"));
        }
    }

    #[test]
    fn a_missing_key_names_alias_and_key() {
        let err = run("a ${ db.pasword } b").unwrap_err();
        assert_eq!(
            err,
            RenderError::MissingKey {
                alias: "db".into(),
                key: "pasword".into()
            }
        );
        assert_eq!(err.to_string(), "source `db` has no key `pasword`");
        for filter in [
            "urlencode",
            "b64encode",
            "b64decode",
            "json",
            "trim",
            "join(\",\")",
            "items",
        ] {
            assert_eq!(
                run(&format!("${{ db.pasword | {filter} }}")).unwrap_err(),
                RenderError::MissingKey {
                    alias: "db".into(),
                    key: "pasword".into()
                },
                "{filter}"
            );
        }
        assert_eq!(
            run("${ db[\"user-name\"] }").unwrap_err(),
            RenderError::MissingKey {
                alias: "db".into(),
                key: "user-name".into()
            }
        );
        let t = parse("${ app.x }", &["app"]).unwrap();
        assert_eq!(
            render(&t, &db()).unwrap_err(),
            RenderError::MissingSource {
                alias: "app".into()
            }
        );
    }

    #[test]
    fn parse_errors_are_located_in_the_text() {
        let e = errors("line one\n  ${ dbb.password }");
        assert_eq!((e[0].line, e[0].column, e[0].offset), (2, 6, 14));
        assert_eq!(e[0].message, "unknown alias `dbb`; the sources are `db`");
        let e = errors("${ db.password | base64 }");
        assert_eq!((e[0].line, e[0].column), (1, 18));
        assert!(
            e[0].message
                .starts_with("unknown filter `base64`; the filters are `urlencode`"),
            "{}",
            e[0].message
        );
        let e = errors("${ db.x is odd }");
        assert_eq!(
            e[0].message,
            "unknown test `odd`; the tests are `defined`, `undefined`, `none`"
        );
        let e = errors("ab ${ db.password");
        assert_eq!(
            (e[0].column, e[0].message.as_str()),
            (4, "an expression `${` is not closed with `}`")
        );
        let e = errors("{% if db.x %}");
        assert_eq!(e[0].line, 1);
        assert!(
            e[0].message
                .starts_with("syntax error: unexpected end of input"),
            "{}",
            e[0].message
        );
        let e = errors("x $${ }\n${ db.a db.b }");
        assert_eq!(e[0].line, 2);
        assert!(e[0].message.starts_with("syntax error"), "{}", e[0].message);
        assert_eq!(
            errors("${ }")[0].message,
            "an empty expression: write `${ alias.key }`"
        );
        assert_eq!(
            errors("{# open")[0].message,
            "a comment `{#` is not closed with `#}`"
        );
        assert_eq!(
            errors("${ 'open }")[0].message,
            "a string is not closed with its quote"
        );
        let two = errors("${ a.x } ${ b.y | nope }");
        assert_eq!(two.len(), 3, "{two:?}");
        let e = parse("${ x }", &[]).unwrap_err();
        assert_eq!(
            e[0].message,
            "unknown alias `x`; the config names no sources"
        );
    }

    #[test]
    fn no_functions_assignments_or_growth() {
        for (text, message) in [
            ("${ range(10) }", "templates have no functions or methods"),
            (
                "${ db.password.upper() }",
                "templates have no functions or methods",
            ),
            (
                "{% set x = db.password %}",
                "`{% set %}` is not available in templates",
            ),
            (
                "{% include \"/etc/passwd\" %}",
                "`{% include %}` is not available",
            ),
            ("{% import \"x\" as y %}", "`{% import %}` is not available"),
            (
                "{% macro f() %}{% endmacro %}",
                "`{% macro %}` is not available",
            ),
            ("{% raw %}x{% endraw %}", "`{% raw %}` is not available"),
            (
                "${ db.password * 1000000 }",
                "`*` inside an expression `${`: templates have no arithmetic",
            ),
            ("${ db.port + 1 }", "templates have no arithmetic"),
            (
                "${ [db.a, db.a] | join }",
                "templates have no list literals",
            ),
            ("${ {\"a\": 1} }", "templates have no map literals"),
            ("${ env.HOME }", "unknown alias `env`"),
            (
                "${ lookup(\"file\", \"/etc/passwd\") }",
                "unknown alias `lookup`",
            ),
            ("${ now() }", "unknown alias `now`"),
            ("${ db.password | file }", "unknown filter `file`"),
            ("${ loop.index }", "unknown alias `loop`"),
        ] {
            let e = errors(text);
            assert!(
                e.iter().any(|e| e.message.contains(message)),
                "{text}: {e:?}"
            );
        }
    }

    #[test]
    fn evaluation_and_output_are_bounded() {
        let big = sources(&[(
            "s",
            json!({"x": "y".repeat(600_000), "list": vec!["a"; 2000]}),
        )]);
        let t = parse("${ s.x }${ s.x }", &["s"]).unwrap();
        assert_eq!(render(&t, &big).unwrap_err(), RenderError::OutputTooLarge);
        let t = parse("{% for a in s.list %}{% for b in s.list %}{% for c in s.list %}.{% endfor %}{% endfor %}{% endfor %}", &["s"]).unwrap();
        assert_eq!(render(&t, &big).unwrap_err(), RenderError::TooLong);
        let t = parse("${ s.x | urlencode | urlencode | urlencode }", &["s"]).unwrap();
        assert!(
            matches!(render(&t, &big).unwrap_err(), RenderError::Failed { message, .. } if message.starts_with("filter `urlencode`"))
        );
        let t = parse("${ (s.x ~ s.x) | b64encode }", &["s"]).unwrap();
        assert!(
            matches!(render(&t, &big).unwrap_err(), RenderError::Failed { message, .. } if message.starts_with("filter `b64encode`"))
        );
        let huge = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(parse(&huge, &[]).unwrap_err()[0]
            .message
            .contains("larger than"));
    }

    #[test]
    fn referenced_keys_for_check() {
        let t = parse(
            "${ db.user }${ db[\"pass-word\"] | urlencode }{% for k in db %}${ k }{% endfor %}${ db.user }${ ca.chain | join(\"\\n\") }",
            &["db", "ca"],
        )
        .unwrap();
        assert_eq!(
            t.referenced_keys(),
            [
                ("db".to_string(), "user".to_string()),
                ("db".into(), "pass-word".into()),
                ("ca".into(), "chain".into())
            ]
        );
        assert_eq!(t.aliases(), ["db", "ca"]);
        // A key the template tests for may be missing: check does not ask for it.
        let t = parse(
            "{% if db.host is defined %}${ db.host }{% endif %}{% if db[\"port\"] is not undefined %}${ db.port }{% endif %}${ db.user }",
            &["db"],
        )
        .unwrap();
        assert_eq!(
            t.referenced_keys(),
            [("db".to_string(), "user".to_string())]
        );
        let mut db = Map::new();
        db.insert("user".into(), "u".into());
        let out = render(&t, &Sources::from([("db".to_string(), db)])).unwrap();
        assert_eq!(out.as_str(), "u");
    }

    proptest! {
        #[test]
        fn hostile_text_never_panics(text in "(\\PC|[${}%#|\\[\\]\"'.~\n-]){0,80}") {
            if let Ok(t) = parse(&text, &["db"]) {
                let _ = render(&t, &db());
            }
        }

        #[test]
        fn escaped_text_renders_as_itself(text in "(\\PC|[${}\n ])*") {
            // Any text, with `${`, `{%` and `{#` escaped, comes out byte for byte.
            let escaped: String = text
                .chars()
                .map(|c| match c {
                    '$' => "${ \"$\" }".to_string(),
                    '{' => "${ \"{\" }".to_string(),
                    c => c.to_string(),
                })
                .collect();
            let t = parse(&escaped, &[]).unwrap();
            let out = render(&t, &Sources::new()).unwrap();
            prop_assert_eq!(out.as_str(), text.as_str());
        }

        #[test]
        fn plain_text_renders_as_itself(text in "[^${]*") {
            let t = parse(&text, &[]).unwrap();
            let out = render(&t, &Sources::new()).unwrap();
            prop_assert_eq!(out.as_str(), text.as_str());
        }
    }
}
