#!/usr/bin/env bash
# Precision and layout on the CPU (issue 13), side by side in one run: optarch's training step in
# fp32 and in bf16 with channels_last (gradient descent = ResNet-20, heavy ball, Nesterov,
# DenseNet-BC-22; step time and peak memory), and PyTorch eager's ResNet-20 in fp32 and with
# bf16 autocast and channels_last, at 1 and 2 threads. Run on a quiet machine:
#   bash bench/precision.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build -q --release -p optarch-search --bin optarch-bench
for t in 1 2; do
  echo "== $t thread(s)"
  target/release/optarch-bench --threads "$t" --computes fp32,bf16+cl \
    --networks gradient_descent,heavy_ball,nesterov,densenet
  python bench/pytorch_resnet20.py --threads "$t"
  python bench/pytorch_resnet20.py --threads "$t" --bf16 --channels-last
done
