#!/usr/bin/env bash
# Builds the secretstore image (Containerfile, FROM scratch) from static binaries and
# writes it as an OCI archive.
#
#   scripts/build-image.sh OUT.tar [--arch amd64[,arm64]] [--tag NAME:TAG] [--binary-dir DIR]
#   scripts/build-image.sh --context DIR [--arch ...] [--binary-dir DIR]   # context only
#
# --arch       platforms (default: the host's); more than one makes OUT.tar an image index
# --binary-dir where <rust-target>/release/secretstore are (default: target/); missing
#              binaries are built, amd64 with `cargo build --target x86_64-unknown-linux-musl`,
#              others with `cargo zigbuild` (scripts/install-test-deps.sh installs both)
# --tag        the image's name in the archive (default ghcr.io/secretstore/secretstore:<version>)
# --context    only prepare the build context in DIR (for `docker buildx build` in CI)
#
# Builders, in order: buildah (as root: vfs storage, chroot isolation, so it runs in an
# unprivileged container), podman, docker (when its daemon answers).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() { sed -n '4,5p' "$0" | sed 's/^# *//' >&2; exit 2; }
die() { echo "error: $*" >&2; exit 2; }

OUT="" CONTEXT="" TAG="" BINARY_DIR="$ROOT/target"
case "$(uname -m)" in
x86_64) ARCHES=amd64 ;;
aarch64) ARCHES=arm64 ;;
*) die "unsupported host architecture $(uname -m)" ;;
esac
while (($#)); do
    case "$1" in
    --arch) ARCHES="$2"; shift 2 ;;
    --tag) TAG="$2"; shift 2 ;;
    --binary-dir) BINARY_DIR="$(realpath "$2")"; shift 2 ;;
    --context) CONTEXT="$2"; shift 2 ;;
    -*) usage ;;
    *) [[ -z "$OUT" ]] || usage; OUT="$1"; shift ;;
    esac
done
[[ -n "$OUT" || -n "$CONTEXT" ]] || usage
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
TAG="${TAG:-ghcr.io/secretstore/secretstore:$VERSION}"
REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"

rust_target() {
    case "$1" in
    amd64) echo x86_64-unknown-linux-musl ;;
    arm64) echo aarch64-unknown-linux-musl ;;
    *) die "unsupported --arch $1 (amd64, arm64)" ;;
    esac
}

# The static binary for one platform, built when missing.
binary_for() {
    local arch="$1" target binary
    target="$(rust_target "$arch")"
    binary="$BINARY_DIR/$target/release/secretstore"
    if [[ ! -x "$binary" ]]; then
        [[ "$BINARY_DIR" == "$ROOT/target" ]] || die "$binary is missing"
        if [[ "$arch" == amd64 ]]; then
            cargo build --release --locked --target "$target" --bin secretstore >&2
        else
            PATH="$ROOT/.tools/bin:$PATH" cargo zigbuild --release --locked --target "$target" --bin secretstore >&2
        fi
    fi
    if readelf -lW "$binary" | grep -q INTERP; then
        die "$binary is not static (it has a program interpreter)"
    fi
    echo "$binary"
}

prepare_context() {
    local dir="$1" arch
    rm -rf "$dir"
    mkdir -p "$dir/rootfs/etc/ssl/certs"
    for arch in ${ARCHES//,/ }; do
        install -D -m 0555 "$(binary_for "$arch")" "$dir/linux/$arch/secretstore"
    done
    # The nonroot user and group of distroless images: 65532, no shell, no home to write.
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
        >"$dir/rootfs/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/rootfs/etc/group"
    local bundle=/etc/ssl/certs/ca-certificates.crt
    [[ -s "$bundle" ]] || die "$bundle is missing: install the ca-certificates package"
    install -m 0444 "$bundle" "$dir/rootfs/etc/ssl/certs/ca-certificates.crt"
    chmod 0444 "$dir/rootfs/etc/passwd" "$dir/rootfs/etc/group"
    cp Containerfile "$dir/Containerfile"
}

if [[ -n "$CONTEXT" ]]; then
    prepare_context "$CONTEXT"
    echo "$CONTEXT"
    exit 0
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
prepare_context "$context/ctx"
OUT="$(realpath -m "$OUT")"
rm -f "$OUT"
build_args=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION")
platforms="$(sed 's/\(^\|,\)/\1linux\//g' <<<"$ARCHES")"

if command -v buildah >/dev/null; then
    buildah=(buildah)
    if [[ $(id -u) -eq 0 ]]; then
        # vfs and chroot need no kernel overlay or user namespaces; a private root keeps the
        # images out of the host's container storage.
        buildah=(buildah --storage-driver vfs --root "$context/storage" --runroot "$context/run")
        export BUILDAH_ISOLATION=chroot
    fi
    if [[ "$ARCHES" == *,* ]]; then
        "${buildah[@]}" manifest create "$TAG" >/dev/null
        "${buildah[@]}" build --quiet --layers=false --platform "$platforms" --manifest "$TAG" \
            "${build_args[@]}" -f "$context/ctx/Containerfile" "$context/ctx" >/dev/null
        "${buildah[@]}" manifest push --quiet --all "$TAG" "oci-archive:$OUT:$TAG"
    else
        "${buildah[@]}" build --quiet --layers=false --platform "$platforms" -t "$TAG" \
            "${build_args[@]}" -f "$context/ctx/Containerfile" "$context/ctx" >/dev/null
        "${buildah[@]}" push --quiet "$TAG" "oci-archive:$OUT:$TAG"
    fi
elif command -v podman >/dev/null; then
    podman build --quiet --platform "$platforms" --manifest "$TAG" "${build_args[@]}" \
        -f "$context/ctx/Containerfile" "$context/ctx" >/dev/null
    podman manifest push --all "$TAG" "oci-archive:$OUT:$TAG"
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    docker buildx build --platform "$platforms" "${build_args[@]}" -t "$TAG" \
        --output "type=oci,dest=$OUT" -f "$context/ctx/Containerfile" "$context/ctx"
else
    die "no image builder: install buildah (Debian: apt-get install buildah), podman or docker"
fi
echo "$OUT: $TAG ($ARCHES)"
