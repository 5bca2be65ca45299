//! Snapshots of `--help` of the top level and of every command, from the real binary: a
//! change to any help text shows up in review. Each states its exit statuses and the
//! environment variables it reads.

use clap::CommandFactory;
use std::process::Command;

fn help_of(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_secretstore"))
        .args(args)
        .arg("--help")
        // No terminal: clap wraps at its default width, whatever runs the test.
        .env_clear()
        .output()
        .expect("run secretstore");
    assert!(output.status.success(), "{args:?} --help: {output:?}");
    assert!(output.stderr.is_empty(), "{args:?} --help wrote to stderr");
    String::from_utf8(output.stdout).expect("UTF-8 help")
}

fn assert_states_exit_and_environment(name: &str, help: &str) {
    assert!(
        help.contains("\nExit status:\n  0 ") || help.contains("\nExit status:\n  CMD's "),
        "{name} --help states no exit statuses:\n{help}"
    );
    assert!(
        help.contains("\nEnvironment:\n  "),
        "{name} --help states no environment:\n{help}"
    );
}

#[test]
fn top_level_help() {
    let help = help_of(&[]);
    assert_states_exit_and_environment("secretstore", &help);
    insta::assert_snapshot!("secretstore", help);
}

#[test]
fn every_command_help() {
    let cli = secretstore::cli::Cli::command();
    let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
    for name in ["render", "lint", "check", "policy", "agent", "exec"] {
        assert!(names.contains(&name), "no command {name}");
    }
    for name in names {
        let help = help_of(&[name]);
        assert_states_exit_and_environment(name, &help);
        insta::assert_snapshot!(name, help);
    }
}
