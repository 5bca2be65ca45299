//! Render throughput on a synthetic `helm template`-style stream, next to the cost of
//! merely parsing the same stream with saphyr-parser (every event), so the ratio shows
//! what skipping the untouched documents buys.
//!
//! The stream comes from the project's generator (`benches/support/big_stream.rs`: ~7% of
//! the documents are opted-in pods), built in memory. `cargo bench` uses the full
//! 20,000-document (~60 MB) stream; `cargo test --all-targets`, which runs each benchmark
//! once as a smoke test, uses 500 documents so it stays fast.

#[path = "support/big_stream.rs"]
mod big_stream;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use secretstore::config::Settings;
use secretstore::render::{render, Input, Options};
use std::hint::black_box;
use std::time::Duration;

const BENCH_DOCUMENTS: usize = 20_000;
const SMOKE_DOCUMENTS: usize = 500;

/// Criterion's own rule: a benchmark run is `--bench` without `--test`; anything else
/// (notably `cargo test --benches`) runs each benchmark once.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

fn bench_stream(c: &mut Criterion) {
    let documents = if benchmarking() {
        BENCH_DOCUMENTS
    } else {
        SMOKE_DOCUMENTS
    };
    let bytes = big_stream::generate(documents, big_stream::DEFAULT_SEED);
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
