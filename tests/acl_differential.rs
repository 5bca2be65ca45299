//! Differential test of the ACL evaluator (`secretstore::vault::acl`) against a real OpenBao:
//! many seeded random policies and request paths, each pair's capabilities asked of
//! `sys/capabilities` and compared with ours.
//!
//! Reproduce a run with `ACL_DIFF_SEED=<n> cargo test --test acl_differential`.

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use secretstore::vault::acl::{Acl, Capabilities, Policy};
use serde_json::{json, Value};
use support::openbao::OpenBao;

const DEFAULT_SEED: u64 = 0x5ec2_e75e_0ac1_0001;
const POLICIES: usize = 600;
const TOKENS: usize = 150;
const PATHS_PER_TOKEN: usize = 32;

/// SplitMix64: tiny, seedable, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Few, overlapping segment names, so that patterns of different policies collide often.
const SEGMENTS: &[&str] = &["a", "b", "ab", "abc", "ba", "data", "x"];
/// The capabilities OpenBao knows (`subscribe` and `recover` are Vault's only).
const CAPABILITIES: &[&str] = &[
    "create", "read", "update", "patch", "delete", "list", "sudo", "scan",
];

fn segment(rng: &mut Rng) -> String {
    match rng.below(100) {
        0..=24 => "+".to_owned(),
        25..=27 => format!("+{}", rng.pick(SEGMENTS)),
        _ => rng.pick(SEGMENTS).to_owned(),
    }
}

/// The patterns of one token's own policies. Most families are general; in a "ties"
/// family every pattern is `a/+/...` with one more `+` among short literals, so that
/// matches are decided by the last priority rules (length, then lexical order).
struct Family {
    patterns: Vec<String>,
    ties: bool,
}

/// A new pattern for `family`: a fresh one, or (mostly) a close variant of an earlier one.
fn pattern(rng: &mut Rng, family: &mut Family) -> String {
    let mut pattern = if family.ties {
        tie_pattern(rng)
    } else if !family.patterns.is_empty() && rng.percent(70) {
        let base = family.patterns[rng.below(family.patterns.len())].clone();
        variant(rng, &base)
    } else {
        fresh_pattern(rng)
    };
    if pattern.contains("+*") {
        // The server refuses `+*` (the parser test covers that): glob the next segment.
        pattern = pattern.replace("+*", "+/*");
    }
    family.patterns.push(pattern.clone());
    if rng.percent(5) {
        pattern.insert(0, '/');
    }
    pattern
}

fn tie_pattern(rng: &mut Rng) -> String {
    let len = 4 + rng.below(2);
    let mut segments: Vec<&str> = vec!["a", "+"];
    segments.extend((2..len).map(|_| rng.pick(&["b", "cc"])));
    segments[2 + rng.below(len - 2)] = "+";
    let joined = segments.join("/");
    if rng.percent(25) && !joined.ends_with('+') {
        format!("{joined}*")
    } else {
        joined
    }
}

fn fresh_pattern(rng: &mut Rng) -> String {
    match rng.below(100) {
        0 => return "*".to_owned(),
        1 => return "+".to_owned(),
        _ => {}
    }
    let segments: Vec<String> = (0..1 + rng.below(4)).map(|_| segment(rng)).collect();
    let joined = segments.join("/");
    match rng.below(100) {
        0..=44 => joined,
        45..=49 => format!("{joined}/"),
        50..=69 => format!("{joined}/*"),
        70..=84 => format!("{joined}*"),
        // A glob that cuts a segment short: `a/ab` -> `a/a*`.
        _ if joined.len() > 1 => format!("{}*", &joined[..joined.len() - 1]),
        _ => format!("{joined}/*"),
    }
}

/// `base` with one change: a literal segment made `+` or the reverse, a `+` moved, a segment
/// added or dropped, the trailing glob added, removed or moved into the last segment.
fn variant(rng: &mut Rng, base: &str) -> String {
    let (stem, glob) = match base.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (base, false),
    };
    let mut segments: Vec<String> = stem.split('/').map(str::to_owned).collect();
    let mut glob = glob;
    let at = rng.below(segments.len());
    let other = rng.below(segments.len());
    match rng.below(7) {
        // Move a `+` to a literal's place: same number of `+`, other length and order.
        6 if segments[at] == "+" && segments[other] != "+" => {
            segments.swap(at, other);
            segments[at] = rng.pick(SEGMENTS).to_owned();
        }
        0 => segments[at] = "+".to_owned(),
        1 => segments[at] = rng.pick(SEGMENTS).to_owned(),
        2 => segments.push(segment(rng)),
        3 if segments.len() > 1 => {
            segments.pop();
        }
        4 => glob = !glob,
        _ => {
            if let Some(last) = segments.last_mut() {
                if last.len() > 1 && last != "+" {
                    last.pop();
                    glob = true;
                } else {
                    last.push_str(rng.pick(SEGMENTS));
                }
            }
        }
    }
    let joined = segments.join("/");
    if glob {
        format!("{joined}*")
    } else {
        joined
    }
}

fn capabilities(rng: &mut Rng) -> Vec<&'static str> {
    match rng.below(100) {
        0..=11 => vec!["deny"],
        12..=14 => vec![rng.pick(CAPABILITIES), "deny"],
        15..=16 => vec![],
        _ => {
            let mut caps: Vec<&str> = (0..1 + rng.below(3))
                .map(|_| rng.pick(CAPABILITIES))
                .collect();
            caps.sort_unstable();
            caps.dedup();
            caps
        }
    }
}

/// One random policy text, HCL mostly, sometimes the JSON form.
fn policy_text(rng: &mut Rng, family: &mut Family) -> String {
    let mut rules: Vec<(String, Vec<&str>, Option<&str>)> = Vec::new();
    for _ in 0..1 + rng.below(4) {
        // Now and then the same pattern twice in one policy: the server merges them.
        let pattern = match rules.last() {
            Some((last, _, _)) if rng.percent(8) => last.clone(),
            _ => pattern(rng, family),
        };
        let old_style = rng
            .percent(4)
            .then(|| rng.pick(&["deny", "read", "write", "sudo"]));
        rules.push((pattern, capabilities(rng), old_style));
    }
    if rng.percent(10) {
        // JSON keeps one settings object per pattern: give repeats their own list entry.
        let entries: Vec<Value> = rules
            .iter()
            .map(|(pattern, caps, old_style)| {
                let mut settings = json!({ "capabilities": caps });
                if let Some(old) = old_style {
                    settings["policy"] = json!(old);
                }
                json!({ pattern.as_str(): settings })
            })
            .collect();
        return json!({ "path": entries }).to_string();
    }
    rules
        .iter()
        .map(|(pattern, caps, old_style)| {
            let list: Vec<String> = caps.iter().map(|c| format!("{c:?}")).collect();
            let old = old_style.map_or(String::new(), |p| format!("\n  policy = {p:?}"));
            format!(
                "path {pattern:?} {{\n  capabilities = [{}]{old}\n}}\n",
                list.join(", ")
            )
        })
        .collect()
}

/// A request path: a third made to hit two of the token's patterns at once (so that they
/// compete), a third to hit one, a third at random.
fn request_path(rng: &mut Rng, patterns: &[String]) -> String {
    let choice = rng.below(3);
    let mut path = match (choice, patterns.len()) {
        (0, n) if n > 0 => {
            let (a, b) = (rng.below(n), rng.below(n));
            let (a, b) = (&patterns[a], &patterns[b]);
            common_instance(rng, a, b).unwrap_or_else(|| instance(rng, a))
        }
        (1, n) if n > 0 => {
            let pattern = &patterns[rng.below(n)];
            instance(rng, pattern)
        }
        _ => {
            let mut parts: Vec<String> = (0..1 + rng.below(5))
                .map(|_| match rng.below(100) {
                    0..=2 => String::new(),
                    3..=5 => "+".to_owned(),
                    _ => rng.pick(SEGMENTS).to_owned(),
                })
                .collect();
            if rng.percent(10) {
                parts.push(String::new());
            }
            parts.join("/")
        }
    };
    if rng.percent(5) {
        path.insert(0, '/');
    }
    if path.trim_matches('/').is_empty() {
        path = rng.pick(SEGMENTS).to_owned();
    }
    path
}

/// A path matching `pattern`: each `+` filled in, the glob extended.
fn instance(rng: &mut Rng, pattern: &str) -> String {
    let (stem, glob) = split_glob(pattern);
    let mut parts: Vec<String> = stem
        .split('/')
        .map(|part| match part {
            "+" => rng.pick(SEGMENTS).to_owned(),
            _ => part.to_owned(),
        })
        .collect();
    if glob {
        if let Some(last) = parts.last_mut() {
            last.push_str(rng.pick(&["", "x", "c", "/b", "b/c", "/"]));
        }
    }
    parts.join("/")
}

/// A path that both patterns match, when there is an obvious one. (Only a good guess: the
/// server decides what matches.)
fn common_instance(rng: &mut Rng, a: &str, b: &str) -> Option<String> {
    let (mut a, mut b) = (split_glob(a), split_glob(b));
    let (mut pa, mut pb): (Vec<&str>, Vec<&str>) =
        (a.0.split('/').collect(), b.0.split('/').collect());
    if pa.len() > pb.len() {
        std::mem::swap(&mut a, &mut b);
        std::mem::swap(&mut pa, &mut pb);
    }
    if pa.len() < pb.len() && !a.1 {
        return None;
    }
    let mut out = Vec::with_capacity(pb.len());
    for (i, y) in pb.iter().enumerate() {
        let Some(x) = pa.get(i) else {
            out.push(if *y == "+" { rng.pick(SEGMENTS) } else { y }.to_owned());
            continue;
        };
        let x_glob = a.1 && i + 1 == pa.len();
        let y_glob = b.1 && i + 1 == pb.len();
        let segment = match (*x, *y) {
            ("+", "+") => rng.pick(SEGMENTS),
            ("+", lit) | (lit, "+") => lit,
            (x, y) if x == y => x,
            (x, y) if x_glob && y.starts_with(x) => y,
            (x, y) if y_glob && x.starts_with(y) => x,
            _ => return None,
        };
        out.push(segment.to_owned());
    }
    Some(out.join("/"))
}

fn split_glob(pattern: &str) -> (&str, bool) {
    match pattern.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (pattern, false),
    }
}

struct Token {
    policies: Vec<usize>,
    paths: Vec<String>,
}

fn server_capabilities(bao: &OpenBao, token: &str, paths: &[String]) -> Vec<Capabilities> {
    let response = bao.post_json(
        "sys/capabilities",
        &json!({ "token": token, "paths": paths }),
    );
    paths
        .iter()
        .map(|path| {
            let names: Vec<&str> = response["data"][path]
                .as_array()
                .unwrap_or_else(|| panic!("no capabilities for {path:?} in {response}"))
                .iter()
                .map(|n| n.as_str().unwrap_or("<not a string>"))
                .collect();
            Capabilities::from_names(&names)
                .unwrap_or_else(|e| panic!("server answered {names:?} for {path:?}: {e}"))
        })
        .collect()
}

#[test]
fn evaluator_agrees_with_sys_capabilities_on_random_policies() {
    let seed = std::env::var("ACL_DIFF_SEED")
        .ok()
        .map(|s| s.parse().expect("ACL_DIFF_SEED must be an integer"))
        .unwrap_or(DEFAULT_SEED);
    let mut rng = Rng(seed);
    let started = Instant::now();
    let bao = OpenBao::start();

    // Every policy belongs to one random token, whose family of patterns makes them compete;
    // some tokens also get a few policies of other tokens.
    let owners: Vec<usize> = (0..POLICIES).map(|_| rng.below(TOKENS)).collect();
    let mut families: Vec<Family> = (0..TOKENS)
        .map(|_| Family {
            patterns: Vec::new(),
            ties: rng.percent(20),
        })
        .collect();
    let texts: Vec<String> = owners
        .iter()
        .map(|&owner| policy_text(&mut rng, &mut families[owner]))
        .collect();
    let names: Vec<String> = (0..POLICIES).map(|i| format!("diff-{i}")).collect();
    let parsed: Vec<Policy> = names
        .iter()
        .zip(&texts)
        .map(|(name, text)| {
            Policy::parse(name, text)
                .unwrap_or_else(|e| panic!("we reject a policy the server takes: {e}\n{text}"))
        })
        .collect();

    let mut tokens: Vec<Token> = (0..TOKENS)
        .map(|_| Token {
            policies: Vec::new(),
            paths: Vec::new(),
        })
        .collect();
    for (policy, &owner) in owners.iter().enumerate() {
        tokens[owner].policies.push(policy);
    }
    for token in &mut tokens {
        while token.policies.is_empty() || rng.percent(30) {
            token.policies.push(rng.below(POLICIES));
        }
        token.policies.sort_unstable();
        token.policies.dedup();
        let patterns: Vec<String> = token
            .policies
            .iter()
            .flat_map(|&p| parsed[p].rules().iter().map(|r| r.pattern().to_owned()))
            .collect();
        let mut paths = BTreeSet::new();
        while paths.len() < PATHS_PER_TOKEN {
            paths.insert(request_path(&mut rng, &patterns));
        }
        token.paths = paths.into_iter().collect();
    }

    std::thread::scope(|scope| {
        for chunk in names.chunks(POLICIES.div_ceil(4)) {
            let (bao, texts) = (&bao, &texts);
            scope.spawn(move || {
                for name in chunk {
                    let index: usize = name["diff-".len()..].parse().expect("own name");
                    bao.put_policy(name, &texts[index]);
                }
            });
        }
    });

    let mut pairs = 0;
    let mut granted = 0;
    let mut mismatches = Vec::new();
    for token in &tokens {
        let policy_names: Vec<&str> = token.policies.iter().map(|&p| &*names[p]).collect();
        let secret = bao.create_token(&policy_names);
        let expected = server_capabilities(&bao, &secret, &token.paths);
        let policies: Vec<Policy> = token.policies.iter().map(|&p| parsed[p].clone()).collect();
        let acl = Acl::new(&policies);
        for (path, expected) in token.paths.iter().zip(expected) {
            pairs += 1;
            granted += usize::from(!expected.is_denied());
            let actual = acl.capabilities(path);
            if actual != expected {
                mismatches.push((token, path, expected, actual));
            }
        }
    }

    for (token, path, expected, actual) in mismatches.iter().take(10) {
        eprintln!("---- mismatch on path {path:?}: server {expected}, ours {actual}");
        for &p in &token.policies {
            eprintln!("# policy {}\n{}", names[p], texts[p]);
        }
    }
    eprintln!(
        "seed {seed:#x}: {POLICIES} policies, {TOKENS} tokens, {pairs} policy-set/path pairs \
         ({granted} not deny), {} mismatches, {:.1?}",
        mismatches.len(),
        started.elapsed()
    );
    assert!(pairs >= 500 * 4);
    assert!(
        mismatches.is_empty(),
        "{} of {pairs} pairs disagree with sys/capabilities (first ones above)",
        mismatches.len()
    );
}

#[test]
fn evaluator_agrees_on_the_servers_default_policy() {
    let bao = OpenBao::start();
    let text = bao.get_json("sys/policies/acl/default")["data"]["policy"]
        .as_str()
        .expect("default policy has text")
        .to_owned();
    let default = Policy::parse("default", &text).unwrap_or_else(|e| panic!("{e}"));
    let mut paths: BTreeSet<String> = default
        .rules()
        .iter()
        .flat_map(|r| {
            let p = r.pattern();
            let stem = p.trim_end_matches('*');
            [
                p.to_owned(),
                format!("{stem}x"),
                format!("{stem}x/y"),
                format!("{p}/"),
            ]
        })
        .collect();
    paths.extend(["secret/data/app", "sys/mounts", "auth/token/create"].map(String::from));
    let paths: Vec<String> = paths.into_iter().collect();

    // `create_token` sets `no_default_policy`, which strips `default` even when named.
    let created = bao.post_json("auth/token/create", &json!({ "policies": ["default"] }));
    let token = created["auth"]["client_token"]
        .as_str()
        .expect("token create returned a token");
    let expected = server_capabilities(&bao, token, &paths);
    let acl = Acl::new(&[default]);
    let mismatches: Vec<String> = paths
        .iter()
        .zip(expected)
        .filter(|(path, expected)| acl.capabilities(path) != *expected)
        .map(|(path, expected)| {
            format!(
                "{path:?}: server {expected}, ours {}",
                acl.capabilities(path)
            )
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn server_and_parser_reject_the_same_bad_policies() {
    let bao = OpenBao::start();
    let bad = [
        r#"path "a" { capabilities = ["raed"] }"#,
        r#"path "a/+*" { capabilities = ["read"] }"#,
        r#"path "a" { capabilites = ["read"] }"#,
        r#"path "a" { policy = "admin" }"#,
        r#"paths "a" { capabilities = ["read"] }"#,
        r#"path "a" { capabilities = ["read"] "#,
        r#"path "a" {
             capabilities = ["read"]
             min_wrapping_ttl = "2h"
             max_wrapping_ttl = "1h"
           }"#,
    ];
    for (i, text) in bad.iter().enumerate() {
        let (status, body) = bao.request(
            "PUT",
            &format!("sys/policies/acl/bad-{i}"),
            Some(&json!({ "policy": text })),
        );
        assert_eq!(status, 400, "server took {text}: {body}");
        assert!(
            Policy::parse("bad", text).is_err(),
            "we take what the server rejects: {text}"
        );
    }
}

/// `secretstore policy` for a pod that issues a certificate and decrypts with transit,
/// applied to OpenBao: the pod's token may `update` exactly its write paths and nothing
/// else there, and the evaluator agrees with the server on every path asked.
#[test]
fn generated_policy_grants_update_on_write_paths_only() {
    let bao = OpenBao::start();
    bao.enable_secrets_engine("pki", "pki", &json!({}));
    bao.enable_secrets_engine("transit", "transit", &json!({}));
    let manifest = support::repo_root().join("testdata/render/issued-pki-deployment.yaml");
    let output = support::secretstore()
        .envs(bao.env())
        .args(["policy", "--format", "json"])
        .arg(&manifest)
        .output()
        .expect("run policy");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated: Value = serde_json::from_slice(&output.stdout).expect("policy JSON");
    let text = generated[0]["policy"].as_str().expect("policy text");
    bao.put_policy("generated", text);
    let token = bao.create_token(&["generated"]);
    let paths: Vec<String> = [
        "pki/issue/web",
        "transit/decrypt/app",
        "pki/issue/other",
        "pki/sign/web",
        "pki/roles/web",
        "transit/encrypt/app",
        "transit/decrypt/other",
    ]
    .map(str::to_owned)
    .to_vec();
    let server = server_capabilities(&bao, &token, &paths);
    let acl = Acl::new(&[Policy::parse("generated", text).expect("the generated policy parses")]);
    let update = Capabilities::from_names(["update"]).expect("update");
    let deny = Capabilities::from_names(["deny"]).expect("deny");
    for (i, path) in paths.iter().enumerate() {
        let expected = if i < 2 { update } else { deny };
        assert_eq!(server[i], expected, "server on {path}:\n{text}");
        assert_eq!(acl.capabilities(path), server[i], "evaluator on {path}");
    }
}
