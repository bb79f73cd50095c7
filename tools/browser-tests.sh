#!/usr/bin/env bash
# The browser tests (tests/web.rs): the library built for wasm32-unknown-unknown, run on
# WebGPU in headless Chromium by wasm-bindgen-test through chromedriver.
#
# Installs what is missing: the wasm32 target, Debian's chromium and chromium-driver,
# and wasm-bindgen-cli at the wasm-bindgen version in Cargo.lock (tools/wasm-bindgen-cli.sh).
# Fails when a test fails or when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "== installing chromium and chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
bin=$(bash tools/wasm-bindgen-cli.sh)
export PATH="$bin:$PATH"
version=$(wasm-bindgen-test-runner --version | awk '{print $2}')
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
# Compiling every shader variant in the browser takes about a minute on a software adapter.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"
echo "== browser tests: $(chromium --version 2>/dev/null), wasm-bindgen-test-runner $version"
log=$(mktemp)
status=0
# Without debug info the wasm test build takes half the time (213 s against 439 s on 2
# cores) and the module is 3 MB instead of 50 MB; panic messages stay.
CARGO_PROFILE_TEST_DEBUG=0 \
  cargo test --target wasm32-unknown-unknown --no-default-features --test web "$@" 2>&1 | tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
if ! grep -Eq '^test result: ok\. [1-9][0-9]* passed' "$log"; then
  echo "no browser test ran (see the output above)"; exit 1
fi
