#!/usr/bin/env python3
"""The SD-VAE (AutoencoderKL as the reference's VAE_F8D4 builds it: base width 128, levels
1, 2, 4, 4, two ResNet blocks per encoder level and three per decoder level, GroupNorm(32, 1e-6)
+ SiLU, single-head attention in the mid blocks, pad-then-stride-2 downsampling, nearest x2 +
conv upsampling) in PyTorch, for a side-by-side with irepa-bench-vae: encode (images -> moments
-> mean | std) and decode (latents -> images), random weights, no gradient, float32 on the CPU;
on a GPU (--device cuda) optionally with TF32 or bf16 autocast. Prints the same table rows.

  python3 benchmarks/reference/vae_torch.py --batch-size 4 --resolution 256 --threads 2
  python3 benchmarks/reference/vae_torch.py --device cuda --batch-size 64 --tf32

Debian's python3-torch uses whichever BLAS libblas.so.3 points to (the convolutions go through
its own kernels, mkldnn where built in).
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def norm(c):
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class Res(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.nin_shortcut(x) if self.nin_shortcut is not None else x)


class Attn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        h = self.norm(x)
        b, c, hh, ww = h.shape
        q, k, v = (m(h).reshape(b, c, hh * ww).transpose(1, 2) for m in (self.q, self.k, self.v))  # [B, N, C]
        o = F.softmax(q @ k.transpose(1, 2) * c ** -0.5, dim=-1) @ v
        return x + self.proj_out(o.transpose(1, 2).reshape(b, c, hh, ww))


class Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Vae(nn.Module):
    def __init__(self, ch=128, mult=(1, 2, 4, 4), blocks=2, z=4, embed=4):
        super().__init__()
        w = [ch * m for m in mult]
        self.enc = nn.ModuleList([nn.Conv2d(3, ch, 3, 1, 1)])
        cin = ch
        for i, c in enumerate(w):
            for _ in range(blocks):
                self.enc.append(Res(cin, c))
                cin = c
            if i != len(w) - 1:
                self.enc.append(Down(c))
        self.enc.extend([Res(cin, cin), Attn(cin), Res(cin, cin), norm(cin), nn.SiLU(), nn.Conv2d(cin, 2 * z, 3, 1, 1),
                         nn.Conv2d(2 * z, 2 * embed, 1)])
        self.dec = nn.ModuleList([nn.Conv2d(embed, z, 1), nn.Conv2d(z, w[-1], 3, 1, 1), Res(w[-1], w[-1]), Attn(w[-1]),
                                  Res(w[-1], w[-1])])
        cin = w[-1]
        for i in reversed(range(len(w))):
            for _ in range(blocks + 1):
                self.dec.append(Res(cin, w[i]))
                cin = w[i]
            if i != 0:
                self.dec.append(Up(cin))
        self.dec.extend([norm(cin), nn.SiLU(), nn.Conv2d(cin, 3, 3, 1, 1)])

    def encode(self, x):
        for m in self.enc:
            x = m(x)
        mean, logvar = x.chunk(2, dim=1)
        return torch.cat([mean, torch.exp(0.5 * logvar.clamp(-30, 20))], dim=1)

    def decode(self, z):
        for m in self.dec:
            z = m(z)
        return z


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--tf32", action="store_true", help="cuda: TF32 convolutions and products")
    ap.add_argument("--bf16", action="store_true", help="cuda: bf16 autocast")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cudnn.benchmark = a.device == "cuda"
    torch.manual_seed(0)
    vae = Vae().to(dev).eval()
    n = sum(p.numel() for p in vae.parameters())
    x = torch.rand(a.batch_size, 3, a.resolution, a.resolution, device=dev) * 2 - 1
    z = torch.randn(a.batch_size, 4, a.resolution // 8, a.resolution // 8, device=dev)
    how = f"{a.threads} threads" if a.device == "cpu" else ("bf16 autocast" if a.bf16 else "tf32" if a.tf32 else "fp32")
    print(f"PyTorch {torch.__version__}, {n} parameters")
    print("| part | device | batch | resolution | threads / precision | median batch | best batch | images/s |")
    print("|---|---|---|---|---|---|---|---|")
    for part, f, inp in (("encode", vae.encode, x), ("decode", vae.decode, z)):
        ts = []
        with torch.no_grad(), torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.bf16):
            for s in range(a.steps + 1):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                f(inp)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                if s:
                    ts.append(time.perf_counter() - t0)
        med = statistics.median(ts)
        print(f"| torch {part} | {a.device} | {a.batch_size} | {a.resolution} | {how} | {med:.3f} s | {min(ts):.3f} s | "
              f"{a.batch_size / med:.2f} |")


if __name__ == "__main__":
    main()
