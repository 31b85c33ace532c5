#pragma once
// The timm-style ViTs of the reference: MAE (mae-vit-l), MoCo v3 (mocov3-vit-{s,b,l}), DINO
// (dino-vit-{s,b}) and I-JEPA (jepa-vit-h). DINOv2's names without LayerScale, registers or
// mask token; LayerNorm eps 1e-6, exact GELU; /255 -> ImageNet mean/std (-> bicubic to 224 for
// JEPA's patch 14); the position table resampled once as timm; the final norm except for MAE
// (whose target the reference takes before it); JEPA has no class token.

#include <string>
#include <string_view>
#include <vector>

#include "irepa/models/vit/dinov2.hpp"

namespace irepa {

/// mae-vit-l, mocov3-vit-{s,b,l}, dino-vit-{s,b}, jepa-vit-h; an unknown name is an error.
inline VitConfig timm_config_from_name(std::string_view name, std::int64_t resolution) {
  VitConfig c;
  c.family = VitFamily::Timm, c.resolution = resolution, c.layerscale = false, c.norm_eps = 1e-6;
  auto size = [&](std::int64_t D, std::int64_t depth, std::int64_t heads, std::int64_t patch) {
    c.embed_dim = D, c.depth = depth, c.heads = heads, c.patch = patch;
  };
  if (name == "mae-vit-l") {
    IREPA_CHECK(resolution == 256, "ViT encoder 'mae-vit-l' works at 256 only (as the reference), not {}", resolution);
    c.final_norm = false;
    size(1024, 24, 16, 16);
  } else if (name == "mocov3-vit-s" || name == "mocov3-vit-b" || name == "mocov3-vit-l") {
    const char z = name.back();
    z == 's' ? size(384, 12, 12, 16) : z == 'b' ? size(768, 12, 12, 16) : size(1024, 24, 16, 16);
  } else if (name == "dino-vit-s" || name == "dino-vit-b") {
    name.back() == 's' ? size(384, 12, 6, 16) : size(768, 12, 12, 16);
  } else if (name == "jepa-vit-h") {
    c.cls_token = false;
    size(1280, 32, 16, 14);
  } else {
    fail("ViT encoder '{}' is not a timm-style name (mae-vit-l, mocov3-vit-{{s,b,l}}, dino-vit-{{s,b}}, jepa-vit-h)", name);
  }
  return c;
}

namespace vit {

struct TimmLayout {
  static constexpr bool flat_pos_embed = false;
  static std::string pos_embed() { return "pos_embed"; }
  /// MAE's final norm is in the file but not in the target.
  static std::vector<std::string> unused(const VitConfig& c) {
    return c.final_norm ? std::vector<std::string>{} : std::vector<std::string>{"norm.weight", "norm.bias"};
  }
  template <class Enc, class V>
  static void visit(Enc& e, V& v, std::string_view prefix) {
    if (e.config.cls_token) v(join_name(prefix, "cls_token"), e.cls_token);
    visit_dino_layout(e, v, prefix, [&](auto& b, const std::string& p) {
      b.mlp.fc1.visit_params(v, p + "mlp.fc1");
      b.mlp.fc2.visit_params(v, p + "mlp.fc2");
    });
  }
};

}  // namespace vit
}  // namespace irepa
