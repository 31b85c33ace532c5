#!/usr/bin/env python3
"""Convert a released target-encoder checkpoint to safetensors with the original parameter names.

irepa reads ViT encoder weights from <dir>/<name>.safetensors (irepa-train --encoder-dir DIR, or
$IREPA_ENCODER_DIR). This script is the only place PyTorch is needed: it loads the checkpoint
with torch.load, keeps every tensor under its name (float32), and writes safetensors by hand.

  python3 tools/convert_encoder.py dinov2_vitb14_pretrain.pth encoders/dinov2-vit-b.safetensors
  python3 tools/convert_encoder.py dinov2_vitl14_reg4_pretrain.pth encoders/dinov2reg-vit-l.safetensors

Where the checkpoints come from (download them yourself; irepa never downloads anything):
  DINOv2  https://github.com/facebookresearch/dinov2 (README, "Pretrained models"):
          dinov2_vit{s,b,l}14[_reg4]_pretrain.pth  ->  dinov2-vit-{s,b,l} / dinov2reg-vit-{s,b,l}
  DINOv3  https://github.com/facebookresearch/dinov3 (README, access by request):
          dinov3_vit{s,b,l}16_pretrain_lvd1689m-*.pth  ->  dinov3-vit-{s16,b16,l16}
          (the checkpoint's rope_embed.periods and attn.qkv.bias_mask buffers are kept)
  PE      https://huggingface.co/facebook/<name> (facebookresearch/perception_models):
          PE-Core-{T16-384,S16-384,B16-224,L14-336,G14-448}.pt  ->  pe-vit-{t,s,b,l,g}
          PE-Spatial-{B16-512,L14-448,G14-448}.pt  ->  spatialpe-vit-{b,l,g}
          PE-Lang-{L14-448,G14-448}.pt  ->  langpe-vit-{l,g}
          (a CLIP checkpoint's text tower is dropped: only the "visual." tensors are kept, unprefixed)
The DINOv2 position table stays as released (37x37 + class) and PE's at its pretraining grid;
irepa resamples them to its token grid at load, as the reference does. Other families (SigLIP,
CLIP, MAE, ...) are not converted yet.
"""
import argparse
import json
import struct
import sys

import numpy as np
import torch


def unwrap(obj):
    """A plain state dict from the usual wrappers ({'model': ...}, {'state_dict': ...}, {'teacher': ...})."""
    for key in ("model", "state_dict", "teacher", "weights"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            return unwrap(obj[key])
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        sys.exit("convert_encoder: the checkpoint is not a state dict of tensors")
    return obj


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    ap.add_argument("--strip-prefix", default="", help="remove this prefix from every name (e.g. 'backbone.')")
    a = ap.parse_args()
    sd = unwrap(torch.load(a.checkpoint, map_location="cpu"))
    sd = {k.replace("module.", "", 1) if k.startswith("module.") else k: v for k, v in sd.items()}
    if any(k.startswith("visual.") for k in sd):  # PE / CLIP: the vision tower only
        sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
    header, blobs, off = {"__metadata__": {"source": a.checkpoint, "converter": "tools/convert_encoder.py"}}, [], 0
    for name in sorted(sd):
        if name.endswith("num_batches_tracked"):
            continue
        key = name[len(a.strip_prefix):] if a.strip_prefix and name.startswith(a.strip_prefix) else name
        arr = sd[name].detach().to(torch.float32).contiguous().numpy()
        raw = arr.tobytes()
        header[key] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = a.output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    import os
    os.replace(tmp, a.output)
    print(f"wrote {a.output}: {len(header) - 1} tensors, {off / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
