#!/usr/bin/env python3
"""Mask test cases for irepa's PNG mask pipeline (tests/data/masks), made with Pillow and numpy.

Writes a few PNG masks (grey "L" with soft edges, 1-bit, palette, an upscaled one, one with too
little foreground) and expected.safetensors holding, per mask i: resized.<i> = Pillow's
Image.resize((256, 256)) with its default filter, as uint8 [256, 256], and grid.<i> = the
reference metrics script's 16x16 max-pool of (resized > 0), as uint8 [256]; plus kept = the
indices the reference's filter keeps (>= 64 foreground and >= 64 background cells).

  /usr/bin/python3 scripts/golden/make_mask_cases.py tests/data/masks
"""
import json
import struct
import sys

import numpy as np
from PIL import Image


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        name = {np.dtype(np.uint8): "U8", np.dtype(np.int64): "I64"}[a.dtype]
        raw = a.tobytes()
        header[k] = {"dtype": name, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def blob(h, w, cy, cx, r, soft):
    y, x = np.mgrid[0:h, 0:w]
    d = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    return np.clip((r - d) / soft, 0, 1)


def main(out):
    rng = np.random.default_rng(7)
    cases = []
    # 0: grey, soft-edged ellipse-ish blob plus speckle, 300 x 217 (downscale, non-square)
    a = blob(300, 217, 140, 100, 80, 12.0) * 255
    a[rng.random(a.shape) < 0.002] = 3  # isolated faint pixels: bicubic may keep or drop them
    cases.append(Image.fromarray(a.astype(np.uint8), "L"))
    # 1: 1-bit mask (nearest), 256 x 300
    b = blob(256, 300, 100, 180, 90, 1.0) > 0.5
    cases.append(Image.fromarray(b).convert("1"))
    # 2: palette mask (nearest), 240 x 240, two labelled regions
    c = np.zeros((240, 240), np.uint8)
    c[20:120, 30:200] = 1
    c[150:230, 60:140] = 2
    p = Image.fromarray(c, "P")
    p.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    cases.append(p)
    # 3: grey, upscaled from 90 x 70
    d = (blob(90, 70, 45, 30, 28, 3.0) * 200).astype(np.uint8)
    cases.append(Image.fromarray(d, "L"))
    # 4: grey, too little foreground (dropped by the filter)
    e = (blob(256, 256, 30, 30, 20, 2.0) * 255).astype(np.uint8)
    cases.append(Image.fromarray(e, "L"))
    tensors = {}
    kept = []
    for i, im in enumerate(cases):
        im.save(f"{out}/mask_{i:02d}.png")
        im2 = Image.open(f"{out}/mask_{i:02d}.png")
        r = np.asarray(im2.resize((256, 256)))
        if im2.mode == "1":
            r = r.astype(np.uint8) * 255  # numpy shows "1" images as bool; Pillow stores 0 / 255
        grid = (r > 0).reshape(16, 16, 16, 16).max(axis=(1, 3)).astype(np.uint8).reshape(-1)
        tensors[f"resized.{i}"] = r.astype(np.uint8)
        tensors[f"grid.{i}"] = grid
        if grid.sum() >= 64 and (256 - grid.sum()) >= 64:
            kept.append(i)
        print(f"mask_{i:02d}.png mode {im2.mode} size {im2.size}: {int(grid.sum())} foreground cells")
    tensors["kept"] = np.array(kept, np.int64)
    write_safetensors(f"{out}/expected.safetensors", tensors)
    print("kept", kept)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/masks")
