#!/usr/bin/env bash
# The peer benchmark of issue #25 in one sitting on one adapter: wgpu-quant's runner on
# the peer shapes (FP32, FP16, W8A8, W8A16), then Burn's matmul (f32, f16, q8) on the
# same shapes and the same adapter, printed as one table with the ratios.
#
#   tools/peer_burn/run.sh                         # lavapipe (a CPU adapter)
#   SHAPES=1x4096x4096,3136x64x576 RUNS=7 DEVICE=discrete tools/peer_burn/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
SHAPES="${SHAPES:-1x4096x4096,8x4096x4096,128x3072x768,256x256x256,512x512x512,1024x1024x1024,2048x2048x2048,3136x64x576}"
RUNS="${RUNS:-5}"
DEVICE="${DEVICE:-cpu}"
BACKEND="${BACKEND:-vulkan}"
out="$here/target"
mkdir -p "$out"
(cd "$root" && cargo build --release -q)
ours="${CARGO_TARGET_DIR:-$root/target}/release/wgpu-quant"
"$ours" bench --backend "$BACKEND" --suite gemm --sizes 16 \
  --shapes "$SHAPES" --dtypes fp32,fp16,w8a8,w8a16 --runs "$RUNS" --json "$out/ours.json" \
  > "$out/ours.md"
grep -E "^adapter:|^driver:" "$out/ours.md" || true
# The peer crate builds in its own target folder (Burn takes ~15 minutes the first time).
(cd "$here" && env -u CARGO_TARGET_DIR cargo run --release -q -- --shapes "$SHAPES" --runs "$RUNS" \
  --device "$DEVICE" --ours "$out/ours.json")
