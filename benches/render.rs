//! Render throughput on a synthetic `helm template`-style stream, next to the cost of
//! merely parsing the same stream with saphyr-parser (every event), so the ratio shows
//! what skipping the untouched documents buys.
//!
//! The stream comes from `../shared/tools/gen-big-stream.py` (`DIALECT=rafay`: ~7% of the
//! documents are opted-in pods) and is cached under `target/bench-data/`. `cargo bench`
//! uses the full 20,000-document (~60 MB) stream; `cargo test --all-targets`, which runs
//! each benchmark once as a smoke test, uses 500 documents so it stays fast.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use secretstore::config::Settings;
use secretstore::render::{render, Input, Options};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BENCH_DOCUMENTS: usize = 20_000;
const SMOKE_DOCUMENTS: usize = 500;
const GENERATOR: &str = "shared/tools/gen-big-stream.py";

/// Criterion's own rule: a benchmark run is `--bench` without `--test`; anything else
/// (notably `cargo test --benches`) runs each benchmark once.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// `../shared/tools/gen-big-stream.py` from the repository root, or from an ancestor of
/// it (a git worktree may sit one level deeper than the main checkout).
fn generator(root: &Path) -> PathBuf {
    root.ancestors()
        .skip(1)
        .map(|dir| dir.join(GENERATOR))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the stream generator ../{GENERATOR} is missing (looked in the parent directories of {}); \
                 the benchmark needs the shared tools checkout next to the repository",
                root.display()
            )
        })
}

/// Generates (once) the stream of `documents` documents and returns its bytes.
fn stream(documents: usize) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generator = generator(root);
    let script = std::fs::read(&generator)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", generator.display()));
    // Keyed by the generator's size and checksum, so an updated generator regenerates.
    let checksum = script
        .iter()
        .fold(0u32, |sum, b| sum.rotate_left(5) ^ u32::from(*b));
    let dir = root.join("target/bench-data");
    let out = dir.join(format!(
        "stream-rafay-{documents}-{}-{checksum:08x}.yaml",
        script.len()
    ));
    if !out.is_file() {
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let partial = out.with_extension("partial");
        let status = Command::new("python3")
            .arg(&generator)
            .arg(&partial)
            .arg(documents.to_string())
            .env("DIALECT", "rafay")
            .status()
            .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", generator.display()));
        assert!(status.success(), "{} failed: {status}", generator.display());
        std::fs::rename(&partial, &out)
            .unwrap_or_else(|e| panic!("cannot move {} into place: {e}", partial.display()));
    }
    std::fs::read(&out).unwrap_or_else(|e| panic!("cannot read {}: {e}", out.display()))
}

fn bench_stream(c: &mut Criterion) {
    let documents = if benchmarking() {
        BENCH_DOCUMENTS
    } else {
        SMOKE_DOCUMENTS
    };
    let bytes = stream(documents);
    let len = bytes.len() as u64;
    let inputs = [Input {
        name: "stream.yaml".into(),
        bytes,
    }];
    let settings = Settings::default();
    let options = Options::default();

    let mut group = c.benchmark_group(format!("stream_{documents}_docs"));
    group.throughput(Throughput::Bytes(len));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));

    group.bench_function("render_to_sink", |b| {
        b.iter(|| {
            let rendered = render(&inputs, &settings, &options)
                .unwrap_or_else(|e| panic!("the generated stream renders: {:?}", e.diagnostics));
            rendered
                .write_to(&mut std::io::sink())
                .unwrap_or_else(|e| panic!("writing to a sink cannot fail: {e}"));
            black_box(rendered.expanded)
        })
    });

    let text = std::str::from_utf8(&inputs[0].bytes)
        .unwrap_or_else(|e| panic!("the generated stream is UTF-8: {e}"));
    group.bench_function("saphyr_parse_all_events", |b| {
        b.iter(|| {
            let mut parser = saphyr_parser::Parser::new_from_str(black_box(text));
            let mut events = 0usize;
            while let Some(event) = parser.next_event() {
                if let Err(e) = event {
                    panic!("the generated stream parses: {e}");
                }
                events += 1;
            }
            black_box(events)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_stream);
criterion_main!(benches);
