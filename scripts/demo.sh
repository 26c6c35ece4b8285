#!/usr/bin/env bash
# The README's main job: check, draw and analyse every shipped spec, compute its rate, then
# run the quick architecture search (specs/search/quick.yaml) and write its report.
# Installs libtorch on first use (scripts/env.sh), builds optarch, and writes pictures and
# reports to runs/demo/ (override with OPTARCH_DEMO_OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release -p optarch-search --bin optarch
bin=target/release/optarch
out="${OPTARCH_DEMO_OUT:-runs/demo}"
mkdir -p "$out"
"$bin" env
echo
"$bin" check specs/
echo
rated=()
printf '%-28s %7s %6s %9s %14s %12s\n' spec blocks edges peak_maps contraction@20 asymptotic
for spec in specs/*.yaml; do
  name=$(basename "$spec" .yaml)
  "$bin" graph "$spec" --steps 8 --format svg -o "$out/$name.svg" --json > "$out/$name.analysis.json"
  "$bin" graph "$spec" --steps 8 --format png -o "$out/$name.png" > /dev/null
  if "$bin" rate "$spec" --kappa 100 --steps 20 --json > "$out/$name.rate.json" 2> "$out/$name.rate.err"; then
    rated+=("$spec")
    rm -f "$out/$name.rate.err"
    rate=$(python - "$out/$name.rate.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["rate"]
a = r["asymptotic"]
print(f'{r["contraction"]:.3e} {"n/a" if a is None else f"{a:.4f}"}')
PY
)
  else
    rm -f "$out/$name.rate.json"  # the reason is in $name.rate.err
    rate="n/a n/a"
  fi
  python - "$out/$name.analysis.json" "$name" "$rate" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
c, r = sys.argv[3].split()
print(f'{sys.argv[2]:<28} {a["blocks"]:>7} {a["edges"]:>6} {a["memory"]["peak"]:>9} {c:>14} {r:>12}')
PY
done
echo
"$bin" rate "${rated[@]}" --kappa 100 --steps 40 --plot "$out/rates.png" > /dev/null
echo "contraction curves of ${#rated[@]} specs: $out/rates.png"
echo "pictures (SVG, PNG), analyses and rates (JSON) are in $out/"

# The search: gradient descent, heavy ball, Nesterov and generated two-step recurrences trained
# on a CIFAR-10 subset under ASHA, with a random baseline and finalists re-trained with 3 seeds
# (specs/search/quick.yaml; about 3.5 minutes on 2 quiet cores). The data: $OPTARCH_DATA, else
# ../shared/data beside the checkout, else the official archive is downloaded (and checked).
if [ -z "${OPTARCH_DATA:-}" ] && [ -d ../shared/data ]; then
  OPTARCH_DATA="$(cd ../shared/data && pwd)"
  export OPTARCH_DATA
fi
echo
rm -rf "$out/quick"
"$bin" search specs/search/quick.yaml --out "$out/quick"
echo "report: $out/quick/report/report.html   winner: $out/quick/export/"
