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
  # A clean clone builds once: incremental state would only take disk (2 GB).
  export CARGO_INCREMENTAL=0
fi

step() {
  echo "==> $*" >&2
  "$@"
}

# The Slurm executor's tests run against a single-node Slurm cluster on this machine
# (scripts/slurm-cluster.sh: Debian's slurmctld/slurmd/munge, installed with apt on first use;
# needs root). It is stopped when this script ends, leaving nothing running. OPTARCH_SLURM=0
# skips it (the Slurm tests then say they are skipped, and fail under CI=true).
if [ "${OPTARCH_SLURM:-}" != 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    bash scripts/slurm-cluster.sh start
    trap 'bash scripts/slurm-cluster.sh stop' EXIT
    eval "$(bash scripts/slurm-cluster.sh env)"
    export OPTARCH_SLURM=1
  else
    echo "*** not root: no Slurm cluster for the Slurm executor's tests (they are skipped) ***" >&2
  fi
fi

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
