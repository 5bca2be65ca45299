//! What each command's `--help` and man page say besides its flags: its exit statuses, the
//! environment variables it reads, and examples. One table feeds both, so they cannot
//! disagree.

use clap_mangen::roff::{bold, roman, Roff};
use std::io;

/// The help text of one command beyond its flags.
pub struct CommandHelp {
    /// The subcommand's name, or `secretstore` for the top level.
    pub name: &'static str,
    /// `(status, meaning)`, in the order shown.
    pub exit: &'static [(&'static str, &'static str)],
    /// Groups of `(variable, meaning)`; an empty list means the command reads none.
    pub env: &'static [&'static [(&'static str, &'static str)]],
    /// Shell lines, shown as they are.
    pub examples: &'static [&'static str],
}

/// Read by every command that reads the configuration (`config::Settings::resolve`).
const CONFIG_ENV: &[(&str, &str)] = &[
    ("SECRETSTORE_CONFIG", "configuration file (--config)"),
    (
        "SECRETSTORE_CLUSTER",
        "named cluster of the configuration (--cluster)",
    ),
    (
        "SECRETSTORE_VAULT_ADDR",
        "Vault address the pods use (--vault-addr)",
    ),
    (
        "SECRETSTORE_AUTH_PATH",
        "auth mount the pods log in with (--auth-path)",
    ),
    ("SECRETSTORE_VAULT_NAMESPACE", "Vault namespace"),
    (
        "SECRETSTORE_AUDIENCE",
        "audience of the pods' projected token",
    ),
    (
        "SECRETSTORE_TLS_SERVER_NAME",
        "name to verify in Vault's certificate",
    ),
    (
        "SECRETSTORE_AGENT_IMAGE",
        "image of the injected init container (--agent-image)",
    ),
    (
        "SECRETSTORE_AGENT_TIMEOUT",
        "the agent's deadline, retries included",
    ),
    (
        "SECRETSTORE_LOG_FORMAT",
        "logfmt or json: how the agent and exec log",
    ),
    (
        "SECRETSTORE_KUBE_VERSION",
        "Kubernetes version of the target cluster; live mode needs 1.29+ (--kube-version)",
    ),
    (
        "KUBE_VERSION",
        "the same, as Argo CD sets it for plugins, read when the one above is unset",
    ),
    (
        "ARGOCD_ENV_<NAME>",
        "each SECRETSTORE_ variable above, as Argo CD passes plugin env",
    ),
];

/// The Vault CLI's variables (`vault::client::VaultEnv::from_env`).
const VAULT_ENV: &[(&str, &str)] = &[
    ("VAULT_ADDR", "address of the Vault the pods use"),
    ("VAULT_TOKEN", "token to read with"),
];

/// The Vault CLI's variables that only refine a connection.
const VAULT_CONNECTION_ENV: &[(&str, &str)] = &[
    (
        "VAULT_NAMESPACE",
        "Vault namespace (default: the configuration's vault.namespace)",
    ),
    (
        "VAULT_CACERT",
        "PEM bundle to trust for an https:// address",
    ),
];

const COLOR_ENV: &[(&str, &str)] = &[(
    "NO_COLOR",
    "non-empty: no colour in the human report (colour is used only on a terminal)",
)];

pub const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "secretstore",
        exit: &[
            ("0", "success"),
            ("1", "findings, or input or data that was refused"),
            ("2", "usage or environment error"),
            (
                "other",
                "exec: the command's own status, or 125, 126, 127 (see secretstore exec --help)",
            ),
        ],
        env: &[
            CONFIG_ENV,
            &[
                (
                    "VAULT_ADDR, VAULT_TOKEN",
                    "check, policy, convert and add: the Vault to read (see their --help)",
                ),
                ("SECRETSTORE_SPEC", "agent: what to fetch"),
                ("SECRETSTORE_ENV_FILE", "exec: where the env file is"),
            ],
        ],
        examples: &[
            "helm template shop ./chart | secretstore render",
            "secretstore lint k8s/",
            "secretstore render --help",
        ],
    },
    CommandHelp {
        name: "render",
        exit: &[
            ("0", "rendered: the output is on stdout"),
            (
                "1",
                "the input was refused (the reasons are on stderr); nothing was written to stdout",
            ),
            (
                "2",
                "usage or environment error: bad flag, unreadable file or configuration, unknown \
                 cluster, stdout not writable",
            ),
        ],
        env: &[CONFIG_ENV],
        examples: &[
            "helm template shop ./chart | secretstore render",
            "kustomize build overlays/prod | secretstore render --cluster prod-eu",
            "secretstore render examples/deployment.yaml",
            "helm install shop ./chart --post-renderer secretstore --post-renderer-args render",
        ],
    },
    CommandHelp {
        name: "agent",
        exit: &[
            ("0", "every secret was read and written"),
            (
                "1",
                "refused by Vault or the data: login refused, permission denied, secret, key or \
                 version missing",
            ),
            (
                "2",
                "environment: missing or bad spec, unreadable token, TLS failure, Vault \
                 unreachable until the deadline, a write failed",
            ),
        ],
        env: &[&[(
            "SECRETSTORE_SPEC",
            "the JSON spec render wrote into the init container: what to fetch and where to write it",
        )]],
        examples: &[],
    },
    CommandHelp {
        name: "exec",
        exit: &[
            (
                "CMD's",
                "exec replaces itself with CMD, so the status is CMD's own",
            ),
            (
                "125",
                "refused: a reference has no value, or the env file cannot be read",
            ),
            ("126", "CMD is not executable"),
            ("127", "CMD was not found"),
        ],
        env: &[&[
            (
                "SECRETSTORE_ENV_FILE",
                "the env file (default /secretstore/env/env.json, where render mounts it)",
            ),
            (
                "every variable",
                "a value holding a secretstore:vault: reference is replaced before CMD starts",
            ),
        ]],
        examples: &["secretstore exec -- /app/server --listen :8443"],
    },
    CommandHelp {
        name: "check",
        exit: &[
            ("0", "clean (warnings allowed)"),
            ("1", "findings"),
            (
                "2",
                "could not check: VAULT_ADDR or VAULT_TOKEN unset, Vault unreachable or sealed, \
                 TLS failure, token refused, or lookups the token may not make (SS390)",
            ),
        ],
        env: &[VAULT_ENV, VAULT_CONNECTION_ENV, CONFIG_ENV, COLOR_ENV],
        examples: &[
            "helm template shop ./chart -n shop | secretstore check",
            "VAULT_ADDR=https://vault:8200 VAULT_TOKEN=... secretstore check --cluster prod-eu k8s/*.yaml",
            "kustomize build overlays/prod | secretstore check --namespace prod --stats",
        ],
    },
    CommandHelp {
        name: "policy",
        exit: &[
            ("0", "policies written"),
            (
                "1",
                "refused: the input has errors, a pod has no namespace, a path cannot be named \
                 exactly in a policy, two roles differ only in case, or a role would be bound \
                 to `*`; nothing was written",
            ),
            (
                "2",
                "usage or environment error: bad flag, VAULT_ADDR without VAULT_TOKEN, mount \
                 lookup failed",
            ),
        ],
        env: &[
            &[(
                "VAULT_ADDR, VAULT_TOKEN",
                "when set, the mounts' KV versions are looked up there (else --kv-version)",
            )],
            VAULT_CONNECTION_ENV,
            CONFIG_ENV,
        ],
        examples: &[
            "helm template shop ./chart -n shop | secretstore policy",
            "secretstore policy --format vault-cli --kv-version kv=1 k8s/*.yaml > apply-vault.sh",
            "secretstore policy --role shop deploy.yaml | vault policy write secretstore-shop -",
            "secretstore policy --format terraform --all-clusters --config secretstore.yaml k8s/*.yaml > vault.tf",
        ],
    },
    CommandHelp {
        name: "convert",
        exit: &[
            (
                "0",
                "everything converted (warnings allowed); files that change are rewritten in \
                 place, or the stream on stdin is written converted to stdout",
            ),
            (
                "1",
                "something was left as it was (reported): a pod not converted, or a file not \
                 rewritten in place (a link, hard links, an owner it cannot keep); or with \
                 --check something would change",
            ),
            ("2", "usage error: unreadable path, bad flag or configuration"),
        ],
        env: &[
            &[(
                "VAULT_ADDR, VAULT_TOKEN",
                "when set, the mounts' KV versions are looked up there to turn data/ paths into \
                 logical ones (else --kv-version and each tool's own meaning)",
            )],
            VAULT_CONNECTION_ENV,
            CONFIG_ENV,
            COLOR_ENV,
        ],
        examples: &[
            "secretstore convert k8s/",
            "helm template shop ./chart | secretstore convert > shop.yaml",
            "secretstore convert --check --format github deploy/",
            "secretstore convert --role shop --kv-version secret=2 overlays/prod/",
        ],
    },
    CommandHelp {
        name: "add",
        exit: &[
            (
                "0",
                "written (or, with --diff, the diff printed); also when everything asked for was \
                 there already, and nothing changed",
            ),
            (
                "1",
                "refused (the reasons are on stderr), or cancelled at a question: the file was \
                 left as it was",
            ),
            (
                "2",
                "usage error: bad flag or argument, unreadable file or configuration, no \
                 --env/--file and no terminal to ask on",
            ),
        ],
        env: &[
            &[(
                "VAULT_ADDR, VAULT_TOKEN",
                "when asking on a terminal: the KV mounts' secrets and a secret's key names are \
                 listed to pick from (never a value)",
            )],
            VAULT_CONNECTION_ENV,
            CONFIG_ENV,
        ],
        examples: &[
            "secretstore add deploy.yaml --role shop --env DB_PASSWORD=secret/shop/db#password",
            "secretstore add app.yaml --workload deploy/api --file /etc/tls/tls.crt=secret/shop/tls#crt",
            "secretstore add deploy.yaml --env API_TOKEN=secret/shop/api#token --diff",
            "secretstore add deploy.yaml",
        ],
    },
    CommandHelp {
        name: "lint",
        exit: &[
            ("0", "no errors (warnings allowed)"),
            ("1", "findings: errors, or warnings too with --deny-warnings"),
            ("2", "usage error: unreadable path, bad flag or configuration"),
        ],
        env: &[CONFIG_ENV, COLOR_ENV],
        examples: &[
            "secretstore lint k8s/",
            "secretstore lint --format github --deny-warnings deploy/ overlays/",
            "helm template shop ./chart | secretstore lint -",
            "secretstore lint --format sarif . > secretstore.sarif",
            "secretstore lint --format gitlab k8s/ > gl-code-quality-report.json",
        ],
    },
    CommandHelp {
        name: "install",
        exit: &[("0", "copied"), ("2", "could not copy")],
        env: &[],
        examples: &["secretstore install /custom-tools"],
    },
    CommandHelp {
        name: "completions",
        exit: &[
            ("0", "written"),
            ("2", "unknown shell, or the output could not be written"),
        ],
        env: &[],
        examples: &[
            "secretstore completions bash > /etc/bash_completion.d/secretstore",
            "secretstore completions zsh > \"${fpath[1]}/_secretstore\"",
            "secretstore completions fish > ~/.config/fish/completions/secretstore.fish",
        ],
    },
    CommandHelp {
        name: "man",
        exit: &[
            ("0", "written"),
            ("2", "the page could not be written"),
        ],
        env: &[],
        examples: &[
            "secretstore man > /usr/local/share/man/man1/secretstore.1",
            "secretstore man --out-dir /usr/local/share/man/man1",
        ],
    },
];

/// The help of the command called `name` (`secretstore` for the top level).
pub fn of(name: &str) -> Option<&'static CommandHelp> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Text after the flags in `--help`: exit statuses, environment and examples. Empty for a
/// name without an entry; the tests require an entry for every command.
pub fn after_help(name: &str) -> String {
    let Some(help) = of(name) else {
        return String::new();
    };
    let mut out = String::from("Exit status:\n");
    push_rows(&mut out, help.exit.iter().copied());
    out.push_str("\nEnvironment:\n");
    if help.env.is_empty() {
        out.push_str("  none read\n");
    } else {
        push_rows(&mut out, help.env.iter().flat_map(|g| g.iter().copied()));
    }
    if !help.examples.is_empty() {
        out.push_str("\nExamples:\n");
        for line in help.examples {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// Width of the help text: clap's own when it is not writing to a terminal.
const WIDTH: usize = 100;

/// Two aligned columns; a name too long for the column gets its meaning on the next line,
/// and a long meaning wraps under itself.
fn push_rows<'a>(out: &mut String, rows: impl Iterator<Item = (&'a str, &'a str)> + Clone) {
    const WIDEST: usize = 28;
    let width = rows
        .clone()
        .map(|(name, _)| name.len())
        .filter(|&n| n <= WIDEST)
        .max()
        .unwrap_or(0);
    let indent = " ".repeat(2 + width + 2);
    for (name, meaning) in rows {
        if name.len() > width {
            out.push_str(&format!("  {name}\n{indent}"));
        } else {
            out.push_str(&format!("  {name:width$}  "));
        }
        let mut column = indent.len();
        for (i, word) in meaning.split_whitespace().enumerate() {
            if i > 0 && column + 1 + word.len() > WIDTH {
                out.push('\n');
                out.push_str(&indent);
                column = indent.len();
            } else if i > 0 {
                out.push(' ');
                column += 1;
            }
            out.push_str(word);
            column += word.len();
        }
        out.push('\n');
    }
}

/// The man page of `cmd` (already built, so that subcommands carry their display names),
/// with EXIT STATUS, ENVIRONMENT and EXAMPLES sections from [`COMMANDS`] in place of
/// clap_mangen's EXTRA section.
pub fn man_page(cmd: &clap::Command, help_name: &str) -> io::Result<String> {
    let page_cmd = cmd.clone().after_help(None::<&str>);
    let mut page = Vec::new();
    clap_mangen::Man::new(page_cmd).render(&mut page)?;
    let page = String::from_utf8_lossy(&page).into_owned();
    let Some(help) = of(help_name) else {
        return Ok(page);
    };
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (status, meaning) in help.exit {
        roff.control("TP", []);
        roff.text([bold(*status)]);
        roff.text([roman(*meaning)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    if help.env.is_empty() {
        roff.text([roman("None read.")]);
    }
    for (name, meaning) in help.env.iter().flat_map(|g| g.iter()) {
        roff.control("TP", []);
        roff.text([bold(*name)]);
        roff.text([roman(*meaning)]);
    }
    if !help.examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for line in help.examples {
            roff.control("PP", []);
            roff.text([roman(*line)]);
        }
    }
    // Each rendering starts with the same preamble; keep the page's only.
    let preamble = Roff::new().render();
    let sections = roff.render();
    let sections = sections.strip_prefix(&preamble).unwrap_or(&sections);
    Ok(match page.find("\n.SH VERSION") {
        Some(at) => format!("{}\n{}{}", &page[..at], sections, &page[at + 1..]),
        None => format!("{page}{sections}"),
    })
}

/// Writes the top-level page to `out`, or, with `dir`, one page per command into `dir`
/// (`secretstore.1`, `secretstore-<command>.1`).
pub fn write_man_pages(
    cmd: clap::Command,
    dir: Option<&std::path::Path>,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = dir else {
        return out.write_all(man_page(&cmd, "secretstore")?.as_bytes());
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let file = dir.join(format!(
            "{}.1",
            sub.get_display_name().unwrap_or_else(|| sub.get_name())
        ));
        std::fs::write(file, man_page(sub, sub.get_name())?)?;
    }
    std::fs::write(dir.join("secretstore.1"), man_page(&cmd, "secretstore")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_has_help() {
        let cli = crate::cli::Cli::command();
        for sub in cli.get_subcommands() {
            assert!(
                of(sub.get_name()).is_some(),
                "{} has no entry in help::COMMANDS",
                sub.get_name()
            );
        }
        for help in COMMANDS {
            assert!(
                help.name == "secretstore"
                    || cli.get_subcommands().any(|s| s.get_name() == help.name),
                "help::COMMANDS names {}, which is no command",
                help.name
            );
        }
    }

    #[test]
    fn rows_align_and_long_text_wraps() {
        let mut out = String::new();
        let long_meaning = "word ".repeat(30);
        push_rows(
            &mut out,
            [
                ("0", "ok"),
                ("125", long_meaning.trim()),
                (&*"X".repeat(40), "long"),
            ]
            .into_iter(),
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "  0    ok");
        assert!(lines[1].starts_with("  125  word word"));
        assert!(lines[2].starts_with("       word word"));
        assert!(lines.iter().all(|l| l.len() <= WIDTH), "{out}");
        assert_eq!(lines[lines.len() - 2], format!("  {}", "X".repeat(40)));
        assert_eq!(lines[lines.len() - 1], "       long");
    }
}
