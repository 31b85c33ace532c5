#!/usr/bin/env python3
"""Extra `encoder:hog` golden files (irepa-golden-v1) for configurations ../shared/golden lacks.

Computes the HOG target encoder as REFERENCE.md section 6 describes it, with scikit-image's own
`hog` (L2-Hys, feature_vector=False) and torch for the resizes and the per-token normalisation.
It first re-derives the shipped file (--verify), then writes cases with other cell and block
sizes, leftover pixels, an input resized up or down, and a 1-channel input (used as R = G = B).

  /usr/bin/python3 scripts/golden/make_hog_cases.py --verify ../shared/golden/encoder_hog_g8_d32.safetensors
  /usr/bin/python3 scripts/golden/make_hog_cases.py --out tests/data/golden

Needs Debian's python3-skimage, python3-torch and numpy.
"""
import argparse
import json
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from skimage.feature import hog as sk_hog

DT = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "U8": np.uint8}
NAME = {np.dtype(v): k for k, v in DT.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for k, v in header.items():
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(buf[8 + n + a:8 + n + b], dtype=DT[v["dtype"]]).reshape(v["shape"]).copy()
    return meta, out


def write_safetensors(path, tensors, meta):
    header = {"__metadata__": meta}
    blobs, off = [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        raw = a.tobytes()
        header[k] = {"dtype": NAME[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def hog_encoder(image_u8, cfg):
    """image_u8 [B, C, H, W] (C = 1 is used as R = G = B) -> (gray [B, R, R], tokens [B, g*g, D])."""
    x = torch.from_numpy(image_u8.astype(np.float32))
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    res, grid, dim = cfg["resolution"], cfg["grid"], cfg["dim"]
    ppc, cb = cfg.get("pixels_per_cell", 2), cfg.get("cells_per_block", 4)
    x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
    bhwc = np.transpose(x.clamp(0, 255).numpy().astype(np.float64), (0, 2, 3, 1))
    gray = (0.2126 * bhwc[..., 0] + 0.7152 * bhwc[..., 1] + 0.0722 * bhwc[..., 2]) / 255.0
    gray = np.clip(gray, 0.0, 1.0).astype(np.float32)
    orientations = dim // (cb * cb)
    feats = []
    for b in range(gray.shape[0]):
        f = sk_hog(gray[b], orientations=orientations, pixels_per_cell=(ppc, ppc), cells_per_block=(cb, cb),
                   transform_sqrt=False, feature_vector=False, block_norm="L2-Hys")
        feats.append(torch.from_numpy(f.reshape(f.shape[0], f.shape[1], -1).astype(np.float32)))
    t = F.normalize(torch.stack(feats), p=2, dim=-1)  # [B, HB, WB, D]
    t = F.interpolate(t.permute(0, 3, 1, 2).contiguous(), size=(grid, grid), mode="bilinear", align_corners=False)
    return gray, t.permute(0, 2, 3, 1).reshape(t.shape[0], grid * grid, dim).numpy()


def rel(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def verify(path):
    meta, t = read_safetensors(path)
    cfg = json.loads(meta["config"])
    gray, tokens = hog_encoder(t["inputs/image"], cfg)
    e1, e2 = rel(gray, t["outputs/gray"]), rel(tokens, t["outputs/patch_tokens"])
    print(f"{path}: gray {e1:.2e}, patch_tokens {e2:.2e}")
    return max(e1, e2)


def smooth_images(rng, b, c, h, w):
    """Shapes with edges at many angles plus noise (pure noise rarely ties bin edges; these do)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((b, c, h, w), dtype=np.uint8)
    for i in range(b):
        for ch in range(c):
            cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(0.2, 0.4) * min(h, w)
            disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) * rng.uniform(80, 200)
            ramp = (xx * rng.uniform(-3, 3) + yy * rng.uniform(-3, 3))
            noise = rng.normal(0, 12, size=(h, w))
            out[i, ch] = np.clip(disc + ramp + 60 + noise, 0, 255).astype(np.uint8)
    return out


CASES = [
    # name, image shape [B, C, H, W], config
    ("hog_extra_gray28_to32_g8_d128", (3, 1, 28, 28), {"resolution": 32, "grid": 8, "dim": 128}),
    ("hog_extra_ppc1_cb2_g6_d36", (2, 3, 24, 24), {"resolution": 24, "grid": 6, "dim": 36, "pixels_per_cell": 1,
                                                  "cells_per_block": 2}),
    ("hog_extra_ppc3_cb3_leftover_48to40", (2, 3, 48, 48), {"resolution": 40, "grid": 5, "dim": 54, "pixels_per_cell": 3,
                                                            "cells_per_block": 3}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verify", nargs="*", default=[])
    ap.add_argument("--out")
    a = ap.parse_args()
    worst = max([verify(p) for p in a.verify], default=0.0)
    if worst > 1e-5:
        sys.exit(f"re-derivation of the reference files is off by {worst:.2e}")
    if a.out:
        rng = np.random.default_rng(20261126)
        for name, shape, cfg in CASES:
            cfg = dict(cfg)
            cfg.setdefault("pixels_per_cell", 2)
            cfg.setdefault("cells_per_block", 4)
            cfg["orientations"] = cfg["dim"] // (cfg["cells_per_block"] ** 2)
            cfg["block_norm"] = "L2-Hys"
            img = smooth_images(rng, *shape)
            gray, tokens = hog_encoder(img, cfg)
            meta = {"model": "encoder:hog", "format": "irepa-golden-v1", "config": json.dumps(cfg),
                    "source": "scripts/golden/make_hog_cases.py (scikit-image hog + torch)"}
            write_safetensors(f"{a.out}/{name}.safetensors",
                              {"inputs/image": img, "outputs/gray": gray, "outputs/patch_tokens": tokens}, meta)
            print(f"wrote {a.out}/{name}.safetensors: {shape} -> {tokens.shape}")


if __name__ == "__main__":
    main()
