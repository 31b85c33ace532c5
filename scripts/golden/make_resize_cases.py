#!/usr/bin/env python3
"""Cases for irepa::ops::interpolate: F.interpolate(align_corners=False) in float64 with PyTorch.

Writes tests/data/resize_cases.safetensors: case<i>/input [N, C, H, W], case<i>/output, and the
list of cases (mode, antialias, output size) as JSON metadata.

  /usr/bin/python3 scripts/golden/make_resize_cases.py --out tests/data/resize_cases.safetensors

Needs Debian's python3-torch (1.13).
"""
import argparse
import json
import struct

import numpy as np
import torch
import torch.nn.functional as F

CASES = [
    # (input shape, output size, mode, antialias)
    ((1, 2, 13, 17), (7, 5), "bicubic", False),   # down, no antialias
    ((1, 1, 64, 64), (56, 56), "bicubic", False),  # DINOv2's 256 -> 224, scaled down
    ((2, 1, 9, 6), (20, 15), "bicubic", False),    # up
    ((1, 3, 37, 37), (16, 16), "bicubic", True),   # DINOv2's position table resample
    ((1, 1, 11, 14), (23, 9), "bicubic", True),    # up in one axis, down in the other
    ((1, 2, 15, 15), (4, 6), "bilinear", False),
    ((1, 2, 14, 14), (16, 16), "bilinear", True),  # PE's position table, upscaled
    ((1, 1, 40, 31), (12, 9), "bilinear", True),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(20261126)
    tensors, meta = {}, []
    for i, (shape, size, mode, aa) in enumerate(CASES):
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        y = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=aa)
        tensors[f"case{i}/input"] = x.numpy()
        tensors[f"case{i}/output"] = y.numpy()
        meta.append({"mode": mode, "antialias": aa, "size": list(size)})
    header = {"__metadata__": {"cases": json.dumps(meta), "source": "scripts/golden/make_resize_cases.py (torch 1.13)"}}
    blobs, off = [], 0
    for k in sorted(tensors):
        raw = np.ascontiguousarray(tensors[k]).tobytes()
        header[k] = {"dtype": "F64", "shape": list(tensors[k].shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(a.out, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    print(f"wrote {a.out}: {len(CASES)} cases")


if __name__ == "__main__":
    main()
