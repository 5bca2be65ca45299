#!/usr/bin/env bash
# Builds the docs/ book with its playground into OUT_DIR: secretstore's I/O-free core
# compiled to WebAssembly (the wasm/ crate, profile `wasm`), bound for the browser with
# wasm-bindgen --target web, shrunk with wasm-opt when installed (binaryen from the npm
# registry; Debian 12's binaryen 108 breaks the module's externref table), then the book
# (mdBook) with the bound module next to the playground's page.
# Tools: scripts/install-test-deps.sh. mdBook empties OUT_DIR first.
#
#   scripts/build-book.sh OUT_DIR
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

fail() { echo "error: $*" >&2; exit 2; }

[[ $# -eq 1 && -n "$1" ]] || fail "usage: scripts/build-book.sh OUT_DIR"
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"

TARGET=wasm32-unknown-unknown
PROFILE=wasm
MDBOOK="$ROOT/.tools/bin/mdbook"
WASM_BINDGEN="$ROOT/.tools/bin/wasm-bindgen"
WASM_OPT="$ROOT/.tools/node/node_modules/.bin/wasm-opt"
INSTALL="run scripts/install-test-deps.sh (as root) first"

[[ -x "$MDBOOK" ]] || fail "mdbook is not installed ($MDBOOK): $INSTALL"
[[ -d "$(rustc --print target-libdir --target "$TARGET" 2>/dev/null)" ]] ||
    fail "the Rust target $TARGET is not installed: rustup target add $TARGET, or $INSTALL"
# The command-line tool must be the exact version of the wasm-bindgen crate in Cargo.lock.
want="$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p;}' Cargo.lock)"
[[ -n "$want" ]] || fail "Cargo.lock holds no wasm-bindgen"
have="$("$WASM_BINDGEN" --version 2>/dev/null | awk '{print $2}')" ||
    fail "wasm-bindgen is not installed ($WASM_BINDGEN): $INSTALL"
[[ "$have" == "$want" ]] ||
    fail "wasm-bindgen is $have, Cargo.lock's wasm-bindgen is $want: $INSTALL"

echo "==> WebAssembly: cargo build -p secretstore-wasm --target $TARGET --profile $PROFILE" >&2
cargo build --quiet --locked -p secretstore-wasm --target "$TARGET" --profile "$PROFILE"

pkg="$(mktemp -d)"
trap 'rm -rf "$pkg"' EXIT
"$WASM_BINDGEN" --target web --no-typescript --out-dir "$pkg" \
    "${CARGO_TARGET_DIR:-target}/$TARGET/$PROFILE/secretstore_wasm.wasm"
wasm="$pkg/secretstore_wasm_bg.wasm"
if [[ -x "$WASM_OPT" ]]; then
    # The features rustc enables for this target by default, which wasm-opt must accept.
    "$WASM_OPT" -Os --strip-debug --strip-producers \
        --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
        --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
        -o "$wasm.opt" "$wasm"
    mv "$wasm.opt" "$wasm"
    optimised="wasm-opt -Os"
else
    optimised="no wasm-opt ($INSTALL)"
fi

echo "==> book: mdbook build docs -d $OUT" >&2
if ! log="$("$MDBOOK" build docs -d "$OUT" 2>&1)"; then
    echo "$log" >&2
    fail "mdbook build failed"
fi
[[ -f "$OUT/playground.html" ]] || fail "mdbook wrote no playground.html into $OUT"
install -m 0644 "$pkg/secretstore_wasm.js" "$wasm" "$OUT/playground/"

raw=$(stat -c %s "$OUT/playground/secretstore_wasm_bg.wasm")
gz=$(gzip -9 -c "$OUT/playground/secretstore_wasm_bg.wasm" | wc -c)
echo "book with playground: $OUT (secretstore_wasm_bg.wasm: $raw bytes, $gz gzipped; $optimised)"
