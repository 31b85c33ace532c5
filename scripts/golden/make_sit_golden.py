#!/usr/bin/env python3
"""Extra SiT golden files in the irepa-golden-v1 format, of shapes ../shared/golden does not have.

An independent float64 PyTorch implementation of REFERENCE.md sections 2-3 (SiT forward, the
SILoss objective), with gradients from autograd, written for these tests. It first re-derives
every output and gradient of the shipped reference files from their params and inputs
(--verify), so the files it writes carry the reference's numbers for other shapes.

  python3 scripts/golden/make_sit_golden.py --verify ../shared/golden/sit_*.safetensors
  python3 scripts/golden/make_sit_golden.py --out tests/data/golden

Needs Debian's python3-torch (1.13, CPU) and numpy; nothing else.
"""
import argparse
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

# ---------------------------------------------------------------------------------------------
# safetensors, by hand (8-byte header length, JSON header, raw little-endian data)

DT = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for k, v in header.items():
        a, b = v["data_offsets"]
        arr = np.frombuffer(buf[8 + n + a:8 + n + b], dtype=DT[v["dtype"]]).reshape(v["shape"])
        out[k] = torch.from_numpy(arr.copy())
    return meta, out


def write_safetensors(path, tensors, meta):
    header = {"__metadata__": meta}
    blobs, off = [], 0
    for k in sorted(tensors):
        a = tensors[k].detach().cpu().numpy()
        name = {np.dtype(np.float64): "F64", np.dtype(np.int64): "I64"}[a.dtype]
        raw = np.ascontiguousarray(a).tobytes()
        header[k] = {"dtype": name, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

# ---------------------------------------------------------------------------------------------
# The model, as a flat dict of named parameters


def sincos_2d(grid, dim):
    q = dim // 4
    omega = 1.0 / 10000 ** (np.arange(q, dtype=np.float64) / q)
    rows, cols = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
    def half(pos):
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    return torch.from_numpy(np.concatenate([half(cols), half(rows)], axis=1))[None]


def param_shapes(c):
    D, p, C = c["hidden_size"], c["patch_size"], c["in_channels"]
    mlp = int(D * c.get("mlp_ratio", 4.0))
    s = {"x_embedder.proj.weight": (D, C, p, p), "x_embedder.proj.bias": (D,),
         "t_embedder.mlp.0.weight": (D, 256), "t_embedder.mlp.0.bias": (D,),
         "t_embedder.mlp.2.weight": (D, D), "t_embedder.mlp.2.bias": (D,),
         "y_embedder.embedding_table.weight": (c["num_classes"] + (1 if c.get("class_dropout_prob", 0.1) > 0 else 0), D)}
    for i in range(c["depth"]):
        b = f"blocks.{i}."
        s.update({b + "attn.qkv.weight": (3 * D, D), b + "attn.qkv.bias": (3 * D,),
                  b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,),
                  b + "mlp.fc1.weight": (mlp, D), b + "mlp.fc1.bias": (mlp,),
                  b + "mlp.fc2.weight": (D, mlp), b + "mlp.fc2.bias": (D,),
                  b + "adaLN_modulation.1.weight": (6 * D, D), b + "adaLN_modulation.1.bias": (6 * D,)})
    for j, z in enumerate(c["z_dims"]):
        pre = f"projectors.{j}.projection_layer"
        kind, H, k = c["projection_layer_type"], c["projector_dim"], c["kernel_size"]
        if kind == "mlp":
            s.update({pre + ".0.weight": (H, D), pre + ".0.bias": (H,), pre + ".2.weight": (H, H), pre + ".2.bias": (H,),
                      pre + ".4.weight": (z, H), pre + ".4.bias": (z,)})
        elif kind == "linear":
            s.update({pre + ".weight": (z, D), pre + ".bias": (z,)})
        else:
            s.update({pre + ".weight": (z, D, k, k), pre + ".bias": (z,)})
    s.update({"final_layer.linear.weight": (p * p * C, D), "final_layer.linear.bias": (p * p * C,),
              "final_layer.adaLN_modulation.1.weight": (2 * D, D), "final_layer.adaLN_modulation.1.bias": (2 * D,)})
    return s


def timestep_features(t, dim=256):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    args = t[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def sit_forward(P, c, x, t, y):
    D, p, C, heads = c["hidden_size"], c["patch_size"], c["in_channels"], c["num_heads"]
    N = x.shape[0]
    h = F.conv2d(x, P["x_embedder.proj.weight"], P["x_embedder.proj.bias"], stride=p)
    g = h.shape[-1]
    h = h.flatten(2).transpose(1, 2) + P["pos_embed"]
    temb = F.linear(F.silu(F.linear(timestep_features(t), P["t_embedder.mlp.0.weight"], P["t_embedder.mlp.0.bias"])),
                    P["t_embedder.mlp.2.weight"], P["t_embedder.mlp.2.bias"])
    cond = temb + P["y_embedder.embedding_table.weight"][y]
    zs = []
    for i in range(c["depth"]):
        b = f"blocks.{i}."
        mod = F.linear(F.silu(cond), P[b + "adaLN_modulation.1.weight"], P[b + "adaLN_modulation.1.bias"]).chunk(6, dim=-1)
        a = modulate(F.layer_norm(h, (D,), eps=1e-6), mod[0], mod[1])
        qkv = F.linear(a, P[b + "attn.qkv.weight"], P[b + "attn.qkv.bias"]).reshape(N, -1, 3, heads, D // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) * (D // heads) ** -0.5, dim=-1) @ v
        att = F.linear(att.transpose(1, 2).reshape(N, -1, D), P[b + "attn.proj.weight"], P[b + "attn.proj.bias"])
        h = h + mod[2].unsqueeze(1) * att
        m = modulate(F.layer_norm(h, (D,), eps=1e-6), mod[3], mod[4])
        m = F.linear(F.gelu(F.linear(m, P[b + "mlp.fc1.weight"], P[b + "mlp.fc1.bias"]), approximate="tanh"),
                     P[b + "mlp.fc2.weight"], P[b + "mlp.fc2.bias"])
        h = h + mod[5].unsqueeze(1) * m
        if i + 1 == c["encoder_depth"]:
            for j in range(len(c["z_dims"])):
                pre = f"projectors.{j}.projection_layer"
                kind = c["projection_layer_type"]
                if kind == "mlp":
                    u = F.silu(F.linear(h, P[pre + ".0.weight"], P[pre + ".0.bias"]))
                    u = F.silu(F.linear(u, P[pre + ".2.weight"], P[pre + ".2.bias"]))
                    zs.append(F.linear(u, P[pre + ".4.weight"], P[pre + ".4.bias"]))
                elif kind == "linear":
                    zs.append(F.linear(h, P[pre + ".weight"], P[pre + ".bias"]))
                else:
                    k = c["kernel_size"]
                    img = h.reshape(N, g, g, D).permute(0, 3, 1, 2)
                    out = F.conv2d(img, P[pre + ".weight"], P[pre + ".bias"], padding=k // 2)
                    zs.append(out.permute(0, 2, 3, 1).reshape(N, g * g, -1))
    shift, scale = F.linear(F.silu(cond), P["final_layer.adaLN_modulation.1.weight"],
                            P["final_layer.adaLN_modulation.1.bias"]).chunk(2, dim=-1)
    out = F.linear(modulate(F.layer_norm(h, (D,), eps=1e-6), shift, scale), P["final_layer.linear.weight"],
                   P["final_layer.linear.bias"])
    out = out.reshape(N, g, g, p, p, C)
    out = torch.einsum("nhwpqc->nchpwq", out).reshape(N, C, g * p, g * p)
    return out, zs


def objective(P, c, x, noise, t, y, zs_raw):
    tt = t.view(-1, 1, 1, 1)
    if c["path_type"] == "linear":
        al, si, dal, dsi = 1 - tt, tt, -1.0, 1.0
    else:
        al, si = torch.cos(tt * math.pi / 2), torch.sin(tt * math.pi / 2)
        dal, dsi = -math.pi / 2 * torch.sin(tt * math.pi / 2), math.pi / 2 * torch.cos(tt * math.pi / 2)
    model_input = al * x + si * noise
    target = dal * x + dsi * noise
    out, zs_tilde = sit_forward(P, c, model_input, t, y)
    per_sample = ((out - target) ** 2).mean(dim=(1, 2, 3))
    zn = []
    for z in zs_raw:
        if c["spnorm_method"] == "zscore":
            z = (z - c["zscore_alpha"] * z.mean(dim=1, keepdim=True)) / (z.std(dim=1, keepdim=True) + 1e-6)
        zn.append(z)
    proj = torch.zeros(())
    for a, b in zip(zn, zs_tilde):
        proj = proj - (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1).mean()
    proj = proj / max(len(zn), 1)
    total = per_sample.mean() + c["proj_coeff"] * proj
    return dict(model_input=model_input, target=target, model_output=out, zs_tilde=zs_tilde, z_normalized=zn,
                denoising_loss_per_sample=per_sample, denoising_loss=per_sample.mean(), proj_loss=proj, total_loss=total)


def run(P, c, inputs):
    P = {k: v.clone().requires_grad_(k != "pos_embed") for k, v in P.items()}
    zs = [inputs[f"z.{j}"] for j in range(len(c["z_dims"]))]
    r = objective(P, c, inputs["x"], inputs["noise"], inputs["t"], inputs["y"], zs)
    r["total_loss"].backward()
    grads = {k: v.grad for k, v in P.items() if k != "pos_embed"}
    return r, grads


def outputs_of(r):
    out = {}
    for k, v in r.items():
        if isinstance(v, list):
            for j, t in enumerate(v):
                out[f"{k}.{j}"] = t
        else:
            out[k] = v
    return {k: v.detach() for k, v in out.items()}


def rel(a, b):
    n = b.norm().item()
    return (a - b).norm().item() / (n if n > 0 else 1.0)


def verify(path):
    meta, T = read_safetensors(path)
    c = json.loads(meta["config"])
    P = {k[len("params/"):]: v for k, v in T.items() if k.startswith("params/")}
    inputs = {k[len("inputs/"):]: v for k, v in T.items() if k.startswith("inputs/")}
    r, g = run(P, c, inputs)
    worst = 0.0
    for k, v in outputs_of(r).items():
        worst = max(worst, rel(v, T["outputs/" + k]))
    for k, v in g.items():
        worst = max(worst, rel(v, T["grads/" + k]))
    print(f"{path}: worst relative error against the reference {worst:.2e}")
    return worst <= 1e-12

# ---------------------------------------------------------------------------------------------
# New cases


CASES = {
    # patch 4 over a 12x12x3 input (3x3 grid), conv 5x5, three encoders, 4 heads of 8, aligned after block 1
    "sit_extra_patch4_conv5_three_encoders": dict(
        input_size=12, patch_size=4, in_channels=3, hidden_size=32, depth=3, num_heads=4, num_classes=6,
        encoder_depth=1, z_dims=[8, 12, 5], projector_dim=16, projection_layer_type="conv", kernel_size=5,
        qk_norm=False, spnorm_method="zscore", zscore_alpha=0.3, proj_coeff=0.75, path_type="cosine", batch=2),
    # one head, MLP projector, aligned after the last block, no null class, z-score with alpha 1
    "sit_extra_one_head_mlp_last_block": dict(
        input_size=4, patch_size=2, in_channels=2, hidden_size=20, depth=2, num_heads=1, num_classes=3,
        encoder_depth=2, z_dims=[6], projector_dim=10, projection_layer_type="mlp", kernel_size=3,
        qk_norm=False, spnorm_method="zscore", zscore_alpha=1.0, proj_coeff=2.0, path_type="linear", batch=4,
        class_dropout_prob=0.0),
    # no target encoder at all: plain SiT, the alignment loss is zero
    "sit_extra_no_encoders": dict(
        input_size=8, patch_size=8, in_channels=4, hidden_size=16, depth=2, num_heads=2, num_classes=10,
        encoder_depth=1, z_dims=[], projector_dim=16, projection_layer_type="linear", kernel_size=3,
        qk_norm=False, spnorm_method="none", zscore_alpha=0.6, proj_coeff=0.5, path_type="linear", batch=3),
}


def make(name, c, seed):
    g = torch.Generator().manual_seed(seed)
    P = {}
    for k, shp in param_shapes(c).items():
        fan_in = int(np.prod(shp[1:])) if len(shp) >= 2 else 0
        std = 1.0 / math.sqrt(fan_in) if fan_in else 0.1  # perturbed: no layer is zero
        P[k] = torch.randn(shp, generator=g) * std
    grid = c["input_size"] // c["patch_size"]
    P["pos_embed"] = sincos_2d(grid, c["hidden_size"])
    B = c["batch"]
    x = torch.randn(B, c["in_channels"], c["input_size"], c["input_size"], generator=g)
    classes = c["num_classes"] + (1 if c.get("class_dropout_prob", 0.1) > 0 else 0)
    inputs = {"x": x, "noise": torch.randn(x.shape, generator=g), "t": torch.rand(B, generator=g) * 0.9 + 0.05,
              "y": torch.randint(0, classes, (B,), generator=g, dtype=torch.int64)}
    for j, z in enumerate(c["z_dims"]):
        inputs[f"z.{j}"] = torch.randn(B, grid * grid, z, generator=g) * 2 + 0.5
    r, grads = run(P, c, inputs)
    T = {"params/" + k: v for k, v in P.items()}
    T.update({"inputs/" + k: v for k, v in inputs.items()})
    T.update({"outputs/" + k: v for k, v in outputs_of(r).items()})
    T.update({"grads/" + k: v for k, v in grads.items()})
    meta = {"model": "SiT", "config": json.dumps(c), "format": "irepa-golden-v1",
            "about": "scripts/golden/make_sit_golden.py: independent float64 PyTorch SiT + SILoss, autograd gradients"}
    return T, meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verify", nargs="*", default=[], help="reference golden files to re-derive first")
    ap.add_argument("--out", help="folder to write the extra cases to")
    a = ap.parse_args()
    ok = all([verify(p) for p in a.verify])
    if not ok:
        print("this implementation does not reproduce the reference files; nothing written")
        return 1
    if a.out:
        for i, (name, c) in enumerate(sorted(CASES.items())):
            T, meta = make(name, c, 1234 + i)
            write_safetensors(f"{a.out}/{name}.safetensors", T, meta)
            print(f"wrote {a.out}/{name}.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
