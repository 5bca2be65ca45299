//! `secretstore exec -- CMD ARGS...`: the env wrapper of an app container. Replaces every
//! secret reference (`secretstore:vault:...`) and file reference (`secretstore:file:...`,
//! SPEC 1.4) in the environment and in the command line with its value from the
//! container's env file, then `execve`s CMD, so its PID, signals and exit status are the
//! container's own. In live mode (`SECRETSTORE_LIVE` set) it supervises CMD instead:
//! see [`crate::pod::supervise`].

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use zeroize::Zeroizing;

use crate::pod::agent::log::Log;
use crate::pod::agent_spec::{
    ExecWatch, ENV_DIR, ENV_FILE_ENV, ENV_FILE_NAME, FILE_REF_PREFIX, LIVE_ENV, REF_PREFIX,
};

/// The prefixes of the references exec replaces; the env file maps each reference's full
/// text to its value.
const PREFIXES: [&str; 2] = [REF_PREFIX, FILE_REF_PREFIX];

/// Exit status when exec itself fails before starting CMD (as `env`, `timeout` and
/// container runtimes use it).
pub const EXIT_FAILED: i32 = 125;
/// CMD exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// CMD was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Reference text → value, as the agent wrote it.
type Values = BTreeMap<String, Zeroizing<String>>;

/// The command to exec, with every reference replaced.
pub struct Prepared {
    pub program: OsString,
    /// `program` before substitution, for messages.
    pub program_as_written: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("program", &self.program)
            .field("args", &self.args.len())
            .field("env", &self.env.len())
            .finish_non_exhaustive()
    }
}

/// Why exec refuses to start CMD. Names env vars, argument positions and reference texts,
/// never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecError {
    NoCommand,
    EnvFile {
        path: PathBuf,
        reason: String,
        needed_by: Vec<String>,
    },
    Unresolved {
        program: String,
        env_file: PathBuf,
        places: Vec<String>,
    },
    /// A value holds a NUL byte, which no argument or environment variable can carry.
    NulInValue {
        places: Vec<String>,
    },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::NoCommand => f.write_str("no command to run: use `secretstore exec -- CMD [ARGS...]`"),
            ExecError::EnvFile { path, reason, needed_by } => write!(
                f,
                "cannot read the env file {}: {reason}; it holds the values for {}: the secretstore-agent init container writes it, and this container must mount its env directory at {ENV_DIR} (or set {ENV_FILE_ENV})",
                path.display(),
                needed_by.join(", ")
            ),
            ExecError::Unresolved { program, env_file, places } => write!(
                f,
                "refusing to start {program}: unresolved secret references in {}: {} has no value for them; re-render the manifest with secretstore render so that the init container fetches them",
                places.join(", "),
                env_file.display()
            ),
            ExecError::NulInValue { places } => write!(
                f,
                "refusing to start: the secret values for {} contain a NUL byte, which an argument or environment variable cannot carry; write the secret to a file instead (a filesecret-config annotation)",
                places.join(", ")
            ),
        }
    }
}

/// Entry point of `secretstore exec`: returns only when CMD could not be started, with the
/// exit status to use.
pub fn run(argv: Vec<OsString>) -> i32 {
    let log = Log::new("exec");
    let env_file = env_file_path();
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    if let Some(i) = env.iter().position(|(k, _)| k == LIVE_ENV) {
        let (_, value) = env.remove(i);
        match serde_json::from_slice::<ExecWatch>(value.as_bytes()) {
            Ok(watch) if !argv.is_empty() => {
                return crate::pod::supervise::run(argv, env, &env_file, watch)
            }
            Ok(_) => {}
            Err(e) => {
                log.error(
                    "start",
                    &format!("{LIVE_ENV} is not a list of files to watch: {e}: re-render the manifest with secretstore render"),
                    &[],
                );
                return EXIT_FAILED;
            }
        }
    }
    let prepared = match prepare(argv, env, &env_file) {
        Ok(p) => p,
        Err(e) => {
            log.error("start", &e.to_string(), &[]);
            return EXIT_FAILED;
        }
    };
    let err = Command::new(&prepared.program)
        .args(&prepared.args)
        .env_clear()
        .envs(prepared.env.iter().map(|(k, v)| (k, v)))
        .exec();
    cannot_execute(&log, &prepared, &err)
}

/// Logs that `prepared` could not be executed and returns the exit status a shell gives
/// for it: not found, or found but not executable.
pub fn cannot_execute(log: &Log, prepared: &Prepared, err: &std::io::Error) -> i32 {
    // The command as written: after substitution it may hold a secret value.
    log.error(
        "start",
        &format!(
            "cannot execute {}: {err}",
            prepared.program_as_written.to_string_lossy()
        ),
        &[],
    );
    if err.kind() == std::io::ErrorKind::NotFound {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXECUTE
    }
}

/// `$SECRETSTORE_ENV_FILE`, or the env file in the container's env directory.
pub fn env_file_path() -> PathBuf {
    match std::env::var_os(ENV_FILE_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(ENV_DIR).join(ENV_FILE_NAME),
    }
}

/// Replaces references in `env` values and in `argv` (the kubelet has already expanded
/// `$(VAR)` to the reference text). The env file is read only when something refers to it.
pub fn prepare(
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_file: &std::path::Path,
) -> Result<Prepared, ExecError> {
    if argv.is_empty() {
        return Err(ExecError::NoCommand);
    }
    let mut users: Vec<String> = env
        .iter()
        .filter(|(_, v)| has_reference(v.as_bytes()))
        .map(|(k, _)| format!("env {}", k.to_string_lossy()))
        .collect();
    users.extend(
        argv.iter()
            .enumerate()
            .filter(|(_, a)| has_reference(a.as_bytes()))
            .map(|(i, _)| format!("argument {i}")),
    );
    if users.is_empty() {
        let mut argv = argv.into_iter();
        let program = argv.next().unwrap_or_default();
        return Ok(Prepared {
            program_as_written: program.clone(),
            program,
            args: argv.collect(),
            env,
        });
    }
    let values = load_values(env_file).map_err(|reason| ExecError::EnvFile {
        path: env_file.to_owned(),
        reason,
        needed_by: users,
    })?;
    let program_as_written = argv[0].clone();
    let mut places = Vec::new();
    let mut nul_places = Vec::new();
    let env = env
        .into_iter()
        .map(|(name, value)| {
            let (out, missing) = substitute(value.as_bytes(), &values);
            for r in missing {
                places.push(format!("env {} ({r})", name.to_string_lossy()));
            }
            if out.contains(&0) {
                nul_places.push(format!("env {}", name.to_string_lossy()));
            }
            (name, OsString::from_vec(out))
        })
        .collect();
    let mut argv: Vec<OsString> = argv
        .into_iter()
        .enumerate()
        .map(|(i, arg)| {
            let (out, missing) = substitute(arg.as_bytes(), &values);
            for r in missing {
                places.push(format!("argument {i} ({r})"));
            }
            if out.contains(&0) {
                nul_places.push(format!("argument {i}"));
            }
            OsString::from_vec(out)
        })
        .collect();
    if !places.is_empty() {
        return Err(ExecError::Unresolved {
            program: program_as_written.to_string_lossy().into_owned(),
            env_file: env_file.to_owned(),
            places,
        });
    }
    if !nul_places.is_empty() {
        return Err(ExecError::NulInValue { places: nul_places });
    }
    let program = argv.remove(0);
    Ok(Prepared {
        program_as_written,
        program,
        args: argv,
        env,
    })
}

fn load_values(path: &std::path::Path) -> Result<Values, String> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| e.to_string())?);
    // serde's message may quote the input it choked on, which is a secret value: say only
    // where and what kind of error.
    serde_json::from_slice::<Values>(&bytes).map_err(|e| {
        format!(
            "not a JSON object of reference to value ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn has_reference(text: &[u8]) -> bool {
    PREFIXES.iter().any(|p| contains(text, p.as_bytes()))
}

fn starts_reference(text: &[u8]) -> bool {
    PREFIXES.iter().any(|p| text.starts_with(p.as_bytes()))
}

/// Whether a byte can extend a reference, so `…#pw` is not taken for the start of `…#pw2`.
fn continues_reference(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b'#')
}

/// Replaces each reference in `text` with its value: at each occurrence of a prefix, the
/// longest known reference that starts there and ends at a boundary. Returns the new text and the
/// references (up to the next whitespace) that have no value.
fn substitute(text: &[u8], values: &Values) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !starts_reference(&text[i..]) {
            out.push(text[i]);
            i += 1;
            continue;
        }
        let found = values
            .iter()
            .filter(|(reference, _)| {
                text[i..].starts_with(reference.as_bytes())
                    && text
                        .get(i + reference.len())
                        .is_none_or(|b| !continues_reference(*b))
            })
            .max_by_key(|(reference, _)| reference.len());
        match found {
            Some((reference, value)) => {
                out.extend_from_slice(value.as_bytes());
                i += reference.len();
            }
            None => {
                let end = text[i..]
                    .iter()
                    .position(|b| b.is_ascii_whitespace())
                    .map_or(text.len(), |n| i + n);
                missing.push(
                    OsStr::from_bytes(&text[i..end])
                        .to_string_lossy()
                        .into_owned(),
                );
                out.extend_from_slice(&text[i..end]);
                i = end;
            }
        }
    }
    (out, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn env(v: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        v.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    fn env_file(name: &str, json: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "secretstore-exec-{name}-{}.json",
            std::process::id()
        ));
        std::fs::write(&p, json).unwrap();
        p
    }

    #[test]
    fn replaces_env_and_args() {
        let f = env_file(
            "ok",
            r#"{"secretstore:vault:secret/db#pw":"hunter2","secretstore:vault:secret/db#pw2":"x y","secretstore:vault:secret/db#user":"app"}"#,
        );
        let p = prepare(
            os(&[
                "/bin/app",
                "--user=secretstore:vault:secret/db#user",
                "secretstore:vault:secret/db#pw2",
            ]),
            env(&[
                ("PW", "secretstore:vault:secret/db#pw"),
                (
                    "URL",
                    "postgres://secretstore:vault:secret/db#user:secretstore:vault:secret/db#pw@db",
                ),
                ("PLAIN", "x"),
            ]),
            &f,
        )
        .unwrap();
        assert_eq!(p.program, "/bin/app");
        assert_eq!(p.args, os(&["--user=app", "x y"]));
        assert_eq!(
            p.env,
            env(&[
                ("PW", "hunter2"),
                ("URL", "postgres://app:hunter2@db"),
                ("PLAIN", "x")
            ])
        );
        assert!(!format!("{p:?}").contains("hunter2"));
        std::fs::remove_file(f).unwrap();
    }

    #[test]
    fn refuses_unresolved_naming_places_not_values() {
        let f = env_file("missing", r#"{"secretstore:vault:secret/db#pw":"hunter2"}"#);
        let err = prepare(
            os(&["app", "--token", "secretstore:vault:secret/api#token"]),
            env(&[
                ("PW", "secretstore:vault:secret/db#pw"),
                ("KEY", "secretstore:vault:secret/k"),
            ]),
            &f,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("env KEY (secretstore:vault:secret/k)"),
            "{text}"
        );
        assert!(
            text.contains("argument 2 (secretstore:vault:secret/api#token)"),
            "{text}"
        );
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("env PW"));
        let err = prepare(
            os(&["app"]),
            env(&[("PW2", "secretstore:vault:secret/db#pw2")]),
            &f,
        )
        .unwrap_err();
        assert!(err.to_string().contains("env PW2"), "{err}");
        std::fs::remove_file(f).unwrap();
    }

    #[test]
    fn file_references_are_replaced_and_a_missing_one_refused() {
        let f = env_file(
            "file-refs",
            r#"{"secretstore:file:db/url":"postgres://app:p%40ss@db/shop","secretstore:vault:secret/db#pw":"hunter2"}"#,
        );
        let p = prepare(
            os(&["app", "--url=secretstore:file:db/url"]),
            env(&[
                ("DATABASE_URL", "secretstore:file:db/url"),
                ("PW", "secretstore:vault:secret/db#pw"),
            ]),
            &f,
        )
        .unwrap();
        assert_eq!(p.args, os(&["--url=postgres://app:p%40ss@db/shop"]));
        assert_eq!(
            p.env,
            env(&[
                ("DATABASE_URL", "postgres://app:p%40ss@db/shop"),
                ("PW", "hunter2")
            ])
        );
        let err = prepare(
            os(&["app"]),
            env(&[
                ("DATABASE_URL", "secretstore:file:db/url.txt"),
                ("PW", "secretstore:vault:secret/db#pw"),
            ]),
            &f,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("env DATABASE_URL (secretstore:file:db/url.txt)"),
            "{text}"
        );
        assert!(
            !text.contains("p%40ss") && !text.contains("hunter2"),
            "{text}"
        );
        let err = prepare(
            os(&["app"]),
            env(&[("URL", "secretstore:file:db/url")]),
            std::path::Path::new("/nonexistent/env.json"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("env URL"), "{err}");
        std::fs::remove_file(f).unwrap();
    }

    #[test]
    fn no_references_needs_no_env_file() {
        let p = prepare(
            os(&["true"]),
            env(&[("A", "b")]),
            std::path::Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(p.program, "true");
    }

    #[test]
    fn missing_env_file_names_its_users() {
        let err = prepare(
            os(&["app"]),
            env(&[("PW", "secretstore:vault:secret/db#pw")]),
            std::path::Path::new("/nonexistent/env.json"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("env PW"), "{err}");
        assert_eq!(
            prepare(vec![], vec![], std::path::Path::new("/x")).unwrap_err(),
            ExecError::NoCommand
        );
    }

    #[test]
    fn corrupt_env_file_error_quotes_no_value() {
        // A value of the wrong type makes serde quote the input in its own message.
        let f = env_file(
            "corrupt",
            r#"{"secretstore:vault:secret/db#pw":"hunter2","secretstore:vault:secret/db#n":["hunter3"]}"#,
        );
        let err = prepare(
            os(&["app"]),
            env(&[("PW", "secretstore:vault:secret/db#pw")]),
            &f,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains("hunter"), "{err}");
        std::fs::remove_file(f).unwrap();
    }

    #[test]
    fn nul_in_a_value_is_refused_naming_the_place() {
        let f = env_file(
            "nul",
            r#"{"secretstore:vault:secret/db#pw":"hun\u0000ter2"}"#,
        );
        let err = prepare(
            os(&["app", "secretstore:vault:secret/db#pw"]),
            env(&[("PW", "secretstore:vault:secret/db#pw")]),
            &f,
        )
        .unwrap_err();
        assert_eq!(
            err,
            ExecError::NulInValue {
                places: vec!["env PW".to_owned(), "argument 1".to_owned()]
            }
        );
        assert!(!err.to_string().contains("hun"), "{err}");
        std::fs::remove_file(f).unwrap();
    }

    #[test]
    fn program_as_written_keeps_the_reference() {
        let f = env_file(
            "argv0",
            r#"{"secretstore:vault:secret/db#bin":"/no/such/hunter2"}"#,
        );
        let p = prepare(os(&["secretstore:vault:secret/db#bin"]), vec![], &f).unwrap();
        assert_eq!(p.program, "/no/such/hunter2");
        assert_eq!(p.program_as_written, "secretstore:vault:secret/db#bin");
        std::fs::remove_file(f).unwrap();
    }
}
