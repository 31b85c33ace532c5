#pragma once
// The open_clip layout: Perception Encoder (pe / spatialpe / langpe) and CLIP (clip-vit-L).
// PE: /255 -> bilinear to patch * 16 (no antialias) -> mean/std 0.5 -> conv1 without bias ->
// [cls (if the model has one), patches] + the learned table (bilinearly resized from the
// pretraining grid, class row kept) -> ln_pre -> blocks (LayerScale when the model has it,
// LayerNorm eps 1e-5, exact GELU) with 2-D RoPE on q and k (interleaved pairs, column angles
// then row angles, positions from 1 when there is a class token, identity for it) -> the last
// block's output, before ln_post (the "...norm" names apply ln_post).
// CLIP: the same layout without RoPE, QuickGELU; /255 -> bicubic to 224 -> CLIP mean/std; the
// table resampled once as timm; the last block before ln_post.
// Names: conv1, class_embedding, positional_embedding [N, D], ln_pre,
// transformer.resblocks.<i>.{ln_1, attn.in_proj_*, attn.out_proj, ls_1.gamma, ln_2, mlp.c_fc,
// mlp.c_proj, ls_2.gamma}, ln_post; the pooling head and projection are not read.

#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/error.hpp"
#include "irepa/models/vit/config.hpp"

namespace irepa {

/// pe-vit-{t,s,b,l,g} (PE-Core-T16/S16/B16/L14/G14; a "norm" suffix, e.g. pe-vit-lnorm, takes
/// the target after ln_post), spatialpe-vit-{b,l,g} (PE-Spatial) and langpe-vit-{l,g} (PE-Lang),
/// the last two without ln_post.
inline VitConfig pe_config_from_name(std::string_view name, std::int64_t resolution) {
  VitConfig c;
  c.family = VitFamily::PE, c.resolution = resolution, c.norm_eps = 1e-5, c.layerscale = false, c.final_norm = false;
  const std::string_view kind = name.substr(0, name.find('-'));
  std::string_view size = name.substr(name.rfind('-') + 1);
  const bool norm = size.ends_with("norm");
  if (norm) size.remove_suffix(4);
  IREPA_CHECK(!norm || kind == "pe", "ViT encoder '{}': {} models have no ln_post, so there is no 'norm' variant", name, kind);
  c.final_norm = norm;
  const bool known = (kind == "pe" && (size == "t" || size == "s" || size == "b" || size == "l" || size == "g")) ||
                     (kind == "spatialpe" && (size == "b" || size == "l" || size == "g")) ||
                     (kind == "langpe" && (size == "l" || size == "g"));
  IREPA_CHECK(known, "ViT encoder '{}' is not known; PE names: pe-vit-{{t,s,b,l,g}}[norm], spatialpe-vit-{{b,l,g}}, langpe-vit-{{l,g}}",
              name);
  if (size == "t") c.embed_dim = 192, c.depth = 12, c.heads = 3, c.patch = 16;
  else if (size == "s") c.embed_dim = 384, c.depth = 12, c.heads = 6, c.patch = 16;
  else if (size == "b") c.embed_dim = 768, c.depth = 12, c.heads = 12, c.patch = 16;
  else if (size == "l") c.embed_dim = 1024, c.depth = 24, c.heads = 16, c.patch = 14;
  else c.embed_dim = 1536, c.depth = 50, c.heads = 16, c.patch = 14, c.mlp_dim = 8960, c.cls_token = false;
  if (kind == "langpe") c.depth = size == "l" ? 23 : 47, c.layerscale = true;
  if (kind == "spatialpe" && size == "g") c.layerscale = true;
  return c;
}

/// clip-vit-L (OpenAI's ViT-L/14 in open_clip's layout).
inline VitConfig clip_config_from_name(std::string_view name, std::int64_t resolution) {
  IREPA_CHECK(name == "clip-vit-L", "ViT encoder '{}' is not a CLIP name (clip-vit-L)", name);
  VitConfig c;
  c.family = VitFamily::CLIP, c.resolution = resolution, c.layerscale = false, c.norm_eps = 1e-5;
  c.activation = VitActivation::QuickGelu, c.final_norm = false;
  c.embed_dim = 1024, c.depth = 24, c.heads = 16, c.patch = 14;
  return c;
}

namespace vit {

struct OpenClipLayout {
  static constexpr bool flat_pos_embed = true;  // [N, D]
  static std::string pos_embed() { return "positional_embedding"; }
  static std::vector<std::string> unused(const VitConfig& c) {
    std::vector<std::string> u = {"proj"};
    for (const char* t : {"attn_pool.probe", "attn_pool.attn.in_proj_weight", "attn_pool.attn.in_proj_bias",
                          "attn_pool.attn.out_proj.weight", "attn_pool.attn.out_proj.bias", "attn_pool.layernorm.weight",
                          "attn_pool.layernorm.bias", "attn_pool.mlp.c_fc.weight", "attn_pool.mlp.c_fc.bias",
                          "attn_pool.mlp.c_proj.weight", "attn_pool.mlp.c_proj.bias"})
      u.emplace_back(t);
    if (!c.final_norm) u.insert(u.end(), {"ln_post.weight", "ln_post.bias"});
    return u;
  }
  template <class Enc, class V>
  static void visit(Enc& e, V& v, std::string_view prefix) {
    v(join_name(prefix, "conv1.weight"), e.patch_embed.weight);
    if (e.config.cls_token) v(join_name(prefix, "class_embedding"), e.cls_token);
    e.pre_norm.visit_params(v, join_name(prefix, "ln_pre"));
    for (std::size_t i = 0; i < e.blocks.size(); ++i) {
      auto& b = e.blocks[i];
      const std::string p = join_name(prefix, "transformer.resblocks." + std::to_string(i) + ".");
      b.norm1.visit_params(v, p + "ln_1");
      v(p + "attn.in_proj_weight", b.attn.qkv.weight), v(p + "attn.in_proj_bias", b.attn.qkv.bias);
      b.attn.proj.visit_params(v, p + "attn.out_proj");
      b.ls1.visit_params(v, p + "ls_1.gamma");
      b.norm2.visit_params(v, p + "ln_2");
      b.mlp.fc1.visit_params(v, p + "mlp.c_fc");
      b.mlp.fc2.visit_params(v, p + "mlp.c_proj");
      b.ls2.visit_params(v, p + "ls_2.gamma");
    }
    if (e.config.final_norm) e.norm.visit_params(v, join_name(prefix, "ln_post"));
  }
};

}  // namespace vit
}  // namespace irepa
