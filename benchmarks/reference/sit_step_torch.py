#!/usr/bin/env python3
"""PyTorch timing of the SiT training step irepa-bench-train measures (forward, backward, clip,
AdamW, EMA), for side-by-side runs.

Uses the float64-checked model of scripts/golden/make_sit_golden.py (the reference's ops:
F.linear, F.layer_norm, softmax attention, tanh-GELU, conv projector), here in float32, with
autograd for the backward pass. Prints one line per measurement: name, seconds per step, img/s.

  /usr/bin/python3 benchmarks/reference/sit_step_torch.py --model B/2 --batch 4 --threads 2
  python3 benchmarks/reference/sit_step_torch.py --device cuda --compile --model B/2 --batch 256
  (--bf16: autocast to bfloat16 as the reference trains; --compile: torch.compile of forward + loss)
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "golden"))
import make_sit_golden as ref  # noqa: E402

SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="B/2")
    ap.add_argument("--head", default="irepa", choices=["irepa", "repa"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--z-dim", type=int, default=768)
    ap.add_argument("--encoder-depth", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.set_default_dtype(torch.float32)
    size, patch = a.model.split("/")
    depth, hidden, heads = SIZES[size]
    c = dict(input_size=a.input_size, patch_size=int(patch), in_channels=4, hidden_size=hidden, depth=depth,
             num_heads=heads, num_classes=1000, encoder_depth=a.encoder_depth, z_dims=[a.z_dim], projector_dim=2048,
             projection_layer_type="conv" if a.head == "irepa" else "mlp", kernel_size=3, qk_norm=False,
             spnorm_method="zscore" if a.head == "irepa" else "none", zscore_alpha=0.6, proj_coeff=1.0,
             path_type="linear", batch=a.batch)
    g = torch.Generator().manual_seed(0)
    P = {k: (torch.randn(s, generator=g) * 0.02).to(dev).requires_grad_() for k, s in ref.param_shapes(c).items()}
    grid = a.input_size // int(patch)
    P["pos_embed"] = ref.sincos_2d(grid, hidden).float().to(dev)
    B = a.batch
    x = torch.randn(B, 4, a.input_size, a.input_size, generator=g).to(dev)
    noise, t = torch.randn(x.shape, generator=g).to(dev), torch.rand(B, generator=g).to(dev)
    y = torch.randint(0, 1000, (B,), generator=g).to(dev)
    z = torch.randn(B, grid * grid, a.z_dim, generator=g).to(dev)

    trainable = [v for k, v in P.items() if k != "pos_embed"]
    opt = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.0)
    ema = [v.detach().clone() for v in trainable]

    def loss_fn():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            return ref.objective(P, c, x, noise, t, y, [z])["total_loss"]

    loss = torch.compile(loss_fn) if a.compile else loss_fn

    def step():
        for v in P.values():
            v.grad = None
        loss().backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        with torch.no_grad():
            for e, v in zip(ema, trainable):
                e.mul_(0.9999).add_(v, alpha=1 - 0.9999)

    def forward():
        with torch.no_grad():
            ref.sit_forward(P, c, x, t, y)

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    where = torch.cuda.get_device_name(dev) if cuda else f"threads{torch.get_num_threads()}"
    prec = "bf16-autocast" if a.bf16 else "float"
    name = f"torch-{torch.__version__} SiT-{a.model}/{a.head}/B{B}/{prec}{'/compile' if a.compile else ''}/{where}"
    for what, fn in (("forward", forward), ("train_step", step)):
        fn()  # warm-up (and compilation)
        fn()
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        sync()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            fn()
        sync()
        dt = (time.perf_counter() - t0) / a.steps
        mem = f"  peak {torch.cuda.max_memory_allocated(dev) / 1e9:.2f} GB" if cuda else ""
        print(f"{name}/{what}  {dt:.3f} s  {B / dt:.3f} img/s{mem}", flush=True)


if __name__ == "__main__":
    main()
