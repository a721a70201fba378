#!/usr/bin/env python3
"""The PyTorch reference for `avsc-host bench` and `cargo bench -p avsc-host --bench
train_step`: one training step of a Phase-I network, batch 32 — forward,
KL(mixed labels || softmax) + 1e-4/2 * ||theta||^2, backward, Adam — or (`--what forward`) an
eval-mode forward pass without gradients. Median of N iterations after a warm-up.

- `--net audio`: the residual-inception audio CNN (host/src/nets/resinception.rs, same layers,
  widths and BatchNorm eps), input 6x128x305; `--size tiny|paper`.
- `--net inception-v3` / `--net convnext-tiny`: torchvision's networks (no aux logits,
  ConvNeXt's stochastic depth 0.1 as torchvision's default), their classifier replaced by the
  Dense block FC(1024) -> ReLU -> Dropout(0.5) -> FC(10) as in host/src/nets/, input 3x224x224.

By default the tiny audio network on the CPU with one thread; `--device cuda` takes a GPU (each
iteration then ends with a synchronize). PyTorch's defaults are kept (cuDNN picks its
algorithms heuristically, TF32 convolutions allowed); `--cudnn-benchmark` lets cuDNN time its
algorithms first, as many training scripts do. The last line is JSON.

    pip install torch torchvision numpy
    python3 host/benches/reference_torch_step.py [--runs 20] [--threads 1] [--size tiny|paper] [--device cpu|cuda]
        [--net audio|inception-v3|convnext-tiny] [--what step|forward] [--cudnn-benchmark]
"""
import argparse
import json
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


def dense_head(d_in):
    return nn.Sequential(nn.Linear(d_in, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10))


def build(net, size):
    """(module, input shape) of one Phase-I network."""
    if net == "audio":
        # ResInceptionConfig::tiny() / ::paper().
        sizes = {"tiny": (4, (16, 32, 64, 128)), "paper": (32, (128, 256, 512, 1024))}
        stem, widths = sizes[size]
        return ResInception(stem, widths), (6, 128, 305)
    import torchvision.models as tvm  # noqa: E402

    if size != "paper":
        raise SystemExit(f"--net {net}: only --size paper (torchvision's widths)")
    if net == "inception-v3":
        m = tvm.inception_v3(weights=None, aux_logits=False, init_weights=False)
        m.dropout = nn.Identity()
        m.fc = dense_head(2048)
    else:
        m = tvm.convnext_tiny(weights=None)
        m.classifier[2] = dense_head(768)
    return m, (3, 224, 224)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", choices=("tiny", "paper"), default="tiny")
    ap.add_argument("--net", choices=("audio", "inception-v3", "convnext-tiny"), default="audio")
    ap.add_argument("--what", choices=("step", "forward"), default="step")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cudnn-benchmark", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    dev = torch.device(a.device)
    net, shape = build(a.net, a.size)
    net = net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    n_params = sum(p.numel() for p in net.parameters())
    x = torch.randn(a.batch, *shape, device=dev)
    y = F.softmax(torch.randn(a.batch, 10, device=dev), 1)
    if a.what == "forward":
        net.eval()

    def step():
        if a.what == "forward":
            with torch.no_grad():
                net(x)
        else:
            opt.zero_grad(set_to_none=True)
            logp = F.log_softmax(net(x), 1)
            kl = (y * (torch.log(y.clamp_min(1e-12)) - logp)).sum(1).mean()
            l2 = sum((p * p).sum() for p in net.parameters())
            (kl + 0.5e-4 * l2).backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    for _ in range(a.warmup):
        step()
    warmup = time.perf_counter() - t0
    times = []
    for _ in range(a.runs):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {a.threads} thread(s)"
    med = statistics.median(times)
    print(f"torch {torch.__version__}, {where}, {n_params} parameters, batch {a.batch}")
    print(f"{a.size} {a.net} {a.what}: median {1e3 * med:.1f} ms "
          f"(min {1e3 * min(times):.1f}, max {1e3 * max(times):.1f}, {a.runs} runs)")
    print(json.dumps({"what": a.what, "net": a.net, "size": a.size, "device": f"torch-{a.device}"
                      + ("-cudnn-benchmark" if a.cudnn_benchmark else ""), "batch": a.batch,
                      "params": n_params, "warmup_s": warmup, "median_ms": 1e3 * med,
                      "min_ms": 1e3 * min(times), "max_ms": 1e3 * max(times),
                      "per_second": a.batch / med, "torch": torch.__version__, "gpu": where}))


if __name__ == "__main__":
    main()
