#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses that have no fixtures elsewhere in tests/data:
tests/fuzz/corpus/{safetensors,checkpoint_meta,npy,idx}/. Small valid files of each format
(numpy and the standard library only; the safetensors layout is written by hand, as its spec
describes it). Run from the repository root: python3 scripts/make_fuzz_seeds.py"""
import gzip
import io
import json
import os
import struct

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz", "corpus")


def out(sub, name, data):
    d = os.path.join(ROOT, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, raw bytes)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


rng = np.random.default_rng(20261206)
f32 = rng.standard_normal((2, 3)).astype("<f4")
i64 = np.arange(4, dtype="<i8")
out("safetensors", "f32_i64.safetensors",
    safetensors([("w", "F32", f32.shape, f32.tobytes()), ("idx", "I64", i64.shape, i64.tobytes())], {"format": "pt"}))
h16 = rng.standard_normal(5).astype("<f2")
bf = (rng.standard_normal(3).astype("<f4").view("<u4") >> 16).astype("<u2")
out("safetensors", "half_bf16.safetensors",
    safetensors([("h", "F16", h16.shape, h16.tobytes()), ("b", "BF16", bf.shape, bf.tobytes()),
                 ("u", "U8", (2, 2), bytes([1, 2, 3, 4])), ("e", "F64", (0, 3), b"")]))

meta = {
    "format": "irepa-checkpoint-v1",
    "step": "4",
    "optimizer_steps": "4",
    "emas": json.dumps([{"decay": 0.9999, "every": 1}]),
    "rng": json.dumps({"seed": 0, "stream": 1, "position": 12}),
    "config": json.dumps({"model": "SiT-B/2", "learning-rate": "0.0001", "path-type": "linear", "batch-size": "256"}),
}
w = rng.standard_normal(4).astype("<f4")
t = [(p + "w", "F32", w.shape, w.tobytes()) for p in ("model.", "ema.", "optim.exp_avg.", "optim.exp_avg_sq.")]
out("checkpoint_meta", "checkpoint.safetensors", safetensors(t, meta))
meta2 = dict(meta, emas=json.dumps([{"decay": 0.9999, "every": 1}, {"decay": 0.9996, "every": 2}]), step="100", optimizer_steps="98")
out("checkpoint_meta", "two_emas.safetensors", safetensors(t[:1], meta2))


def npy(a, version=None):
    b = io.BytesIO()
    if version is None:
        np.save(b, a)
    else:
        np.lib.format.write_array(b, a, version=version)
    return b.getvalue()


out("npy", "f4_3x4.npy", npy(rng.standard_normal((3, 4)).astype("<f4")))
out("npy", "u1_2x2x3.npy", npy(rng.integers(0, 256, (2, 2, 3)).astype("u1")))
out("npy", "i8_5.npy", npy(np.arange(5, dtype="<i8")))
out("npy", "f2_v2.npy", npy(rng.standard_normal(2).astype("<f2"), version=(2, 0)))
out("npy", "scalar_f8.npy", npy(np.float64(1.5)))


def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


img = idx([3, 2, 5], rng.integers(0, 256, 30).tolist())
out("idx", "images.idx.gz", gzip.compress(img, mtime=0))
out("idx", "labels.idx.gz", gzip.compress(idx([10], list(range(10))), mtime=0))
out("idx", "plain.idx", img)
