#!/usr/bin/env bash
# Every GPU figure in one go: run it on a GPU machine from a checkout that carries prebuilt
# binaries (no Rust toolchain is needed there) and whose python3 holds torch 2.11.0.
#
#   bash bench/gpu.sh [OUTDIR]
#
#   OPTARCH_BIN   folder with optarch and optarch-bench (default target/release)
#   OPTARCH_DATA  CIFAR-10 location; when set, short training runs (fp32, bf16, fp16), the
#                 science search and its ResNet-20 anchor as well
#   OPTARCH_ANCHOR_EPOCHS  the anchor's epochs (default 30)
#   OPTARCH_GPU_STEPS  which parts to run, comma-separated (default bench,train,science,anchor):
#                 a GPU lent for a few minutes can take the benchmark in one call and the
#                 training runs in a later one, after the data has been carried over
#
# Writes into OUTDIR (default $OUT, else runs/gpu): card.csv (nvidia-smi), env.txt (what
# libtorch sees), bench.json (images per second for every preset and spec in fp32, fp32 with
# channels_last, bf16 and bf16 with channels_last) and bench-amp.json (fp16 autocast, contiguous
# and channels_last), train-*/ (run directories with metrics.jsonl), science/ and
# science-report.txt (specs/search/science-cpu.yaml searched on the GPU), anchor-resnet20/ and
# anchor-resnet20.json (the science protocol's ResNet-20 anchor). Copy the figures into
# docs/BENCHMARKS.md with the card's name.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

parts=${OPTARCH_GPU_STEPS:-bench,train,science,anchor}
want() { [[ ",$parts," == *",$1,"* ]]; }
IFS=, read -ra _named <<<"$parts"
for s in "${_named[@]}"; do
  case $s in
    bench | train | science | anchor) ;;
    *) echo "OPTARCH_GPU_STEPS: unknown part '$s' (bench, train, science, anchor)" >&2; exit 2 ;;
  esac
done

out=${1:-${OUT:-runs/gpu}}
bin=${OPTARCH_BIN:-target/release}
mkdir -p "$out"

# The binaries' rpath points at the build machine's libtorch: use this machine's instead.
torchlib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torchlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/card.csv"
"$bin/optarch" --device cuda env | tee "$out/env.txt"

nets=gradient_descent,heavy_ball,nesterov,densenet,densenet100,imagenet,imagenet_heavy_ball
if want bench; then
  for amp in "" "--amp"; do
    name=bench${amp:+-amp}
    computes=fp32,fp32+cl,bf16,bf16+cl
    [ -n "$amp" ] && computes=fp32,fp32+cl
    echo "==> optarch-bench --device cuda $amp --computes $computes" >&2
    "$bin/optarch-bench" --device cuda --threads 1 --batch 128 --iters 10 --rounds 3 \
      --networks "$nets" --computes "$computes" $amp --json | tee "$out/$name.json"
  done
fi

if [ -n "${OPTARCH_DATA:-}" ]; then
  if want train; then
    for precision in fp32 bf16 fp16; do
      name=train-$precision
      echo "==> optarch train heavy_ball ResNet-20, 2 epochs, 10,000 images" \
        "(5,000 validation), $precision" >&2
      rm -rf "${out:?}/$name"
      "$bin/optarch" --device cuda train --spec specs/heavy_ball.yaml --preset cifar-resnet \
        --depth 20 --epochs 2 --train-subset 10000 --batch-size 128 \
        --data "$OPTARCH_DATA" --out "$out/$name" --precision "$precision"
    done
  fi
  # The science campaign's CPU cut on the GPU (docs/SCIENCE.md): minutes on one GPU, a first
  # GPU table beside the CPU one.
  if want science; then
    echo "==> optarch search specs/search/science-cpu.yaml --device cuda" >&2
    rm -rf "${out:?}/science"
    "$bin/optarch" search specs/search/science-cpu.yaml --device cuda --data "$OPTARCH_DATA" \
      --out "$out/science"
    "$bin/optarch" report "$out/science" | tee "$out/science-report.txt"
  fi
  # The protocol's sanity anchor (docs/SCIENCE.md): ResNet-20 under the campaign's recipe on
  # all 45,000 training images, one-cycle over OPTARCH_ANCHOR_EPOCHS (default 30) epochs.
  anchor_epochs=${OPTARCH_ANCHOR_EPOCHS:-30}
  if want anchor; then
    echo "==> optarch train gradient_descent ResNet-20, $anchor_epochs epochs, 45k images" >&2
    rm -rf "${out:?}/anchor-resnet20"
    "$bin/optarch" --device cuda train --spec specs/gradient_descent.yaml --preset cifar-resnet \
      --depth 20 --epochs "$anchor_epochs" --schedule onecycle:0.15 --data "$OPTARCH_DATA" \
      --out "$out/anchor-resnet20" --json | tee "$out/anchor-resnet20.json"
  fi
else
  echo "OPTARCH_DATA is not set: skipping the training runs and the science search" >&2
fi
echo "==> figures in $out" >&2
