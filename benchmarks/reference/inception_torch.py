#!/usr/bin/env python3
"""The FID Inception-v3 (the 2015 TF graph's network as the ADM evaluator and torch-fidelity run
it: TF1 bilinear resize to 299, (x - 128) / 128, conv + BatchNorm(eps 1e-3) + ReLU units,
InceptionA/B/C/D/E blocks with the graph's average pools that skip padding and Mixed_7c's max
pool, pool_3, logits without bias) in PyTorch, for a side-by-side with irepa-bench-inception:
random weights, no gradient, float32 (eval mode, BatchNorm folded by PyTorch's own kernels).
Prints the same table row. torch-fidelity's FeatureExtractorInceptionV3 is the same network;
it is not in Debian, so this port stands in for it.

  python3 benchmarks/reference/inception_torch.py --batch-size 16 --resolution 256 --threads 2
  python3 benchmarks/reference/inception_torch.py --device cuda --batch-size 200
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Unit(nn.Module):
    def __init__(self, cin, cout, k, stride=1, pad=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def avg(x):
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class A(nn.Module):
    def __init__(self, cin, pool):
        super().__init__()
        self.b1 = Unit(cin, 64, 1)
        self.b5 = nn.Sequential(Unit(cin, 48, 1), Unit(48, 64, 5, pad=2))
        self.b3 = nn.Sequential(Unit(cin, 64, 1), Unit(64, 96, 3, pad=1), Unit(96, 96, 3, pad=1))
        self.bp = Unit(cin, pool, 1)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b5(x), self.b3(x), self.bp(avg(x))], 1)


class B(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.b3 = Unit(cin, 384, 3, 2)
        self.bd = nn.Sequential(Unit(cin, 64, 1), Unit(64, 96, 3, pad=1), Unit(96, 96, 3, 2))

    def forward(self, x):
        return torch.cat([self.b3(x), self.bd(x), F.max_pool2d(x, 3, 2)], 1)


class C(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.b1 = Unit(cin, 192, 1)
        self.b7 = nn.Sequential(Unit(cin, c7, 1), Unit(c7, c7, (1, 7), pad=(0, 3)), Unit(c7, 192, (7, 1), pad=(3, 0)))
        self.bd = nn.Sequential(Unit(cin, c7, 1), Unit(c7, c7, (7, 1), pad=(3, 0)), Unit(c7, c7, (1, 7), pad=(0, 3)),
                                Unit(c7, c7, (7, 1), pad=(3, 0)), Unit(c7, 192, (1, 7), pad=(0, 3)))
        self.bp = Unit(cin, 192, 1)

    def forward(self, x):
        b1 = self.b1(x)
        return torch.cat([b1, self.b7(x), self.bd(x), self.bp(avg(x))], 1), b1


class D(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.b3 = nn.Sequential(Unit(cin, 192, 1), Unit(192, 320, 3, 2))
        self.b7 = nn.Sequential(Unit(cin, 192, 1), Unit(192, 192, (1, 7), pad=(0, 3)), Unit(192, 192, (7, 1), pad=(3, 0)),
                                Unit(192, 192, 3, 2))

    def forward(self, x):
        return torch.cat([self.b3(x), self.b7(x), F.max_pool2d(x, 3, 2)], 1)


class E(nn.Module):
    def __init__(self, cin, max_pool):
        super().__init__()
        self.b1 = Unit(cin, 320, 1)
        self.b3, self.b3a, self.b3b = Unit(cin, 384, 1), Unit(384, 384, (1, 3), pad=(0, 1)), Unit(384, 384, (3, 1), pad=(1, 0))
        self.bd = nn.Sequential(Unit(cin, 448, 1), Unit(448, 384, 3, pad=1))
        self.bda, self.bdb = Unit(384, 384, (1, 3), pad=(0, 1)), Unit(384, 384, (3, 1), pad=(1, 0))
        self.bp = Unit(cin, 192, 1)
        self.max_pool = max_pool

    def forward(self, x):
        t, d = self.b3(x), self.bd(x)
        p = F.max_pool2d(x, 3, 1, 1) if self.max_pool else avg(x)
        return torch.cat([self.b1(x), self.b3a(t), self.b3b(t), self.bda(d), self.bdb(d), self.bp(p)], 1)


class FidInception(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem1 = nn.Sequential(Unit(3, 32, 3, 2), Unit(32, 32, 3), Unit(32, 64, 3, pad=1))
        self.stem2 = nn.Sequential(Unit(64, 80, 1), Unit(80, 192, 3))
        self.m5 = nn.Sequential(A(192, 32), A(256, 64), A(288, 64), B(288))
        self.m6b, self.m6c, self.m6d, self.m6e = C(768, 128), C(768, 160), C(768, 160), C(768, 192)
        self.m7 = nn.Sequential(D(768), E(1280, False), E(2048, True))
        self.fc = nn.Linear(2048, 1008)

    @staticmethod
    def resize_tf1(x, size=299):
        # TF1 ResizeBilinear: src = dst * float32(in / out), no half-pixel offset.
        n, c, h, w = x.shape

        def axis(n_in):
            s = torch.tensor(n_in / size, dtype=torch.float32).to(torch.float64)
            src = torch.arange(size, dtype=torch.float64, device=x.device) * s
            lo = src.floor().long()
            return lo, (lo + 1).clamp(max=n_in - 1), (src - lo).to(x.dtype)

        y0, y1, dy = axis(h)
        x0, x1, dx = axis(w)
        top, bot = x[:, :, y0], x[:, :, y1]
        top = top[..., x0] + (top[..., x1] - top[..., x0]) * dx
        bot = bot[..., x0] + (bot[..., x1] - bot[..., x0]) * dx
        return top + (bot - top) * dy[:, None]

    def forward(self, images_nhwc):
        x = self.resize_tf1(images_nhwc.permute(0, 3, 1, 2).float())
        x = (x - 128) / 128
        x = F.max_pool2d(self.stem1(x), 3, 2)
        x = F.max_pool2d(self.stem2(x), 3, 2)
        x = self.m5(x)
        x, _ = self.m6b(x)
        x, _ = self.m6c(x)
        x, m6 = self.m6d(x)
        x, _ = self.m6e(x)
        spatial = m6[:, :7].permute(0, 2, 3, 1).flatten(1)
        pool3 = self.m7(x).mean((2, 3))
        return pool3, spatial, pool3 @ self.fc.weight.T


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = False  # FP32 products: TF32 moves FID
    torch.backends.cudnn.allow_tf32 = False
    net = FidInception().eval().to(a.device)
    images = torch.randint(0, 256, (a.batch_size, a.resolution, a.resolution, 3), dtype=torch.uint8, device=a.device)
    times = []
    with torch.no_grad():
        net(images)
        for _ in range(a.steps):
            if a.device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            net(images)
            if a.device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    how = f"{torch.get_num_threads()} threads" if a.device == "cpu" else "fp32"
    print("| implementation | device | batch | input | threads / precision | median batch | best batch | images/s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| PyTorch {torch.__version__} port | {a.device} | {a.batch_size} | {a.resolution} | {how} | {med:.3f} s | {min(times):.3f} s | "
          f"{a.batch_size / med:.2f} |")


if __name__ == "__main__":
    main()
