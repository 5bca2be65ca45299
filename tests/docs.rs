//! The documentation against itself and the code: every relative link and `#anchor` of
//! the book (`docs/src`), README.md and ARCHITECTURE.md resolves; the book builds with
//! mdBook and its anchors are the ones mdBook writes; the diagnostic codes page's tables
//! are the ones `src/diag/code.rs` generates; the GitHub Actions example
//! installs secretstore and has the permissions its steps need.

use secretstore::diag::code::{Code, Family};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn book_src() -> PathBuf {
    repo_root().join("docs/src")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Markdown pages: every `.md` under `docs/src`, README.md and ARCHITECTURE.md.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = walkdir::WalkDir::new(book_src())
        .into_iter()
        .map(|e| e.expect("walk docs/src").into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages.push(repo_root().join("README.md"));
    pages.push(repo_root().join("ARCHITECTURE.md"));
    pages
}

/// The lines of a page outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// A line without its inline code spans (links in code are not links).
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// The targets of the inline links `[text](target)` of a page, with line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (number, line) in prose_lines(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                out.push((number, rest[..end].to_string()));
                rest = &rest[end..];
            }
        }
    }
    out
}

/// mdBook's id of a heading (and GitHub's, for the text used here): letters, digits, `_`
/// and `-` kept and lowercased, whitespace turned into `-`, everything else dropped.
fn heading_id(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // Keep a link's text, drop its target.
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match (after.find("]("), after.find(')')) {
            (Some(close), Some(end)) if close < end => {
                text.push_str(&after[..close]);
                rest = &after[end + 1..];
            }
            _ => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_ascii_lowercase())
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The anchors of a page: its headings' ids (a repeated id gets `-1`, `-2`, ... as mdBook
/// does) and every explicit `id="..."`.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let id = heading_id(line[hashes..].trim());
            let n = seen.entry(id.clone()).or_insert(0);
            out.insert(if *n == 0 {
                id.clone()
            } else {
                format!("{id}-{n}")
            });
            *n += 1;
        }
        let mut rest = line;
        while let Some(at) = rest.find("id=\"") {
            rest = &rest[at + 4..];
            if let Some(end) = rest.find('"') {
                out.insert(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    out
}

/// `path` with `.` and `..` resolved lexically.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn relative_links_and_anchors_resolve() {
    let src = book_src();
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        let in_book = page.starts_with(&src);
        for (line, target) in links(&text) {
            let target = target.split_whitespace().next().unwrap_or_default();
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target, None),
            };
            let resolved = if file.is_empty() {
                page.clone()
            } else {
                normalise(&page.parent().expect("parent").join(file))
            };
            let place = format!("{}:{line}: {target}", page.display());
            if in_book && !resolved.starts_with(&src) {
                broken.push(format!(
                    "{place}: leaves docs/src, so the built book breaks it"
                ));
            } else if !resolved.exists() {
                broken.push(format!("{place}: no such file"));
            } else if let Some(anchor) = anchor {
                if resolved.extension().is_none_or(|e| e != "md") {
                    broken.push(format!(
                        "{place}: an anchor into a file that is not Markdown"
                    ));
                } else if !anchors(&read(&resolved)).contains(anchor) {
                    broken.push(format!("{place}: no anchor #{anchor} there"));
                }
            }
        }
        // `{{#include FILE}}` directives name files relative to the page.
        for (line, text_line) in prose_lines(&text) {
            if let Some(rest) = text_line.trim().strip_prefix("{{#include ") {
                let file = rest
                    .trim_end_matches("}}")
                    .split(':')
                    .next()
                    .unwrap_or_default();
                if !page.parent().expect("parent").join(file).exists() {
                    broken.push(format!(
                        "{}:{line}: include {file}: no such file",
                        page.display()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} links found: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_is_in_the_summary() {
    let src = book_src();
    let summary = read(&src.join("SUMMARY.md"));
    let listed: BTreeSet<PathBuf> = links(&summary)
        .into_iter()
        .map(|(_, target)| normalise(&src.join(target)))
        .collect();
    for page in pages().into_iter().filter(|p| p.starts_with(&src)) {
        if page.file_name().is_some_and(|n| n == "SUMMARY.md") {
            continue;
        }
        assert!(
            listed.contains(&page),
            "{} is not in SUMMARY.md",
            page.display()
        );
    }
}

fn mdbook() -> PathBuf {
    let path = repo_root().join(".tools/bin/mdbook");
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-deps.sh (it installs mdBook from crates.io)",
        path.display()
    );
    path
}

#[test]
fn book_builds_with_the_anchors_the_links_use() {
    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new(mdbook())
        .arg("build")
        .arg(repo_root().join("docs"))
        .arg("--dest-dir")
        .arg(out.path())
        .output()
        .expect("run mdbook");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "mdbook build failed:\n{log}");
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
    // The anchors computed above are the ids mdBook wrote, page by page.
    let src = book_src();
    for page in pages().into_iter().filter(|p| p.starts_with(&src)) {
        let relative = page.strip_prefix(&src).expect("in docs/src");
        if relative == Path::new("SUMMARY.md") {
            continue;
        }
        let html_name = if relative.file_name().is_some_and(|n| n == "README.md") {
            relative.with_file_name("index.html")
        } else {
            relative.with_extension("html")
        };
        let html = read(&out.path().join(&html_name));
        for anchor in anchors(&read(&page)) {
            assert!(
                html.contains(&format!("id=\"{anchor}\"")),
                "{}: mdBook wrote no id {anchor:?}",
                html_name.display()
            );
        }
    }
}

/// The page's generated tables, one per family, as the code writes them.
fn generated_codes_page(page: &str) -> String {
    const END: &str = "<!-- end generated -->";
    let mut out = String::new();
    let mut rest = page;
    while let Some(at) = rest.find("<!-- generated: ") {
        let (before, marker) = rest.split_at(at);
        out.push_str(before);
        let line_end = marker.find('\n').expect("a marker line") + 1;
        let family = match marker["<!-- generated: ".len()..].split(' ').next() {
            Some("render") => Family::Render,
            Some("lint") => Family::Lint,
            Some("check") => Family::Check,
            Some("convert") => Family::Convert,
            Some("add") => Family::Add,
            other => panic!("codes.md: unknown generated table {other:?}"),
        };
        out.push_str(&marker[..line_end]);
        out.push_str("| code | severity | name | what it means |\n| --- | --- | --- | --- |\n");
        out.push_str(&Code::markdown_rows(family));
        let end = marker
            .find(END)
            .expect("codes.md: a generated table without its end marker");
        rest = &marker[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn codes_page_matches_the_code() {
    let path = book_src().join("reference/codes.md");
    let page = read(&path);
    let generated = generated_codes_page(&page);
    if page != generated {
        if std::env::var_os("SECRETSTORE_BLESS").is_some() {
            std::fs::write(&path, &generated).expect("write codes.md");
        } else {
            let first = page
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .map_or(0, |i| i + 1);
            panic!(
                "{}: the generated tables differ from src/diag/code.rs from line {first}; \
                 run `SECRETSTORE_BLESS=1 cargo test --test docs` to rewrite them",
                path.display()
            );
        }
    }
    for code in Code::ALL {
        assert_eq!(
            generated
                .matches(&format!("<a id=\"{}\">", code.id().to_ascii_lowercase()))
                .count(),
            1,
            "codes.md has one row for {}",
            code.id()
        );
    }
}

/// Every code is reported somewhere outside the tests, so the page lists no dead code.
#[test]
fn every_code_is_reported() {
    let mut sources = String::new();
    for entry in walkdir::WalkDir::new(repo_root().join("src")) {
        let path = entry.expect("walk src").into_path();
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("diag/code.rs") {
            let text = read(&path);
            sources.push_str(text.split("#[cfg(test)]").next().unwrap_or_default());
        }
    }
    for code in Code::ALL {
        assert!(
            sources.contains(&format!("Code::{}", code.name())),
            "{} ({}) is in src/diag/code.rs but nothing reports it",
            code.id(),
            code.name()
        );
    }
}

/// The GitHub Actions example: a workflow that installs secretstore before using it and
/// grants exactly what its steps need.
#[test]
fn github_actions_example_is_complete() {
    let page = read(&book_src().join("integrations/github-actions.md"));
    let start = page.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + page[start..].find("\n```").expect("end of the block");
    let workflow: serde_json::Value = yaml_serde::from_str(&page[start..end]).expect("YAML");
    let jobs = workflow["jobs"].as_object().expect("jobs");
    assert!(jobs.contains_key("lint") && jobs.contains_key("check"));
    for (name, job) in jobs {
        let steps = job["steps"].as_array().expect("steps");
        let run = |step: &serde_json::Value| step["run"].as_str().unwrap_or_default().to_string();
        let uses = |step: &serde_json::Value| step["uses"].as_str().unwrap_or_default().to_string();
        let install = steps
            .iter()
            .position(|s| run(s).contains("cargo install") && run(s).contains("secretstore"))
            .unwrap_or_else(|| panic!("job {name} does not install secretstore"));
        let first_use = steps
            .iter()
            .position(|s| run(s).contains("secretstore ") && !run(s).contains("cargo install"))
            .unwrap_or_else(|| panic!("job {name} does not run secretstore"));
        assert!(
            install < first_use,
            "job {name} runs secretstore before installing it"
        );
        let permissions = &job["permissions"];
        if steps
            .iter()
            .any(|s| uses(s).starts_with("github/codeql-action/upload-sarif"))
        {
            assert_eq!(permissions["security-events"], "write", "job {name}");
        }
        if steps.iter().any(|s| run(s).contains("secretstore check")) {
            assert_eq!(permissions["id-token"], "write", "job {name}: OIDC login");
            let login = steps
                .iter()
                .position(|s| run(s).contains("VAULT_TOKEN=") && run(s).contains("GITHUB_ENV"))
                .unwrap_or_else(|| panic!("job {name} checks without a Vault login"));
            assert!(login < steps.len() - 1 && job["env"]["VAULT_ADDR"].is_string());
        }
    }
}

/// The GitLab CI example: it parses, every job that uploads a code-quality report writes
/// it with `secretstore ... --format gitlab`, installs secretstore first, and the lint
/// command, run as written on the test's manifests, prints a report GitLab reads.
#[test]
fn gitlab_ci_example_is_complete() {
    let page = read(&book_src().join("integrations/gitlab-ci.md"));
    let start = page.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + page[start..].find("\n```").expect("end of the block");
    let pipeline: serde_json::Value = yaml_serde::from_str(&page[start..end]).expect("YAML");
    let template = &pipeline[".secretstore"];
    let install = template["before_script"]
        .as_array()
        .expect("before_script")
        .iter()
        .filter_map(|l| l.as_str())
        .any(|l| l.contains("cargo install") && l.contains("secretstore"));
    assert!(
        install,
        "the .secretstore template does not install secretstore"
    );
    let stages: Vec<&str> = pipeline["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    let mut commands = Vec::new();
    for name in ["secretstore-lint", "secretstore-check"] {
        let job = &pipeline[name];
        assert_eq!(job["extends"], ".secretstore", "job {name}");
        assert!(
            stages.contains(&job["stage"].as_str().expect("stage")),
            "job {name}"
        );
        let report = job["artifacts"]["reports"]["codequality"]
            .as_str()
            .unwrap_or_else(|| panic!("job {name} uploads no codequality report"));
        assert_eq!(job["artifacts"]["when"], "always", "job {name}");
        let script: Vec<&str> = job["script"]
            .as_array()
            .expect("script")
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        let writes = script
            .iter()
            .find(|l| l.contains(&format!("> {report}")))
            .unwrap_or_else(|| panic!("job {name} does not write {report}"));
        let command = writes.split(" > ").next().unwrap_or_default().to_owned();
        assert!(
            command.starts_with("secretstore ") && command.contains(" --format gitlab "),
            "job {name}: {command}"
        );
        commands.push(command);
    }
    assert_eq!(
        pipeline["secretstore-check"]["id_tokens"]["VAULT_ID_TOKEN"]["aud"],
        "vault"
    );
    // The lint command as written, on the manifests of the lint tests instead of `k8s/`.
    let args: Vec<String> = commands[0]
        .split_whitespace()
        .skip(1)
        .map(|a| {
            if a == "k8s/" {
                "testdata/lint/".to_owned()
            } else {
                a.to_owned()
            }
        })
        .collect();
    assert_eq!(args[..3], ["lint", "--format", "gitlab"]);
    let output = Command::new(env!("CARGO_BIN_EXE_secretstore"))
        .args(&args)
        .current_dir(repo_root())
        .output()
        .expect("run secretstore");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let issues = report.as_array().expect("an array");
    assert!(!issues.is_empty());
    assert!(issues.iter().all(|i| i["location"]["path"]
        .as_str()
        .is_some_and(|p| p.starts_with("testdata/lint/"))));
}

/// The fenced blocks of a page: (info string, body).
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match open.as_mut() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some((info.trim().to_owned(), String::new()));
                }
            }
            Some((_, body)) => {
                if trimmed == "```" {
                    blocks.push(open.take().expect("open block"));
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    blocks
}

/// The Templates page's examples are true: every complete manifest on it renders (exit
/// 0, each template in the agent spec as the annotation wrote it), except those followed
/// by `$ secretstore lint web.yaml` / `$ secretstore render web.yaml` console blocks, which
/// exit 1 with exactly the output shown (stdout, then stderr).
#[test]
fn templates_page_examples_render_and_the_shown_errors_are_the_real_ones() {
    let page = read(&book_src().join("templates.md"));
    let blocks = fenced_blocks(&page);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rendered = 0;
    let mut shown_outputs = 0;
    for (i, (info, body)) in blocks.iter().enumerate() {
        if info != "yaml" || !body.starts_with("apiVersion:") {
            continue;
        }
        std::fs::write(dir.path().join("web.yaml"), body).expect("write example");
        let run = |command: &str| {
            Command::new(env!("CARGO_BIN_EXE_secretstore"))
                .args([command, "web.yaml"])
                .current_dir(dir.path())
                .env_remove("VAULT_ADDR")
                .env_remove("SECRETSTORE_CONFIG")
                .output()
                .expect("run secretstore")
        };
        let shown: Vec<(&str, &str)> = blocks[i + 1..]
            .iter()
            .take_while(|(info, _)| info == "console")
            .map(|(_, text)| {
                let (prompt, output) = text.split_once('\n').expect("a command and its output");
                let command = prompt
                    .strip_prefix("$ secretstore ")
                    .and_then(|c| c.strip_suffix(" web.yaml"))
                    .unwrap_or_else(|| panic!("templates.md: unexpected command {prompt}"));
                (command, output)
            })
            .collect();
        for (command, expected) in &shown {
            let output = run(command);
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(output.status.code(), Some(1), "{all}");
            assert_eq!(
                &all, expected,
                "templates.md shows another output of `secretstore {command}`"
            );
            shown_outputs += 1;
        }
        if !shown.is_empty() {
            continue;
        }
        let output = run("render");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "example {i}:\n{body}\n{stderr}");
        let doc: serde_json::Value = yaml_serde::from_str(&stdout).expect("YAML");
        let agent = &doc["spec"]["template"]["spec"]["initContainers"][0];
        let spec = agent["env"]
            .as_array()
            .expect("agent env")
            .iter()
            .find(|e| e["name"] == "SECRETSTORE_SPEC")
            .and_then(|e| e["value"].as_str())
            .expect("SECRETSTORE_SPEC");
        // What the agent reads: the kubelet turns render's `$$` into `$` (no `$(VAR)` of
        // the agent's env occurs in a spec).
        let spec = spec.replace("$$", "$");
        let spec: serde_json::Value = serde_json::from_str(&spec).expect("JSON");
        let input: serde_json::Value = yaml_serde::from_str(body).expect("YAML");
        let annotations = input["spec"]["template"]["metadata"]["annotations"]
            .as_object()
            .expect("annotations");
        for (key, value) in annotations {
            if !key.contains("filesecret-config-") {
                continue;
            }
            let config: serde_json::Value =
                serde_json::from_str(value.as_str().expect("string")).expect("JSON");
            let mut texts: Vec<&serde_json::Value> = vec![&config["template"]];
            if let Some(files) = config["files"].as_object() {
                texts.extend(files.values().map(|f| &f["template"]));
            }
            for text in texts.into_iter().filter(|t| t.is_string()) {
                assert!(
                    spec["templates"]
                        .as_array()
                        .is_some_and(|ts| ts.iter().any(|t| &t["text"] == text)),
                    "example {i}: {text} not in the agent spec {spec}"
                );
            }
        }
        rendered += 1;
    }
    assert!(rendered >= 4, "only {rendered} examples rendered");
    assert!(
        shown_outputs >= 2,
        "the page shows lint's and render's output"
    );
}
