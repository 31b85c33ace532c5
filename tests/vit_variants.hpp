#pragma once
// One small model of every ViT family and variant the library implements, for tests that run
// one random checkpoint (write_random_vit_checkpoint: the released names and layouts) on two
// element types or devices. Width 32, 2 heads (head dim 16, as RoPE needs a multiple of 4),
// depth 2, patch 2 (a 32 x 32 input at resolution 256), MLP width 48.

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <irepa/models/vit_encoder.hpp>

namespace irepa::test {

struct VitVariant {
  std::string name;
  VitConfig config;
};

inline std::vector<VitVariant> small_vit_variants() {
  auto shrink = [](std::string name, VitConfig c) {
    c.embed_dim = 32, c.heads = 2, c.depth = 2, c.patch = 2, c.mlp_dim = 48;
    return VitVariant{std::move(name), c};
  };
  std::vector<VitVariant> out;
  for (const char* n : {"dinov2-vit-b", "dinov2reg-vit-s", "dinov2mixed-vit-s", "dinov2-vit-g", "dinov3-vit-b16", "dinov3-vit-h16plus",
                        "dinov3-vit-7b16", "pe-vit-b", "pe-vit-g", "pe-vit-lnorm", "langpe-vit-l", "spatialpe-vit-g", "clip-vit-L",
                        "mae-vit-l", "mocov3-vit-b", "dino-vit-s", "jepa-vit-h", "siglip-vit-so400m", "siglip2-vit-b"})
    out.push_back(shrink(n, vit_config_from_name(n)));
  out.push_back(shrink("webssl (HF Dinov2Model, SwiGLU)", vit_config_from_hf_dinov2(nlohmann::json::parse(
                                                               R"({"model_type": "dinov2", "hidden_size": 32, "num_hidden_layers": 2,
                                                                   "num_attention_heads": 2, "patch_size": 2, "use_swiglu_ffn": true})"))));
  return out;
}

}  // namespace irepa::test
