#!/usr/bin/env python3
"""A small SAM2 image encoder (Hiera) case for irepa::Sam2Encoder, computed in float64 with PyTorch.

The reference's SAM2Encoder runs HuggingFace's Sam2Model(...).vision_encoder and takes
last_hidden_state: the Hiera trunk ("backbone"), whose FPN neck output it ignores. This script
computes that trunk with torch ops as HF's Sam2HieraDetModel does (modeling_sam2.py, transformers
4.56): conv patch embed 7/4/3, bicubic-resized background positions plus the tiled window table,
multi-scale blocks with window partition and zero padding, query max-pooling at stage changes,
global blocks, exact-GELU MLPs. The configuration is shrunk but keeps every code path: a q-pooled
block whose windows need padding, windowed blocks on a padded grid, a global block, stage widths
that change, one and several heads.

Writes tests/data/golden/encoder_sam2_tiny.safetensors in the layout of the reference's encoder
golden files (model "encoder:sam2", read by irepa-golden-check): params/<Sam2Model name> (the
trunk under "vision_encoder.backbone."; two neck tensors beside it, which the encoder must
ignore), inputs/image (uint8), outputs/preprocessed, outputs/patch_tokens [B, side^2, C], and the
Sam2HieraDetConfig fields plus the resolution as JSON metadata.

  /usr/bin/python3 scripts/golden/make_sam2_case.py --out tests/data/golden/encoder_sam2_tiny.safetensors

Needs Debian's python3-torch (1.13).
"""
import argparse
import json
import struct

import numpy as np
import torch
import torch.nn.functional as F

CONFIG = {
    "resolution": 48,                 # images 48x48 -> the reference resizes to 96 -> grid 24
    "hidden_size": 8,
    "embed_dim_per_stage": [8, 16, 24, 32],
    "num_attention_heads_per_stage": [1, 2, 2, 4],
    "blocks_per_stage": [1, 2, 3, 2],
    "window_size_per_stage": [4, 4, 4, 2],
    "global_attention_blocks": [4],
    "window_positional_embedding_background_size": [5, 5],
    "num_query_pool_stages": 3,
    "query_stride": [2, 2],
    "mlp_ratio": 4.0,
    "layer_norm_eps": 1e-6,
}
PREFIX = "vision_encoder.backbone."


def pool(x, stride):  # [B, H, W, C] max-pooled as torch's max_pool2d (floor)
    return F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride).permute(0, 2, 3, 1)


def partition(x, ws):  # [B, H, W, C] -> windows [B * nW, ws, ws, C], zero-padded
    B, H, W, C = x.shape
    ph, pw = (ws - H % ws) % ws, (ws - W % ws) % ws
    x = F.pad(x, (0, 0, 0, pw, 0, ph))
    Hp, Wp = H + ph, W + pw
    x = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, C)
    return x, (Hp, Wp)


def unpartition(win, ws, pad_hw, hw):
    Hp, Wp = pad_hw
    H, W = hw
    B = win.shape[0] // (Hp * Wp // ws // ws)
    x = win.view(B, Hp // ws, Wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    return x[:, :H, :W, :]


def block_specs(c):
    specs, total = [], 0
    for s, n in enumerate(c["blocks_per_stage"]):
        for b in range(n):
            first = s > 0 and b == 0
            window = c["window_size_per_stage"][s - 1] if first else c["window_size_per_stage"][s]
            if total in c["global_attention_blocks"]:
                window = 0
            specs.append({
                "dim": c["embed_dim_per_stage"][s - 1] if first else c["embed_dim_per_stage"][s],
                "dim_out": c["embed_dim_per_stage"][s],
                "heads": c["num_attention_heads_per_stage"][s],
                "window": window,
                "q_stride": c["query_stride"] if 0 < s <= c["num_query_pool_stages"] and b == 0 else None,
            })
            total += 1
    return specs


def make_weights(c, g):
    def rnd(*shape, scale, shift=0.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift

    C0 = c["hidden_size"]
    w = {
        "patch_embed.projection.weight": rnd(C0, 3, 7, 7, scale=0.1),
        "patch_embed.projection.bias": rnd(C0, scale=0.1),
        "pos_embed": rnd(1, C0, *c["window_positional_embedding_background_size"], scale=0.5),
        "pos_embed_window": rnd(1, C0, c["window_size_per_stage"][0], c["window_size_per_stage"][0], scale=0.5),
    }
    for i, s in enumerate(block_specs(c)):
        p, d, o = f"blocks.{i}.", s["dim"], s["dim_out"]
        w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"] = rnd(d, scale=0.1, shift=1.0), rnd(d, scale=0.1)
        w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"] = rnd(3 * o, d, scale=0.4), rnd(3 * o, scale=0.2)
        w[p + "attn.proj.weight"], w[p + "attn.proj.bias"] = rnd(o, o, scale=0.3), rnd(o, scale=0.1)
        w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"] = rnd(o, scale=0.1, shift=1.0), rnd(o, scale=0.1)
        m = int(o * c["mlp_ratio"])
        w[p + "mlp.proj_in.weight"], w[p + "mlp.proj_in.bias"] = rnd(m, o, scale=0.3), rnd(m, scale=0.1)
        w[p + "mlp.proj_out.weight"], w[p + "mlp.proj_out.bias"] = rnd(o, m, scale=0.2), rnd(o, scale=0.1)
        if d != o:
            w[p + "proj.weight"], w[p + "proj.bias"] = rnd(o, d, scale=0.3), rnd(o, scale=0.1)
    return w


def attention(w, p, x, heads, q_stride):  # x [B, H, W, dim] -> [B, H', W', dim_out]
    B, H, W, _ = x.shape
    qkv = F.linear(x, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"]).reshape(B, H * W, 3, heads, -1)
    q, k, v = torch.unbind(qkv, 2)
    if q_stride:
        q = pool(q.reshape(B, H, W, -1), q_stride)
        H, W = q.shape[1:3]
        q = q.reshape(B, H * W, heads, -1)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    scale = q.shape[-1] ** -0.5
    a = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1) @ v
    a = a.transpose(1, 2).reshape(B, H, W, -1)
    return F.linear(a, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])


def trunk(c, w, x):  # preprocessed [B, 3, S, S] -> [B, side, side, C]
    h = F.conv2d(x, w["patch_embed.projection.weight"], w["patch_embed.projection.bias"], stride=4, padding=3)
    h = h.permute(0, 2, 3, 1)
    pos = F.interpolate(w["pos_embed"], size=h.shape[1:3], mode="bicubic", align_corners=False)
    win = w["pos_embed_window"]
    pos = pos + win.tile([a // b for a, b in zip(pos.shape, win.shape)])
    h = h + pos.permute(0, 2, 3, 1)
    eps = c["layer_norm_eps"]
    for i, s in enumerate(block_specs(c)):
        p = f"blocks.{i}."
        residual = h
        n = F.layer_norm(h, (s["dim"],), w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"], eps)
        if s["dim"] != s["dim_out"]:
            residual = pool(F.linear(n, w[p + "proj.weight"], w[p + "proj.bias"]), s["q_stride"])
        ws = s["window"]
        if ws > 0:
            H, W = n.shape[1:3]
            n, pad_hw = partition(n, ws)
        a = attention(w, p, n, s["heads"], s["q_stride"])
        if s["q_stride"]:
            ws = s["window"] // s["q_stride"][0]
            H, W = residual.shape[1:3]
            pad_hw = (H + (ws - H % ws) % ws, W + (ws - W % ws) % ws)
        if s["window"] > 0:
            a = unpartition(a, ws, pad_hw, (H, W))
        h = residual + a
        n = F.layer_norm(h, (s["dim_out"],), w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], eps)
        m = F.gelu(F.linear(n, w[p + "mlp.proj_in.weight"], w[p + "mlp.proj_in.bias"]))
        h = h + F.linear(m, w[p + "mlp.proj_out.weight"], w[p + "mlp.proj_out.bias"])
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(20261129)
    c = CONFIG
    w = make_weights(c, g)
    R = c["resolution"]
    image = torch.randint(0, 256, (2, 3, R, R), generator=g).to(torch.uint8)
    # The reference's preprocess: /255, bicubic to 2R, ImageNet mean/std.
    x = F.interpolate(image.to(torch.float64) / 255.0, size=2 * R, mode="bicubic", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    x = (x - mean) / std
    h = trunk(c, w, x)
    tokens = h.reshape(h.shape[0], -1, h.shape[-1])
    tensors = {"params/" + PREFIX + k: v for k, v in w.items()}
    # Neck tensors sit beside the trunk in a Sam2Model file; the encoder reads none of them.
    tensors["params/vision_encoder.neck.convs.0.weight"] = torch.randn(4, 32, 1, 1, generator=g, dtype=torch.float64)
    tensors["params/vision_encoder.neck.convs.0.bias"] = torch.randn(4, generator=g, dtype=torch.float64)
    tensors["inputs/image"] = image
    tensors["outputs/preprocessed"] = x
    tensors["outputs/patch_tokens"] = tokens
    header = {"__metadata__": {"model": "encoder:sam2", "config": json.dumps(c),
                               "source": "scripts/golden/make_sam2_case.py (torch 1.13)"}}
    blobs, off = [], 0
    for k in sorted(tensors):
        raw = np.ascontiguousarray(tensors[k].numpy()).tobytes()
        dtype = "U8" if tensors[k].dtype == torch.uint8 else "F64"
        header[k] = {"dtype": dtype, "shape": list(tensors[k].shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)
    with open(a.out, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr + b"".join(blobs))
    print(f"wrote {a.out}: tokens {list(tokens.shape)}, |tokens| max {tokens.abs().max().item():.3f}")


if __name__ == "__main__":
    main()
