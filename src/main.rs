use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match secretstore::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                secretstore::cli::exit::USAGE
            } else {
                secretstore::cli::exit::OK
            });
        }
    };
    secretstore::cli::run(cli)
}
