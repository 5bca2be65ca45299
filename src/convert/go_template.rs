//! Vault Agent (consul-template) templates translated into this project's `${ }`
//! templates ([`crate::template`]) and the sources they read (SPEC 1.4).
//!
//! The Go template is cut into text and actions (trim markers applied to the text as Go
//! applies them), each action is parsed as a Go pipeline, and the constructs the injector's
//! users write are translated: `with secret "<path>" ["k=v"...]`, `with pkiCert ...`,
//! `$x := secret ...`, `.Data.data.<k>` (KV v2, seen unwrapped), `.Data.<k>`, `index`,
//! `range` over a map or a list, `printf` with `%s`/`%v`, `toJSON`, `base64Encode`,
//! `base64Decode` and `trimSpace`. The translation prints the same bytes as `bao agent`
//! over the same answer (`tests/convert_templates.rs` holds it to that). Anything else is
//! refused with the offset of its action in the template.

use super::{logical_path, KnownMounts};
use serde_json::{Map, Value};

/// One secret a translated template reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The alias the template reads it as (`secret` for the first).
    pub alias: String,
    /// The path as the Go template wrote it.
    pub path: String,
    /// A write's parameters (`secret "<path>" "k=v"`, `pkiCert`); `None` for a read.
    pub params: Option<Map<String, Value>>,
    /// The template reads `.Data.data`: a KV v2 answer, which this project unwraps.
    pub kv2: bool,
    /// Read through `pkiCert`.
    pub pki: bool,
}

/// A translated template.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub template: String,
    pub sources: Vec<Source>,
}

/// Why a template was not translated: the byte offset of the action in the Go template,
/// the action as written, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub offset: usize,
    pub action: String,
    pub message: String,
}

/// A translated injector secret and where its file goes.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslatedFile {
    pub file_name: String,
    pub mount: String,
    /// `mode`, as convert writes it (`"0440"`).
    pub mode: Option<String>,
    pub translation: Translation,
}

/// One file secret config of [`file_configs`], and the files (indices into its input)
/// it writes.
#[derive(Debug, Clone, PartialEq)]
pub struct FileConfig {
    pub files: Vec<usize>,
    pub config: Map<String, Value>,
}

/// The file secret configs (SPEC 1.3, 1.4) that write `files`: one per file, except that
/// files in one directory whose templates read the same single write (a `pkiCert`
/// certificate in one injector secret and its key in another) become one config with
/// `files`, so that they come from one answer and change together.
///
/// Keys are written in one order: the source (`vaultSecretRef` and `params`, or
/// `sources`), `secretFileName`, `volumeMountPath`, `mode`, then the template or `files`,
/// the long part, last.
pub fn file_configs(files: &[TranslatedFile], mounts: &KnownMounts) -> Vec<FileConfig> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let shares = |other: &TranslatedFile| match (
            file.translation.sources.as_slice(),
            other.translation.sources.as_slice(),
        ) {
            ([a], [b]) => {
                a.params.is_some()
                    && file.mount == other.mount
                    && a.path == b.path
                    && a.params == b.params
                    && a.pki == b.pki
            }
            _ => false,
        };
        match groups.iter_mut().find(|g| shares(&files[g[0]])) {
            Some(group) => group.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
        .into_iter()
        .map(|group| {
            let first = &files[group[0]];
            let mut config = source_fields(&first.translation.sources, mounts);
            if let [only] = group[..] {
                let file = &files[only];
                config.insert(
                    "secretFileName".into(),
                    Value::from(file.file_name.as_str()),
                );
                config.insert("volumeMountPath".into(), Value::from(file.mount.as_str()));
                if let Some(mode) = &file.mode {
                    config.insert("mode".into(), Value::from(mode.as_str()));
                }
                config.insert(
                    "template".into(),
                    Value::from(file.translation.template.as_str()),
                );
            } else {
                config.insert("volumeMountPath".into(), Value::from(first.mount.as_str()));
                let entries = group
                    .iter()
                    .map(|&i| (files[i].file_name.clone(), file_entry(&files[i])))
                    .collect();
                config.insert("files".into(), Value::Object(entries));
            }
            FileConfig {
                files: group,
                config,
            }
        })
        .collect()
}

/// `vaultSecretRef` (and `params`) for a template that reads one source as `secret`,
/// else `sources`.
fn source_fields(sources: &[Source], mounts: &KnownMounts) -> Map<String, Value> {
    let mut config = Map::new();
    match sources {
        [one] if one.alias == "secret" => {
            config.insert(
                "vaultSecretRef".into(),
                Value::from(logical_path(&one.path, one.kv2, mounts)),
            );
            if let Some(params) = &one.params {
                config.insert("params".into(), Value::Object(escaped_params(params)));
            }
        }
        _ => {
            let named = sources
                .iter()
                .map(|s| {
                    let path = Value::from(logical_path(&s.path, s.kv2, mounts));
                    let value = match &s.params {
                        Some(params) => {
                            serde_json::json!({"path": path, "params": escaped_params(params)})
                        }
                        None => path,
                    };
                    (s.alias.clone(), value)
                })
                .collect();
            config.insert("sources".into(), Value::Object(named));
        }
    }
    config
}

/// A write's parameters as a config holds them: `$(` there names a pod variable (SPEC
/// 1.3), so the literal `$(` the Go template sent is written `$$(`.
fn escaped_params(params: &Map<String, Value>) -> Map<String, Value> {
    params
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => Value::from(s.replace("$(", "$$(")),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// One entry of `files`: `{"mode": ..., "template": ...}`.
fn file_entry(file: &TranslatedFile) -> Value {
    let mut entry = Map::new();
    if let Some(mode) = &file.mode {
        entry.insert("mode".into(), Value::from(mode.as_str()));
    }
    entry.insert(
        "template".into(),
        Value::from(file.translation.template.as_str()),
    );
    Value::Object(entry)
}

/// Go's template trim set (`{{- ` and ` -}}` trim these only).
const GO_SPACE: [char; 4] = [' ', '\t', '\r', '\n'];

#[derive(Debug)]
enum Piece<'a> {
    Text(&'a str),
    Action {
        inner: &'a str,
        offset: usize,
        written: &'a str,
    },
}

/// Text and actions, trim markers applied to the text, comments dropped.
fn cut(template: &str) -> Result<Vec<Piece<'_>>, Refusal> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut trim_next = false;
    while let Some(open) = template[at..].find("{{").map(|i| at + i) {
        let mut text = &template[at..open];
        if trim_next {
            text = text.trim_start_matches(GO_SPACE);
        }
        let after = open + 2;
        let trim_before = template[after..].starts_with("- ")
            || template[after..].starts_with("-\t")
            || template[after..].starts_with("-\n")
            || template[after..].starts_with("-\r");
        if trim_before {
            text = text.trim_end_matches(GO_SPACE);
        }
        let inner_start = if trim_before { after + 1 } else { after };
        let close = find_close(template, inner_start).ok_or_else(|| Refusal {
            offset: open,
            action: template[open..].chars().take(40).collect(),
            message: "the action `{{` is not closed with `}}`".into(),
        })?;
        let mut inner = &template[inner_start..close];
        trim_next = false;
        if let Some(stripped) = inner.strip_suffix('-') {
            if stripped.ends_with(GO_SPACE) {
                inner = stripped;
                trim_next = true;
            }
        }
        out.push(Piece::Text(text));
        let trimmed = inner.trim_matches(GO_SPACE);
        if !(trimmed.starts_with("/*") && trimmed.ends_with("*/")) {
            out.push(Piece::Action {
                inner: trimmed,
                offset: open,
                written: &template[open..close + 2],
            });
        }
        at = close + 2;
    }
    let mut text = &template[at..];
    if trim_next {
        text = text.trim_start_matches(GO_SPACE);
    }
    out.push(Piece::Text(text));
    Ok(out)
}

/// The `}}` closing an action that starts at `from`, skipping quoted strings.
fn find_close(template: &str, from: usize) -> Option<usize> {
    let bytes = template.as_bytes();
    let mut i = from;
    while i + 1 < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if bytes[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `.A.B` (an empty chain is `.` itself).
    Field(Vec<String>),
    /// `$x.A.B` (`$` alone is an empty name).
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Number(String),
    Pipe,
    Open,
    Close,
    Declare,
    Comma,
}

fn lex(action: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = action.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    let chain = |i: &mut usize| {
        let mut fields = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            *i += 1;
            let start = *i;
            while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
                *i += 1;
            }
            if *i == start {
                break;
            }
            fields.push(chars[start..*i].iter().collect::<String>());
        }
        fields
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if GO_SPACE.contains(&c) => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Declare);
                i += 2;
            }
            '.' => {
                // An empty chain is `.` itself.
                out.push(Tok::Field(chain(&mut i)));
            }
            '$' => {
                i += 1;
                let name = word(&mut i);
                out.push(Tok::Var(name, chain(&mut i)));
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("a string is not closed".into()),
                        Some('"') => break,
                        Some('\\') => {
                            let e = chars.get(i + 1).ok_or("a string is not closed")?;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '\\' => '\\',
                                '"' => '"',
                                _ => return Err(format!("the escape `\\{e}` is not translated")),
                            });
                            i += 2;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                i += 1;
                out.push(Tok::Str(s));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|c| *c == '`')
                    .ok_or("a raw string is not closed")?;
                out.push(Tok::Str(chars[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Number(chars[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' => out.push(Tok::Ident(word(&mut i))),
            c => {
                return Err(format!(
                    "`{c}` is not part of the template forms convert reads"
                ))
            }
        }
    }
    Ok(out)
}

/// What `.` (or a variable) stands for.
#[derive(Debug, Clone)]
enum Dot {
    /// Outside any `with`: nothing convert can name.
    Top,
    /// A `secret` answer (index into the sources).
    Response(usize),
    /// A `pkiCert` answer.
    Pki(usize),
    /// A value, as an expression of the new template.
    Value(String),
    /// A whole map of a source's data (for `range` over it).
    Data(usize),
}

/// A translated operand: the expression, and whether it is a whole map of data.
struct Operand {
    expr: String,
    whole: Option<usize>,
}

struct Translator {
    sources: Vec<Source>,
    dots: Vec<Dot>,
    /// Go variable → what it stands for, innermost scope last.
    vars: Vec<Vec<(String, Dot)>>,
    /// What each open `with`/`range` closes with.
    blocks: Vec<&'static str>,
    /// Names the new template binds in loops.
    loop_names: Vec<String>,
    /// Per source: read as KV v2 (`.Data.data`) or not, once the template has read it.
    reads: Vec<Option<bool>>,
}

const FUNCTIONS: &str = "`secret`, `pkiCert`, `index`, `printf`, `toJSON`, `base64Encode`, `base64Decode` and `trimSpace`";

pub fn translate(template: &str) -> Result<Translation, Refusal> {
    let pieces = cut(template)?;
    let mut t = Translator {
        sources: Vec::new(),
        dots: vec![Dot::Top],
        vars: vec![Vec::new()],
        blocks: Vec::new(),
        loop_names: Vec::new(),
        reads: Vec::new(),
    };
    let mut out = Out::default();
    let mut last = (0, String::new());
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.pending.push_str(text),
            Piece::Action {
                inner,
                offset,
                written,
            } => {
                last = (offset, written.to_string());
                let refusal = |message: String| Refusal {
                    offset,
                    action: written.to_string(),
                    message,
                };
                let toks = lex(inner).map_err(refusal)?;
                t.action(&toks, &mut out).map_err(refusal)?;
            }
        }
    }
    if !t.blocks.is_empty() {
        return Err(Refusal {
            offset: last.0,
            action: last.1,
            message: "a `with` or `range` is not closed with `{{ end }}`".into(),
        });
    }
    if t.sources.is_empty() {
        return Err(Refusal {
            offset: 0,
            action: template.chars().take(40).collect(),
            message: "the template reads no secret (`{{ with secret \"<path>\" }}`)".into(),
        });
    }
    Ok(Translation {
        template: out.finish(),
        sources: t.sources,
    })
}

/// The new template being written: Go text is kept until the next tag, so that text
/// around actions that write nothing (`with`, `end`) is escaped as one piece.
#[derive(Default)]
struct Out {
    pending: String,
    done: String,
}

impl Out {
    /// A tag of the new template after the pending text. A `$` right before it would
    /// make `$${`, the escape, so each `$` that ends the text is written as an expression.
    fn code(&mut self, tag: &str) {
        let text = std::mem::take(&mut self.pending);
        let plain = text.trim_end_matches('$');
        escape_text(plain, &mut self.done);
        for _ in plain.len()..text.len() {
            self.done.push_str("${ \"$\" }");
        }
        self.done.push_str(tag);
    }

    fn finish(mut self) -> String {
        let text = std::mem::take(&mut self.pending);
        escape_text(&text, &mut self.done);
        self.done
    }
}

/// Go text as text of the new template: `${`, `{%` and `{#` would open something there.
fn escape_text(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("${") {
            out.push_str("$${");
            rest = &rest[2..];
        } else if rest.starts_with("{%") || rest.starts_with("{#") {
            out.push_str("${ \"{\" }");
            rest = &rest[1..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
}

/// A string literal of the new template.
fn literal(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `base.key`, or `base["key"]` where the key is not a plain name.
fn member(base: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(
            key,
            "and"
                | "or"
                | "not"
                | "in"
                | "is"
                | "if"
                | "else"
                | "true"
                | "false"
                | "none"
                | "True"
                | "False"
                | "None"
        );
    if plain {
        format!("{base}.{key}")
    } else {
        format!("{base}[{}]", literal(key))
    }
}

/// An expression that a filter can follow: a `~` chain needs parentheses (filters bind
/// tighter), a filter chain does not.
fn filtered(expr: &str) -> String {
    if expr.contains(" ~ ") && !(expr.starts_with('(') && expr.ends_with(')')) {
        format!("({expr})")
    } else {
        expr.to_string()
    }
}

/// An expression that a filter or `~` can follow without changing its meaning.
fn grouped(expr: &str) -> String {
    if expr.contains(' ') && !(expr.starts_with('(') && expr.ends_with(')')) {
        format!("({expr})")
    } else {
        expr.to_string()
    }
}

impl Translator {
    fn dot(&self) -> Dot {
        self.dots.last().cloned().unwrap_or(Dot::Top)
    }

    fn var(&self, name: &str) -> Option<Dot> {
        self.vars.iter().rev().find_map(|scope| {
            scope
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, d)| d.clone())
        })
    }

    /// The source for `secret`/`pkiCert` with these arguments, shared when they repeat.
    fn source(&mut self, function: &str, args: &[Tok]) -> Result<usize, String> {
        let mut strings = Vec::new();
        for a in args {
            match a {
                Tok::Str(s) => strings.push(s.clone()),
                _ => return Err(format!("`{function}` takes quoted strings only")),
            }
        }
        let Some((path, params)) = strings.split_first() else {
            return Err(format!("`{function}` names no path"));
        };
        let path = path.trim().trim_matches('/').to_string();
        if path.is_empty() || path.contains(char::is_whitespace) {
            return Err(format!("`{function}` names no usable path"));
        }
        let pki = function == "pkiCert";
        let params = if params.is_empty() && !pki {
            None
        } else {
            let mut map = Map::new();
            for p in params {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| format!("`{function}` argument `{p}` is not `key=value`"))?;
                map.insert(k.to_string(), Value::from(v));
            }
            Some(map)
        };
        if let Some(i) = self
            .sources
            .iter()
            .position(|s| s.path == path && s.params == params && s.pki == pki)
        {
            return Ok(i);
        }
        let alias = if self.sources.is_empty() {
            "secret".to_string()
        } else {
            self.new_alias(&path)
        };
        self.sources.push(Source {
            alias,
            path,
            params,
            kv2: false,
            pki,
        });
        self.reads.push(None);
        Ok(self.sources.len() - 1)
    }

    fn new_alias(&self, path: &str) -> String {
        let last = path.rsplit('/').next().unwrap_or("secret");
        let mut base: String = last
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '_') => c,
                _ => '_',
            })
            .collect();
        if !base.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
            base.insert(0, 's');
        }
        self.unused_name(base, "_")
    }

    fn action(&mut self, toks: &[Tok], out: &mut Out) -> Result<(), String> {
        match toks.first() {
            Some(Tok::Ident(w)) if w == "end" && toks.len() == 1 => {
                let close = self.blocks.pop().ok_or("`end` closes nothing")?;
                self.dots.pop();
                self.vars.pop();
                if close == "for" {
                    self.loop_names.pop();
                    self.loop_names.pop();
                    out.code("{% endfor %}");
                }
                Ok(())
            }
            Some(Tok::Ident(w)) if w == "with" => self.with(&toks[1..]),
            Some(Tok::Ident(w)) if w == "range" => self.range(&toks[1..], out),
            Some(Tok::Ident(w))
                if matches!(w.as_str(), "if" | "else" | "define" | "template" | "block" | "break" | "continue") =>
            {
                Err(format!("`{w}` is not translated (convert translates `with secret`, `range` and values)"))
            }
            Some(Tok::Var(name, fields)) if fields.is_empty() && toks.get(1) == Some(&Tok::Declare) => {
                let dot = self.bound(&toks[2..])?;
                if let Some(scope) = self.vars.last_mut() {
                    scope.push((name.clone(), dot));
                }
                Ok(())
            }
            _ => {
                let value = self.pipeline(toks)?;
                if value.whole.is_some() {
                    return Err("the template prints a whole secret as Go map text; print it with `toJSON`".into());
                }
                out.code(&format!("${{ {} }}", value.expr));
                Ok(())
            }
        }
    }

    /// What `$x := <pipeline>` binds: an answer of `secret`/`pkiCert`, or a value.
    fn bound(&mut self, toks: &[Tok]) -> Result<Dot, String> {
        match toks.first() {
            Some(Tok::Ident(f)) if f == "secret" || f == "pkiCert" => {
                let i = self.source(f, &toks[1..])?;
                Ok(if f == "pkiCert" {
                    Dot::Pki(i)
                } else {
                    Dot::Response(i)
                })
            }
            _ => {
                let value = self.pipeline(toks)?;
                Ok(match value.whole {
                    Some(i) => Dot::Data(i),
                    None => Dot::Value(value.expr),
                })
            }
        }
    }

    fn with(&mut self, toks: &[Tok]) -> Result<(), String> {
        let (var, rest) = match toks {
            [Tok::Var(name, fields), Tok::Declare, rest @ ..] if fields.is_empty() => {
                (Some(name.clone()), rest)
            }
            _ => (None, toks),
        };
        let dot = match rest.first() {
            Some(Tok::Ident(f)) if f == "secret" || f == "pkiCert" => self.bound(rest)?,
            _ => return Err("only `with secret ...` and `with pkiCert ...` are translated (a `with` over a value skips its body when the value is empty)".into()),
        };
        self.blocks.push("with");
        self.dots.push(dot.clone());
        self.vars
            .push(var.map(|v| vec![(v, dot)]).unwrap_or_default());
        Ok(())
    }

    fn range(&mut self, toks: &[Tok], out: &mut Out) -> Result<(), String> {
        let (names, rest): (Vec<String>, &[Tok]) = match toks {
            [Tok::Var(k, kf), Tok::Comma, Tok::Var(v, vf), Tok::Declare, rest @ ..]
                if kf.is_empty() && vf.is_empty() =>
            {
                (vec![k.clone(), v.clone()], rest)
            }
            [Tok::Var(v, vf), Tok::Declare, rest @ ..] if vf.is_empty() => (vec![v.clone()], rest),
            _ => (Vec::new(), toks),
        };
        let over = self.pipeline(rest)?;
        let key_name = self.loop_name(names.first().filter(|_| names.len() == 2), "key");
        self.loop_names.push(key_name.clone());
        let value_name = self.loop_name(names.last(), "item");
        self.loop_names.push(value_name.clone());
        let head =
            match (over.whole, names.len()) {
                (Some(_), _) => format!(
                    "{{% for {key_name}, {value_name} in {} | items %}}",
                    filtered(&over.expr)
                ),
                (None, 2) => return Err(
                    "`range $i, $v` over a list is not translated (the index has no equivalent)"
                        .into(),
                ),
                (None, _) => format!("{{% for {value_name} in {} %}}", over.expr),
            };
        out.code(&head);
        let mut scope = Vec::new();
        if names.len() == 2 {
            scope.push((names[0].clone(), Dot::Value(key_name)));
        }
        if let Some(v) = names.last() {
            scope.push((v.clone(), Dot::Value(value_name.clone())));
        }
        self.blocks.push("for");
        self.dots.push(Dot::Value(value_name));
        self.vars.push(scope);
        Ok(())
    }

    /// A loop variable's name in the new template: the Go name where it is free.
    fn loop_name(&self, go: Option<&String>, fallback: &str) -> String {
        let base = go
            .filter(|n| {
                n.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            })
            .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .filter(|n| {
                !matches!(
                    n.as_str(),
                    "loop"
                        | "in"
                        | "is"
                        | "if"
                        | "else"
                        | "and"
                        | "or"
                        | "not"
                        | "none"
                        | "true"
                        | "false"
                )
            })
            .cloned()
            .unwrap_or_else(|| fallback.to_string());
        self.unused_name(base, "")
    }

    /// `base`, or `base<sep>2`, `base<sep>3`... the first that no source alias or loop
    /// variable uses yet.
    fn unused_name(&self, base: String, sep: &str) -> String {
        let taken = |name: &str| {
            self.sources.iter().any(|s| s.alias == name)
                || self.loop_names.iter().any(|n| n == name)
        };
        let mut name = base.clone();
        let mut n = 2;
        while taken(&name) {
            name = format!("{base}{sep}{n}");
            n += 1;
        }
        name
    }

    /// `command | command ...`: each command gets the previous result as its last argument.
    fn pipeline(&mut self, toks: &[Tok]) -> Result<Operand, String> {
        let mut commands: Vec<&[Tok]> = Vec::new();
        let mut depth = 0usize;
        let mut start = 0;
        for (i, t) in toks.iter().enumerate() {
            match t {
                Tok::Open => depth += 1,
                Tok::Close => depth = depth.checked_sub(1).ok_or("unbalanced `)`")?,
                Tok::Pipe if depth == 0 => {
                    commands.push(&toks[start..i]);
                    start = i + 1;
                }
                Tok::Declare | Tok::Comma if depth == 0 => {
                    return Err("a variable declaration inside a value is not translated".into())
                }
                _ => {}
            }
        }
        commands.push(&toks[start..]);
        let mut piped: Option<Operand> = None;
        for command in commands {
            piped = Some(self.command(command, piped)?);
        }
        piped.ok_or_else(|| "an empty action".into())
    }

    fn command(&mut self, toks: &[Tok], piped: Option<Operand>) -> Result<Operand, String> {
        let (head, rest) = toks.split_first().ok_or("an empty command")?;
        let Tok::Ident(function) = head else {
            if !rest.is_empty() || piped.is_some() {
                return Err("a value cannot be called with arguments".into());
            }
            return self.operand(head);
        };
        let mut args = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            let (operand, used) = self.argument(&rest[i..])?;
            args.push(operand);
            i += used;
        }
        args.extend(piped);
        let one = |args: Vec<Operand>| -> Result<Operand, String> {
            let mut args = args;
            match (args.pop(), args.is_empty()) {
                (Some(a), true) => Ok(a),
                _ => Err(format!("`{function}` takes one value")),
            }
        };
        match function.as_str() {
            "toJSON" => {
                let a = one(args)?;
                Ok(Operand {
                    expr: format!("{} | json", filtered(&a.expr)),
                    whole: None,
                })
            }
            "base64Encode" | "base64Decode" | "trimSpace" => {
                let a = one(args)?;
                let filter = match function.as_str() {
                    "base64Encode" => "b64encode",
                    "base64Decode" => "b64decode",
                    _ => "trim",
                };
                if a.whole.is_some() {
                    return Err(format!("`{function}` of a whole secret is not translated"));
                }
                Ok(Operand {
                    expr: format!("{} | {filter}", filtered(&a.expr)),
                    whole: None,
                })
            }
            "index" => {
                let mut args = args.into_iter();
                let base = args.next().ok_or("`index` takes a map and keys")?;
                let mut expr = base.expr;
                let mut whole = base.whole;
                for key in args {
                    let k = key
                        .expr
                        .strip_prefix('"')
                        .and_then(|_| serde_json::from_str::<String>(&key.expr).ok())
                        .ok_or("`index` keys are translated when they are quoted strings")?;
                    expr = member(&grouped(&expr), &k);
                    whole = None;
                }
                Ok(Operand { expr, whole })
            }
            "printf" => {
                let mut args = args.into_iter();
                let format = args
                    .next()
                    .and_then(|f| serde_json::from_str::<String>(&f.expr).ok())
                    .ok_or("`printf` is translated when its format is a quoted string")?;
                let mut parts: Vec<String> = Vec::new();
                let mut text = String::new();
                let mut chars = format.chars();
                while let Some(c) = chars.next() {
                    if c != '%' {
                        text.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('%') => text.push('%'),
                        Some('s' | 'v') => {
                            if !text.is_empty() {
                                parts.push(literal(&std::mem::take(&mut text)));
                            }
                            let a = args
                                .next()
                                .ok_or("`printf` has fewer values than its format names")?;
                            if a.whole.is_some() {
                                return Err("`printf` of a whole secret is not translated".into());
                            }
                            parts.push(grouped(&a.expr));
                        }
                        other => {
                            return Err(format!(
                                "`printf` verb `%{}` is not translated (only `%s`, `%v` and `%%`)",
                                other.map(String::from).unwrap_or_default()
                            ))
                        }
                    }
                }
                if args.next().is_some() {
                    return Err("`printf` has more values than its format names".into());
                }
                if !text.is_empty() || parts.is_empty() {
                    parts.push(literal(&text));
                }
                Ok(Operand {
                    expr: parts.join(" ~ "),
                    whole: None,
                })
            }
            "secret" | "pkiCert" => Err(format!(
                "`{function}` is translated in `with {function} ...` or `$x := {function} ...`"
            )),
            other => Err(format!(
                "the function `{other}` is not translated (convert translates {FUNCTIONS})"
            )),
        }
    }

    /// One argument of a function: an operand or a parenthesised pipeline; and the number
    /// of tokens it took.
    fn argument(&mut self, toks: &[Tok]) -> Result<(Operand, usize), String> {
        if toks.first() == Some(&Tok::Open) {
            let mut depth = 0;
            for (i, t) in toks.iter().enumerate() {
                match t {
                    Tok::Open => depth += 1,
                    Tok::Close => {
                        depth -= 1;
                        if depth == 0 {
                            let inner = self.pipeline(&toks[1..i])?;
                            return Ok((
                                Operand {
                                    expr: grouped(&inner.expr),
                                    whole: inner.whole,
                                },
                                i + 1,
                            ));
                        }
                    }
                    _ => {}
                }
            }
            return Err("unbalanced `(`".into());
        }
        let first = toks.first().ok_or("a missing argument")?;
        if let Tok::Ident(f) = first {
            return Err(format!(
                "the function `{f}` as an argument needs parentheses, which convert does not translate here"
            ));
        }
        Ok((self.operand(first)?, 1))
    }

    fn operand(&mut self, tok: &Tok) -> Result<Operand, String> {
        match tok {
            Tok::Str(s) => Ok(Operand {
                expr: literal(s),
                whole: None,
            }),
            Tok::Number(n) => Err(format!("the number `{n}` is not translated")),
            Tok::Field(fields) => {
                let dot = self.dot();
                self.fields(dot, fields)
            }
            Tok::Var(name, fields) => {
                let dot = self.var(name).ok_or_else(|| {
                    format!("the variable `${name}` is not one convert translates")
                })?;
                self.fields(dot, fields)
            }
            _ => Err("an operand convert does not translate".into()),
        }
    }

    /// `.A.B...` on what `dot` stands for.
    fn fields(&mut self, dot: Dot, fields: &[String]) -> Result<Operand, String> {
        let names: Vec<&str> = fields.iter().map(String::as_str).collect();
        match dot {
            Dot::Top => Err("the template reads `.` outside `with secret`".into()),
            Dot::Value(expr) => Ok(Operand {
                expr: names.iter().fold(expr, |e, k| member(&e, k)),
                whole: None,
            }),
            Dot::Data(i) => self.data_fields(i, &names),
            Dot::Pki(i) => {
                let names = match names.as_slice() {
                    ["Data", rest @ ..] => rest,
                    rest => rest,
                };
                let key = match names {
                    ["Cert"] => "certificate",
                    ["Key"] => "private_key",
                    ["CA"] => "issuing_ca",
                    _ => return Err("`pkiCert` gives `.Cert`, `.Key` and `.CA`".into()),
                };
                let alias = &self.sources[i].alias;
                // pkiCert writes each PEM block again, which ends it with a newline.
                Ok(Operand {
                    expr: format!("{} ~ \"\\n\"", member(alias, key)),
                    whole: None,
                })
            }
            Dot::Response(i) => match names.as_slice() {
                ["Data", "data", rest @ ..] => {
                    self.read_as(i, true)?;
                    self.data_fields(i, rest)
                }
                ["Data", "metadata", ..] => Err("KV v2 metadata (`.Data.metadata`) is not translated".into()),
                ["Data", rest @ ..] => {
                    self.read_as(i, false)?;
                    self.data_fields(i, rest)
                }
                [] => Err("the template uses a whole answer; convert translates its `.Data`".into()),
                [other, ..] => Err(format!("`.{other}` of an answer (lease or metadata) is not translated; convert translates `.Data`")),
            },
        }
    }

    /// Records how the template reads source `i`'s data: `.Data.data` (KV v2) or
    /// `.Data.<key>`; both on one source are refused.
    fn read_as(&mut self, i: usize, kv2: bool) -> Result<(), String> {
        let source = &mut self.sources[i];
        if kv2 && source.params.is_some() {
            return Err("`.Data.data` of a write's answer is not translated".into());
        }
        match self.reads[i] {
            Some(before) if before != kv2 => {
                Err("the template reads both `.Data.data` and `.Data.<key>` of one secret".into())
            }
            _ => {
                self.reads[i] = Some(kv2);
                source.kv2 = kv2;
                Ok(())
            }
        }
    }

    fn data_fields(&self, i: usize, names: &[&str]) -> Result<Operand, String> {
        let alias = self.sources[i].alias.clone();
        if names.is_empty() {
            return Ok(Operand {
                expr: alias,
                whole: Some(i),
            });
        }
        Ok(Operand {
            expr: names.iter().fold(alias, |e, k| member(&e, k)),
            whole: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        #[test]
        fn hostile_templates_never_panic_and_translations_parse(
            body in "(\\PC|[{}$%#|.\"`()\n -]|\\.Data|\\.data|range |end|printf|index |toJSON|\\$k|:=){0,40}"
        ) {
            for go in [body.clone(), format!("{{{{ with secret \"kv/a\" }}}}{body}{{{{ end }}}}")] {
                if let Ok(t) = translate(&go) {
                    let aliases: Vec<&str> = t.sources.iter().map(|s| s.alias.as_str()).collect();
                    prop_assert!(crate::template::parse(&t.template, &aliases).is_ok(), "{go} → {}", t.template);
                }
            }
        }
    }

    fn ok(go: &str) -> Translation {
        let t = translate(go).unwrap_or_else(|e| panic!("{go}: {e:?}"));
        let aliases: Vec<&str> = t.sources.iter().map(|s| s.alias.as_str()).collect();
        crate::template::parse(&t.template, &aliases)
            .unwrap_or_else(|e| panic!("{go} → {}: {e:?}", t.template));
        t
    }

    fn template(go: &str) -> String {
        ok(go).template
    }

    fn refused(go: &str) -> Refusal {
        translate(go).expect_err(go)
    }

    #[test]
    fn keys_of_kv_and_dynamic_secrets() {
        let t = ok(
            "{{- with secret \"secret/data/shop/db\" -}}\n{{ .Data.data.password }}\n{{- end }}\n",
        );
        assert_eq!(t.template, "${ secret.password }\n");
        assert_eq!(
            t.sources,
            [Source {
                alias: "secret".into(),
                path: "secret/data/shop/db".into(),
                params: None,
                kv2: true,
                pki: false
            }]
        );
        let t = ok(
            "{{ with secret \"kv/app\" }}{{ index .Data \"api-key\" }} {{ .Data.user }}{{ end }}",
        );
        assert_eq!(t.template, "${ secret[\"api-key\"] } ${ secret.user }");
        assert!(!t.sources[0].kv2);
        assert_eq!(
            template("{{ with secret \"secret/data/a\" }}{{ index .Data.data \"if\" }}{{ end }}"),
            "${ secret[\"if\"] }"
        );
    }

    #[test]
    fn connection_strings_ranges_and_functions() {
        assert_eq!(
            template("{{ with secret \"database/creds/app\" }}postgres://{{ .Data.username }}:{{ .Data.password }}@db:5432/shop{{ end }}"),
            "postgres://${ secret.username }:${ secret.password }@db:5432/shop"
        );
        assert_eq!(
            template("{{ with secret \"database/creds/app\" }}{{ printf \"%s:%v%%\" .Data.username .Data.password }}{{ end }}"),
            "${ secret.username ~ \":\" ~ secret.password ~ \"%\" }"
        );
        assert_eq!(
            template("{{ with secret \"secret/data/a\" }}{{ range $k, $v := .Data.data }}export {{ $k }}=\"{{ $v }}\"\n{{ end }}{{ end }}"),
            "{% for k, v in secret | items %}export ${ k }=\"${ v }\"\n{% endfor %}"
        );
        assert_eq!(
            template("{{ with secret \"pki/issue/r\" \"common_name=a\" }}{{ range .Data.ca_chain }}{{ . }}\n{{ end }}{{ end }}"),
            "{% for item in secret.ca_chain %}${ item }\n{% endfor %}"
        );
        assert_eq!(
            template("{{ with secret \"secret/data/a\" }}{{ .Data.data | toJSON }}|{{ toJSON .Data.data.list }}{{ end }}"),
            "${ secret | json }|${ secret.list | json }"
        );
        assert_eq!(
            template("{{ with secret \"secret/data/a\" }}{{ .Data.data.b | base64Decode }}{{ base64Encode .Data.data.c }}{{ .Data.data.d | trimSpace | base64Encode }}{{ end }}"),
            "${ secret.b | b64decode }${ secret.c | b64encode }${ secret.d | trim | b64encode }"
        );
        assert_eq!(
            template("{{ with secret \"secret/data/a\" }}{{ printf \"%s@%s\" .Data.data.u .Data.data.h | base64Encode }}{{ end }}"),
            "${ (secret.u ~ \"@\" ~ secret.h) | b64encode }"
        );
        assert_eq!(
            template("{{ $s := secret \"secret/data/a\" }}{{ $s.Data.data.k }}{{ with $t := secret \"kv/b\" }}{{ $t.Data.k }}{{ end }}"),
            "${ secret.k }${ b.k }"
        );
    }

    #[test]
    fn writes_and_certificates() {
        let t = ok("{{ with secret \"transit/decrypt/app\" \"ciphertext=vault:v1:abc=\" }}{{ .Data.plaintext | base64Decode }}{{ end }}");
        assert_eq!(t.template, "${ secret.plaintext | b64decode }");
        assert_eq!(
            t.sources[0].params,
            Some(
                json!({"ciphertext": "vault:v1:abc="})
                    .as_object()
                    .unwrap()
                    .clone()
            )
        );
        let t = ok("{{- with pkiCert \"pki/issue/web\" \"common_name=web.example.com\" \"ttl=1h\" -}}\n{{ .Cert }}{{ .Data.CA }}{{ .Key }}\n{{- end -}}");
        assert_eq!(
            t.template,
            "${ secret.certificate ~ \"\\n\" }${ secret.issuing_ca ~ \"\\n\" }${ secret.private_key ~ \"\\n\" }"
        );
        assert!(t.sources[0].pki);
        assert_eq!(
            t.sources[0].params,
            Some(
                json!({"common_name": "web.example.com", "ttl": "1h"})
                    .as_object()
                    .unwrap()
                    .clone()
            )
        );
    }

    #[test]
    fn sources_are_shared_and_named() {
        let t = ok("{{ with secret \"database/creds/app\" }}{{ .Data.username }}{{ end }}:{{ with secret \"database/creds/app\" }}{{ .Data.password }}{{ end }}@{{ with secret \"secret/data/shop/db-host\" }}{{ .Data.data.host }}{{ end }}");
        assert_eq!(
            t.template,
            "${ secret.username }:${ secret.password }@${ db_host.host }"
        );
        assert_eq!(t.sources.len(), 2);
        assert_eq!(t.sources[1].alias, "db_host");
    }

    #[test]
    fn text_that_would_open_something_is_escaped() {
        assert_eq!(
            template("A=${HOME} {%x{#y $${z}\n{{ with secret \"kv/a\" }}{{ .Data.k }}{{ end }}"),
            "A=$${HOME} ${ \"{\" }%x${ \"{\" }#y $$${z}\n${ secret.k }"
        );
        // Text around actions that write nothing is one piece; a `$` before a tag stays text.
        assert_eq!(
            template("${{ with secret \"kv/a\" }}{%{{ .Data.k }}$${{ range .Data.l }}.{{ end }}{{ end }}$"),
            "$${%${ secret.k }${ \"$\" }${ \"$\" }{% for item in secret.l %}.{% endfor %}$"
        );
        let go = "$${{ with secret \"kv/a\" }}${{ .Data.k }}{{ end }}$";
        let t = ok(go);
        let mut sources = crate::template::Sources::new();
        sources.insert(
            "secret".into(),
            json!({"k": "v"}).as_object().unwrap().clone(),
        );
        let parsed = crate::template::parse(&t.template, &["secret"]).unwrap();
        assert_eq!(
            crate::template::render(&parsed, &sources).unwrap().as_str(),
            "$$$v$"
        );
    }

    #[test]
    fn file_configs_share_one_answer_per_write() {
        let file = |name: &str, mount: &str, go: &str, mode: Option<&str>| TranslatedFile {
            file_name: name.into(),
            mount: mount.into(),
            mode: mode.map(str::to_string),
            translation: ok(go),
        };
        let cert = "{{ with pkiCert \"pki/issue/web\" \"common_name=web.shop.svc\" }}{{ .Cert }}{{ .CA }}{{ end }}";
        let key =
            "{{ with pkiCert \"pki/issue/web\" \"common_name=web.shop.svc\" }}{{ .Key }}{{ end }}";
        let url = "{{ with secret \"database/creds/shop\" }}postgres://{{ .Data.username }}:{{ .Data.password }}@db{{ end }}";
        let props = "{{ with secret \"secret/data/shop/db\" }}a={{ .Data.data.a }}{{ end }}{{ with secret \"kv/mq\" \"x=$(y)\" }}b={{ .Data.b }}{{ end }}";
        let transit = "{{ with secret \"transit/decrypt/app\" \"ciphertext=vault:v1:x\" }}{{ .Data.plaintext }}{{ end }}";
        let configs = file_configs(
            &[
                file("tls.crt", "/etc/tls", cert, None),
                file("db-url", "/vault/secrets", url, None),
                file("tls.key", "/etc/tls", key, Some("0400")),
                file("app.properties", "/config", props, Some("0440")),
                file("plain", "/vault/secrets", transit, None),
            ],
            &KnownMounts::default(),
        );
        let members: Vec<&[usize]> = configs.iter().map(|c| c.files.as_slice()).collect();
        assert_eq!(members, [&[0, 2][..], &[1], &[3], &[4]]);
        // Compact JSON text: the key order is part of what is compared.
        let texts: Vec<String> = configs
            .iter()
            .map(|c| crate::render::edit::compact_json(&Value::Object(c.config.clone())))
            .collect();
        let expected: Vec<String> = [
            json!({"vaultSecretRef": "pki/issue/web", "params": {"common_name": "web.shop.svc"},
                   "volumeMountPath": "/etc/tls",
                   "files": {"tls.crt": {"template": "${ secret.certificate ~ \"\\n\" }${ secret.issuing_ca ~ \"\\n\" }"},
                             "tls.key": {"mode": "0400", "template": "${ secret.private_key ~ \"\\n\" }"}}}),
            json!({"vaultSecretRef": "database/creds/shop", "secretFileName": "db-url",
                   "volumeMountPath": "/vault/secrets",
                   "template": "postgres://${ secret.username }:${ secret.password }@db"}),
            json!({"sources": {"secret": "secret/shop/db", "mq": {"path": "kv/mq", "params": {"x": "$$(y)"}}},
                   "secretFileName": "app.properties", "volumeMountPath": "/config", "mode": "0440",
                   "template": "a=${ secret.a }b=${ mq.b }"}),
            json!({"vaultSecretRef": "transit/decrypt/app", "params": {"ciphertext": "vault:v1:x"},
                   "secretFileName": "plain", "volumeMountPath": "/vault/secrets",
                   "template": "${ secret.plaintext }"}),
        ]
        .iter()
        .map(crate::render::edit::compact_json)
        .collect();
        assert_eq!(texts, expected);
    }

    #[test]
    fn anything_else_is_refused_with_its_action() {
        let r = refused("{{ with secret \"kv/a\" }}\n{{ if .Data.k }}x{{ end }}{{ end }}");
        assert_eq!((r.offset, r.action.as_str()), (25, "{{ if .Data.k }}"));
        assert!(
            r.message.starts_with("`if` is not translated"),
            "{}",
            r.message
        );
        for (go, message) in [
            ("{{ with secret \"kv/a\" }}{{ .Data.k | upper }}{{ end }}", "the function `upper` is not translated"),
            ("{{ with secret \"kv/a\" }}{{ .LeaseID }}{{ end }}", "`.LeaseID` of an answer"),
            ("{{ with secret \"kv/a\" }}{{ .Data.k }}", "is not closed with `{{ end }}`"),
            ("{{ with secret \"secret/data/a\" }}{{ .Data.data }}{{ end }}", "as Go map text"),
            ("{{ with secret \"secret/data/a\" }}{{ .Data.metadata.version }}{{ end }}", "metadata"),
            ("{{ with secret \"secret/data/a\" }}{{ .Data.data.a }}{{ .Data.b }}{{ end }}", "reads both"),
            ("{{ with secret \"kv/a\" }}{{ printf \"%d\" .Data.n }}{{ end }}", "verb `%d`"),
            ("{{ with secret \"kv/a\" }}{{ printf \"%s %s\" .Data.n }}{{ end }}", "fewer values"),
            ("{{ .Data.k }}", "outside `with secret`"),
            ("plain text", "reads no secret"),
            ("{{ with .Data }}{{ end }}", "only `with secret"),
            ("{{ with pkiCert \"pki/issue/a\" \"common_name=a\" }}{{ .Data.certificate }}{{ end }}", "`.Cert`, `.Key` and `.CA`"),
            ("{{ with secret \"kv/a\" }}{{ .Data.k", "not closed with `}}`"),
            ("{{ with secret \"kv/a\" }}{{ range $i, $v := .Data.list }}{{ end }}{{ end }}", "over a list"),
        ] {
            let r = refused(go);
            assert!(r.message.contains(message), "{go}: {r:?}");
        }
    }
}
