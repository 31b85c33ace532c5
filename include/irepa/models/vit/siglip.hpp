#pragma once
// SigLIP / SigLIP2 (siglip-vit-{b,l,so400m}, siglip2-vit-{b,l,so400m,g}) as HuggingFace's
// SiglipVisionModel: no class token, gelu-tanh, LayerNorm eps 1e-6; /255 -> ImageNet mean/std
// -> bicubic; the target after post_layernorm. Names under "vision_model." in a full
// checkpoint: embeddings.patch_embedding, embeddings.position_embedding.weight [N, D],
// encoder.layers.<i>.{layer_norm1, self_attn.{q,k,v}_proj (fused at load), self_attn.out_proj,
// layer_norm2, mlp.fc1, mlp.fc2}, post_layernorm; the pooling head is not read.

#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/error.hpp"
#include "irepa/models/vit/config.hpp"

namespace irepa {

inline VitConfig siglip_config_from_name(std::string_view name, std::int64_t resolution) {
  const bool v2 = name.starts_with("siglip2-vit-");
  IREPA_CHECK(v2 || name.starts_with("siglip-vit-"), "ViT encoder '{}' is not a SigLIP name (siglip[2]-vit-<size>)", name);
  IREPA_CHECK(resolution == 256, "ViT encoder '{}' works at 256 only (as the reference), not {}", name, resolution);
  VitConfig c;
  c.family = VitFamily::SigLIP, c.resolution = resolution, c.layerscale = false, c.norm_eps = 1e-6;
  c.cls_token = false, c.activation = VitActivation::GeluTanh;
  auto size = [&](std::int64_t D, std::int64_t depth, std::int64_t heads, std::int64_t patch) {
    c.embed_dim = D, c.depth = depth, c.heads = heads, c.patch = patch;
  };
  const std::string_view z = name.substr(name.rfind('-') + 1);
  if (z == "b") size(768, 12, 12, 16);
  else if (z == "l") size(1024, 24, 16, 16);
  else if (z == "so400m") size(1152, 27, 16, v2 ? 16 : 14), c.mlp_dim = 4304;
  else if (z == "g" && v2) size(1536, 40, 16, 16), c.mlp_dim = 6144;
  else fail("ViT encoder '{}': size '{}' is not known (b, l, so400m{})", name, z, v2 ? ", g" : "");
  return c;
}

namespace vit {

struct SiglipLayout {
  static constexpr bool flat_pos_embed = true;
  static std::string pos_embed() { return "embeddings.position_embedding.weight"; }
  static std::vector<std::string> unused(const VitConfig&) {
    return {"head.probe",          "head.attention.in_proj_weight", "head.attention.in_proj_bias", "head.attention.out_proj.weight",
            "head.attention.out_proj.bias", "head.layernorm.weight", "head.layernorm.bias",  "head.mlp.fc1.weight",
            "head.mlp.fc1.bias",   "head.mlp.fc2.weight",           "head.mlp.fc2.bias"};
  }
  template <class Enc, class V>
  static void visit(Enc& e, V& v, std::string_view prefix) {
    v(join_name(prefix, "embeddings.patch_embedding.weight"), e.patch_embed.weight);
    v(join_name(prefix, "embeddings.patch_embedding.bias"), e.patch_embed.bias);
    for (std::size_t i = 0; i < e.blocks.size(); ++i) {
      auto& b = e.blocks[i];
      const std::string p = join_name(prefix, "encoder.layers." + std::to_string(i) + ".");
      b.norm1.visit_params(v, p + "layer_norm1");
      b.attn.q.visit_params(v, p + "self_attn.q_proj");
      b.attn.k.visit_params(v, p + "self_attn.k_proj");
      b.attn.v.visit_params(v, p + "self_attn.v_proj");
      b.attn.proj.visit_params(v, p + "self_attn.out_proj");
      b.norm2.visit_params(v, p + "layer_norm2");
      b.mlp.fc1.visit_params(v, p + "mlp.fc1");
      b.mlp.fc2.visit_params(v, p + "mlp.fc2");
    }
    e.norm.visit_params(v, join_name(prefix, "post_layernorm"));
  }
};

}  // namespace vit
}  // namespace irepa
