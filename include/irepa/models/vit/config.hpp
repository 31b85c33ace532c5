#pragma once
// What a ViT target encoder is: its family (which fixes the checkpoint's names, the
// preprocessing and a few architectural choices) and its sizes. The families' files
// (dinov2.hpp, dinov3.hpp, open_clip.hpp, timm.hpp, siglip.hpp, webssl.hpp) map the reference's
// names to configs and give each family's released parameter names.

#include <array>
#include <cstdint>

#include "irepa/nn/vit_layers.hpp"
#include "irepa/ops/resize.hpp"

namespace irepa {

enum class VitFamily { DINOv2, DINOv3, PE, CLIP, Timm, SigLIP, HFDinov2 };

/// How a family prepares uint8 images: /255, then mean/std and a resize, in the family's order.
struct VitPreprocessing {
  std::array<double, 3> mean, std;
  ops::ResizeMode mode;
  bool antialias;
  bool normalize_first;  // mean/std before the resize (DINOv2, timm, SigLIP) or after it
};

struct VitConfig {
  VitFamily family = VitFamily::DINOv2;
  std::int64_t embed_dim = 768, depth = 12, heads = 12, patch = 14;
  double mlp_ratio = 4.0;
  std::int64_t registers = 0;   // register (DINOv2) / storage (DINOv3) tokens after the class token, no position
  bool layerscale = true;
  double norm_eps = 1e-6;
  std::int64_t resolution = 256;  // the uint8 images' size; the token grid is 16 per 256 pixels
  std::int64_t block_chunks = 0;  // DINOv2's BlockChunk naming: 0 -> blocks.<i>., else blocks.<c>.<i>.
  bool mask_k_bias = false;       // DINOv3: qkv bias multiplied by attn.qkv.bias_mask (k part zero)
  bool cls_token = true;          // PE-G, JEPA and SigLIP have none
  bool final_norm = true;         // the target after the final norm (PE: before ln_post unless "...norm")
  std::int64_t mlp_dim = 0;       // MLP width when not embed_dim * mlp_ratio (PE-G: 8960)
  VitActivation activation = VitActivation::Gelu;
  bool swiglu = false;            // DINOv2-g: SwiGLU MLP (mlp.w12 [2H, D], mlp.w3 [D, H])
  std::int64_t swiglu_align = 8;  // SwiGLU width rounded up to this (DINOv3-7B's swiglu64: 64)
  bool qkv_bias = true;           // DINOv3-7B: no attn.qkv.bias (nor its mask)
  double cls_mix = 0.0;           // dinov2mixed: target = cls_mix cls + (1 - cls_mix) patch (the reference's alpha 0.1)

  bool rope() const { return family == VitFamily::DINOv3 || family == VitFamily::PE; }
  bool pos_table() const { return family != VitFamily::DINOv3; }
  bool pe() const { return family == VitFamily::PE; }
  /// PE and CLIP share open_clip's layout: ln_pre, conv1 without bias.
  bool open_clip_names() const { return family == VitFamily::PE || family == VitFamily::CLIP; }
  /// Separate q, k, v projections in the checkpoint (fused into one at load).
  bool separate_qkv() const { return family == VitFamily::SigLIP || family == VitFamily::HFDinov2; }
  /// DINOv3's SwiGLU keeps its two input projections apart (mlp.w1, mlp.w2; fused at load).
  bool split_swiglu() const { return family == VitFamily::DINOv3 && swiglu; }
  VitPreprocessing preprocessing() const {
    static constexpr std::array<double, 3> imagenet_mean{0.485, 0.456, 0.406}, imagenet_std{0.229, 0.224, 0.225};
    static constexpr std::array<double, 3> clip_mean{0.48145466, 0.4578275, 0.40821073}, clip_std{0.26862954, 0.26130258, 0.27577711};
    switch (family) {
      case VitFamily::DINOv3: return {imagenet_mean, imagenet_std, ops::ResizeMode::Bilinear, true, false};
      case VitFamily::PE: return {{0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}, ops::ResizeMode::Bilinear, false, false};
      case VitFamily::CLIP: return {clip_mean, clip_std, ops::ResizeMode::Bicubic, false, false};
      default: return {imagenet_mean, imagenet_std, ops::ResizeMode::Bicubic, false, true};
    }
  }
  std::int64_t prefix_tokens() const { return (cls_token ? 1 : 0) + registers; }

  std::int64_t grid() const { return 16 * (resolution / 256); }
  std::int64_t input_size() const { return grid() * patch; }  // 224 for patch 14 at 256
  std::int64_t mlp_hidden() const {
    if (mlp_dim > 0) return mlp_dim;
    const auto h = static_cast<std::int64_t>(static_cast<double>(embed_dim) * mlp_ratio);
    return swiglu ? (h * 2 / 3 + swiglu_align - 1) / swiglu_align * swiglu_align : h;  // SwiGLUFFN(Fused)
  }
  /// The blocks' layers as this config builds them.
  nn::VitBlockOptions block_options() const {
    return {.dim = embed_dim,
            .hidden = mlp_hidden(),
            .norm_eps = norm_eps,
            .layerscale = layerscale,
            .attention = {.bias = qkv_bias, .separate = separate_qkv(), .k_mask = mask_k_bias && qkv_bias},
            .mlp = {.activation = activation, .swiglu = swiglu, .split = split_swiglu()}};
  }
};

}  // namespace irepa
