//! `secretstore man`: the man pages, from the same help table as `--help`.

use super::args::Cli;
use super::exit;
use super::usage_error;
use clap::CommandFactory;
use std::io;
use std::path::Path;
use std::process::ExitCode;

pub fn run(out_dir: Option<&Path>) -> ExitCode {
    let written =
        crate::cli::help::write_man_pages(Cli::command(), out_dir, &mut io::stdout().lock());
    match written {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(exit::OK),
        Err(e) => usage_error(&format!("cannot write the man page: {e}")),
    }
}
