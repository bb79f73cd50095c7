#!/usr/bin/env bash
# Builds the classification page into examples/web/dist (README, "In the browser"):
#   1. the page's crate for wasm32-unknown-unknown (release) and its JS bindings
#      (wasm-bindgen-cli at the version in Cargo.lock, tools/wasm-bindgen-cli.sh);
#   2. the static INT8 model file, calibrated natively by the classify example on this
#      machine's adapter (lavapipe is enough): `classify --save-int8`;
#   3. the FP32 weights, the labels and the bundled photos beside them.
# Then serve it: python3 -m http.server 8000 -d examples/web/dist
# (WebGPU needs a secure context: localhost is one.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown
bin=$(bash tools/wasm-bindgen-cli.sh)
dist="$here/dist"
mkdir -p "$dist/data"
echo "== the page's crate (wasm32, release)"
cargo build --release --target wasm32-unknown-unknown \
  --manifest-path "$here/Cargo.toml" --target-dir "$root/target/web"
"$bin/wasm-bindgen" --target web --no-typescript --out-dir "$dist/pkg" \
  "$root/target/web/wasm32-unknown-unknown/release/wgpu_quant_web.wasm"
echo "== the static INT8 model (calibrated natively)"
cargo run --release --example classify -- --save-int8 "$dist/data/efficientnet_lite0_int8.safetensors"
cp "$here/index.html" "$here/main.js" "$dist/"
data="$root/examples/data"
cp "$data/efficientnet_lite0/efficientnet_lite0.safetensors" "$data/efficientnet_lite0/imagenet_labels.txt" \
  "$data/photos/chelsea.png" "$data/photos/coffee.png" "$data/photos/rocket.jpg" "$dist/data/"
echo "== built $dist; serve it with: python3 -m http.server 8000 -d examples/web/dist"
