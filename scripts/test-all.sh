#!/usr/bin/env bash
# The one command to install the test dependencies and run every test: the whole cargo
# test suite (real OpenBao, PostgreSQL, Helm 3/4, kubectl), the docs/ book, then the static
# musl build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

step "install test dependencies"
./scripts/install-test-deps.sh

step "cargo test --all-targets"
cargo test --all-targets

# tests/docs.rs (above) checks every relative link and #anchor of the book and README
# offline; this builds the book itself into docs/book.
step "mdbook build docs"
.tools/bin/mdbook build docs

MUSL_TARGET=x86_64-unknown-linux-musl
step "static build ($MUSL_TARGET)"
cargo build --release --target "$MUSL_TARGET" --bin secretstore
binary="target/$MUSL_TARGET/release/secretstore"
# A static binary has no program interpreter (PT_INTERP) and no NEEDED libraries.
if readelf -lW "$binary" | grep -q 'INTERP' || readelf -dW "$binary" | grep -q '(NEEDED)'; then
    echo "error: $binary is not statically linked:" >&2
    readelf -lW -dW "$binary" | grep -E 'INTERP|NEEDED' >&2
    exit 1
fi
"$binary" --version >/dev/null
echo "$binary is statically linked ($(du -h "$binary" | cut -f1))"
