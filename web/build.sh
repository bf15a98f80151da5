#!/usr/bin/env bash
# Builds the page: the cnn3d-web crate for wasm32-unknown-unknown (release), then wasm-bindgen's
# JavaScript glue into web/pkg/. Serve web/ with any static server afterwards.
# Needs: rustup's wasm32-unknown-unknown target and wasm-bindgen-cli of the version the crate
# pins (installed with cargo when missing).
set -euo pipefail
cd "$(dirname "$0")"

rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# The CLI must match the wasm-bindgen crate exactly (Cargo.lock).
version=$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p;}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$version" ]; then
    # Not --locked: the CLI's own lock file pins crates this registry may lack.
    cargo install --quiet wasm-bindgen-cli --version "$version"
fi
cargo build --quiet --release --target wasm32-unknown-unknown
wasm-bindgen --target web --no-typescript --out-dir pkg target/wasm32-unknown-unknown/release/cnn3d_web.wasm
echo "built web/pkg ($(du -h pkg/cnn3d_web_bg.wasm | cut -f1) of wasm); serve web/ and open index.html"
