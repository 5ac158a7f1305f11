#!/usr/bin/env bash
# Builds moor's images from static Rust binaries packed FROM scratch:
#   moor/pause:0.1        the pod sandbox
#   moor/echo:0.1         HTTP echo server and test helper
#   moor/results-api:0.1  the reference application's JSON API
#   moor/results-ui:0.1   the reference application's HTML page
# Idempotent: cargo rebuilds only what changed and docker reuses its layer cache.
# No registry is needed. Set CARGO_TARGET_DIR to share a build cache.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

target=x86_64-unknown-linux-gnu
# A target dir of its own, so this never waits on the lock of a running `cargo test`.
export CARGO_TARGET_DIR="${MOOR_IMAGES_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}/images}"
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --quiet --release --target "$target" -p moor-pause -p moor-echo -p moor-results

# One line per image: the binary, its Dockerfile, the image's tag.
images=(
    "pause        images/pause/Dockerfile        moor/pause:0.1"
    "echo         images/echo/Dockerfile         moor/echo:0.1"
    "results-api  images/results/api.Dockerfile  moor/results-api:0.1"
    "results-ui   images/results/ui.Dockerfile   moor/results-ui:0.1"
)
for entry in "${images[@]}"; do
    read -r binary dockerfile tag <<<"$entry"
    context="$(mktemp -d)"
    trap 'rm -rf "$context"' EXIT
    cp "$CARGO_TARGET_DIR/$target/release/$binary" "$context/$binary"
    cp "$dockerfile" "$context/Dockerfile"
    # Quiet on success (the legacy builder warns about BuildKit on every run).
    if ! out="$(docker build --quiet --label moor.image=true -t "$tag" "$context" 2>&1)"; then
        echo "$out" >&2
        exit 1
    fi
    rm -rf "$context"
    trap - EXIT
    echo "built $tag"
done
