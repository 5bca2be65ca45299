use clap::Parser;
use std::process::ExitCode;

// musl's malloc is slow under render's many small allocations (3x the glibc build's time on
// the benchmark stream); the static builds use jemalloc instead.
#[cfg(all(target_env = "musl", target_pointer_width = "64"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
