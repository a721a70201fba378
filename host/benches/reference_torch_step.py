#!/usr/bin/env python3
"""The reference for `cargo bench -p avsc-host --bench train_step`: one training step of the
residual-inception audio CNN (host/src/nets/resinception.rs, same layers, widths and
BatchNorm eps) in PyTorch, batch 32, input 6x128x305: forward,
KL(mixed labels || softmax) + 1e-4/2 * ||theta||^2, backward, Adam. Median of N steps after a
warm-up. By default the tiny network on the CPU with one thread; `--size paper` takes the
paper's widths, `--device cuda` a GPU (each step then ends with a synchronize).

    pip install torch numpy
    python3 host/benches/reference_torch_step.py [--runs 20] [--threads 1] [--size tiny|paper] [--device cpu|cuda]
"""
import argparse
import os
import statistics
import time

for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(v, "1")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

BN_EPS = 1e-3


class ConvBn(nn.Module):
    def __init__(self, c_in, c_out, k, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.relu = relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class Block(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        b = c_out // 4
        self.b1 = ConvBn(c_in, b, 1)
        self.b3 = nn.Sequential(ConvBn(c_in, b, 1), ConvBn(b, b, 3))
        self.b5 = nn.Sequential(ConvBn(c_in, b, 1), ConvBn(b, b, 3), ConvBn(b, b, 3))
        self.pool = nn.AvgPool2d(3, 1, 1)  # count_include_pad, as burn's default
        self.bp = ConvBn(c_in, b, 1)
        self.short = ConvBn(c_in, c_out, 1, relu=False) if c_in != c_out else None

    def forward(self, x):
        y = torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(self.pool(x))], 1)
        return F.relu(y + (self.short(x) if self.short is not None else x))


class ResInception(nn.Module):
    def __init__(self, stem=4, widths=(16, 32, 64, 128), depths=(2, 2, 3, 3)):
        super().__init__()
        self.stem = ConvBn(6, stem, 3)
        stages, c = [], stem
        for w, d in zip(widths, depths):
            blocks = []
            for _ in range(d):
                blocks.append(Block(c, w))
                c = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.drop = nn.Dropout(0.1)
        self.fc1 = nn.Linear(c, 1024)
        self.hdrop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(1024, 10)

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 2)
        for s, st in enumerate(self.stages):
            x = st(x)
            if s < len(self.stages) - 1:
                x = self.drop(F.max_pool2d(x, 2))
        x = self.drop(x.mean((2, 3)))
        return self.fc2(self.hdrop(F.relu(self.fc1(x))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", choices=("tiny", "paper"), default="tiny")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    # ResInceptionConfig::tiny() / ::paper().
    sizes = {"tiny": (4, (16, 32, 64, 128)), "paper": (32, (128, 256, 512, 1024))}
    stem, widths = sizes[a.size]
    net = ResInception(stem, widths).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    n_params = sum(p.numel() for p in net.parameters())
    x = torch.randn(a.batch, 6, 128, 305, device=dev)
    y = F.softmax(torch.randn(a.batch, 10, device=dev), 1)

    def step():
        opt.zero_grad(set_to_none=True)
        logp = F.log_softmax(net(x), 1)
        kl = (y * (torch.log(y.clamp_min(1e-12)) - logp)).sum(1).mean()
        l2 = sum((p * p).sum() for p in net.parameters())
        (kl + 0.5e-4 * l2).backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        step()
    times = []
    for _ in range(a.runs):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {a.threads} thread(s)"
    print(f"torch {torch.__version__}, {where}, {n_params} parameters, batch {a.batch}")
    print(f"{a.size} ResInception train step: median {1e3 * statistics.median(times):.1f} ms "
          f"(min {1e3 * min(times):.1f}, max {1e3 * max(times):.1f}, {a.runs} runs)")


if __name__ == "__main__":
    main()
