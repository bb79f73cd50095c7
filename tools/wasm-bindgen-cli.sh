#!/usr/bin/env bash
# Makes sure wasm-bindgen-cli at the wasm-bindgen version in Cargo.lock is installed in
# target/wasm-bindgen-cli (a debug build: about 2 minutes on 2 cores, kept for later
# runs) and prints its bin folder. Used by tools/browser-tests.sh and examples/web/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
root="$PWD/target/wasm-bindgen-cli"
if [ "$("$root/bin/wasm-bindgen-test-runner" --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
  echo "== installing wasm-bindgen-cli $version (the version in Cargo.lock)" >&2
  cargo install --quiet --debug --force wasm-bindgen-cli --version "$version" --root "$root" >&2
fi
echo "$root/bin"
