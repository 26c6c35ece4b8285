#!/usr/bin/env bash
# The Slurm executor's overhead on the single-node cluster (scripts/slurm-cluster.sh):
#  1. submission to start: 20 empty jobs, one after the other, `sbatch` to the job's first line;
#  2. one squeue call for 20 jobs (what the driver makes per poll);
#  3. the README's quick search with the Slurm executor against the local one, same seeds.
#
#   bash bench/slurm_overhead.sh        # needs root for the cluster; OPTARCH_DATA for step 3
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
bash scripts/slurm-cluster.sh start
trap 'bash scripts/slurm-cluster.sh stop' EXIT
eval "$(bash scripts/slurm-cluster.sh env)"
cargo build -q --release -p optarch-search --bin optarch
W=$(mktemp -d)

echo "== 1. submission to start (20 jobs, sequential)"
ids=()
for i in $(seq 1 20); do
  t0=$(date +%s.%N)
  id=$(sbatch --parsable --output=/dev/null --wrap "date +%s.%N > $W/start-$i")
  ids+=("$id")
  until [ -s "$W/start-$i" ]; do sleep 0.01; done
  awk -v a="$(cat "$W/start-$i")" -v b="$t0" 'BEGIN {print a - b}' >> "$W/latency"
done
sort -n "$W/latency" | awk '{a[NR]=$1} END {printf "median %.3f s, min %.3f s, max %.3f s\n", a[int((NR+1)/2)], a[1], a[NR]}'

echo "== 2. one squeue call for 20 jobs (20 calls)"
list=$(IFS=,; echo "${ids[*]}")
for i in $(seq 1 20); do
  t0=$(date +%s.%N)
  squeue --noheader --states=all --jobs="$list" --format='%i|%T|%r' > /dev/null
  awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {print a - b}' >> "$W/squeue"
done
sort -n "$W/squeue" | awk '{a[NR]=$1} END {printf "median %.1f ms, max %.1f ms\n", 1000*a[int((NR+1)/2)], 1000*a[NR]}'

if [ -n "${OPTARCH_DATA:-}" ]; then
  echo "== 3. specs/search/quick.yaml: local against slurm"
  for kind in local slurm; do
    target/release/optarch search specs/search/quick.yaml --out "$W/quick-$kind" --executor $kind \
      $([ $kind = slurm ] && echo --max-in-flight 2) \
      2>/dev/null | grep -E "^search (done|interrupted)"
  done
  if cmp -s "$W/quick-local/report/leaderboard.csv" "$W/quick-slurm/report/leaderboard.csv"; then
    echo "leaderboards identical"
  else
    echo "leaderboards DIFFER"
  fi
fi
[ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"
