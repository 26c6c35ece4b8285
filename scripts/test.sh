#!/usr/bin/env bash
# The full check, as CI runs it: formatting, lints, tests and doc tests.
#
#   bash scripts/test.sh
#
# Installs libtorch on first use (scripts/env.sh). OPTARCH_DATA defaults to ../shared/data
# beside this checkout when that exists. Stops at the first failing step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/env.sh

if [ -z "${OPTARCH_DATA:-}" ] && [ -d ../shared/data ]; then
  OPTARCH_DATA="$(cd ../shared/data && pwd)"
  export OPTARCH_DATA
fi

nextest_profile=()
if [ "${CI:-}" = "true" ]; then
  nextest_profile=(--profile ci)
fi

step() {
  echo "==> $*" >&2
  "$@"
}

step cargo fmt --all --check
step cargo clippy --workspace --all-targets -- -D warnings
step cargo nextest run --workspace "${nextest_profile[@]}"
step cargo test --workspace --doc
# The derive examples (docs/DERIVE.md): each runs on the CPU in seconds; cifar_derive trains one
# epoch on a CIFAR-10 subset from $OPTARCH_DATA (and says so and exits cleanly without it).
step cargo run -q -p optarch-examples --example heavy_ball_derive
step cargo run -q -p optarch-examples --example inline_spec
step cargo run -q -p optarch-examples --example cifar_derive
echo "==> all checks passed" >&2
