#!/usr/bin/env python3
"""Image-decoding and cropping cases for irepa's image data path (tests/data/images), made with
Pillow and numpy (Debian's python3-pil, python3-numpy).

Writes small encoded images of the kinds ImageNet folders hold (baseline and progressive RGB
JPEG with 4:2:0 and 4:4:4 chroma, grey JPEG, Adobe CMYK JPEG; RGB, grey, palette, RGBA and
16-bit PNG) and expected.safetensors holding, per file <name>:
  rgb.<name>   = np.array(Image.open(f).convert("RGB"))                       uint8 [H, W, 3]
  crop.<name>  = ADM's center_crop_arr(Image.open(f).convert("RGB"), 16)      uint8 [16, 16, 3]
  crop8.<name> = the same at 8 (two box halvings for the larger images)

  /usr/bin/python3 scripts/golden/make_image_cases.py tests/data/images
"""
import io
import json
import os
import struct
import sys

import numpy as np
from PIL import Image


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        raw = a.tobytes()
        header[k] = {"dtype": "U8", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def center_crop_arr(pil_image, image_size):
    # ADM (guided-diffusion) image_datasets.py, as the reference's preprocessing uses it.
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y: crop_y + image_size, crop_x: crop_x + image_size]


def scene(h, w, rng):
    """Smooth colour fields with edges and a little noise: something a codec has to work on."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 11.0)
    g = 128 + 90 * np.cos((x + y) / 9.0)
    b = np.where((x - w / 2) ** 2 + (y - h / 3) ** 2 < (min(h, w) / 3) ** 2, 220.0, 40.0)
    a = np.stack([r, g, b], -1) + rng.normal(0, 6, (h, w, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(11)
    files = {}

    def jpeg(name, img, **kw):
        buf = io.BytesIO()
        img.save(buf, "JPEG", **kw)
        files[name] = buf.getvalue()

    def png(name, img, **kw):
        buf = io.BytesIO()
        img.save(buf, "PNG", **kw)
        files[name] = buf.getvalue()

    rgb = Image.fromarray(scene(45, 61, rng), "RGB")           # short side >= 32: one box halving at 16
    jpeg("rgb420.jpg", rgb, quality=85, subsampling=2)
    jpeg("rgb444_progressive.jpg", Image.fromarray(scene(70, 37, rng)), quality=92, subsampling=0, progressive=True)
    jpeg("grey.jpg", Image.fromarray(scene(33, 50, rng)[..., 0], "L"), quality=80)
    jpeg("cmyk.jpg", Image.fromarray(scene(40, 40, rng), "RGB").convert("CMYK"), quality=90)  # Pillow writes Adobe CMYK
    jpeg("odd_upscale.jpg", Image.fromarray(scene(13, 21, rng)), quality=75)  # smaller than the crop: bicubic up
    png("rgb.png", Image.fromarray(scene(50, 36, rng)))
    png("grey.png", Image.fromarray(scene(17, 29, rng)[..., 1], "L"))
    pal = Image.fromarray(scene(38, 38, rng)).quantize(colors=16)
    png("palette.png", pal)
    rgba = Image.fromarray(np.concatenate([scene(31, 47, rng), rng.integers(0, 256, (31, 47, 1), dtype=np.uint8)], -1), "RGBA")
    png("rgba.png", rgba)
    deep = Image.fromarray((scene(20, 24, rng)[..., 2].astype(np.uint16) * 257 + 3).astype(np.uint16))  # mode I;16
    png("grey16.png", deep)

    tensors = {}
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        im = Image.open(io.BytesIO(data)).convert("RGB")
        key = name.replace(".", "_")
        tensors["rgb." + key] = np.array(im)
        tensors["crop." + key] = center_crop_arr(im, 16)
        tensors["crop8." + key] = center_crop_arr(im, 8)
        print(f"{name}: {Image.open(io.BytesIO(data)).mode} {im.size[0]}x{im.size[1]}, {len(data)} bytes")
    write_safetensors(os.path.join(out, "expected.safetensors"), tensors)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/images")
