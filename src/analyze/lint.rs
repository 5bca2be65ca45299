//! `secretstore lint`: offline checks of manifests before they are committed.
//!
//! Lint reports everything render would refuse (it runs render itself, so the dialect
//! has one implementation) and adds warnings about pods that render accepts but that are
//! likely to fail at start: see [`code::RULES`] from `SS202` on.

use crate::analyze::scan::{self, ScannedContainer, ScannedPod};
use crate::config::Settings;
use crate::diag::{Code, Diagnostic, Location};
use crate::duration;
use crate::render::dialect;
use crate::render::frontend;
use crate::render::plan::AGENT_USER;
use crate::render::stream;
use crate::render::Input;
use crate::report::Note;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Extensions of the files a directory walk lints.
pub const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

const ISTIO_INJECT: &str = "sidecar.istio.io/inject";
const ISTIO_NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";
const ISTIO_EXCLUDE_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
const ISTIO_EXCLUDE_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";

/// Lints one input: every diagnostic render gives for it, then the lint rules, in
/// source order. An input with no objects is fine.
pub fn lint_input(input: &Input, settings: &Settings) -> Vec<Diagnostic> {
    let scan = scan::scan(input, settings);
    let mut out = scan.diagnostics;
    unparsable_unmarked_documents(input, &mut out);
    for pod in scan.pods {
        no_service_account(&pod, &mut out);
        unreadable_files(&pod, &mut out);
        istio_init_order(&pod, settings, &mut out);
        version_conflicts(&pod, &mut out);
        live_mode(&pod, settings, &mut out);
        certificate_without_live_mode(&pod, &mut out);
        unused_env_only_configs(&pod, &mut out);
    }
    out.sort_by(|a, b| {
        (a.location.line, a.location.column, a.code).cmp(&(
            b.location.line,
            b.location.column,
            b.code,
        ))
    });
    out
}

/// Documents without the dialect marker are render's to pass through untouched, whatever
/// they hold; a linter still reports each one it cannot parse, with the code render would
/// give it if it held a reference.
fn unparsable_unmarked_documents(input: &Input, out: &mut Vec<Diagnostic>) {
    let body = &input.bytes[stream::bom_len(&input.bytes)..];
    let docs = stream::split(body);
    let marked: BTreeSet<usize> = stream::containing(body, &docs, dialect::MARKER)
        .iter()
        .map(|d| d.start)
        .collect();
    for doc in docs.iter().filter(|d| !marked.contains(&d.start)) {
        if let Err(diagnostic) = frontend::parse_document(&input.name, body, doc) {
            out.push(*diagnostic);
        }
    }
}

fn finding(pod: &ScannedPod, code: Code, location: &Location, field: String) -> Diagnostic {
    Diagnostic::new(code, location.clone(), String::new())
        .with_object(Some(pod.object.clone()))
        .with_field(field)
}

/// SS202: without `serviceAccountName` the pod runs as the namespace's `default`
/// service account, which the Vault role is rarely (and should not be) bound to.
fn no_service_account(pod: &ScannedPod, out: &mut Vec<Diagnostic>) {
    if pod.service_account.is_some() {
        return;
    }
    let mut d = finding(
        pod,
        Code::NoServiceAccount,
        &pod.spec_location,
        format!("{}spec.serviceAccountName", pod.field),
    );
    d.message = "the pod has no serviceAccountName, so it logs in to Vault as the namespace's `default` service account".into();
    d.help = Some(format!(
        "give the pod a service account of its own (spec.serviceAccountName) and bind the Vault role `{}` to it",
        pod.role
    ));
    out.push(d);
}

/// SS203: a file secret that some container cannot read. The agent writes each file
/// as its own user ([`AGENT_USER`]) with the file's mode; the group is the pod's
/// `fsGroup` when set (the volume's setgid directory passes it on, and every
/// container has it as a supplementary group), else the agent's group.
fn unreadable_files(pod: &ScannedPod, out: &mut Vec<Diagnostic>) {
    for file in &pod.files {
        if file.mode & 0o004 != 0 {
            continue;
        }
        let blocked: Vec<String> = file
            .containers
            .iter()
            .filter_map(|name| pod.containers.iter().find(|c| &c.name == name))
            .filter(|c| !can_read(pod, c, file.mode))
            .map(|c| match c.run_as_user.or(pod.security.run_as_user) {
                Some(uid) => format!("`{}` (user {uid})", c.name),
                None => format!("`{}` (the image's user)", c.name),
            })
            .collect();
        if blocked.is_empty() {
            continue;
        }
        let group = match pod.security.fs_group {
            Some(g) => format!("fsGroup {g}"),
            None => format!("group {AGENT_USER}, as the pod sets no fsGroup"),
        };
        let mut d = finding(
            pod,
            Code::FileSecretUnreadable,
            &file.location,
            file.field.clone(),
        );
        d.message = format!(
            "file secret `{}/{}` has mode {:04o} and belongs to user {AGENT_USER} and {group}, so container{} {} cannot read it",
            file.mount_path,
            file.file_name,
            file.mode,
            if blocked.len() == 1 { "" } else { "s" },
            blocked.join(", ")
        );
        d.help = Some(
            if file.mode & 0o040 != 0 && pod.security.fs_group.is_none() {
                "set spec.securityContext.fsGroup (the containers then share the file's group), or make the mode world-readable (\"0444\")".into()
            } else {
                "make the mode group-readable (e.g. \"0440\") and set spec.securityContext.fsGroup, or use \"0444\"".into()
            },
        );
        out.push(d);
    }
}

fn can_read(pod: &ScannedPod, c: &ScannedContainer, mode: u32) -> bool {
    let uid = c.run_as_user.or(pod.security.run_as_user);
    let gid = c.run_as_group.or(pod.security.run_as_group);
    let drops = |cap: &str| {
        c.capabilities_drop
            .iter()
            .any(|d| d.eq_ignore_ascii_case("ALL") || d.eq_ignore_ascii_case(cap))
    };
    let root_bypass = uid == Some(0) && !(drops("DAC_OVERRIDE") && drops("DAC_READ_SEARCH"));
    let owner = mode & 0o400 != 0 && uid == Some(AGENT_USER);
    let in_agent_group =
        gid == Some(AGENT_USER) || pod.security.supplemental_groups.contains(&AGENT_USER);
    let group = mode & 0o040 != 0 && (pod.security.fs_group.is_some() || in_agent_group);
    root_bypass || owner || group
}

/// SS204: with Istio's sidecar injected the classic way, `istio-init` redirects all
/// outbound traffic to the proxy, which starts only after every init container has
/// finished: the agent cannot reach Vault.
fn istio_init_order(pod: &ScannedPod, settings: &Settings, out: &mut Vec<Diagnostic>) {
    let find = |key: &str| {
        pod.annotations
            .iter()
            .chain(&pod.labels)
            .find(|e| e.key == key)
    };
    let Some(inject) = find(ISTIO_INJECT).filter(|e| e.value.as_deref() == Some("true")) else {
        return;
    };
    let port = vault_port(&settings.vault_address);
    let port_excluded = find(ISTIO_EXCLUDE_PORTS)
        .and_then(|e| e.value.as_deref())
        .is_some_and(|ports| ports.split(',').any(|p| p.trim() == port));
    let ranges_excluded = find(ISTIO_EXCLUDE_RANGES)
        .and_then(|e| e.value.as_deref())
        .is_some_and(|r| !r.trim().is_empty());
    let native = find(ISTIO_NATIVE_SIDECAR).and_then(|e| e.value.as_deref()) == Some("true");
    if port_excluded || ranges_excluded || native {
        return;
    }
    let in_labels = pod.labels.iter().any(|e| std::ptr::eq(e, inject));
    let mut d = finding(
        pod,
        Code::IstioInitOrder,
        &inject.location,
        format!(
            "{}metadata.{}[{ISTIO_INJECT}]",
            pod.field,
            if in_labels { "labels" } else { "annotations" }
        ),
    );
    d.message = "the pod gets Istio's sidecar: istio-init sends all outbound traffic to the proxy, which starts only after the init containers, so the secretstore agent cannot reach Vault".into();
    d.help = Some(format!(
        "exclude Vault's port from capture with the pod annotation `{ISTIO_EXCLUDE_PORTS}: \"{port}\"` (or {ISTIO_EXCLUDE_RANGES}), or run the proxy as a native sidecar (`{ISTIO_NATIVE_SIDECAR}: \"true\"`, Kubernetes 1.29+), which starts before init containers; holdApplicationUntilProxyStarts alone does not help, it only orders app containers"
    ));
    out.push(d);
}

/// The TCP port of a Vault address (`https://vault:8200` → 8200; else the scheme's).
fn vault_port(address: &str) -> String {
    let (scheme, rest) = address.split_once("://").unwrap_or(("https", address));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    match authority[host_end..].rsplit_once(':') {
        Some((_, port)) if !port.is_empty() => port.to_string(),
        _ if scheme.eq_ignore_ascii_case("http") => "80".into(),
        _ => "443".into(),
    }
}

/// SS205: one pod reading a path at two versions (or pinned and latest) is almost
/// always a half-done version bump.
fn version_conflicts(pod: &ScannedPod, out: &mut Vec<Diagnostic>) {
    let mut refs: Vec<_> = pod.references.iter().collect();
    refs.sort_by(|a, b| {
        (a.location.line, a.location.column).cmp(&(b.location.line, b.location.column))
    });
    let mut first: BTreeMap<&str, &scan::ScannedRef> = BTreeMap::new();
    for r in refs {
        let Some(earlier) = first.get(r.reference.path.as_str()) else {
            first.insert(&r.reference.path, r);
            continue;
        };
        if earlier.reference.version == r.reference.version {
            continue;
        }
        let version =
            |v: Option<u64>| v.map_or("the latest version".into(), |v| format!("version {v}"));
        let mut d = finding(pod, Code::VersionConflict, &r.location, r.field.clone());
        d.message = format!(
            "`{}` is read at {} here but at {} on line {}",
            r.reference.path,
            version(r.reference.version),
            version(earlier.reference.version),
            earlier.location.line
        );
        d.help = Some("pin every reference to this path to the same version".into());
        out.push(d);
    }
}

/// Below this, a refresh interval mostly adds load on Vault: KV values rarely change
/// that often, and leases are renewed on their own schedule anyway.
pub const MIN_REFRESH_SECONDS: u64 = 30;

/// SS206 and SS207: a refresh interval under [`MIN_REFRESH_SECONDS`], and live-mode
/// settings on a pod that is not live, where nothing will ever change. (A live pod for a
/// cluster older than 1.29 is render's own error, SS131.)
fn live_mode(pod: &ScannedPod, settings: &Settings, out: &mut Vec<Diagnostic>) {
    let find = |key: &str| pod.annotations.iter().find(|e| e.key == key);
    let annotation = find(dialect::REFRESH_KEY);
    let refresh = match annotation.and_then(|e| e.value.as_deref()) {
        Some(text) => match duration::parse_refresh(text) {
            Ok(r) => r,
            Err(_) => return,
        },
        None => settings.refresh_seconds,
    };
    let field = |key: &str| format!("{}metadata.annotations[{key}]", pod.field);
    if let Some(e) = annotation {
        if let Some(oddity) = e.value.as_deref().and_then(duration::refresh_oddity) {
            let mut d = finding(
                pod,
                Code::RefreshOddValue,
                &e.location,
                field(dialect::REFRESH_KEY),
            );
            d.message = oddity;
            d.help = Some(
                "write the interval with its unit (30s, 5m, 1h30m), or `off` for no live mode"
                    .into(),
            );
            out.push(d);
        }
    }
    match refresh {
        Some(seconds) if seconds < MIN_REFRESH_SECONDS => {
            let (location, source) = match annotation {
                Some(e) => (&e.location, "the pod's refresh annotation"),
                None => (&pod.location, "the configuration's agent.refresh"),
            };
            let mut d = finding(
                pod,
                Code::RefreshTooShort,
                location,
                field(dialect::REFRESH_KEY),
            );
            d.message = format!(
                "{source} refreshes every {seconds}s: each pod then reads every secret from Vault {} times an hour",
                3600 / seconds.max(1)
            );
            d.help = Some(format!(
                "use {MIN_REFRESH_SECONDS}s or more (leases are renewed on their own schedule whatever the interval)"
            ));
            out.push(d);
        }
        Some(_) => {}
        None => {
            let mut settings_found: Vec<(&Location, String)> = Vec::new();
            for key in [
                dialect::ON_CHANGE_KEY,
                dialect::REVOKE_ON_STOP_KEY,
                dialect::METRICS_PORT_KEY,
            ] {
                if let Some(e) = find(key) {
                    settings_found.push((&e.location, field(key)));
                }
            }
            for e in &pod.annotations {
                if !e.key.starts_with(dialect::FILE_KEY_PREFIX) {
                    continue;
                }
                let on_change = e
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
                    .is_some_and(|v| v.get("onChange").is_some());
                if on_change {
                    settings_found.push((&e.location, format!("{}.onChange", field(&e.key))));
                }
            }
            for (location, field) in settings_found {
                let mut d = finding(pod, Code::OnChangeWithoutRefresh, location, field);
                d.message = "a live-mode setting on a pod without live mode: its secrets are fetched once at start and never change".into();
                d.help = Some(format!(
                    "add `{}: \"5m\"` (or the configuration's agent.refresh) to keep the secrets fresh, or remove the setting",
                    dialect::REFRESH_KEY
                ));
                out.push(d);
            }
        }
    }
}

/// Workload kinds whose pods run until replaced: a certificate issued once expires in them.
const LONG_RUNNING: [&str; 4] = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"];

/// Whether a reference asks for a certificate: a write to PKI's `issue/<role>`, or any
/// write with a `common_name`.
fn is_certificate_request(reference: &dialect::SecretRef) -> bool {
    let Some(params) = &reference.params else {
        return false;
    };
    let segments: Vec<&str> = reference.path.split('/').collect();
    segments.len() >= 3 && segments[segments.len() - 2] == "issue"
        || serde_json::from_str::<serde_json::Value>(params)
            .is_ok_and(|p| p.get("common_name").is_some())
}

/// SS208: a long-running workload gets a certificate without live mode.
fn certificate_without_live_mode(pod: &ScannedPod, out: &mut Vec<Diagnostic>) {
    if pod.live || !LONG_RUNNING.contains(&pod.object.kind.as_str()) {
        return;
    }
    let mut seen = BTreeSet::new();
    for r in &pod.references {
        if !is_certificate_request(&r.reference) || !seen.insert(&r.field) {
            continue;
        }
        let mut d = finding(
            pod,
            Code::CertificateWithoutLiveMode,
            &r.location,
            r.field.clone(),
        );
        d.message = format!(
            "this {} gets a certificate from `{}` without live mode: it is issued once at pod start and expires while the pod runs",
            pod.object.kind, r.reference.path
        );
        d.help = Some(format!(
            "add `{}: \"1h\"` so the sidecar issues it again before it expires (at two thirds of its lifetime, or renewBefore ahead of notAfter)",
            dialect::REFRESH_KEY
        ));
        out.push(d);
    }
}

/// SS211: a config mounted in no container (`"containers": []`) that no
/// `secretstore:file:` env value uses: nothing in the pod sees its secrets.
fn unused_env_only_configs(pod: &ScannedPod, out: &mut Vec<Diagnostic>) {
    let mut seen = BTreeSet::new();
    for file in pod.files.iter().filter(|f| f.containers.is_empty()) {
        if !seen.insert(&file.suffix) || pod.file_env_values.iter().any(|(s, _)| *s == file.suffix)
        {
            continue;
        }
        let mut d = finding(
            pod,
            Code::EnvOnlyConfigUnused,
            &file.location,
            file.field.clone(),
        );
        d.message = format!(
            "{}{} is mounted in no container, and no env value uses its files, so nothing in the pod sees it",
            dialect::FILE_KEY_PREFIX,
            file.suffix
        );
        d.help = Some(format!(
            "use a file as an env value (value: \"secretstore:file:{}/{}\"), list the containers that get it, or remove the configuration",
            file.suffix, file.file_name
        ));
        out.push(d);
    }
}

/// What to lint: `None` is stdin.
#[derive(Debug, Default)]
pub struct Targets {
    pub files: Vec<Option<PathBuf>>,
    pub notes: Vec<Note>,
}

/// Expands the command line's paths: `-` is stdin, directories are walked (sorted; hidden
/// directories skipped; `.yaml`, `.yml`, `.json`), named files are taken whatever their
/// extension. Helm chart templates are skipped either way, with a note per `templates/`.
pub fn collect(paths: &[PathBuf]) -> Result<Targets, String> {
    let mut targets = Targets::default();
    let mut skipped: BTreeMap<PathBuf, usize> = BTreeMap::new();
    let mut take = |path: PathBuf, targets: &mut Targets| match chart_templates_dir(&path) {
        Some(dir) => *skipped.entry(dir).or_default() += 1,
        None => targets.files.push(Some(path)),
    };
    for path in paths {
        if path.as_os_str() == "-" {
            targets.files.push(None);
            continue;
        }
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if !meta.is_dir() {
            take(path.clone(), &mut targets);
            continue;
        }
        let walk = walkdir::WalkDir::new(path)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                e.depth() == 0
                    || !e.file_type().is_dir()
                    || !e.file_name().to_string_lossy().starts_with('.')
            });
        for entry in walk {
            let entry = entry.map_err(|e| format!("cannot walk {}: {e}", path.display()))?;
            let lintable = entry.file_type().is_file()
                && entry
                    .path()
                    .extension()
                    .is_some_and(|ext| EXTENSIONS.iter().any(|x| ext.eq_ignore_ascii_case(x)));
            if lintable {
                take(entry.into_path(), &mut targets);
            }
        }
    }
    for (dir, count) in skipped {
        targets.notes.push(Note {
            source: dir.display().to_string(),
            message: format!(
                "skipped {count} Helm chart template file{}: templates are not YAML until rendered; lint the rendered chart instead (helm template ... | secretstore lint -)",
                if count == 1 { "" } else { "s" }
            ),
        });
    }
    Ok(targets)
}

/// The `templates/` directory of a Helm chart that `path` is in, if any: an ancestor
/// named `templates` with a `Chart.yaml` beside it.
fn chart_templates_dir(path: &Path) -> Option<PathBuf> {
    path.ancestors().skip(1).find_map(|dir| {
        let chart = dir.parent()?.join("Chart.yaml");
        (dir.file_name()? == "templates" && chart.is_file()).then(|| dir.to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes lint finds in a Pod with these annotations, pod securityContext and
    /// containers (YAML fragments, indented to fit).
    fn codes(annotations: &str, security: &str, containers: &str) -> Vec<Code> {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: r\n{annotations}spec:\n  serviceAccountName: p\n  securityContext: {security}\n  containers:\n{containers}"
        );
        let input = Input {
            name: "t.yaml".into(),
            bytes: text.into_bytes(),
        };
        lint_input(&input, &Settings::default())
            .iter()
            .map(|d| d.code)
            .collect()
    }

    fn file(mode: &str) -> String {
        format!(
            "    vault.secretstore.rafay.dev/filesecret-config-1: '{{\"vaultSecretRef\": \"s/a#k\", \"secretFileName\": \"k\", \"volumeMountPath\": \"/s\"{mode}}}'\n"
        )
    }

    #[test]
    fn any_annotation_written_twice_is_reported() {
        let one = "    - {name: a, image: a}\n";
        let twice = "    prometheus.io/scrape: \"true\"\n    prometheus.io/scrape: \"false\"\n";
        assert_eq!(codes(twice, "{}", one), vec![Code::DuplicateAnnotation]);
        let role_twice = "    vault.secretstore.rafay.dev/role: other\n";
        assert_eq!(
            codes(role_twice, "{}", one),
            vec![Code::DuplicateAnnotation]
        );
    }

    const TWO_USERS: &str = "    - {name: a, image: a, securityContext: {runAsUser: 1000}}\n    - {name: b, image: b, securityContext: {runAsUser: 2000}}\n";

    #[test]
    fn file_access_follows_mode_user_and_fs_group() {
        let restricted = file(", \"mode\": \"0440\"");
        assert_eq!(codes(&file(""), "{}", TWO_USERS), Vec::<Code>::new());
        assert_eq!(
            codes(&restricted, "{}", TWO_USERS),
            vec![Code::FileSecretUnreadable]
        );
        assert!(codes(&restricted, "{fsGroup: 3000}", TWO_USERS).is_empty());
        assert!(codes(&restricted, "{supplementalGroups: [65532]}", TWO_USERS).is_empty());
        let owner_only = file(", \"mode\": \"0400\"");
        assert_eq!(
            codes(&owner_only, "{fsGroup: 3000}", TWO_USERS),
            vec![Code::FileSecretUnreadable]
        );
        assert!(codes(
            &owner_only,
            "{runAsUser: 65532}",
            "    - {name: a, image: a}\n"
        )
        .is_empty());
        assert!(codes(&owner_only, "{runAsUser: 0}", "    - {name: a, image: a}\n").is_empty());
        let root_without_caps =
            "    - {name: a, image: a, securityContext: {capabilities: {drop: [ALL]}}}\n";
        assert_eq!(
            codes(&owner_only, "{runAsUser: 0}", root_without_caps),
            vec![Code::FileSecretUnreadable]
        );
        assert_eq!(
            codes(&restricted, "{}", "    - {name: a, image: a}\n"),
            vec![Code::FileSecretUnreadable],
            "the image's user is unknown"
        );
    }

    #[test]
    fn istio_capture_exclusions_silence_the_warning() {
        let one = "    - {name: a, image: a}\n";
        let inject = "    sidecar.istio.io/inject: \"true\"\n";
        assert_eq!(codes(inject, "{}", one), vec![Code::IstioInitOrder]);
        assert!(codes("    sidecar.istio.io/inject: \"false\"\n", "{}", one).is_empty());
        for fix in [
            "    traffic.sidecar.istio.io/excludeOutboundPorts: \"15020, 8200\"\n",
            "    traffic.sidecar.istio.io/excludeOutboundIPRanges: 10.0.0.9/32\n",
            "    sidecar.istio.io/nativeSidecar: \"true\"\n",
        ] {
            assert!(
                codes(&format!("{inject}{fix}"), "{}", one).is_empty(),
                "{fix}"
            );
        }
        let other_port = "    traffic.sidecar.istio.io/excludeOutboundPorts: \"443\"\n";
        assert_eq!(
            codes(&format!("{inject}{other_port}"), "{}", one),
            vec![Code::IstioInitOrder]
        );
    }

    #[test]
    fn versions_of_one_path_must_agree() {
        let env = |a: &str, b: &str| {
            format!("    - name: a\n      image: a\n      command: [/a]\n      env:\n      - {{name: X, value: \"secretstore:vault:secret/db#x{a}\"}}\n      - {{name: Y, value: \"secretstore:vault:/secret/db#y{b}\"}}\n")
        };
        assert!(codes("", "{}", &env("#3", "#3")).is_empty());
        assert!(codes("", "{}", &env("", "")).is_empty());
        assert_eq!(
            codes("", "{}", &env("#3", "#4")),
            vec![Code::VersionConflict]
        );
        assert_eq!(codes("", "{}", &env("", "#4")), vec![Code::VersionConflict]);
    }

    #[test]
    fn live_mode_warnings() {
        let one = "    - {name: a, image: a, command: [a]}\n";
        let refresh = |v: &str| format!("    vault.secretstore.rafay.dev/refresh: \"{v}\"\n");
        assert_eq!(
            codes(&refresh("10s"), "{}", one),
            vec![Code::RefreshTooShort]
        );
        assert_eq!(codes(&refresh("30s"), "{}", one), Vec::<Code>::new());
        let on_change = "    vault.secretstore.rafay.dev/on-change: restart\n";
        assert_eq!(
            codes(on_change, "{}", one),
            vec![Code::OnChangeWithoutRefresh]
        );
        let with_refresh = format!("{}{on_change}", refresh("1m"));
        assert_eq!(codes(&with_refresh, "{}", one), Vec::<Code>::new());
        assert_eq!(
            codes(&file(", \"onChange\": \"signal:HUP\""), "{}", one),
            vec![Code::OnChangeWithoutRefresh]
        );
    }

    #[test]
    fn a_config_mounted_nowhere_needs_an_env_value() {
        let env_only = "    vault.secretstore.rafay.dev/filesecret-config-1: '{\"sources\": {\"db\": \"database/creds/app\"}, \"secretFileName\": \"url\", \"containers\": [], \"template\": \"${ db.username }\"}'\n";
        let plain = "    - {name: a, image: a, command: [a]}\n";
        assert_eq!(
            codes(env_only, "{}", plain),
            vec![Code::EnvOnlyConfigUnused]
        );
        let used = "    - {name: a, image: a, command: [a], env: [{name: URL, value: \"secretstore:file:1/url\"}]}\n";
        assert_eq!(codes(env_only, "{}", used), Vec::<Code>::new());
    }

    #[test]
    fn vault_ports() {
        assert_eq!(vault_port("https://vault.vault.svc:8200"), "8200");
        assert_eq!(vault_port("https://vault.example.com/"), "443");
        assert_eq!(vault_port("http://vault"), "80");
        assert_eq!(vault_port("https://[fd00::1]:8201/x"), "8201");
        assert_eq!(vault_port("https://[fd00::1]"), "443");
    }
}
