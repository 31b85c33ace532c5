#!/usr/bin/env python3
"""DINOv2-B/14 forward (the reference's target encoder) in PyTorch, for a side-by-side with
irepa-bench-encoder: the same preprocessing (/255, ImageNet mean/std, bicubic 256 -> 224) and
the same network shape (patch 14, width 768, 12 blocks of 12 heads, LayerScale, exact GELU,
final norm), random weights, no gradient. On the CPU in float32 with explicit attention; on a
GPU (--device cuda) with scaled_dot_product_attention, optionally under bf16 autocast and
torch.compile, as the reference runs its encoders.

  python3 benchmarks/reference/vit_forward_torch.py --batch-size 64 --steps 2 --threads 2
  python3 benchmarks/reference/vit_forward_torch.py --device cuda --batch-size 256 --steps 10 --bf16 --compile

Debian's python3-torch uses whichever BLAS libblas.so.3 points to: install libopenblas0-pthread
(the netlib reference BLAS that comes by default is ~35x slower here).
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--bf16", action="store_true", help="cuda: bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    gpu = a.device == "cuda"
    torch.manual_seed(0)
    D, depth, heads, p = 768, 12, 12, 14
    g = torch.Generator().manual_seed(1)

    def rnd(*s):
        return torch.randn(*s, generator=g) * 0.02

    blocks = [dict(n1=(1 + rnd(D), rnd(D)), qkv=(rnd(3 * D, D), rnd(3 * D)), proj=(rnd(D, D), rnd(D)), ls1=1 + rnd(D),
                   n2=(1 + rnd(D), rnd(D)), fc1=(rnd(4 * D, D), rnd(4 * D)), fc2=(rnd(D, 4 * D), rnd(D)), ls2=1 + rnd(D))
              for _ in range(depth)]
    patch_w, patch_b, cls, pos = rnd(D, 3, p, p), rnd(D), rnd(1, 1, D), rnd(1, 257, D)
    norm = (1 + rnd(D), rnd(D))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    to = lambda t: tuple(x.to(dev) for x in t) if isinstance(t, tuple) else t.to(dev)
    blocks = [{k: to(v) for k, v in b.items()} for b in blocks]
    patch_w, patch_b, cls, pos, norm, mean, std = (to(t) for t in (patch_w, patch_b, cls, pos, norm, mean, std))

    def attend(q, k, v):
        if gpu:
            return F.scaled_dot_product_attention(q, k, v)
        return torch.softmax(q @ k.transpose(-1, -2) * (D // heads) ** -0.5, -1) @ v

    def forward(img):
        x = (img / 255.0 - mean) / std
        x = F.interpolate(x, 224, mode="bicubic")
        x = F.conv2d(x, patch_w, patch_b, stride=p).flatten(2).transpose(1, 2)
        B = x.shape[0]
        x = torch.cat([cls.expand(B, -1, -1), x], 1) + pos
        for b in blocks:
            h = F.layer_norm(x, (D,), *b["n1"], eps=1e-6)
            q, k, v = F.linear(h, *b["qkv"]).view(B, -1, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
            att = attend(q, k, v)
            x = x + b["ls1"] * F.linear(att.transpose(1, 2).reshape(B, -1, D), *b["proj"])
            h = F.layer_norm(x, (D,), *b["n2"], eps=1e-6)
            x = x + b["ls2"] * F.linear(F.gelu(F.linear(h, *b["fc1"])), *b["fc2"])
        return F.layer_norm(x, (D,), *norm, eps=1e-6)[:, 1:]

    fwd = torch.compile(forward) if a.compile else forward

    @torch.no_grad()
    def encode(img):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu and a.bf16):
            return fwd(img)

    def sync():
        if gpu:
            torch.cuda.synchronize()

    img = (torch.rand(a.batch_size, 3, 256, 256, generator=g) * 255).to(dev)
    encode(img)  # warm-up (and compilation)
    sync()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if gpu else 0
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        out = encode(img)
        sync()
        times.append(time.perf_counter() - t0)
    assert out.shape == (a.batch_size, 256, D)
    med = statistics.median(times)
    if gpu:
        how = ("bf16 autocast" if a.bf16 else "float32") + (" + compile" if a.compile else "")
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
        print(f"| dinov2-vit-b (PyTorch {torch.__version__}, {how}) | cuda | {a.batch_size} | {med:.4f} s | {min(times):.4f} s | "
              f"{a.batch_size / med:.1f} | {peak:.2f} GiB |")
    else:
        print(f"| dinov2-vit-b (PyTorch {torch.__version__}) | {a.batch_size} | {a.threads} | {med:.3f} s | {min(times):.3f} s | "
              f"{a.batch_size / med:.1f} |")


if __name__ == "__main__":
    main()
