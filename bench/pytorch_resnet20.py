"""ResNet-20 (He et al., option-A shortcuts) training step in PyTorch eager, timed like
`optarch-bench` (median seconds per step, batch 128, SGD with Nesterov momentum).

    source scripts/env.sh && python bench/pytorch_resnet20.py --threads 1
    source scripts/env.sh && python bench/pytorch_resnet20.py --threads 1 --bf16 --channels-last

`--bf16` runs the forward pass under CPU autocast (bfloat16); `--channels-last` puts the model
and the input in channels_last memory format. `--export DIR` times the network of an
`optarch export --format pytorch` directory (its model.py, the class export.json names) in place
of ResNet-20, such as DenseNet-BC-22:

    optarch train --spec specs/densenet.yaml --preset cifar-densenet --depth 22 --epochs 1 \
        --train-subset 256 --val 128 --no-test --out /tmp/dn
    optarch export --run /tmp/dn --format pytorch --out /tmp/dn/export
    python bench/pytorch_resnet20.py --export /tmp/dn/export --threads 1 --bf16 --channels-last

Uses the project's own torch==2.11.0 environment, so libtorch is the same as optarch's.
"""
import argparse
import importlib.util
import json
import pathlib
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Basic(nn.Module):
    def __init__(self, i, o, stride, fan_out_init=False):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(o)
        self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
        self.stride, self.i, self.o = stride, i, o
        if fan_out_init:  # optarch's initialisation of block convolutions (bench/bf16_accuracy.py)
            for c in (self.conv1, self.conv2):
                nn.init.kaiming_normal_(c.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.stride == 1 and self.i == self.o:
            short = x
        else:
            pad = (self.o - self.i) // 2
            short = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, pad, self.o - self.i - pad))
        return F.relu(out + short)


class ResNet(nn.Module):
    def __init__(self, n=3, classes=10, fan_out_init=False):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, c = [], 16
        for s, w in enumerate([16, 32, 64]):
            for j in range(n):
                blocks.append(Basic(c, w, 2 if s > 0 and j == 0 else 1, fan_out_init))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        h = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


def exported(directory):
    """The network of an `optarch export --format pytorch` directory, freshly initialised."""
    meta = json.loads((directory / "export.json").read_text())
    spec = importlib.util.spec_from_file_location("optarch_export", directory / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, meta["python_class"])()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--iters", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="CPU autocast to bfloat16")
    ap.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    ap.add_argument("--export", type=pathlib.Path,
                    help="an `optarch export --format pytorch` directory: time its network")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = exported(a.export) if a.export else ResNet()
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(a.batch, 3, 32, 32)
    y = torch.randint(0, 10, (a.batch,))
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    net.train()

    def step():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            logits = net(x)
        F.cross_entropy(logits.float(), y).backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.iters):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({"network": str(a.export) if a.export else "resnet20", "threads": a.threads, "batch": a.batch, "parameters": params,
                      "bf16": a.bf16, "channels_last": a.channels_last,
                      "step_ms": med * 1e3, "images_per_sec": a.batch / med,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
