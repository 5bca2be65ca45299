use std::ffi::OsString;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "secretstore", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The init container's job: fetch the secrets listed in $SECRETSTORE_SPEC and write
    /// them into the pod's secrets volume.
    Agent,
    /// Replace secret references in the environment and arguments with their values from
    /// this container's env file, then execute CMD in place.
    Exec {
        /// The command and its arguments, after `--`.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<OsString>,
    },
}

fn main() {
    let code = match Cli::parse().command {
        Command::Agent => secretstore::agent::run_from_env(),
        Command::Exec { command } => secretstore::exec::run(command),
    };
    std::process::exit(code);
}
