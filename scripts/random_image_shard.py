#!/usr/bin/env python3
"""Writes one safetensors shard of random uint8 images and labels, the layout irepa-train and
irepa-train-jit read (images [n, 3, R, R] U8, labels [n] I64), for runs that need image data
where there is none (scripts/gpu-check.sh's online-encoder run). Standard library only.

    python3 scripts/random_image_shard.py OUT_DIR [--count 256] [--resolution 256] [--classes 1000] [--seed 0]
"""
import argparse
import json
import os
import random
import struct


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--count", type=int, default=256)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    n, r = a.count, a.resolution
    images = rng.randbytes(n * 3 * r * r)
    labels = struct.pack(f"<{n}q", *(rng.randrange(a.classes) for _ in range(n)))
    header = {
        "images": {"dtype": "U8", "shape": [n, 3, r, r], "data_offsets": [0, len(images)]},
        "labels": {"dtype": "I64", "shape": [n], "data_offsets": [len(images), len(images) + len(labels)]},
    }
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)  # the data starts 8-byte aligned
    os.makedirs(a.out_dir, exist_ok=True)
    path = os.path.join(a.out_dir, "shard_00000.safetensors")
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + images + labels)
    os.replace(path + ".tmp", path)
    print(f"{path}: {n} random {r}x{r} images, labels < {a.classes}")


if __name__ == "__main__":
    main()
