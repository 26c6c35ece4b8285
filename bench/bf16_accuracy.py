"""How much accuracy bf16 costs on the CI learning check's recipe, measured in PyTorch, with the
bf16 rounding simulated at fp32 speed so that it can be run on a CPU without bfloat16
instructions (where libtorch emulates bf16 about 9x slower than fp32).

The recipe is the one `search/tests/train.rs::resnet20_learns_cifar10` and the six-seed table of
docs/BENCHMARKS.md use: ResNet-20 (option-A shortcuts) on a seeded 10,000-image subset of the
CIFAR-10 training set, 5 epochs, batch 128, one-cycle schedule (linear warm-up over 15 % of the
steps to lr 0.1, then linear decay to 0), SGD with Nesterov momentum 0.9, weight decay 5e-4 on
convolution and linear weights only, random crops (4 pixels of zero padding) and flips; then
the 10,000 test images.

    source scripts/env.sh
    python bench/bf16_accuracy.py --data ../shared/data --precision fp32 --seed 0
    python bench/bf16_accuracy.py --data ../shared/data --precision sim --seed 0
    python bench/bf16_accuracy.py --data ../shared/data --fidelity      # sim against real bf16

Precisions (`--precision`):

  fp32       everything in single precision.
  autocast   PyTorch's CPU autocast to bfloat16 (real bf16 arithmetic: fast only on a CPU
             with AMX or AVX-512-BF16).
  sim        autocast's rounding, simulated: every floating-point result of a convolution,
             batch norm, addition, pooling or linear layer, the network's input and the weights
             a convolution or linear layer reads are rounded to bfloat16 (round to nearest
             even) and computed on in fp32. The rounding is a cast to bf16 and back, whose
             backward pass rounds the gradient at the same place: activations and their
             gradients carry 8 significant bits, as under autocast; products and sums inside an
             operation are exact-then-fp32, as oneDNN's bf16 kernels accumulate in fp32.
  sim-head32 `sim` with the classifier (linear layer) in fp32, as optarch's bf16 path computes.
  sim-conv   only the convolutions round (their input, weight and output); batch norm, ReLU,
             the additions and pooling in fp32: each convolution's output cast back to fp32.
  sim-fwd    `sim`'s forward rounding with gradients passed through unrounded (a diagnostic:
             which direction the accuracy is lost in).

`--channels-last` puts the network and its inputs in channels_last (NHWC), as optarch's
`--channels-last on` does. `bench/bf16_gap.py` runs this against optarch over several seeds.

Prints one JSON line: precision, layout, seed, test accuracy, last epoch's mean training loss,
seconds, median step ms.
"""
import argparse
import json
import os
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_resnet20 import ResNet  # noqa: E402  (the step benchmark's ResNet-20, option A)


# ---------------------------------------------------------------------------------------------
# Simulated bf16.


def round_bf16(t):
    """`t` rounded to bfloat16 and back; the backward pass rounds the gradient the same way."""
    return t.to(torch.bfloat16).to(torch.float32)


def round_forward(t):
    """`t` rounded to bfloat16 in the forward pass only (straight-through gradient)."""
    return t + (round_bf16(t) - t).detach()


CONV = {F.conv2d, torch.conv2d}
LINEAR = {F.linear, torch._C._nn.linear}
BN = {F.batch_norm, torch.batch_norm}
ADD = {torch.Tensor.__add__, torch.Tensor.__radd__, torch.add, torch.Tensor.add}
POOL = {F.adaptive_avg_pool2d, torch._C._nn.adaptive_avg_pool2d, F.avg_pool2d, torch._C._nn.avg_pool2d}


class Bf16Sim(TorchFunctionMode):
    """Rounds the inputs and results of the operations `rounds` names (see the module's doc)."""

    def __init__(self, precision):
        super().__init__()
        self.q = round_forward if precision == "sim-fwd" else round_bf16
        self.ops = set(CONV)
        if precision != "sim-conv":
            self.ops |= BN | ADD | POOL
        if precision in ("sim", "sim-fwd"):
            self.ops |= LINEAR

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in self.ops:
            return func(*args, **kwargs)
        if func in CONV or func in LINEAR:
            # the input (already rounded when a rounded op produced it) and the weight
            args = tuple(self.q(a) if i < 2 and torch.is_tensor(a) and a.is_floating_point() else a
                         for i, a in enumerate(args))
        out = func(*args, **kwargs)
        if torch.is_tensor(out) and out.dtype == torch.float32:
            out = self.q(out)
        return out


class Precision:
    """The context a forward pass runs in, and how the network's input is prepared."""

    def __init__(self, name):
        self.name = name

    def context(self):
        if self.name == "autocast":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        if self.name.startswith("sim"):
            return Bf16Sim(self.name)
        return torch.autocast("cpu", enabled=False)

    def input(self, x):
        if self.name.startswith("sim"):
            return (round_forward if self.name == "sim-fwd" else round_bf16)(x)
        return x


# ---------------------------------------------------------------------------------------------
# Data: the official CIFAR-10 binary archive.


def cifar10_source(data):
    """The archive `cifar-10-binary.tar.gz` in `data`, or its extracted `cifar-10-batches-bin`
    folder (in `data`, or `data` itself); None when neither is there."""
    for path in (os.path.join(data, "cifar-10-binary.tar.gz"),
                 os.path.join(data, "cifar-10-batches-bin"), data):
        if os.path.isfile(path) or os.path.isfile(os.path.join(path, "test_batch.bin")):
            return path
    return None


def cifar10_files(path):
    """(file name, bytes) of each file in the archive or folder `path`."""
    if os.path.isfile(path):
        with tarfile.open(path, "r:gz") as tar:
            for m in tar.getmembers():
                if m.isfile():
                    yield os.path.basename(m.name), tar.extractfile(m).read()
    else:
        for name in sorted(os.listdir(path)):
            with open(os.path.join(path, name), "rb") as f:
                yield name, f.read()


def read_cifar10(data):
    train, test = [], None
    for name, raw in cifar10_files(cifar10_source(data)):
        if not name.endswith(".bin") or "batch" not in name:
            continue
        raw = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073)
        if name == "test_batch.bin":
            test = raw
        else:
            train.append((name, raw))
    train = np.concatenate([r for _, r in sorted(train)])

    def split(raw):
        return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)

    return split(train), split(test)


def augment(x, gen):
    """Random crop after 4 pixels of zero padding, and a horizontal flip with probability 1/2."""
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    off = torch.randint(0, 9, (n, 2), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(off[i, 0]), int(off[i, 1])
        crop = padded[i, :, dy : dy + 32, dx : dx + 32]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def lr_at(step, total, peak=0.1, warmup=0.15):
    p = step / total
    return peak * (p / warmup if p < warmup else max(0.0, (1 - p) / (1 - warmup)))


# ---------------------------------------------------------------------------------------------


def train(a):
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    (xtr, ytr), (xte, yte) = read_cifar10(a.data)
    idx = torch.randperm(len(ytr), generator=gen)[: a.train_subset].numpy()
    xtr = torch.from_numpy(xtr[idx].astype(np.float32) / 255.0)
    ytr = torch.from_numpy(ytr[idx])
    mean = xtr.mean(dim=(0, 2, 3), keepdim=True)
    std = xtr.std(dim=(0, 2, 3), keepdim=True)
    xtr = (xtr - mean) / std
    if a.test_subset:
        xte, yte = xte[: a.test_subset], yte[: a.test_subset]
    xte = (torch.from_numpy(xte.astype(np.float32) / 255.0) - mean) / std
    yte = torch.from_numpy(yte)
    layout = torch.channels_last if a.channels_last else torch.contiguous_format

    net = ResNet(fan_out_init=True).to(memory_format=layout)
    decay = [p for p in net.parameters() if p.dim() > 1]
    no_decay = [p for p in net.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=0.1, momentum=0.9, nesterov=True)
    prec = Precision(a.precision)
    n = len(ytr)
    steps_per_epoch = (n + a.batch - 1) // a.batch
    total = steps_per_epoch * a.epochs
    step, times, epoch_loss = 0, [], 0.0
    start = time.perf_counter()
    net.train()
    for _ in range(a.epochs):
        perm = torch.randperm(n, generator=gen)
        epoch_loss = 0.0
        for b in range(steps_per_epoch):
            t = time.perf_counter()
            sel = perm[b * a.batch : (b + 1) * a.batch]
            x = augment(xtr[sel], gen).contiguous(memory_format=layout)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total)
            opt.zero_grad()
            with prec.context():
                logits = net(prec.input(x))
            loss = F.cross_entropy(logits.float(), ytr[sel])
            if not torch.isfinite(loss):
                raise SystemExit(f"non-finite loss at step {step}")
            loss.backward()
            opt.step()
            epoch_loss += float(loss.detach()) * len(sel)
            step += 1
            times.append(time.perf_counter() - t)
    net.eval()
    correct = 0
    with torch.no_grad():
        for b in range(0, len(yte), 500):
            with prec.context():
                logits = net(prec.input(xte[b : b + 500].contiguous(memory_format=layout)))
            correct += int((logits.float().argmax(1) == yte[b : b + 500]).sum())
    times.sort()
    print(json.dumps({"precision": a.precision, "channels_last": a.channels_last, "seed": a.seed,
                      "epochs": a.epochs, "train_images": n, "test_images": len(yte),
                      "test_accuracy": correct / len(yte), "final_train_loss": epoch_loss / n,
                      "seconds": round(time.perf_counter() - start, 1),
                      "step_ms": round(times[len(times) // 2] * 1e3, 1),
                      "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)


def errors(net, x, y, names):
    """For each precision in `names`: the relative L2 error of the logits and of the gradient
    vector of one training-mode forward and backward pass of `net` on `(x, y)`, against fp32's,
    all from the same state (batch norm reads the batch's statistics, not its running ones)."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()

    def run(name):
        net.load_state_dict(state)
        net.zero_grad()
        prec = Precision(name)
        with prec.context():
            logits = net(prec.input(x))
        F.cross_entropy(logits.float(), y).backward()
        g = torch.cat([p.grad.flatten() for p in net.parameters()])
        return logits.float().detach(), g.detach()

    ref_l, ref_g = run("fp32")
    out = {}
    for name in names:
        lo, g = run(name)
        out[name] = {"logits": float((lo - ref_l).norm() / ref_l.norm()),
                     "grad": float((g - ref_g).norm() / ref_g.norm()),
                     "grad_error": g - ref_g}
    return out


def fidelity(a):
    """Logits and gradients of real bf16 (autocast) and of the simulation against fp32, on the
    same weights and batches: the simulation is faithful if its error is of the size of real
    bf16's, and it stays as close to real bf16 as real bf16's own run-to-run scale allows."""
    torch.manual_seed(a.seed)
    (xtr, ytr), _ = read_cifar10(a.data)
    x = torch.from_numpy(xtr[: a.batch].astype(np.float32) / 255.0)
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)
    y = torch.from_numpy(ytr[: a.batch])
    net = ResNet(fan_out_init=True)
    net.train()
    # a few steps of fp32 training first, so the gradients are not those of a fresh network
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(a.fidelity_warmup):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    e = errors(net, x, y, ["autocast", "sim", "sim-head32"])
    real = e["autocast"]["grad_error"]
    out = {"batch": a.batch, "warmup_steps": a.fidelity_warmup}
    for name, r in e.items():
        out[name] = {"logits_vs_fp32": r["logits"], "grad_vs_fp32": r["grad"]}
        if name != "autocast":
            out[name]["grad_cosine_with_autocast_error"] = float(
                F.cosine_similarity(r["grad_error"], real, dim=0))
    print(json.dumps(out), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("OPTARCH_DATA", "../shared/data"),
                    help="folder holding cifar-10-binary.tar.gz or its extracted "
                         "cifar-10-batches-bin (default: $OPTARCH_DATA)")
    ap.add_argument("--precision", default="fp32",
                    choices=["fp32", "autocast", "sim", "sim-head32", "sim-conv", "sim-fwd"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--train-subset", type=int, default=10000)
    ap.add_argument("--test-subset", type=int, default=0, metavar="N",
                    help="test on the first N test images only (default: all 10,000)")
    ap.add_argument("--channels-last", action="store_true",
                    help="network, inputs and weights in channels_last (NHWC) memory format")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fidelity", action="store_true",
                    help="compare the simulation's logits and gradients with real bf16 and stop")
    ap.add_argument("--fidelity-warmup", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if cifar10_source(a.data) is None:
        raise SystemExit(f"no cifar-10-binary.tar.gz or cifar-10-batches-bin in {a.data}: "
                         "pass --data DIR or set OPTARCH_DATA")
    (fidelity if a.fidelity else train)(a)


if __name__ == "__main__":
    main()
