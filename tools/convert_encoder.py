#!/usr/bin/env python3
"""Convert a released checkpoint (a target encoder, the SD-VAE or its latent statistics, the FID Inception) to
safetensors with the original parameter names.

irepa reads torch.save files directly (docs/interop.md): a plain state dict needs no conversion,
as <dir>/<name>.pth or .pt beside the .safetensors names (irepa-train --encoder-dir DIR, or
$IREPA_ENCODER_DIR), and so do the SD-VAE, its latent statistics and the reference's SiT
checkpoints. This script is for the rest: TorchScript archives (CLIP), wrapped or prefixed dicts
(MoCo v3, I-JEPA, DINO's teacher, SAM2's original), renames, and anyone who wants safetensors. It
loads the checkpoint with torch.load, keeps every tensor under its name (float32), and writes
safetensors by hand.

  python3 tools/convert_encoder.py dinov2_vitb14_pretrain.pth encoders/dinov2-vit-b.safetensors
  python3 tools/convert_encoder.py dinov2_vitl14_reg4_pretrain.pth encoders/dinov2reg-vit-l.safetensors

Where the checkpoints come from (download them yourself; irepa never downloads anything):
  DINOv2  https://github.com/facebookresearch/dinov2 (README, "Pretrained models"):
          dinov2_vit{s,b,l}14[_reg4]_pretrain.pth  ->  dinov2-vit-{s,b,l} / dinov2reg-vit-{s,b,l}
  DINOv3  https://github.com/facebookresearch/dinov3 (README, access by request):
          dinov3_vit{s,b,l}16_pretrain_lvd1689m-*.pth  ->  dinov3-vit-{s16,b16,l16}
          dinov3_vith16plus_* / dinov3_vit7b16_*.pth  ->  dinov3-vit-h16plus / dinov3-vit-7b16
          (the checkpoint's rope_embed.periods and attn.qkv.bias_mask buffers are kept)
  PE      https://huggingface.co/facebook/<name> (facebookresearch/perception_models):
          PE-Core-{T16-384,S16-384,B16-224,L14-336,G14-448}.pt  ->  pe-vit-{t,s,b,l,g}
          PE-Spatial-{B16-512,L14-448,G14-448}.pt  ->  spatialpe-vit-{b,l,g}
          PE-Lang-{L14-448,G14-448}.pt  ->  langpe-vit-{l,g}
          (a CLIP checkpoint's text tower is dropped: only the "visual." tensors are kept, unprefixed)
  CLIP    https://github.com/openai/CLIP: ViT-L-14.pt (a TorchScript archive)  ->  clip-vit-L
  MAE     https://github.com/facebookresearch/mae: mae_pretrain_vit_large.pth  ->  mae-vit-l
  MoCo v3 https://github.com/facebookresearch/moco-v3: vit-{s,b,l}-300ep.pth.tar  ->  mocov3-vit-{s,b,l}, with
          --only-prefix module.base_encoder. --drop head. (and, for checkpoints with the known naming
          slip, --rename blocks.13.norm13=blocks.13.norm1 --rename blocks.13.mlp.fc13=blocks.13.mlp.fc1
          --rename blocks.14.norm14=blocks.14.norm2 --rename blocks.14.mlp.fc14=blocks.14.mlp.fc2)
  DINO    https://github.com/facebookresearch/dino: dino_vit{small,base}16_pretrain.pth  ->  dino-vit-{s,b}
  I-JEPA  https://github.com/facebookresearch/ijepa: IN1K-vit.h.14-300e.pth.tar  ->  jepa-vit-h
          (its "encoder" state dict, "module." prefixes removed)
  SigLIP  https://huggingface.co/google/siglip-base-patch16-256 (and -large-patch16-256,
          -so400m-patch14-224; siglip2-* likewise): the model.safetensors file is used as it is,
          renamed to encoders/siglip-vit-b.safetensors etc. (the vision tower is read under
          "vision_model."); no conversion needed.
  VGG16   torchvision's IMAGENET1K_FEATURES weights, vgg16_features-amdegroot-88682ab5.pth
          (download.pytorch.org/models/)  ->  vgg-cnn-16 (any vgg-<arch>-<config> name)
  SAM     https://huggingface.co/facebook/sam-vit-base (-large, -huge): model.safetensors used as it
          is, renamed to encoders/sam-vit-b.safetensors etc. (read under "vision_encoder.").
  SAM2    https://huggingface.co/facebook/sam2-hiera-small (-base-plus, -large): model.safetensors
          used as it is, renamed to encoders/sam2-vit-{s,b,l}.safetensors (the Hiera trunk is read
          under "vision_encoder.backbone."). The original sam2_hiera_{small,base_plus,large}.pt
          (facebookresearch/sam2) convert with --only-prefix image_encoder.trunk. --rename
          norm1=layer_norm1 --rename norm2=layer_norm2 --rename patch_embed.proj.=patch_embed.projection.
          --rename mlp.layers.0=mlp.proj_in --rename mlp.layers.1=mlp.proj_out (HF's own renaming).
  SD-VAE  the reference's pretrained_models/sdvae-ft-mse-f8d4.pt (its AutoencoderKL state dict)
          ->  vae/sdvae-ft-mse-f8d4.safetensors (irepa-train --vae, irepa-encode --vae); its
          sdvae-ft-mse-f8d4-latents-stats.pt ({latents_scale, latents_bias}, [1, 4, 1, 1] each)
          ->  vae/sdvae-ft-mse-f8d4-latents-stats.safetensors (--latents-stats). diffusers'
          stabilityai/sd-vae-ft-mse diffusion_pytorch_model.safetensors is read as it is (either
          attention spelling); a Stable Diffusion .ckpt converts with --only-prefix first_stage_model.
  Inception the FID Inception-v3 of the ADM evaluator, as torch-fidelity converted the 2015-12-05 TF graph:
          weights-inception-2015-12-05-6726825d.pth (github.com/toshas/torch-fidelity releases, v0.2.0)
          ->  inception/pt_inception-2015-12-05.safetensors (irepa-eval --inception); the BatchNorm
          counters (num_batches_tracked) are left out, as for every checkpoint.
The position tables stay as released (DINOv2's 37x37, PE's pretraining grid, MoCo's and DINO's
14x14); irepa resamples them to its token grid at load, as the reference does.
"""
import argparse
import json
import struct
import sys

import numpy as np
import torch


def unwrap(obj):
    """A plain state dict from the usual wrappers ({'model': ...}, {'state_dict': ...}, {'teacher': ...})."""
    for key in ("model", "state_dict", "teacher", "weights", "encoder"):
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
    ap.add_argument("--only-prefix", default="", help="keep only the tensors under this prefix, without it")
    ap.add_argument("--drop", action="append", default=[], help="leave out tensors whose name starts with this (repeatable)")
    ap.add_argument("--rename", action="append", default=[], help="OLD=NEW: replace OLD by NEW in names (repeatable)")
    a = ap.parse_args()
    try:
        loaded = torch.load(a.checkpoint, map_location="cpu")
    except RuntimeError:  # OpenAI's CLIP checkpoints are TorchScript archives
        loaded = torch.jit.load(a.checkpoint, map_location="cpu")
    if isinstance(loaded, torch.nn.Module):  # (torch.load may hand such an archive to torch.jit.load itself)
        loaded = loaded.state_dict()
    sd = unwrap(loaded)
    if a.only_prefix:
        sd = {k[len(a.only_prefix):]: v for k, v in sd.items() if k.startswith(a.only_prefix)}
        if not sd:
            sys.exit(f"convert_encoder: no tensor is under '{a.only_prefix}'")
    for pair in a.rename:
        old, sep, new = pair.partition("=")
        if not sep:
            sys.exit(f"convert_encoder: --rename '{pair}' is not OLD=NEW")
        sd = {k.replace(old, new): v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not any(k.startswith(d) for d in a.drop)}
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
