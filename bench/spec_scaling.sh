#!/usr/bin/env bash
# Time and peak memory of optarch's spec commands against the number of steps (issue 12):
# check, graph (DOT, and SVG where it is drawn), rate, for gradient descent, Nesterov, DenseNet
# and a history sum. Usage: bash bench/spec_scaling.sh [optarch binary]. One process at a
# time; the figures are wall seconds and peak resident memory (GNU time). The resident figure
# includes about 470 MB that loading libtorch costs every optarch process.
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-target/release/optarch}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
measure() {
  local label="$1"; shift
  if /usr/bin/time -f "%e %M" -o "$tmp/t" "$@" >/dev/null 2>"$tmp/err"; then
    read -r secs kb <"$tmp/t"
    printf '| %-44s | %7s | %6d |\n' "$label" "$secs" "$((kb / 1024))"
  else
    read -r secs kb < <(tail -1 "$tmp/t")
    printf '| %-44s | %7s | %6s |\n' "$label (refused: $(grep -o 'error[^:]*' "$tmp/err" | head -1))" "$secs" "-"
  fi
}
echo "| command | seconds | peak MB |"
echo "|---|---:|---:|"
measure "optarch --version (the floor)" "$B" --version
for spec in specs/gradient_descent.yaml specs/nesterov.yaml specs/densenet.yaml bench/specs/history_sum.yaml; do
  name="$(basename "$spec" .yaml)"
  for n in 100 500 1000 2000; do
    measure "check $name --steps $n" "$B" check "$spec" --steps "$n"
    measure "graph $name --steps $n -f dot" "$B" graph "$spec" --steps "$n" -f dot -o "$tmp/g.dot"
    measure "graph $name --steps $n (svg)" "$B" graph "$spec" --steps "$n" -o "$tmp/g.svg"
  done
  if [ "$name" != densenet ]; then
    for n in 1000 10000 100000; do
      measure "rate $name --steps $n" "$B" rate "$spec" --steps "$n"
    done
  fi
done
