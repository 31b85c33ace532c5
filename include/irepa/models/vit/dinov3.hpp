#pragma once
// DINOv3 (Siméoni et al.; facebookresearch/dinov3's hub models) s16, b16, l16, h16plus, 7b16.
// uint8 -> /255 -> resize to 256 (bilinear, antialias) -> ImageNet mean/std -> conv patch 16 ->
// [cls, 4 storage tokens, patches] without a position table; RoPE on the patch tokens' q and k
// (half-split rotation, angles 2 pi c / period for c = 2 (i + 0.5) / 16 - 1 per axis, periods
// from the checkpoint), the k part of the qkv bias masked to zero, LayerNorm eps 1e-5.
// H+ and 7B use SwiGLU MLPs (mlp.w1, mlp.w2 fused at load, mlp.w3); the 7B has no qkv bias and
// a SwiGLU width rounded to 64. Names: DINOv2's layout with storage_tokens, attn.qkv.bias_mask
// and rope_embed.periods.

#include <string>
#include <string_view>
#include <vector>

#include "irepa/models/vit/dinov2.hpp"

namespace irepa {

/// dinov3-vit-{s16,b16,l16,h16plus,7b16}.
inline VitConfig dinov3_config_from_name(std::string_view name, std::int64_t resolution) {
  IREPA_CHECK(name.starts_with("dinov3-vit-"), "ViT encoder '{}' is not a DINOv3 name (dinov3-vit-<size>)", name);
  VitConfig c;
  c.resolution = resolution;
  const std::string_view size = name.substr(11);
  c.family = VitFamily::DINOv3, c.patch = 16, c.registers = 4, c.norm_eps = 1e-5, c.mask_k_bias = true;
  if (size == "s16") c.embed_dim = 384, c.depth = 12, c.heads = 6;
  else if (size == "b16") c.embed_dim = 768, c.depth = 12, c.heads = 12;
  else if (size == "l16") c.embed_dim = 1024, c.depth = 24, c.heads = 16;
  else if (size == "h16plus") c.embed_dim = 1280, c.depth = 32, c.heads = 20, c.mlp_ratio = 6.0, c.swiglu = true;
  else if (size == "7b16")  // dinov3_vit7b16: swiglu64, no qkv bias; its local_cls_norm is for training crops only
    c.embed_dim = 4096, c.depth = 40, c.heads = 32, c.mlp_ratio = 3.0, c.swiglu = true, c.swiglu_align = 64, c.qkv_bias = false;
  else fail("ViT encoder '{}': size '{}' is not known (s16, b16, l16, h16plus, 7b16)", name, size);
  return c;
}

namespace vit {

struct Dinov3Layout {
  static constexpr bool flat_pos_embed = false;
  static std::string pos_embed() { return {}; }  // none: RoPE only
  /// The 7B's norm for local crops, used only in training.
  static std::vector<std::string> unused(const VitConfig&) { return {"local_cls_norm.weight", "local_cls_norm.bias"}; }
  template <class Enc, class V>
  static void visit(Enc& e, V& v, std::string_view prefix) {
    v(join_name(prefix, "cls_token"), e.cls_token);
    if (e.config.registers > 0) v(join_name(prefix, "storage_tokens"), e.register_tokens);
    v(join_name(prefix, "mask_token"), e.mask_token);
    visit_dino_layout(e, v, prefix, [&](auto& b, const std::string& p) {
      if (e.config.swiglu) {
        b.mlp.fc1.visit_params(v, p + "mlp.w1");
        b.mlp.gate.visit_params(v, p + "mlp.w2");
      } else {
        b.mlp.fc1.visit_params(v, p + "mlp.fc1");
      }
      b.mlp.fc2.visit_params(v, p + (e.config.swiglu ? "mlp.w3" : "mlp.fc2"));
    });
    v(join_name(prefix, "rope_embed.periods"), e.rope_periods);
  }
};

}  // namespace vit
}  // namespace irepa
