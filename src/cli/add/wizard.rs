//! The wizard: `secretstore add FILE` on a terminal without `--env`/`--file` asks for the
//! workload, the container, an env var or a file, the secret and its key, then shows the
//! diff and asks before writing. With `VAULT_ADDR` and a token it lists the KV mounts'
//! secrets and a secret's key names to pick from (never a value). Ctrl-C or Esc at any
//! question leaves the file as it was: nothing is written before the last answer.

use super::{finish, print_diagnostic, refused, unified_diff, ManifestFile};
use crate::add::{self, AddRequest, EnvAddition, FileAddition, Workload};
use crate::cli::{env_lookup, exit, runtime};
use crate::config::Settings;
use crate::render::dialect::SecretRef;
use crate::vault::client::{Fetch, SecretState, VaultApi, VaultEnv};
use crate::vault::mounts::{self, Engine, Mount};
use inquire::validator::Validation;
use inquire::{Confirm, InquireError, Select, Text};
use std::process::ExitCode;

/// Most secrets listed from one mount; a larger mount is offered a typed path.
const MAX_LISTED: usize = 2000;
/// Deepest folder nesting walked.
const MAX_DEPTH: usize = 12;

/// Why the wizard stopped before writing.
enum Stop {
    /// Ctrl-C or Esc.
    Cancelled,
    /// Refused, with the exit status already decided.
    Exit(ExitCode),
}

impl From<InquireError> for Stop {
    fn from(e: InquireError) -> Stop {
        match e {
            InquireError::OperationCanceled | InquireError::OperationInterrupted => Stop::Cancelled,
            other => {
                eprintln!("secretstore: cannot ask on this terminal: {other}");
                Stop::Exit(ExitCode::from(exit::USAGE))
            }
        }
    }
}

pub fn run(
    file: &ManifestFile,
    text: &str,
    request: AddRequest,
    settings: &Settings,
    diff_only: bool,
) -> ExitCode {
    match ask(file, text, request, settings, diff_only) {
        Ok(code) | Err(Stop::Exit(code)) => code,
        Err(Stop::Cancelled) => {
            eprintln!("cancelled: {} was left as it is", file.shown);
            ExitCode::from(exit::FINDINGS)
        }
    }
}

fn ask(
    file: &ManifestFile,
    text: &str,
    mut request: AddRequest,
    settings: &Settings,
    diff_only: bool,
) -> Result<ExitCode, Stop> {
    let all = add::workloads(&file.shown, text, settings)
        .map_err(|problems| Stop::Exit(refused(file, &problems)))?;
    let workload = choose_workload(file, text, &all, &mut request, settings)?;
    let container = choose_container(&workload, &mut request)?;
    if request.role.is_none() && !(workload.opted_in && workload.role.is_some()) {
        let role = Text::new("Vault role of the pod:")
            .with_help_message("the Vault role bound to the pod's service account")
            .with_validator(|s: &str| {
                Ok(if s.trim().is_empty() {
                    Validation::Invalid("a role is needed to opt the pod in".into())
                } else {
                    Validation::Valid
                })
            })
            .prompt()?;
        request.role = Some(role.trim().to_string());
    }
    let env = Select::new("Add:", vec![KIND_ENV, KIND_FILE]).prompt()? == KIND_ENV;
    if env {
        let info = workload.containers.iter().find(|c| c.name == container);
        let image = info.and_then(|c| c.image.as_deref());
        let known = image.is_some_and(|i| settings.entrypoint(i).is_some());
        if info.is_some_and(|c| !c.has_command) && !known {
            eprintln!(
                "error: container `{container}` has no `command`, so env references cannot be resolved in it (they wrap the command)\n  help: write the image's entrypoint as the container's `command`, or add the image to the configuration's `entrypoints`; or add the secret as a file"
            );
            return Err(Stop::Exit(ExitCode::from(exit::FINDINGS)));
        }
    }
    let target = if env {
        Text::new("Env var name:")
            .with_validator(|s: &str| {
                Ok(
                    if s.is_empty() || s.contains('=') || s.chars().any(char::is_whitespace) {
                        Validation::Invalid("a name without `=` or blanks".into())
                    } else {
                        Validation::Valid
                    },
                )
            })
            .prompt()?
    } else {
        Text::new("File path in the container:")
            .with_help_message("absolute, e.g. /etc/secrets/db-password")
            .with_validator(|s: &str| {
                let check = FileAddition {
                    path: s.to_string(),
                    reference: String::new(),
                };
                Ok(match check.split_path() {
                    Ok(_) => Validation::Valid,
                    Err(d) => Validation::Invalid(d.message.into()),
                })
            })
            .prompt()?
    };
    let reference = choose_secret(settings, env, &target)?;
    if env {
        request.env.push(EnvAddition {
            name: target,
            reference,
        });
    } else {
        request.files.push(FileAddition {
            path: target,
            reference,
        });
    }
    let added = add::apply_with(&file.shown, text, &request, settings)
        .map_err(|problems| Stop::Exit(refused(file, &problems)))?;
    if diff_only || !added.changed {
        return Ok(finish(file, text, &added, diff_only));
    }
    for w in &added.warnings {
        print_diagnostic(w);
    }
    eprint!("{}", unified_diff(&file.shown, text, &added));
    let write = Confirm::new(&format!("Write these changes to {}?", file.shown))
        .with_default(false)
        .prompt()?;
    if !write {
        eprintln!("nothing written: {} was left as it is", file.shown);
        return Ok(ExitCode::from(exit::FINDINGS));
    }
    let quiet = add::Added {
        warnings: Vec::new(),
        ..added
    };
    Ok(finish(file, text, &quiet, false))
}

const KIND_ENV: &str = "an env var (a reference the app reads at start)";
const KIND_FILE: &str = "a file (mounted in the container)";

fn choose_workload(
    file: &ManifestFile,
    text: &str,
    all: &[Workload],
    request: &mut AddRequest,
    settings: &Settings,
) -> Result<Workload, Stop> {
    let shown = |w: &Workload| match &w.object.namespace {
        Some(ns) => format!("{} (namespace {ns})", w.selector),
        None => w.selector.clone(),
    };
    let matching: Vec<&Workload> = match &request.workload {
        Some(selector) => all.iter().filter(|w| w.matches(selector)).collect(),
        None => all.iter().collect(),
    };
    if let [one] = matching.as_slice() {
        eprintln!("Workload: {}", shown(one));
        request.workload = Some(one.selector.clone());
        return Ok((*one).clone());
    }
    if matching.is_empty() || request.workload.is_some() {
        // None, or several of that name: the core words the refusal.
        let problems = match add::apply_with(&file.shown, text, request, settings) {
            Err(problems) => problems,
            Ok(_) => Vec::new(),
        };
        return Err(Stop::Exit(refused(file, &problems)));
    }
    let labels: Vec<String> = all.iter().map(shown).collect();
    let picked = Select::new("Workload:", labels.clone()).prompt()?;
    let index = labels.iter().position(|l| *l == picked).unwrap_or(0);
    let chosen = all[index].clone();
    request.workload = Some(chosen.selector.clone());
    Ok(chosen)
}

fn choose_container(workload: &Workload, request: &mut AddRequest) -> Result<String, Stop> {
    if let Some(name) = &request.container {
        return Ok(name.clone());
    }
    let app: Vec<&str> = workload
        .containers
        .iter()
        .filter(|c| !c.init)
        .map(|c| c.name.as_str())
        .collect();
    if let [one] = app.as_slice() {
        eprintln!("Container: {one}");
        request.container = Some(one.to_string());
        return Ok(one.to_string());
    }
    let labels: Vec<String> = workload
        .containers
        .iter()
        .map(|c| {
            if c.init {
                format!("{} (init container)", c.name)
            } else {
                c.name.clone()
            }
        })
        .collect();
    let picked = Select::new("Container:", labels.clone()).prompt()?;
    let index = labels.iter().position(|l| *l == picked).unwrap_or(0);
    let name = workload.containers[index].name.clone();
    request.container = Some(name.clone());
    Ok(name)
}

/// `<path>#<key>` (or `<path>` for a whole secret in a file), from Vault's lists when
/// it can be reached, else typed.
fn choose_secret(settings: &Settings, env: bool, target: &str) -> Result<String, Stop> {
    let vault = match Lister::connect(settings) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("note: cannot list Vault's secrets ({e}); type the path");
            None
        }
    };
    let Some(vault) = vault else {
        return typed_secret(env, target);
    };
    let mut kv: Vec<&Mount> = vault
        .mounts
        .secret_mounts()
        .filter(|m| matches!(m.engine, Engine::Kv1 | Engine::Kv2))
        .collect();
    kv.sort_by(|a, b| a.path.cmp(&b.path));
    let mount = match kv.as_slice() {
        [] => {
            eprintln!("note: the token sees no KV mount in Vault; type the path");
            return typed_secret(env, target);
        }
        [one] => {
            eprintln!("Mount: {} ({})", one.path, one.engine);
            (*one).clone()
        }
        many => {
            let labels: Vec<String> = many
                .iter()
                .map(|m| format!("{} ({})", m.path, m.engine))
                .collect();
            let picked = Select::new("Mount:", labels.clone()).prompt()?;
            let i = labels.iter().position(|l| *l == picked).unwrap_or(0);
            many[i].clone()
        }
    };
    const TYPE_PATH: &str = "(type a path)";
    let (secrets, complete) = vault.secrets(&mount);
    if secrets.is_empty() {
        eprintln!("note: no secrets are listed under {}", mount.path);
    } else if !complete {
        eprintln!(
            "note: {} holds more secrets than are listed; type a path to find another",
            mount.path
        );
    }
    loop {
        let mut options = secrets.clone();
        options.push(TYPE_PATH.to_string());
        let picked = Select::new("Secret:", options)
            .with_help_message("type to filter, ↑↓ to move, enter to pick")
            .prompt()?;
        let path = if picked == TYPE_PATH {
            ask_path(&mount.path)?
        } else {
            picked
        };
        let keys = match vault.keys(&path) {
            Ok(Some(keys)) => keys,
            Ok(None) => {
                eprintln!("{path} does not exist in Vault (no secret at that path)");
                continue;
            }
            Err(e) => {
                eprintln!("note: cannot read the key names of {path} ({e}); type the key");
                return Ok(reference(&path, &typed_key(env, target)?));
            }
        };
        return pick_key(&path, keys, env, target);
    }
}

fn pick_key(path: &str, keys: Vec<String>, env: bool, target: &str) -> Result<String, Stop> {
    const WHOLE: &str = "(the whole secret, as JSON)";
    if keys.is_empty() && env {
        eprintln!("{path} has no keys; type the key");
        return Ok(reference(path, &typed_key(env, target)?));
    }
    let mut options = keys;
    if !env {
        options.push(WHOLE.to_string());
    }
    let picked = Select::new("Key:", options)
        .with_help_message("the key names of the secret (its values are never read out)")
        .prompt()?;
    Ok(if picked == WHOLE {
        path.to_string()
    } else {
        reference(path, &picked)
    })
}

fn reference(path: &str, key: &str) -> String {
    if key.is_empty() {
        path.to_string()
    } else {
        format!("{path}#{key}")
    }
}

fn ask_path(initial: &str) -> Result<String, Stop> {
    Ok(Text::new("Vault path of the secret:")
        .with_initial_value(initial)
        .with_validator(path_validator)
        .prompt()?
        .trim()
        .to_string())
}

fn path_validator(s: &str) -> Result<Validation, inquire::CustomUserError> {
    Ok(if s.contains('#') {
        Validation::Invalid("the path only; the key comes next".into())
    } else {
        match SecretRef::parse(s.trim()) {
            Ok(_) => Validation::Valid,
            Err(e) => Validation::Invalid(e.into()),
        }
    })
}

fn typed_secret(env: bool, target: &str) -> Result<String, Stop> {
    let path = Text::new("Vault path of the secret:")
        .with_help_message("e.g. secret/shop/db")
        .with_validator(path_validator)
        .prompt()?;
    Ok(reference(path.trim(), &typed_key(env, target)?))
}

fn typed_key(env: bool, target: &str) -> Result<String, Stop> {
    if env {
        Ok(Text::new("Key in the secret:")
            .with_default(target)
            .prompt()?
            .trim()
            .to_string())
    } else {
        Ok(
            Text::new("Key in the secret (empty: the whole secret, as JSON):")
                .prompt()?
                .trim()
                .to_string(),
        )
    }
}

/// Vault's lists, through the one client `check` uses.
struct Lister {
    api: VaultApi,
    runtime: tokio::runtime::Runtime,
    mounts: mounts::MountTable,
}

impl Lister {
    /// `None` without `VAULT_ADDR` or a token.
    fn connect(settings: &Settings) -> Result<Option<Lister>, String> {
        let Some(env) = VaultEnv::from_env(&env_lookup, settings.vault_namespace.as_deref()) else {
            return Ok(None);
        };
        if env.token.is_empty() {
            return Ok(None);
        }
        let api = VaultApi::new(env, 4)?;
        let runtime = runtime()?;
        let mounts = runtime.block_on(api.mounts())?;
        Ok(Some(Lister {
            api,
            runtime,
            mounts,
        }))
    }

    /// The logical paths of the secrets of a KV mount, walking its folders (at most
    /// [`MAX_LISTED`]), and whether that is all of them.
    fn secrets(&self, mount: &Mount) -> (Vec<String>, bool) {
        let list_root = match mount.engine {
            Engine::Kv2 => format!("{}metadata/", mount.path),
            _ => mount.path.clone(),
        };
        let mut found = Vec::new();
        let mut folders = vec![(String::new(), 0usize)];
        let mut complete = true;
        while let Some((folder, depth)) = folders.pop() {
            let listed = self
                .runtime
                .block_on(self.api.list(&format!("{list_root}{folder}")));
            let Fetch::Found(mut names) = listed else {
                continue;
            };
            names.sort();
            for name in names.into_iter().rev() {
                if name.ends_with('/') {
                    if depth < MAX_DEPTH {
                        folders.push((format!("{folder}{name}"), depth + 1));
                    } else {
                        complete = false;
                    }
                } else if found.len() < MAX_LISTED {
                    found.push(format!("{}{folder}{name}", mount.path));
                } else {
                    complete = false;
                }
            }
        }
        found.sort();
        (found, complete)
    }

    /// The key names of the secret at `path`; `None` when there is none.
    fn keys(&self, path: &str) -> Result<Option<Vec<String>>, String> {
        let Some(mount) = self.mounts.find(path) else {
            return Err(format!("no mount holds {path}"));
        };
        let target = mounts::target(path, mount)?;
        match self.runtime.block_on(
            self.api
                .secret(&target.api_path, target.kv2.is_some(), None),
        ) {
            Fetch::Found(SecretState::Present(keys)) => Ok(Some(keys.into_iter().collect())),
            Fetch::Found(_) | Fetch::NotFound => Ok(None),
            Fetch::Denied(e) | Fetch::Failed(e) => Err(e),
        }
    }
}
