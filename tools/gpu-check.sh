#!/usr/bin/env bash
# The GPU check of issue #23 as one prepared script, for a session lent a GPU machine
# (`.library/device`: an NVIDIA H200 with a Vulkan driver, 15 minutes of device time).
#
#   bash tools/gpu-check.sh prepare     # here, on the 2-core machine (about 5 minutes)
#   # optionally first a short call, command `bash tools/gpu-check.sh probe`, carry as
#   # below, timeout_s 300: the cooperative-matrix and plan tests, the FP32/FP16
#   # defaults, every FP32 candidate at 2048^3 and 4096^3 and every FP16 candidate on
#   # seven shapes (run.log and probe-tuning.json come back)
#   # then one device call, command `bash tools/gpu-check.sh device`, carry [".gpu", ".gl"],
#   # timeout_s 540; the raw outputs come back under the call's files_at
#   bash tools/gpu-check.sh restore     # here, right after the call
#
# `prepare` builds the release binary, the `classify` example and the test binaries
# (release), strips and compresses them into .gpu/ (kept out of git by
# .git/info/exclude), and downloads the Vulkan/EGL loader packages into .gl/ as the
# device README says (the machine has the NVIDIA driver but may lack the loader).
#
# The working tree travels whole and may hold 64 MiB with the carried folders; the
# tracked files alone are about 78 MB, over it. So `prepare` also moves the data the GPU
# check does not read (the PaddleOCR models, EfficientNet's ONNX variants and the ONNX
# model tests' data, about 47 MB) out of the checkout, to ../gpu-check-stash, and
# `restore` moves them back. Do not commit between the two: git sees those files as
# deleted meanwhile.
#
# `device` runs there, each step under its own time limit so that the whole run stays
# within 8 minutes (a rerun must still fit in the 15), writing at most 8 files to $OUT:
#   run.log     nvidia-smi, `wgpu-quant adapters`, every test binary's result, classify
#   bench.md / bench.json / bench.svg   `wgpu-quant bench` (every suite, verified cases)
#   tune.md / tuning.json               `wgpu-quant tune` (default shapes, one more linear)
#   cublas.json                         tools/cublas_ceiling.py (PyTorch's cuBLAS)
# Set GPU_CHECK_BUDGET (seconds, default 470) to scale the steps' limits; with
# GPU_CHECK_BACKEND=vulkan (default) the binaries use that backend only.
set -uo pipefail
cd "$(dirname "$0")/.."

# The test binaries carried: every integer kernel bit-exact and every float kernel within
# budget on the GPU, plus the plan, errors and end-to-end models. 64 MiB travel at most.
TESTS="gemm qgemm wgemm conv quant requant dispatch plan errors models train"
# Data the GPU check does not read, moved out while the tree travels.
STASH="examples/data/ppocr examples/data/efficientnet_lite0/efficientnet_lite0_dyn.onnx
  examples/data/efficientnet_lite0/efficientnet_lite0_qdq.onnx
  examples/data/efficientnet_lite0/efficientnet_lite0_qop.onnx tests/data/onnx_models
  tests/data/onnx"
STASH_DIR=../gpu-check-stash

stash() {
  mkdir -p "$STASH_DIR"
  for p in $STASH; do
    if [ -e "$p" ]; then
      mkdir -p "$STASH_DIR/$(dirname "$p")"
      mv "$p" "$STASH_DIR/$p"
    fi
  done
}

restore() {
  for p in $STASH; do
    if [ -e "$STASH_DIR/$p" ]; then
      mkdir -p "$(dirname "$p")"
      mv "$STASH_DIR/$p" "$p"
    fi
  done
  git status --short -- examples/data
  echo "restored: git status above lists nothing under examples/data when all is back"
}

prepare() {
  set -e
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
  grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >> .git/info/exclude
  rm -rf .gpu && mkdir -p .gpu/bin
  cargo build --release --bin wgpu-quant --example classify
  cp target/release/wgpu-quant target/release/examples/classify .gpu/bin/
  local list
  list=$(mktemp)
  local args=()
  for t in $TESTS; do args+=(--test "$t"); done
  cargo test --release --no-run --message-format=json "${args[@]}" > "$list"
  python3 - "$list" <<'EOF'
import json, shutil, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        name = m["target"]["name"]
        shutil.copy(m["executable"], f".gpu/bin/test-{name}")
        print("carried test binary", name)
EOF
  strip .gpu/bin/*
  xz -T2 -6 .gpu/bin/*
  # The binaries find examples/data through the path they were built in; the device
  # links it to its copy of the checkout.
  pwd > .gpu/manifest_dir
  git rev-parse HEAD > .gpu/commit
  git status --short > .gpu/dirty
  if [ ! -d .gl ] || ! ls .gl/*.deb >/dev/null 2>&1; then
    mkdir -p .gl /tmp/amd64/partial
    local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    # shellcheck disable=SC2086
    apt-get $o update -qq
    # shellcheck disable=SC2086
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  fi
  stash
  local tree carried
  # Tracked and untracked-not-ignored files that are there (the stashed ones are not).
  tree=$(git ls-files -z --cached --others --exclude-standard | python3 -c '
import os, sys
names = sys.stdin.buffer.read().decode().split("\0")
print(sum(os.path.getsize(n) for n in names if n and os.path.isfile(n)))')
  carried=$(du -scb .gpu .gl | tail -1 | cut -f1)
  echo "checkout files that travel: $tree bytes; carried: $carried bytes"
  if [ $((tree + carried)) -gt $((62 * 1024 * 1024)) ]; then
    echo "over the device's 64 MiB for the working tree; restoring"
    restore
    exit 1
  fi
}

# Runs "$@" with a limit of $1 seconds, appending its output to run.log with a header.
step() {
  local limit=$1; shift
  echo "== $* (limit ${limit} s)" >> "$OUT/run.log"
  local t0=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >> "$OUT/run.log" 2>&1
  local rc=$?
  echo "== rc=$rc after $((SECONDS - t0)) s" >> "$OUT/run.log"
  return 0
}

# Unpacks the carried binaries and the Vulkan loader on the device and writes the header
# of run.log.
setup() {
  : "${OUT:?OUT must name the folder for the outputs}"
  export WGPU_QUANT_BACKEND=${GPU_CHECK_BACKEND:-vulkan}
  for f in .gpu/bin/*.xz; do
    if command -v xz >/dev/null; then xz -d "$f"; else
      python3 -c 'import lzma,sys; open(sys.argv[1][:-3],"wb").write(lzma.open(sys.argv[1]).read())' "$f"
      rm -f "$f"
    fi
  done
  chmod +x .gpu/bin/*
  local built
  built=$(cat .gpu/manifest_dir)
  if [ "$built" != "$PWD" ] && [ ! -e "$built" ]; then
    mkdir -p "$(dirname "$built")" && ln -s "$PWD" "$built"
  fi
  if ! ldconfig -p 2>/dev/null | grep -q libvulkan; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  fi
  {
    date -u
    echo "commit: $(cat .gpu/commit) (uncommitted changes: $(wc -l < .gpu/dirty) paths)"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.memory --format=csv 2>&1
  } > "$OUT/run.log"
  step 20 .gpu/bin/wgpu-quant adapters
}

# A short first look (about two minutes): the adapter, the cooperative-matrix and plan
# tests, the FP32 and FP16 defaults on a few shapes (`bench`), and every FP32 candidate
# at 2048^3 and 4096^3 and every FP16 candidate on seven shapes (`tune --verbose`), so
# that a kernel that fails on the GPU shows, and the plan's rules can be checked, before
# the full run spends its minutes.
probe() {
  setup
  step 60 .gpu/bin/test-wgemm --test-threads=1 cooperative
  step 20 .gpu/bin/test-plan
  step 30 .gpu/bin/wgpu-quant bench --suite peak,gemm --dtypes fp32,fp16 --sizes 1024,2048,4096 \
    --shapes 128x3072x768,3136x64x576,32x4096x4096 --runs 5
  step 120 .gpu/bin/wgpu-quant tune --gemm 2048x2048x2048,4096x4096x4096 --linear '' --conv '' \
    --verbose --runs 5 \
    --fp16 "${GPU_PROBE_SHAPES:-4096x4096x4096,2048x2048x2048,1024x1024x1024,128x3072x768,32x4096x4096,3136x64x576,128x768x768}" \
    --out "$OUT/probe-tuning.json"
  echo "== done after $SECONDS s" >> "$OUT/run.log"
}

device() {
  local budget=${GPU_CHECK_BUDGET:-470}
  # Each step's share of the budget (percent).
  local s_tests=$((budget * 30 / 100)) s_bench=$((budget * 32 / 100)) s_tune=$((budget * 18 / 100))
  local s_cublas=$((budget * 10 / 100)) s_classify=$((budget * 6 / 100))
  setup
  # Tests: each binary in turn, in the time left of the tests' share.
  local t_end=$((SECONDS + s_tests))
  for t in .gpu/bin/test-*; do
    local left=$((t_end - SECONDS))
    if [ "$left" -le 5 ]; then
      echo "== $t: not run, the tests' ${s_tests} s are spent" >> "$OUT/run.log"
      continue
    fi
    step "$left" "$t" --test-threads=4
  done
  step "$s_bench" sh -c ".gpu/bin/wgpu-quant bench --sizes 256,512,1024,2048,4096 --json '$OUT/bench.json' --chart '$OUT/bench.svg' > '$OUT/bench.md' 2>&1"
  step "$s_tune" sh -c ".gpu/bin/wgpu-quant tune --linear 1x4096x4096,128x768x768,1024x1024x1024 --out '$OUT/tuning.json' > '$OUT/tune.md' 2>&1"
  step "$s_cublas" env PYTHONUNBUFFERED=1 python3 tools/cublas_ceiling.py --json "$OUT/cublas.json"
  step "$s_classify" .gpu/bin/classify --warmup 10 --runs 30
  echo "== done after $SECONDS s" >> "$OUT/run.log"
}

case "${1:-}" in
  prepare) prepare ;;
  device) device ;;
  probe) probe ;;
  restore) restore ;;
  *) echo "usage: bash tools/gpu-check.sh prepare|probe|device|restore"; exit 2 ;;
esac
