//! Templates in the pod (SPEC 1.4): each template of the spec parsed once when the spec is
//! checked, and evaluated over its sources' answers (KV v2 data unwrapped, an issued
//! secret's data as it came) before any file is written. The one-shot agent needs every
//! output; live mode evaluates a template again when one of its sources is read again and
//! keeps the last good file while an evaluation fails.

use zeroize::Zeroizing;

use super::format::{SecretData, SecretValue};
use super::vault::Fetched;
use crate::pod::agent_spec::{AgentSpec, TemplateSpec};
use crate::template::{self, RenderError, Sources, Template};
use crate::vault::http::Budget;

/// Each template of the spec, parsed against its aliases: the spec's template indices
/// point into this list.
pub type Parsed = Vec<Template>;

/// Parses every template of the spec; an error names the template and says what is wrong,
/// with the line and column in its text.
pub fn parse_all(spec: &AgentSpec) -> Result<Parsed, String> {
    let n = spec.secrets.len();
    spec.templates
        .iter()
        .map(|t| {
            if let Some((alias, index)) = t.sources.iter().find(|(_, i)| **i >= n) {
                return Err(format!(
                    "template {}: source `{alias}` points at secret {index} of {n}",
                    t.name
                ));
            }
            if let Some(alias) = t.sources.keys().find(|a| !is_alias(a)) {
                return Err(format!(
                    "template {}: source alias {alias:?} is not a name of [a-z_][a-z0-9_]*",
                    t.name
                ));
            }
            let aliases: Vec<&str> = t.sources.keys().map(String::as_str).collect();
            template::parse(&t.text, &aliases).map_err(|errors| {
                let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
                format!("template {}: {}", t.name, all.join("; "))
            })
        })
        .collect()
}

fn is_alias(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Why a template has no output now: the message (names the template, alias and key,
/// never a value) and, for a missing key, the secret that lacks it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub message: String,
    pub secret: Option<usize>,
}

/// Each template's output (by index into the spec's templates), or why its last
/// evaluation failed. The outputs are charged to a budget of held bytes.
pub struct Evaluated {
    results: Vec<Result<Zeroizing<String>, Failure>>,
}

impl Evaluated {
    /// Evaluates every template over `fetched`, charging each output to `budget`.
    pub fn evaluate(
        spec: &AgentSpec,
        parsed: &Parsed,
        fetched: &[Fetched],
        budget: &Budget,
    ) -> Evaluated {
        let mut outputs = Evaluated {
            results: Vec::with_capacity(parsed.len()),
        };
        for index in 0..parsed.len() {
            let result = evaluate_one(spec, parsed, index, fetched, budget);
            outputs.results.push(result);
        }
        outputs
    }

    /// The output of template `index`, or why it has none (a message naming the template,
    /// never a value).
    pub fn get(&self, index: usize) -> Result<&str, String> {
        match self.results.get(index) {
            Some(Ok(text)) => Ok(text.as_str()),
            Some(Err(failure)) => Err(failure.message.clone()),
            None => Err(format!("template {index} is not in the spec")),
        }
    }

    /// The first failure, in the spec's order.
    pub fn first_failure(&self) -> Option<&Failure> {
        self.results.iter().find_map(|r| r.as_ref().err())
    }

    /// Evaluates again every template that reads secret `secret` (just read again),
    /// replacing its output. Returns how many were evaluated.
    pub fn reevaluate(
        &mut self,
        spec: &AgentSpec,
        parsed: &Parsed,
        secret: usize,
        fetched: &[Fetched],
        budget: &Budget,
    ) -> usize {
        let mut count = 0;
        for (index, t) in spec.templates.iter().enumerate() {
            if !t.sources.values().any(|s| *s == secret) {
                continue;
            }
            if let Some(Ok(old)) = self.results.get(index) {
                budget.release(old.len());
            }
            let result = evaluate_one(spec, parsed, index, fetched, budget);
            if let Some(slot) = self.results.get_mut(index) {
                *slot = result;
            }
            count += 1;
        }
        count
    }

    /// Whether every template that reads secret `secret` has an output, unless a key of
    /// another of its sources is what is missing.
    pub fn ok_for(&self, spec: &AgentSpec, secret: usize) -> bool {
        spec.templates
            .iter()
            .zip(&self.results)
            .filter(|(t, _)| t.sources.values().any(|s| *s == secret))
            .all(|(_, result)| match result {
                Ok(_) => true,
                Err(failure) => failure.secret.is_some_and(|s| s != secret),
            })
    }
}

fn evaluate_one(
    spec: &AgentSpec,
    parsed: &Parsed,
    index: usize,
    fetched: &[Fetched],
    budget: &Budget,
) -> Result<Zeroizing<String>, Failure> {
    let t = &spec.templates[index];
    let sources = SourceMaps::of(t, fetched);
    let output = template::render(&parsed[index], &sources.0).map_err(|e| match e {
        RenderError::MissingKey { alias, key } => {
            let secret = t.sources.get(&alias).copied();
            let (path, keys) = match secret {
                Some(s) => (spec.secrets[s].path.as_str(), key_list(&fetched[s].data)),
                None => ("", "none".to_owned()),
            };
            Failure {
                message: format!(
                    "template {}: source `{alias}` (secret {path:?}) has no key `{key}` (its keys: {keys}): check the template's `{alias}.{key}` and the secret's content",
                    t.name
                ),
                secret,
            }
        }
        other => Failure {
            message: format!("template {}: {other}", t.name),
            secret: None,
        },
    })?;
    drop(sources);
    if !budget.try_charge(output.len()) {
        return Err(Failure {
            message: format!(
                "template {}: its output would pass the {} MiB the agent holds for one pod's secrets and outputs: make the templates or the secrets smaller, or split them over several pods",
                t.name,
                budget.limit() >> 20
            ),
            secret: None,
        });
    }
    Ok(output)
}

fn key_list(data: &SecretData) -> String {
    if data.is_empty() {
        return "none".to_owned();
    }
    data.keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The data of a template's sources as the template module takes it, wiped on drop.
struct SourceMaps(Sources);

impl SourceMaps {
    fn of(t: &TemplateSpec, fetched: &[Fetched]) -> SourceMaps {
        SourceMaps(
            t.sources
                .iter()
                .filter_map(|(alias, &secret)| {
                    let data = &fetched.get(secret)?.data;
                    let map = data.iter().map(|(k, v)| (k.clone(), json_of(v))).collect();
                    Some((alias.clone(), map))
                })
                .collect(),
        )
    }
}

impl Drop for SourceMaps {
    fn drop(&mut self) {
        for map in self.0.values_mut() {
            map.values_mut().for_each(template::zeroize_json);
        }
    }
}

/// A value as JSON: a string as it is, anything else parsed from its JSON text (which
/// Vault sent, so it parses; should it not, the text stays a string).
fn json_of(value: &SecretValue) -> serde_json::Value {
    match value {
        SecretValue::Str(s) => serde_json::Value::String(s.to_string()),
        SecretValue::Json(text) => serde_json::from_str(text)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn fetched(json: &str, path: &str) -> Fetched {
        let data: SecretData = serde_json::from_str(json).unwrap();
        Fetched {
            held_bytes: json.len(),
            data,
            leased: false,
            lease: None,
            api_path: path.to_owned(),
            kv2: true,
        }
    }

    fn spec(templates: &[(&str, &[(&str, usize)])]) -> AgentSpec {
        let mut spec = AgentSpec::from_json(
            r#"{"v":1,"vault":{"address":"http://127.0.0.1:1","auth_path":"auth/kubernetes","role":"app","token_file":"/t"},
                "timeout_seconds":1,"secrets":[{"path":"secret/db"},{"path":"kv/api"}],"files":[],"env_files":[]}"#,
        )
        .unwrap();
        spec.templates = templates
            .iter()
            .enumerate()
            .map(|(i, (text, sources))| TemplateSpec {
                name: format!("filesecret-config-{i}/out"),
                text: (*text).to_owned(),
                sources: sources
                    .iter()
                    .map(|(a, s)| ((*a).to_owned(), *s))
                    .collect::<BTreeMap<_, _>>(),
            })
            .collect();
        spec
    }

    fn answers() -> Vec<Fetched> {
        vec![
            fetched(
                r#"{"user":"app","password":"p@ss: w!rd","port":5432,"chain":["A","B"]}"#,
                "secret/data/db",
            ),
            fetched(r#"{"token":"t-1"}"#, "kv/api"),
        ]
    }

    #[test]
    fn evaluates_over_several_sources_with_json_types() {
        let spec = spec(&[(
            "postgres://${db.user}:${db.password | urlencode}@h:${db.port}/x?t=${api.token}\n${db.chain | join(\",\")}",
            &[("db", 0), ("api", 1)],
        )]);
        let parsed = parse_all(&spec).unwrap();
        let budget = Budget::new(1 << 20);
        let outputs = Evaluated::evaluate(&spec, &parsed, &answers(), &budget);
        assert_eq!(
            outputs.get(0).unwrap(),
            "postgres://app:p%40ss%3A%20w%21rd@h:5432/x?t=t-1\nA,B"
        );
    }

    #[test]
    fn a_missing_key_names_template_alias_key_and_secret_never_a_value() {
        let spec = spec(&[
            ("${db.pasword}", &[("db", 0)]),
            ("${api.token}", &[("api", 1)]),
        ]);
        let parsed = parse_all(&spec).unwrap();
        let budget = Budget::new(1 << 20);
        let mut fetched = answers();
        let outputs = Evaluated::evaluate(&spec, &parsed, &fetched, &budget);
        let failure = outputs.first_failure().unwrap();
        assert_eq!(
            failure.message,
            "template filesecret-config-0/out: source `db` (secret \"secret/db\") has no key `pasword` (its keys: chain, password, port, user): check the template's `db.pasword` and the secret's content"
        );
        assert_eq!(failure.secret, Some(0));
        assert!(!outputs.ok_for(&spec, 0));
        assert!(outputs.ok_for(&spec, 1));
        // The key appears: evaluated again when its source is read again.
        fetched[0] = fetched_with_pasword();
        let mut outputs = outputs;
        assert_eq!(outputs.reevaluate(&spec, &parsed, 0, &fetched, &budget), 1);
        assert_eq!(outputs.get(0).unwrap(), "x");
        assert!(outputs.first_failure().is_none());
    }

    fn fetched_with_pasword() -> Fetched {
        fetched(r#"{"pasword":"x"}"#, "secret/data/db")
    }

    #[test]
    fn outputs_are_charged_to_the_budget() {
        let spec = spec(&[("${db.password}${db.password}", &[("db", 0)])]);
        let parsed = parse_all(&spec).unwrap();
        let budget = Budget::new(15);
        let outputs = Evaluated::evaluate(&spec, &parsed, &answers(), &budget);
        assert!(outputs.first_failure().unwrap().message.contains("MiB"));
        let budget = Budget::new(20);
        let mut outputs = Evaluated::evaluate(&spec, &parsed, &answers(), &budget);
        assert!(outputs.first_failure().is_none());
        // Evaluating again releases the old output first.
        outputs.reevaluate(&spec, &parsed, 0, &answers(), &budget);
        assert!(outputs.first_failure().is_none());
        assert!(!budget.try_charge(3));
    }

    #[test]
    fn bad_templates_are_refused_when_the_spec_is_checked() {
        for (text, sources, expected) in [
            (
                "${ db.x",
                &[("db", 0)][..],
                "template filesecret-config-0/out: 1:1:",
            ),
            ("${ dbb.x }", &[("db", 0)], "unknown alias `dbb`"),
            ("${ db.x }", &[("db", 2)], "points at secret 2 of 2"),
            ("${ Db.x }", &[("Db", 0)], "is not a name"),
        ] {
            let err = parse_all(&spec(&[(text, sources)])).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
