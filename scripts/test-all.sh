#!/usr/bin/env bash
# The one command to install the test dependencies and run every test: the whole cargo
# test suite (real OpenBao, PostgreSQL, Helm 3/4, kubectl), the docs/ book, then what ships: the static
# x86_64 and aarch64 builds (aarch64 run under qemu-user, output identical to x86_64's),
# the crate package, the image (built, its config and root filesystem checked, and the
# end-to-end agent tests run again with the agent from the image), and the workflows.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.tools/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "error: $*" >&2; exit 1; }

step "install test dependencies"
./scripts/install-test-deps.sh

step "cargo test --all-targets"
cargo test --all-targets

# tests/docs.rs (above) checks every relative link and #anchor of the book and README
# offline; this builds the book itself, with its playground (WebAssembly), into docs/book.
step "scripts/build-book.sh docs/book"
./scripts/build-book.sh docs/book

# A static binary has no program interpreter (PT_INTERP) and no NEEDED libraries.
check_static() { # binary machine
    local binary="$1" machine="$2"
    if readelf -lW "$binary" | grep -q 'INTERP' || readelf -dW "$binary" | grep -q '(NEEDED)'; then
        readelf -lW -dW "$binary" | grep -E 'INTERP|NEEDED' >&2
        fail "$binary is not statically linked"
    fi
    readelf -hW "$binary" | grep -q "Machine:.*$machine" || fail "$binary is not a $machine binary"
    echo "$binary: static $machine ($(du -h "$binary" | cut -f1))"
}

X86_TARGET=x86_64-unknown-linux-musl
ARM_TARGET=aarch64-unknown-linux-musl
step "static build ($X86_TARGET)"
cargo build --release --locked --target "$X86_TARGET" --bin secretstore
x86="target/$X86_TARGET/release/secretstore"
check_static "$x86" "X86-64"

step "static build ($ARM_TARGET, cargo zigbuild)"
cargo zigbuild --release --locked --target "$ARM_TARGET" --bin secretstore
arm="target/$ARM_TARGET/release/secretstore"
check_static "$arm" "AArch64"

step "the aarch64 binary under qemu-user: same output as x86_64"
out="target/cross-check"
mkdir -p "$out"
for arch in x86 arm; do
    run=("${!arch}")
    [[ "$arch" == arm ]] && run=(qemu-aarch64-static "${!arch}")
    "${run[@]}" --version >"$out/version.$arch"
    "${run[@]}" render examples/deployment.yaml >"$out/render.$arch"
done
cmp "$out/version.x86" "$out/version.arm" || fail "--version differs between x86_64 and aarch64"
cmp "$out/render.x86" "$out/render.arm" || fail "render of examples/deployment.yaml differs between x86_64 and aarch64"
cmp -s "$out/render.x86" examples/deployment.yaml && fail "render changed nothing in examples/deployment.yaml"
echo "aarch64 under qemu: $(cat "$out/version.arm"), render of examples/deployment.yaml byte-identical ($(wc -c <"$out/render.arm") bytes)"

step "cargo package (what crates.io would get: no test data)"
cargo package --locked --no-verify --quiet
crate="$(ls target/package/secretstore-*.crate)"
files="$(cargo package --locked --list --quiet)"
grep -qx 'src/main.rs' <<<"$files" || fail "the package lacks src/main.rs"
grep -qx 'LICENSE' <<<"$files" || fail "the package lacks LICENSE"
if grep -E '^(testdata|tests|benches|fuzz|scripts|docs|\.github)/' <<<"$files"; then
    fail "the package holds test or development files (see Cargo.toml include)"
fi
size=$(stat -c %s "$crate")
((size < 1024 * 1024)) || fail "$crate is $size bytes, expected under 1 MiB"
echo "$crate: $(wc -l <<<"$files") files, $size bytes"

step "image: build, check its config and root filesystem"
image="target/image/secretstore.tar"
mkdir -p target/image
./scripts/build-image.sh "$image" --arch amd64
rootfs="target/image/rootfs"
python3 - "$image" "$rootfs" <<'PY'
import io, json, os, shutil, sys, tarfile
archive, rootfs = sys.argv[1], sys.argv[2]
def fail(msg):
    sys.exit(f"error: image: {msg}")
with tarfile.open(archive) as tar:
    def blob(digest):
        return tar.extractfile("blobs/" + digest.replace(":", "/")).read()
    index = json.loads(tar.extractfile("index.json").read())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    c = config["config"]
    if config.get("architecture") != "amd64" or config.get("os") != "linux":
        fail(f"platform {config.get('os')}/{config.get('architecture')}")
    if c.get("User") != "65532:65532":
        fail(f"user {c.get('User')!r}, expected 65532:65532")
    if c.get("Entrypoint") != ["/usr/local/bin/secretstore"]:
        fail(f"entrypoint {c.get('Entrypoint')}")
    labels = c.get("Labels") or {}
    for key in ("title", "description", "version", "revision", "source", "licenses"):
        if not labels.get(f"org.opencontainers.image.{key}"):
            fail(f"label org.opencontainers.image.{key} missing")
    if labels["org.opencontainers.image.licenses"] != "Apache-2.0":
        fail("licence label")
    shutil.rmtree(rootfs, ignore_errors=True)
    os.makedirs(rootfs)
    names = set()
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))) as t:
            for m in t.getmembers():
                names.add(m.name.lstrip("./").rstrip("/"))
                if m.isfile() and m.name.lstrip("./") == "usr/local/bin/secretstore" and (m.mode & 0o111) == 0:
                    fail("the binary is not executable")
            # Our own layer; the filter argument exists from Python 3.11.4 on.
            if hasattr(tarfile, "tar_filter"):
                t.extractall(rootfs, filter="tar")
            else:
                t.extractall(rootfs)
files = {n for n in names if n and not os.path.isdir(os.path.join(rootfs, n))}
expected = {"usr/local/bin/secretstore", "etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt"}
if files != expected:
    fail(f"root filesystem holds {sorted(files)}, expected exactly {sorted(expected)}")
passwd = open(os.path.join(rootfs, "etc/passwd")).read()
if ":x:65532:65532:" not in passwd:
    fail("/etc/passwd has no user 65532")
if "65532" not in open(os.path.join(rootfs, "etc/group")).read():
    fail("/etc/group has no group 65532")
if "BEGIN CERTIFICATE" not in open(os.path.join(rootfs, "etc/ssl/certs/ca-certificates.crt")).read():
    fail("the CA bundle holds no certificate")
print(f"{archive}: user 65532:65532, entrypoint /usr/local/bin/secretstore, OCI labels, files {sorted(files)}")
PY
cmp "$rootfs/usr/local/bin/secretstore" "$x86" || fail "the image's binary is not the static x86_64 build"
chroot --userspec=65532:65532 "$rootfs" /usr/local/bin/secretstore --version
chroot --userspec=65532:65532 "$rootfs" /usr/local/bin/secretstore render <examples/deployment.yaml |
    cmp - "$out/render.x86" || fail "render inside the image's root filesystem differs"

step "end-to-end agent tests with the agent from the image (uid 65532, OpenBao over TLS)"
SECRETSTORE_TEST_AGENT_BIN="$ROOT/$rootfs/usr/local/bin/secretstore" cargo test --test agent_pod

step "workflows (actionlint)"
actionlint -shellcheck= .github/workflows/*.yml
echo "actionlint: $(ls .github/workflows/*.yml | tr '\n' ' ')clean"
