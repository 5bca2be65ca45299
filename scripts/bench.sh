#!/usr/bin/env bash
# Whole-process performance of `secretstore render`:
#   - the 60 MB, 20,000-document stream (scripts/gen-big-stream.rs, ~7% opted in): the
#     glibc build, the static musl build (the one the image and the Argo CD sidecar run)
#     and PyYAML's CSafeLoader (libyaml) merely parsing it, side by side in one hyperfine
#     run. Targets: render at least 100x faster than CSafeLoader, the musl build within
#     1.3x of the glibc build, peak RSS at most 2x the input size (GNU time);
#   - one small document end to end next to `cat`.
# Usage: scripts/bench.sh [--runs N]
# Needs hyperfine, GNU time and the musl target (scripts/install-test-deps.sh installs
# them) and python3 with PyYAML built with libyaml.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUNS=10
while (($#)); do
    case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    *) echo "usage: scripts/bench.sh [--runs N]" >&2; exit 2 ;;
    esac
done

die() { echo "error: $*" >&2; exit 2; }
command -v hyperfine >/dev/null || die "hyperfine is missing: run scripts/install-test-deps.sh (as root)"
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is missing: run scripts/install-test-deps.sh (as root)"
MUSL_TARGET=x86_64-unknown-linux-musl

PYTHON="$ROOT/.tools/venv/bin/python"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)"
"$PYTHON" -c 'import yaml; assert yaml.__with_libyaml__, "PyYAML without libyaml"; yaml.CSafeLoader' ||
    die "$PYTHON has no PyYAML with libyaml (CSafeLoader)"

DATA="$ROOT/target/bench-data"
mkdir -p "$DATA"
STREAM="$DATA/bench-stream-20000.yaml"
GENERATOR_SOURCES=(scripts/gen-big-stream.rs benches/support/big_stream.rs)
if [[ ! -s "$STREAM" || "${GENERATOR_SOURCES[0]}" -nt "$STREAM" || "${GENERATOR_SOURCES[1]}" -nt "$STREAM" ]]; then
    echo "==> generating $STREAM" >&2
    # The dev build is enough (about 3 s) and shares the test build's dependencies.
    cargo run --quiet --example gen-big-stream -- "$STREAM.partial" 20000
    mv "$STREAM.partial" "$STREAM"
fi
SMALL="$ROOT/testdata/render/kind-deployment.yaml"
CSAFE="$DATA/csafe_load_all.py"
cat >"$CSAFE" <<'EOF'
import sys, yaml
with open(sys.argv[1], "rb") as f:
    for _ in yaml.load_all(f, Loader=yaml.CSafeLoader):
        pass
EOF

echo "==> cargo build --release (glibc and $MUSL_TARGET)" >&2
cargo build --release --quiet --bin secretstore
cargo build --release --quiet --target "$MUSL_TARGET" --bin secretstore
BIN="$ROOT/target/release/secretstore"
MUSL_BIN="$ROOT/target/$MUSL_TARGET/release/secretstore"
"$BIN" render "$STREAM" | cmp -s - "$STREAM" && die "render changed nothing: is the stream opted in?"
"$BIN" render "$STREAM" | cmp -s - <("$MUSL_BIN" render "$STREAM") || die "the glibc and musl builds render differently"

input_bytes=$(stat -c %s "$STREAM")
docs=$(grep -c '^---$' "$STREAM" || true)
opted=$(grep -c 'rafay.dev/secretstore: vault' "$STREAM" || true)

echo "## Machine"
echo
echo "- $(nproc) CPUs: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
echo "- $(uname -sr), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- $("$BIN" --version) (glibc and static $MUSL_TARGET builds), $(hyperfine --version), PyYAML $("$PYTHON" -c 'import yaml; print(yaml.__version__)') (libyaml)"
echo "- stream: $STREAM, $input_bytes bytes, $docs documents, $opted opted-in pod templates"
echo

echo "## Large stream: glibc render vs static musl render vs CSafeLoader (hyperfine -N, output to a pipe)"
echo
hyperfine -N --style basic --warmup 1 --min-runs 3 --max-runs "$RUNS" --output pipe \
    --export-json "$DATA/large.json" \
    --command-name "secretstore render" "$BIN render $STREAM" \
    --command-name "secretstore render (static musl)" "$MUSL_BIN render $STREAM" \
    --command-name "CSafeLoader load_all" "$PYTHON $CSAFE $STREAM"
echo
echo "## Large stream from stdin (hyperfine, sh -c '... < FILE')"
echo
hyperfine --style basic --warmup 1 --runs "$RUNS" --output pipe --export-json "$DATA/stdin.json" \
    --command-name "secretstore render < stream" "$BIN render < $STREAM"
echo
echo "## Small document end to end vs cat (hyperfine -N)"
echo
hyperfine -N --style basic --warmup 20 --runs 300 --output pipe --export-json "$DATA/small.json" \
    --command-name "secretstore render" "$BIN render $SMALL" \
    --command-name "cat" "cat $SMALL"
echo

rss_kb() { /usr/bin/time -f %M -o "$DATA/rss" "$@" >/dev/null && tail -n1 "$DATA/rss"; }
rss_file=$(rss_kb "$BIN" render "$STREAM")
rss_stdin=$(rss_kb sh -c "exec '$BIN' render < '$STREAM'")
rss_musl=$(rss_kb "$MUSL_BIN" render "$STREAM")

"$PYTHON" - "$DATA" "$input_bytes" "$rss_file" "$rss_stdin" "$rss_musl" <<'EOF'
import json, sys
data, input_bytes = sys.argv[1], int(sys.argv[2])
rss_file, rss_stdin, rss_musl = (int(v) for v in sys.argv[3:6])
def results(name):
    with open(f"{data}/{name}.json") as f:
        return {r["command"]: r for r in json.load(f)["results"]}
large, stdin, small = results("large"), results("stdin"), results("small")
render, csafe = large["secretstore render"], large["CSafeLoader load_all"]
musl = large["secretstore render (static musl)"]
pipe = stdin["secretstore render < stream"]
ms = lambda s: f"{s * 1000:.1f} ms"
cpu = lambda r: r["user"] + r["system"]
speedup = csafe["mean"] / render["mean"]
mb = input_bytes / 1e6
print("## Summary\n")
print("| measure | value | target |")
print("| --- | --- | --- |")
print(f"| render, {mb:.1f} MB stream (file argument) | {ms(render['mean'])} ± {ms(render['stddev'])} wall, {ms(cpu(render))} CPU, {mb / render['mean']:.0f} MB/s | |")
print(f"| render, static musl build, same stream | {ms(musl['mean'])} ± {ms(musl['stddev'])} wall, {ms(cpu(musl))} CPU, {mb / musl['mean']:.0f} MB/s | |")
musl_ratio = musl["mean"] / render["mean"]
print(f"| static musl / glibc | {musl_ratio:.2f}x wall, {cpu(musl) / cpu(render):.2f}x CPU | <= 1.3x: {'met' if musl_ratio <= 1.3 else 'MISSED'} |")
print(f"| render, same stream on stdin | {ms(pipe['mean'])} ± {ms(pipe['stddev'])} wall | |")
print(f"| CSafeLoader load_all, same stream | {csafe['mean']:.2f} s ± {csafe['stddev']:.2f} s wall, {cpu(csafe):.2f} s CPU | |")
print(f"| speed-up over CSafeLoader | {speedup:.0f}x wall, {cpu(csafe) / cpu(render):.0f}x CPU | >= 100x: {'met' if speedup >= 100 else 'MISSED'} |")
for label, kb in (("file argument", rss_file), ("stdin", rss_stdin), ("static musl", rss_musl)):
    ratio = kb * 1024 / input_bytes
    print(f"| peak RSS, {label} | {kb / 1024:.1f} MiB = {ratio:.2f}x input | <= 2x: {'met' if ratio <= 2 else 'MISSED'} |")
r, c = small["secretstore render"], small["cat"]
print(f"| small document end to end | {ms(r['mean'])} ± {ms(r['stddev'])} vs cat {ms(c['mean'])} ± {ms(c['stddev'])} ({r['mean'] / c['mean']:.1f}x, +{ms(r['mean'] - c['mean'])}) | within 2x of cat + a few ms |")
EOF
