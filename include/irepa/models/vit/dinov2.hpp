#pragma once
// DINOv2 (Oquab et al.; facebookresearch/dinov2's hub models), with or without registers, and
// the reference's dinov2mixed variant. uint8 [B, 3, 256, 256] -> /255 -> ImageNet mean/std ->
// bicubic to 224 (no antialias) -> conv patch 14 -> [cls, 4 registers?, patches] with learned
// positions (the released 37x37 table resampled once to 16x16 as timm's resample_abs_pos_embed)
// -> blocks x + ls1 * attn(norm1 x), x + ls2 * mlp(norm2 x) (LayerNorm eps 1e-6, exact GELU;
// -g: SwiGLU mlp.w12 / mlp.w3, width rounded up to a multiple of 8) -> final norm -> patches.
//
// Released names: cls_token, register_tokens, mask_token, pos_embed, patch_embed.proj.*,
// blocks.<i>. (or BlockChunk's blocks.<c>.<i>.) {norm1, attn.qkv, attn.proj, ls1.gamma, norm2,
// mlp.fc1 | mlp.w12, mlp.fc2 | mlp.w3, ls2.gamma}, norm. DINOv3 and the timm ViTs share this
// layout (dinov3.hpp, timm.hpp use the helpers below).

#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/error.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/vit/config.hpp"

namespace irepa {

/// dinov2-vit-{s,b,l,g}, dinov2reg-vit-*, dinov2mixed-vit-*, dinov2mixedreg-vit-* (the mixed
/// ones: the same weights; the reference mixes the normed class token into every patch token
/// with alpha 0.1).
inline VitConfig dinov2_config_from_name(std::string_view name, std::int64_t resolution) {
  VitConfig c;
  c.resolution = resolution;
  const bool mixed = name.starts_with("dinov2mixed-vit-") || name.starts_with("dinov2mixedreg-vit-");
  const bool reg = name.starts_with("dinov2reg-vit-") || name.starts_with("dinov2mixedreg-vit-");
  IREPA_CHECK(mixed || reg || name.starts_with("dinov2-vit-"),
              "ViT encoder '{}' is not a DINOv2 name (dinov2[mixed][reg]-vit-{{s,b,l,g}})", name);
  if (mixed) c.cls_mix = 0.1;
  const std::string_view size = name.substr(name.rfind('-') + 1);
  if (size == "s") c.embed_dim = 384, c.depth = 12, c.heads = 6;
  else if (size == "b") c.embed_dim = 768, c.depth = 12, c.heads = 12;
  else if (size == "l") c.embed_dim = 1024, c.depth = 24, c.heads = 16;
  else if (size == "g") c.embed_dim = 1536, c.depth = 40, c.heads = 24, c.swiglu = true;
  else fail("ViT encoder '{}': size '{}' is not known (s, b, l, g)", name, size);
  c.registers = reg ? 4 : 0;
  return c;
}

namespace vit {

/// "blocks.<i>." or, with DINOv2's BlockChunk naming, "blocks.<c>.<i>." under prefix.
inline std::string dino_block_prefix(const VitConfig& c, std::string_view prefix, std::int64_t i) {
  std::string p = c.block_chunks <= 0 ? "blocks." + std::to_string(i) + "."
                                      : "blocks." + std::to_string(i / ((c.depth + c.block_chunks - 1) / c.block_chunks)) + "." +
                                            std::to_string(i) + ".";
  return join_name(prefix, p);
}

/// Whether a checkpoint uses BlockChunk names (blocks.<c>.<i>.), and how many chunks (0: plain).
inline std::int64_t detect_block_chunks(const io::SafeTensorsFile& f, std::string_view prefix, std::int64_t depth) {
  const std::string pre(prefix);
  if (f.contains(pre + "blocks.0.norm1.weight")) return 0;
  for (std::int64_t chunks = 1; chunks <= depth; ++chunks) {
    const std::int64_t per = (depth + chunks - 1) / chunks, last = depth - 1;
    if (f.contains(pre + "blocks.0.0.norm1.weight") &&
        f.contains(pre + "blocks." + std::to_string(last / per) + "." + std::to_string(last) + ".norm1.weight"))
      return chunks;
  }
  return 0;
}

/// A DINO-layout block up to its MLP: norm1, attn.qkv (+ DINOv3's bias_mask), attn.proj, ls1, norm2.
template <class Block, class V>
void visit_dino_attention(Block& b, V& v, const std::string& p) {
  b.norm1.visit_params(v, p + "norm1");
  b.attn.qkv.visit_params(v, p + "attn.qkv");
  if (b.attn.options.k_mask) v(p + "attn.qkv.bias_mask", b.attn.bias_mask);
  b.attn.proj.visit_params(v, p + "attn.proj");
  b.ls1.visit_params(v, p + "ls1.gamma");
  b.norm2.visit_params(v, p + "norm2");
}

/// The patch embedding, final norm and blocks of the DINO layout; the MLP names are the family's.
template <class Enc, class V, class Mlp>
void visit_dino_layout(Enc& e, V& v, std::string_view prefix, Mlp&& visit_mlp) {
  e.patch_embed.visit_params(v, join_name(prefix, "patch_embed"));
  for (std::size_t i = 0; i < e.blocks.size(); ++i) {
    auto& b = e.blocks[i];
    const std::string p = dino_block_prefix(e.config, prefix, static_cast<std::int64_t>(i));
    visit_dino_attention(b, v, p);
    visit_mlp(b, p);
    b.ls2.visit_params(v, p + "ls2.gamma");
  }
  if (e.config.final_norm) e.norm.visit_params(v, join_name(prefix, "norm"));
}

struct Dinov2Layout {
  static constexpr bool flat_pos_embed = false;  // [1, N, D]
  static std::string pos_embed() { return "pos_embed"; }
  static std::vector<std::string> unused(const VitConfig&) { return {}; }
  template <class Enc, class V>
  static void visit(Enc& e, V& v, std::string_view prefix) {
    v(join_name(prefix, "cls_token"), e.cls_token);
    if (e.config.registers > 0) v(join_name(prefix, "register_tokens"), e.register_tokens);
    v(join_name(prefix, "mask_token"), e.mask_token);
    visit_dino_layout(e, v, prefix, [&](auto& b, const std::string& p) {
      b.mlp.fc1.visit_params(v, p + (e.config.swiglu ? "mlp.w12" : "mlp.fc1"));
      b.mlp.fc2.visit_params(v, p + (e.config.swiglu ? "mlp.w3" : "mlp.fc2"));
    });
  }
};

}  // namespace vit
}  // namespace irepa
