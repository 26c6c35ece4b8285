#!/usr/bin/env bash
# Precision and layout on the CPU (issue 13), side by side in one run: optarch's training step in
# fp32 and in bf16 with channels_last (gradient descent = ResNet-20, heavy ball, Nesterov,
# DenseNet-BC-22; step time and peak memory), and PyTorch eager's ResNet-20 and DenseNet-BC-22
# (the same network, exported by optarch) in fp32 and with bf16 autocast and channels_last, at
# 1 and 2 threads. Run on a quiet machine:
#   bash bench/precision.sh
# It trains DenseNet-BC-22 for one epoch on 256 CIFAR-10 images to export it, so it needs
# CIFAR-10 in $OPTARCH_DATA (default ../shared/data), or downloads it there.
#
# optarch keeps freed memory for the next step (optarch_core::malloc); PyTorch runs twice, with
# glibc's defaults as users run it, and under the same allocator settings as optarch
# ("same allocator": the comparison of libtorch with libtorch).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build -q --release -p optarch-search --bins
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A DenseNet-BC-22 for PyTorch: a one-epoch run on 256 images is enough, since only the
# network's structure is timed (model.py, freshly initialised). CIFAR-10 from $OPTARCH_DATA
# (default ../shared/data), downloaded there if it is missing.
target/release/optarch train --spec specs/densenet.yaml --preset cifar-densenet --depth 22 \
  --data "${OPTARCH_DATA:-../shared/data}" --train-subset 256 --val 128 --no-test --epochs 1 \
  --threads 1 --out "$work/densenet" >/dev/null
target/release/optarch export --run "$work/densenet" --format pytorch --out "$work/export" >/dev/null
# optarch_core::malloc's MMAP_THRESHOLD (32 MiB) and TRIM_THRESHOLD (2 GiB less one byte).
same=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483647
for t in 1 2; do
  echo "== $t thread(s)"
  target/release/optarch-bench --threads "$t" --computes fp32,bf16+cl \
    --networks gradient_descent,heavy_ball,nesterov,densenet
  for net in resnet20 densenet; do
    args=(--threads "$t")
    [ "$net" = densenet ] && args+=(--export "$work/export")
    echo "PyTorch $net, glibc's defaults:"
    python bench/pytorch_resnet20.py "${args[@]}"
    python bench/pytorch_resnet20.py "${args[@]}" --bf16 --channels-last
    echo "PyTorch $net, same allocator as optarch:"
    GLIBC_TUNABLES=$same python bench/pytorch_resnet20.py "${args[@]}"
    GLIBC_TUNABLES=$same python bench/pytorch_resnet20.py "${args[@]}" --bf16 --channels-last
  done
done
