//! Writes the benchmark stream (see `benches/support/big_stream.rs`) to a file:
//!
//!     cargo run --example gen-big-stream -- OUT [DOCUMENTS [SEED]]
//!
//! `scripts/bench.sh` runs it; the defaults give the 20,000-document, ~60 MB stream.

#[path = "../benches/support/big_stream.rs"]
mod big_stream;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        eprintln!("usage: gen-big-stream OUT [DOCUMENTS [SEED]]");
        ExitCode::from(2)
    };
    let Some(out) = args.first() else {
        return usage();
    };
    let Ok(documents) = args.get(1).map_or(Ok(20_000), |n| n.parse::<usize>()) else {
        return usage();
    };
    let Ok(seed) = args
        .get(2)
        .map_or(Ok(big_stream::DEFAULT_SEED), |n| n.parse::<u64>())
    else {
        return usage();
    };
    let bytes = big_stream::generate(documents, seed);
    if let Err(e) = std::fs::write(out, &bytes) {
        eprintln!("error: cannot write {out}: {e}");
        return ExitCode::from(2);
    }
    eprintln!("{out}: {documents} documents, {} bytes", bytes.len());
    ExitCode::SUCCESS
}
