#!/usr/bin/env python3
"""Write the torch.save fixtures of tests/data/torch (run with Debian's python3-torch, 1.13):

  /usr/bin/python3 scripts/make_torch_fixtures.py tests/data/torch

sit_reference.pt           a tiny SiT checkpoint dict as the reference's train.py saves it:
                           {model, ema, opt, args (argparse.Namespace), steps}, after 3 AdamW steps
sit_reference_ema.safetensors  the same "ema." and "model." tensors and AdamW moments, written by hand,
                           for the bit-for-bit comparison
mixed.pt                   a VAE-like state dict: fp16, bf16, fp64, int64, int32, uint8 and bool tensors,
                           a transposed view, a slice with a storage offset, two tensors sharing one
                           storage, a 0-d tensor and an empty one
mixed_legacy.pt            the same dict written with _use_new_zipfile_serialization=False
mixed_expected.safetensors every tensor of mixed.pt, contiguous, in its own dtype
latents_stats.pt           {latents_scale, latents_bias} of shape [1, 4, 1, 1], as the reference ships them
features.pt, features.npy  a bare [6, 16, 8] tensor, as the released spatial-metrics data/features/<enc>.pt, and numpy's copy
jit_reference.pth          a tiny JiT checkpoint dict as the reference's jit/main_jit.py saves it:
                           {model, optimizer, epoch, args (argparse.Namespace), model_ema1, model_ema2}, the
                           Denoiser's "net." names
jit_reference_ema.safetensors  the same weights under this library's names ("model.", "ema." = model_ema1,
                           "ema1." = model_ema2) and a run config, for the bit-for-bit comparison
forbidden_global.pt        a dict holding an instance of a class of this script: must be refused
torchscript.pt             a scripted module (constants.pkl, code/): must be refused with a pointer to the converter

The SiT mirrors the reference's module order (pos_embed first, then x_embedder, t_embedder,
y_embedder, blocks, projectors, final_layer), so the optimizer's parameter indices follow it.
"""
import argparse
import json
import os
import struct
import sys

import torch
from torch import nn

DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64", torch.int64: "I64",
      torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)


class Mlp(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.fc2 = nn.Linear(h, d)


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False)
        self.attn = Attention(d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False)
        self.mlp = Mlp(d, 4 * d)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))


class Projector(nn.Module):
    def __init__(self, d, hidden, z):
        super().__init__()
        self.projection_layer = nn.Sequential(nn.Linear(d, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, z))


class Final(nn.Module):
    def __init__(self, d, out):
        super().__init__()
        self.norm_final = nn.LayerNorm(d, elementwise_affine=False)
        self.linear = nn.Linear(d, out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))


class PatchEmbed(nn.Module):
    def __init__(self, c, d, p):
        super().__init__()
        self.proj = nn.Conv2d(c, d, p, p)


class TEmb(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))


class YEmb(nn.Module):
    def __init__(self, n, d):
        super().__init__()
        self.embedding_table = nn.Embedding(n + 1, d)


class TinySiT(nn.Module):
    """The reference SiT's parameter names and order (not its forward): depth 2, width 16, patch 2, 4 channels, 8x8 latents."""

    def __init__(self, depth=2, d=16, p=2, c=4, side=8, classes=10, proj_hidden=32, z=8):
        super().__init__()
        self.x_embedder = PatchEmbed(c, d, p)
        self.t_embedder = TEmb(d)
        self.y_embedder = YEmb(classes, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, (side // p) ** 2, d), requires_grad=False)
        self.blocks = nn.ModuleList([Block(d) for _ in range(depth)])
        self.projectors = nn.ModuleList([Projector(d, proj_hidden, z)])
        self.final_layer = Final(d, p * p * c)


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))


class JiTAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.q_norm = RMSNorm(d // heads)
        self.k_norm = RMSNorm(d // heads)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)


class SwiGLU(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        h = int(h * 2 / 3)
        self.w12 = nn.Linear(d, 2 * h)
        self.w3 = nn.Linear(h, d)


class JiTBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.norm1 = RMSNorm(d)
        self.attn = JiTAttention(d, heads)
        self.norm2 = RMSNorm(d)
        self.mlp = SwiGLU(d, 4 * d)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))


class JiTFinal(nn.Module):
    def __init__(self, d, out):
        super().__init__()
        self.norm_final = RMSNorm(d)
        self.linear = nn.Linear(d, out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))


class BottleneckEmbed(nn.Module):
    def __init__(self, c, b, d, p):
        super().__init__()
        self.proj1 = nn.Conv2d(c, b, p, p, bias=False)
        self.proj2 = nn.Conv2d(b, d, 1, 1)


class TinyJiTNet(nn.Module):
    """The reference JiT's parameter names and order (not its forward): depth 2, width 16, 2 heads, patch 4,
    bottleneck 8, 4 in-context tokens, RGB 16x16, 10 classes, one MLP projector."""

    def __init__(self, depth=2, d=16, heads=2, p=4, b=8, ctx=4, side=16, classes=10, proj_hidden=32, z=8):
        super().__init__()
        self.t_embedder = TEmb(d)
        self.y_embedder = YEmb(classes, d)
        self.x_embedder = BottleneckEmbed(3, b, d, p)
        self.pos_embed = nn.Parameter(torch.zeros(1, (side // p) ** 2, d), requires_grad=False)
        self.in_context_posemb = nn.Parameter(torch.zeros(1, ctx, d))
        self.blocks = nn.ModuleList([JiTBlock(d, heads) for _ in range(depth)])
        self.projectors = nn.ModuleList([Projector(d, proj_hidden, z)])
        self.final_layer = JiTFinal(d, p * p * 3)


class TinyDenoiser(nn.Module):
    """main_jit.py's Denoiser holds the JiT as .net, so its state dict names are "net.<JiT name>"."""

    def __init__(self):
        super().__init__()
        self.net = TinyJiTNet()


class Payload:
    """Anything that is not a state-dict type: a reader must refuse it by name."""

    def __init__(self):
        self.note = "never constructed by irepa"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(20261206)

    # A SiT checkpoint as the reference writes it.
    model = TinySiT()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    opt = torch.optim.AdamW([p for p in model.parameters()], lr=1e-4, weight_decay=0)
    for _ in range(3):
        opt.zero_grad()
        loss = sum((p * torch.randn_like(p)).sum() for p in model.parameters() if p.requires_grad)
        loss.backward()
        opt.step()
    ema = TinySiT()
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.copy_(pm + torch.randn_like(pm) * 1e-3)
    args = argparse.Namespace(model="SiT-B/2", resolution=64, num_classes=10, encoder_depth=1, projector_embed_dims="8",
                              enc_type="dinov2-vit-b", proj_coeff=0.5, batch_size=4, learning_rate=1e-4, adam_beta1=0.9,
                              adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, seed=0, mixed_precision="fp16",
                              allow_tf32=True, path_type="linear", prediction="v", cfg_prob=0.1, output_dir="exps",
                              exp_name="tiny", checkpointing_steps=3, max_train_steps=6, weighting="uniform", legacy=False)
    ckpt = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "args": args, "steps": 3}
    torch.save(ckpt, os.path.join(a.out, "sit_reference.pt"))
    flat = {}
    for k, v in ckpt["model"].items():
        flat["model." + k] = v
    for k, v in ckpt["ema"].items():
        flat["ema." + k] = v
    names = list(ckpt["model"].keys())
    for i, st in opt.state_dict()["state"].items():
        flat["optim.exp_avg." + names[i]] = st["exp_avg"]
        flat["optim.exp_avg_sq." + names[i]] = st["exp_avg_sq"]
    write_safetensors(os.path.join(a.out, "sit_reference_ema.safetensors"), flat, {"source": "scripts/make_torch_fixtures.py"})

    # Every dtype, views, offsets and shared storages.
    base = torch.randn(6, 5, dtype=torch.float32)
    shared = torch.arange(24, dtype=torch.float64).reshape(4, 6) / 7
    mixed = {
        "encoder.conv_in.weight": torch.randn(8, 3, 3, 3).half(),
        "encoder.conv_in.bias": torch.randn(8).bfloat16(),
        "decoder.norm.weight": torch.randn(8, dtype=torch.float64),
        "transposed": base.t(),                     # strides (1, 5)
        "sliced": base[2:5, 1:4],                   # offset 11, strides (5, 1)
        "shared_a": shared[1],                      # one storage ...
        "shared_b": shared[:, 2],                   # ... under two tensors
        "expanded": torch.randn(3, 1).expand(3, 4),  # stride 0
        "counts": torch.tensor([3, -1, 1 << 40], dtype=torch.int64),
        "labels": torch.tensor([[7, -2], [5, 9]], dtype=torch.int32),
        "pixels": torch.tensor([0, 17, 255], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "num_batches_tracked": torch.tensor(12),
    }
    torch.save(mixed, os.path.join(a.out, "mixed.pt"))
    torch.save(mixed, os.path.join(a.out, "mixed_legacy.pt"), _use_new_zipfile_serialization=False)
    write_safetensors(os.path.join(a.out, "mixed_expected.safetensors"), {k: v.contiguous() for k, v in mixed.items()})

    torch.save({"latents_scale": torch.tensor([0.9, 1.1, 1.2, 0.8]).reshape(1, 4, 1, 1),
                "latents_bias": torch.tensor([0.1, -0.2, 0.3, -0.4]).reshape(1, 4, 1, 1)},
               os.path.join(a.out, "latents_stats.pt"))
    feats = torch.randn(6, 16, 8)
    torch.save(feats, os.path.join(a.out, "features.pt"))
    import numpy as np
    np.save(os.path.join(a.out, "features.npy"), feats.numpy())
    torch.save({"weight": torch.ones(2), "extra": Payload()}, os.path.join(a.out, "forbidden_global.pt"))
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), os.path.join(a.out, "torchscript.pt"))
    jit_fixture(a.out)
    print("torch", torch.__version__, "->", a.out, file=sys.stderr)


def jit_fixture(out):
    """A JiT checkpoint as jit/util/misc.py's save_model writes it, and the same weights for this library."""
    torch.manual_seed(20261207)
    den = TinyDenoiser()
    with torch.no_grad():
        for p in den.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    opt = torch.optim.AdamW(den.parameters(), lr=1e-4, weight_decay=0)  # no step taken: an empty state, as at epoch 0
    ema1, ema2 = {}, {}
    for name, value in den.state_dict().items():
        ema1[name] = value + torch.randn_like(value) * 0.01
        ema2[name] = value + torch.randn_like(value) * 0.01
    # The reference's flags (main_jit.py); in_context_start is the named model's, which this custom size has no name for.
    args = argparse.Namespace(model="custom", img_size=16, class_num=10, attn_dropout=0.0, proj_dropout=0.0, P_mean=-0.8,
                              P_std=0.8, noise_scale=1.0, t_eps=0.05, label_drop_prob=0.1, ema_decay1=0.9999, ema_decay2=0.9996,
                              sampling_method="heun", num_sampling_steps=50, cfg=2.9, interval_min=0.1, interval_max=1.0,
                              encoder_depth=1, projector_dim=32, z_dims=[8], projection_layer_type="mlp",
                              proj_kwargs_kernel_size=1, enc_type="dinov2-vit-b", proj_coeff="0.5", projection_loss_type="cosine",
                              batch_size=4, blr=5e-5, epochs=1, output_dir="output", in_context_start=1)
    ckpt = {"model": den.state_dict(), "optimizer": opt.state_dict(), "epoch": 1, "args": args, "model_ema1": ema1,
            "model_ema2": ema2}
    torch.save(ckpt, os.path.join(out, "jit_reference.pth"))
    flat = {}
    for prefix, sd in (("model.", ckpt["model"]), ("ema.", ema1), ("ema1.", ema2)):
        for k, v in sd.items():
            assert k.startswith("net.")
            flat[prefix + k[len("net."):]] = v
    config = {"model": "custom", "num_heads": "2", "in_context_start": "1", "img_size": "16", "noise_scale": "1.0", "t_eps": "0.05"}
    write_safetensors(os.path.join(out, "jit_reference_ema.safetensors"), flat,
                      {"source": "scripts/make_torch_fixtures.py", "config": json.dumps(config)})


if __name__ == "__main__":
    main()
