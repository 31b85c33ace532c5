#!/usr/bin/env python3
"""The image data path in Pillow, for a side-by-side with irepa-bench-images: decode each JPEG of
an ImageFolder, convert("RGB"), ADM's center_crop_arr to --resolution, as the reference's
datasets do, on --workers processes (a DataLoader's workers). With --make N it first writes N
synthetic photo-sized JPEGs (500x375 and 375x500, quality 90, 4:2:0, as most of ImageNet) into
--dir/<class>/ so both sides read the same files.

  /usr/bin/python3 benchmarks/reference/images_pillow.py --dir /tmp/imgbench --make 256
  /usr/bin/python3 benchmarks/reference/images_pillow.py --dir /tmp/imgbench --workers 2
"""
import argparse
import multiprocessing as mp
import os
import statistics
import time

import numpy as np
from PIL import Image


def center_crop_arr(pil_image, image_size):
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y: crop_y + image_size, crop_x: crop_x + image_size]


def make(d, n):
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = (375, 500) if i % 3 else (500, 375)
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        a = np.stack([128 + 100 * np.sin(x / (5 + i % 7)) * np.cos(y / 13.0), 128 + 90 * np.cos((x + y) / (7 + i % 5)),
                      np.where((x - w / 2) ** 2 + (y - h / 3) ** 2 < (min(h, w) / 3) ** 2, 220.0, 40.0)], -1)
        a = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
        cd = os.path.join(d, f"n{i % 4:02d}")
        os.makedirs(cd, exist_ok=True)
        Image.fromarray(a).save(os.path.join(cd, f"{i:05d}.JPEG"), quality=90, subsampling=2)


def load(args):
    path, res = args
    with open(path, "rb") as f:
        img = Image.open(f).convert("RGB")
    return center_crop_arr(img, res).shape


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--make", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if a.make:
        make(a.dir, a.make)
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(a.dir) for f in fs if f.lower().endswith((".jpeg", ".jpg", ".png")))
    ts = []
    with mp.Pool(a.workers) as pool:
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            pool.map(load, [(f, a.resolution) for f in files], chunksize=8)
            ts.append(time.perf_counter() - t0)
    med = statistics.median(ts)
    print(f"| Pillow {Image.__version__} | {len(files)} | {a.resolution} | {a.workers} processes | {med:.3f} s | {min(ts):.3f} s | {len(files) / med:.1f} |")


if __name__ == "__main__":
    main()
