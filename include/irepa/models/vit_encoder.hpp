#pragma once
// Frozen ViT target encoders, forward only, loaded from safetensors with the original parameter
// names (REFERENCE.md section 6). Implemented families:
// - DINOv2 (with or without registers): uint8 [B, 3, 256, 256] -> /255 -> ImageNet mean/std ->
//   bicubic to 224 (F.interpolate, no antialias) -> conv patch 14 -> [cls, registers, patches]
//   with learned positions (cls and patches; the released 37x37 table is resampled once to
//   16x16, bicubic with antialias, as timm's resample_abs_pos_embed) -> blocks
//   x + ls1 * attn(norm1 x), x + ls2 * mlp(norm2 x) (LayerNorm eps 1e-6, exact GELU) -> final
//   norm -> the 256 patch tokens [B, 256, D].
// - DINOv3: /255 -> resize to 256 (bilinear, antialias) -> mean/std -> conv patch 16 -> [cls,
//   4 storage tokens, patches] without position table; RoPE on the patch tokens' q and k
//   (half-split rotation, angles 2 pi c / period for c = 2 (i + 0.5) / 16 - 1 per axis, periods
//   from the checkpoint), the k part of the qkv bias masked to zero, LayerNorm eps 1e-5.
// - Perception Encoder (pe / spatialpe / langpe): /255 -> bilinear to patch * 16 (no antialias)
//   -> mean/std 0.5 -> conv1 without bias -> [cls (if the model has one), patches] + the
//   learned table (bilinearly resized from the pretraining grid, class row kept) -> ln_pre ->
//   blocks (LayerScale when the model has it, LayerNorm eps 1e-5, exact GELU) with 2-D RoPE on
//   q and k (interleaved pairs, column angles then row angles, positions from 1 when there is a
//   class token, identity for it) -> the last block's output, before ln_post (the "...norm"
//   names apply ln_post). Original names: conv1, class_embedding, positional_embedding,
//   transformer.resblocks.<i>.{ln_1,attn.in_proj_*,attn.out_proj,ls_1,ln_2,mlp.c_fc,mlp.c_proj,ls_2}.
// - CLIP (clip-vit-L): the open_clip layout and names of PE without RoPE, QuickGELU; /255 ->
//   bicubic to 224 -> CLIP mean/std; table resampled once as timm; last block before ln_post.
// - timm-style ViTs (mae-vit-l, mocov3-vit-{s,b,l}, dino-vit-{s,b}, jepa-vit-h): DINOv2's names
//   without LayerScale, registers or mask token, LayerNorm eps 1e-6, exact GELU; /255 ->
//   ImageNet mean/std (-> bicubic to 224 for JEPA's patch 14); table resampled once as timm;
//   final norm except MAE; JEPA has no class token.
// - SigLIP / SigLIP2 (siglip-vit-{b,l,so400m}, siglip2-vit-{b,l,so400m,g}): HuggingFace's
//   SiglipVisionModel names under vision_model. (separate q, k, v projections, fused at load),
//   no class token, gelu-tanh, eps 1e-6; /255 -> ImageNet mean/std -> bicubic; after post_layernorm.
// - HuggingFace Dinov2Model (webssl-*): DINOv2 computed with HF's names (embeddings.*,
//   encoder.layer.<i>.attention.attention.{query,key,value}, layer_scale1.lambda1, mlp.fc1 or
//   mlp.weights_in / weights_out, layernorm); the architecture comes from the checkpoint's
//   config.json (vit_config_from_hf_dinov2).
// DINOv2-g uses the SwiGLU MLP (mlp.w12 / mlp.w3, hidden rounded up to a multiple of 8), as does
// DINOv3-H+ (mlp.w1, mlp.w2, mlp.w3; w1 and w2 fused at load).

#include <array>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"
#include "irepa/core/host_twin.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/io/params.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/ops/activation.hpp"
#include "irepa/ops/attention.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/ops/linear.hpp"
#include "irepa/ops/norm.hpp"
#include "irepa/ops/resize.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

enum class VitFamily { DINOv2, DINOv3, PE, CLIP, Timm, SigLIP, HFDinov2 };
enum class VitActivation { Gelu, QuickGelu, GeluTanh };

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
  /// PE and CLIP share open_clip's names (conv1, class_embedding, transformer.resblocks...).
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
};

/// Perception Encoder names as the reference maps them: pe-vit-{t,s,b,l,g} (PE-Core-T16/S16/
/// B16/L14/G14; a "norm" suffix, e.g. pe-vit-lnorm, takes the target after ln_post),
/// spatialpe-vit-{b,l,g} (PE-Spatial) and langpe-vit-{l,g} (PE-Lang), the last two without ln_post.
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

/// The other single-model families by the reference's names (see the header comment).
inline VitConfig other_config_from_name(std::string_view name, std::int64_t resolution) {
  VitConfig c;
  c.resolution = resolution, c.layerscale = false, c.norm_eps = 1e-6;
  auto size = [&](std::int64_t D, std::int64_t depth, std::int64_t heads, std::int64_t patch) {
    c.embed_dim = D, c.depth = depth, c.heads = heads, c.patch = patch;
  };
  if (name == "clip-vit-L") {
    c.family = VitFamily::CLIP, c.norm_eps = 1e-5, c.activation = VitActivation::QuickGelu, c.final_norm = false;
    size(1024, 24, 16, 14);
  } else if (name == "mae-vit-l") {
    IREPA_CHECK(resolution == 256, "ViT encoder 'mae-vit-l' works at 256 only (as the reference), not {}", resolution);
    c.family = VitFamily::Timm, c.final_norm = false;
    size(1024, 24, 16, 16);
  } else if (name == "mocov3-vit-s" || name == "mocov3-vit-b" || name == "mocov3-vit-l") {
    c.family = VitFamily::Timm;
    const char z = name.back();
    z == 's' ? size(384, 12, 12, 16) : z == 'b' ? size(768, 12, 12, 16) : size(1024, 24, 16, 16);
  } else if (name == "dino-vit-s" || name == "dino-vit-b") {
    c.family = VitFamily::Timm;
    name.back() == 's' ? size(384, 12, 6, 16) : size(768, 12, 12, 16);
  } else if (name == "jepa-vit-h") {
    c.family = VitFamily::Timm, c.cls_token = false;
    size(1280, 32, 16, 14);
  } else if (name.starts_with("siglip-vit-") || name.starts_with("siglip2-vit-")) {
    IREPA_CHECK(resolution == 256, "ViT encoder '{}' works at 256 only (as the reference), not {}", name, resolution);
    c.family = VitFamily::SigLIP, c.cls_token = false, c.activation = VitActivation::GeluTanh;
    const bool v2 = name.starts_with("siglip2-");
    const std::string_view z = name.substr(name.rfind('-') + 1);
    if (z == "b") size(768, 12, 12, 16);
    else if (z == "l") size(1024, 24, 16, 16);
    else if (z == "so400m") size(1152, 27, 16, v2 ? 16 : 14), c.mlp_dim = 4304;
    else if (z == "g" && v2) size(1536, 40, 16, 16), c.mlp_dim = 6144;
    else fail("ViT encoder '{}': size '{}' is not known (b, l, so400m{})", name, z, v2 ? ", g" : "");
  } else if (name.starts_with("webssl-")) {
    fail("ViT encoder '{}': WebSSL models take their architecture from the checkpoint's config.json "
         "(make_target_encoder reads <dir>/{}.json; vit_config_from_hf_dinov2 parses it)",
         name, name);
  } else if (name.starts_with("sam-vit-") || name.starts_with("sam2-vit-") || name.starts_with("vgg-") ||
             name.starts_with("hog-")) {
    fail("'{}' is not a ViT encoder: make_target_encoder builds it (SamEncoder, Sam2Encoder, VggEncoder, HogEncoder)", name);
  } else {
    fail("ViT encoder '{}' is not available in this build; implemented: dinov2[mixed][reg]-vit-{{s,b,l,g}}, "
         "dinov3-vit-{{s16,b16,l16,h16plus,7b16}}, pe-vit-{{t,s,b,l,g}}[norm], spatialpe-vit-{{b,l,g}}, langpe-vit-{{l,g}}, clip-vit-L, "
         "mae-vit-l, mocov3-vit-{{s,b,l}}, dino-vit-{{s,b}}, jepa-vit-h, siglip-vit-{{b,l,so400m}}, siglip2-vit-{{b,l,so400m,g}}, "
         "webssl-* (HF config.json); other encoders: sam-vit-{{b,l,h}}, sam2-vit-{{s,b,l}}, vgg-*, hog-*",
         name);
  }
  return c;
}

/// A HuggingFace Dinov2Model's config.json (as shipped beside the webssl-* weights) -> our
/// config. Only what Dinov2Model computes with the reference's inputs is accepted.
inline VitConfig vit_config_from_hf_dinov2(const nlohmann::json& j, std::int64_t resolution = 256) {
  VitConfig c;
  c.family = VitFamily::HFDinov2, c.resolution = resolution;
  try {
    const std::string type = j.value("model_type", std::string("dinov2"));
    IREPA_CHECK(type == "dinov2", "HF config: model_type '{}' is not dinov2", type);
    const std::string act = j.value("hidden_act", std::string("gelu"));
    IREPA_CHECK(act == "gelu", "HF config: hidden_act '{}' is not implemented (gelu is)", act);
    IREPA_CHECK(j.value("qkv_bias", true), "HF config: qkv_bias false is not implemented");
    c.embed_dim = j.at("hidden_size").get<std::int64_t>();
    c.depth = j.at("num_hidden_layers").get<std::int64_t>();
    c.heads = j.at("num_attention_heads").get<std::int64_t>();
    c.patch = j.at("patch_size").get<std::int64_t>();
    c.mlp_ratio = j.value("mlp_ratio", 4.0);
    c.norm_eps = j.value("layer_norm_eps", 1e-6);
    c.swiglu = j.value("use_swiglu_ffn", false);
  } catch (const nlohmann::json::exception& e) {
    fail("HF Dinov2 config: a key is missing or has a wrong type: {}", e.what());
  }
  return c;
}

/// The reference's names: dinov2-vit-{s,b,l,g}, dinov2reg-vit-{s,b,l,g}, dinov2mixed(reg)-vit-{s,b,l,g},
/// dinov3-vit-{s16,b16,l16,h16plus,7b16},
/// the PE names of pe_config_from_name and those of other_config_from_name.
/// (DINOv3 H+ and 7B have SwiGLU MLPs; the 7B has no qkv bias.)
inline VitConfig vit_config_from_name(std::string_view name, std::int64_t resolution = 256) {
  if (name.starts_with("pe-vit-") || name.starts_with("spatialpe-vit-") || name.starts_with("langpe-vit-"))
    return pe_config_from_name(name, resolution);
  if (!name.starts_with("dinov2") && !name.starts_with("dinov3-")) return other_config_from_name(name, resolution);
  VitConfig c;
  c.resolution = resolution;
  if (name.starts_with("dinov3-vit-")) {
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
  // dinov2mixed(reg): the same models; the reference mixes the normed class token into every
  // patch token with alpha 0.1.
  const bool mixed = name.starts_with("dinov2mixed-vit-") || name.starts_with("dinov2mixedreg-vit-");
  const bool reg = name.starts_with("dinov2reg-vit-") || name.starts_with("dinov2mixedreg-vit-");
  if (!reg && !mixed && !name.starts_with("dinov2-vit-")) return other_config_from_name(name, resolution);
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

namespace detail {

/// The MLP's activation in place, on the context's device.
template <class T, class Ctx, class D = typename Ctx::device_type>
void vit_activate(const Ctx& ctx, Tensor<T, D>& m, VitActivation act) {
  if (act == VitActivation::Gelu) ops::gelu_forward<T>(ctx, m, m.view());
  else if (act == VitActivation::QuickGelu) ops::quick_gelu_forward<T>(ctx, m, m.view());
  else ops::gelu_tanh_forward<T>(ctx, m, m.view());  // SigLIP's gelu_pytorch_tanh
}

/// uint8-valued images [B, 3, R, R] -> /255 -> resized to S x S (torch's interpolate) -> ImageNet
/// mean/std: the preprocessing of the reference's SAM and VGG wrappers.
template <class T, class Ctx, class D = typename Ctx::device_type>
Tensor<T, D> resize_then_imagenet_normalise(const Ctx& ctx, ConstView<T, D> images, std::int64_t S, ops::ResizeMode mode) {
  Tensor<T, D> u(images.shape());
  ops::normalize_channels<T>(ctx, images, ops::ChannelNorm{.divisor = 255.0}, u.view());
  Tensor<T, D> r = ops::interpolate<T>(ctx, u, S, S, mode, false);
  ops::normalize_channels<T>(ctx, r, ops::ChannelNorm{.mean = {0.485, 0.456, 0.406, 0}, .std = {0.229, 0.224, 0.225, 1}}, r.view());
  return r;
}

/// LayerNorm over the last axis with weight and bias: y [rows, D] from x [rows, D].
template <class T, class Ctx, class D = typename Ctx::device_type>
void affine_layer_norm(const Ctx& ctx, const Tensor<T, D>& x, std::type_identity_t<ConstView<T, D>> w,
                       std::type_identity_t<ConstView<T, D>> b, std::type_identity_t<T> eps, Tensor<T, D>& y) {
  Tensor<T, D> rstd(Shape{x.shape().rows()});
  ops::layer_norm_forward<T>(ctx, x, eps, y.view(), rstd.view());
  ops::scale_shift_rows<T>(ctx, y.view(), w, b);
}

/// A host tensor's copy on device D (a plain copy on the CPU); set-up only.
template <class T, class D>
Tensor<T, D> device_copy(const Tensor<T>& host) {
  if (host.rank() == 0 && !host.data()) return {};  // never allocated (a part this family has not)
  Tensor<T, D> t(host.shape());
  if (host.numel() > 0) copy_from_host(t.view(), host.cview());
  return t;
}

}  // namespace detail

/// A frozen ViT encoder on device Dev: parameters by their released names in a flat arena, plus
/// what load prepares once from them on the host (fused projections, the masked qkv bias, the
/// resampled position table, the prefix tokens, RoPE tables) and copies to Dev.
template <class T, class Dev = Cpu>
struct VitEncoder {
  using scalar_type = T;
  using device_type = Dev;
  using Context = ContextOf<Dev>;
  using HostModel = VitEncoder<T, Cpu>;

  struct Block {
    Param<T, Dev> norm1_w, norm1_b, qkv_w, qkv_b, qkv_bias_mask, proj_w, proj_b, ls1, norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b, ls2;
    Param<T, Dev> q_w, q_b, k_w, k_b, v_w, v_b;  // SigLIP's / HF's separate projections (fused at load)
    Param<T, Dev> w1, b1, w2, b2;                // DINOv3's SwiGLU input projections [H, D], [H]
    // Prepared at load:
    Tensor<T, Dev> fused_w;                   // separate q, k, v stacked: [3D, D]
    Tensor<T, Dev> qkv_bias;                  // [3D]: the bias (fused; times DINOv3's mask), zeros without one
    Tensor<T, Dev> fused_fc1_w, fused_fc1_b;  // DINOv3's [w1; w2] as [2H, D], [2H]
    ConstView<T, Dev> fc1_weight(bool split) const { return split ? fused_fc1_w.cview() : ConstView<T, Dev>(fc1_w.value); }
    ConstView<T, Dev> fc1_bias(bool split) const { return split ? fused_fc1_b.cview() : ConstView<T, Dev>(fc1_b.value); }
    ConstView<T, Dev> qkv_weight(bool fused) const { return fused ? fused_w.cview() : ConstView<T, Dev>(qkv_w.value); }
  };

  VitConfig config;
  Param<T, Dev> patch_w, patch_b, cls_token, register_tokens, mask_token, norm_w, norm_b;
  Param<T, Dev> pre_norm_w, pre_norm_b;  // PE's and CLIP's ln_pre
  Param<T, Dev> rope_periods;            // DINOv3: [head_dim / 4], a buffer of the checkpoint
  std::vector<Block> blocks;
  // Prepared at load:
  Tensor<T, Dev> pos_grid;            // [grid^2, D] the patches' positions (resampled when the file's grid differs)
  Tensor<T, Dev> prefix_embed;        // [prefix tokens, D]: class token (+ its position), registers / storage tokens
  Tensor<T, Dev> rope_cos, rope_sin;  // [tokens, head_dim / 2] (RoPE families)

  explicit VitEncoder(const VitConfig& c) : config(c) {
    const std::int64_t D = c.embed_dim, H = c.mlp_hidden();
    IREPA_CHECK(D > 0 && c.heads > 0 && D % c.heads == 0 && c.depth > 0 && c.patch > 0 && c.resolution >= 256 &&
                    c.resolution % 256 == 0,
                "VitEncoder: width {}, {} heads, depth {}, patch {}, resolution {} (a multiple of 256) do not make an encoder", D,
                c.heads, c.depth, c.patch, c.resolution);
    patch_w = Param<T, Dev>(Shape{D, 3, c.patch, c.patch}), patch_b = Param<T, Dev>(Shape{D});
    cls_token = Param<T, Dev>(c.open_clip_names() ? Shape{D} : Shape{1, 1, D});
    pre_norm_w = Param<T, Dev>(Shape{D}), pre_norm_b = Param<T, Dev>(Shape{D});
    register_tokens = Param<T, Dev>(Shape{1, c.registers, D});
    mask_token = Param<T, Dev>(Shape{1, D});
    norm_w = Param<T, Dev>(Shape{D}), norm_b = Param<T, Dev>(Shape{D});
    blocks.resize(static_cast<std::size_t>(c.depth));
    for (auto& b : blocks) {
      b.norm1_w = Param<T, Dev>(Shape{D}), b.norm1_b = Param<T, Dev>(Shape{D}), b.norm2_w = Param<T, Dev>(Shape{D}), b.norm2_b = Param<T, Dev>(Shape{D});
      b.qkv_w = Param<T, Dev>(Shape{3 * D, D}), b.qkv_b = Param<T, Dev>(Shape{3 * D}), b.qkv_bias_mask = Param<T, Dev>(Shape{3 * D});
      b.proj_w = Param<T, Dev>(Shape{D, D}), b.proj_b = Param<T, Dev>(Shape{D});
      const std::int64_t H1 = c.swiglu ? 2 * H : H;  // SwiGLU: w12 gives both halves
      b.fc1_w = Param<T, Dev>(Shape{H1, D}), b.fc1_b = Param<T, Dev>(Shape{H1}), b.fc2_w = Param<T, Dev>(Shape{D, H}), b.fc2_b = Param<T, Dev>(Shape{D});
      for (auto* q : {&b.q_w, &b.k_w, &b.v_w}) *q = Param<T, Dev>(Shape{D, D});
      for (auto* q : {&b.q_b, &b.k_b, &b.v_b}) *q = Param<T, Dev>(Shape{D});
      b.w1 = Param<T, Dev>(Shape{H, D}), b.w2 = Param<T, Dev>(Shape{H, D}), b.b1 = Param<T, Dev>(Shape{H}), b.b2 = Param<T, Dev>(Shape{H});
      b.ls1 = Param<T, Dev>(Shape{D}), b.ls2 = Param<T, Dev>(Shape{D});
    }
    IREPA_CHECK(!c.rope() || (D / c.heads) % 4 == 0, "VitEncoder: RoPE needs a head dim divisible by 4, got {}", D / c.heads);
    rope_periods = Param<T, Dev>(Shape{(D / c.heads) / 4});
    IREPA_CHECK(!(c.family == VitFamily::DINOv2 && !c.cls_token) && !(c.family != VitFamily::DINOv2 && c.family != VitFamily::DINOv3 && c.registers > 0) &&
                    c.registers >= 0,
                "VitEncoder: this family cannot have cls {} / {} registers", c.cls_token, c.registers);
    arena_ = ParamArena<T, Dev>(*this);
  }
  VitEncoder(VitEncoder&&) noexcept = default;

  std::int64_t dim() const { return config.embed_dim; }
  std::int64_t tokens() const { return config.grid() * config.grid(); }
  const ParamArena<T, Dev>& params() const { return arena_; }
  ParamArena<T, Dev>& params() { return arena_; }
  HostModel host_twin() const { return HostModel(config); }

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    if (config.open_clip_names()) return visit_pe_params(v, prefix);
    if (config.family == VitFamily::SigLIP) return visit_siglip_params(v, prefix);
    if (config.family == VitFamily::HFDinov2) return visit_hf_dinov2_params(v, prefix);
    if (config.cls_token) v(join_name(prefix, "cls_token"), cls_token);
    if (config.registers > 0)
      v(join_name(prefix, config.family == VitFamily::DINOv3 ? "storage_tokens" : "register_tokens"), register_tokens);
    if (config.family != VitFamily::Timm) v(join_name(prefix, "mask_token"), mask_token);
    v(join_name(prefix, "patch_embed.proj.weight"), patch_w);
    v(join_name(prefix, "patch_embed.proj.bias"), patch_b);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      auto& b = blocks[i];
      const std::string p = join_name(prefix, block_prefix(static_cast<std::int64_t>(i)));
      v(p + "norm1.weight", b.norm1_w), v(p + "norm1.bias", b.norm1_b);
      v(p + "attn.qkv.weight", b.qkv_w);
      if (config.qkv_bias) v(p + "attn.qkv.bias", b.qkv_b);
      if (config.qkv_bias && config.mask_k_bias) v(p + "attn.qkv.bias_mask", b.qkv_bias_mask);
      v(p + "attn.proj.weight", b.proj_w), v(p + "attn.proj.bias", b.proj_b);
      if (config.layerscale) v(p + "ls1.gamma", b.ls1);
      v(p + "norm2.weight", b.norm2_w), v(p + "norm2.bias", b.norm2_b);
      if (config.split_swiglu()) {
        v(p + "mlp.w1.weight", b.w1), v(p + "mlp.w1.bias", b.b1);
        v(p + "mlp.w2.weight", b.w2), v(p + "mlp.w2.bias", b.b2);
      } else {
        v(p + (config.swiglu ? "mlp.w12." : "mlp.fc1.") + "weight", b.fc1_w);
        v(p + (config.swiglu ? "mlp.w12." : "mlp.fc1.") + "bias", b.fc1_b);
      }
      const char* fc2 = config.swiglu ? "mlp.w3." : "mlp.fc2.";
      v(p + fc2 + "weight", b.fc2_w), v(p + fc2 + "bias", b.fc2_b);
      if (config.layerscale) v(p + "ls2.gamma", b.ls2);
    }
    if (config.final_norm) {
      v(join_name(prefix, "norm.weight"), norm_w);
      v(join_name(prefix, "norm.bias"), norm_b);
    }
    if (config.rope()) v(join_name(prefix, "rope_embed.periods"), rope_periods);
  }

  /// Perception Encoder's names (the open_clip layout). The positional table is read by load().
  template <class V>
  void visit_pe_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "conv1.weight"), patch_w);
    if (config.cls_token) v(join_name(prefix, "class_embedding"), cls_token);
    v(join_name(prefix, "ln_pre.weight"), pre_norm_w), v(join_name(prefix, "ln_pre.bias"), pre_norm_b);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      auto& b = blocks[i];
      const std::string p = join_name(prefix, "transformer.resblocks." + std::to_string(i) + ".");
      v(p + "ln_1.weight", b.norm1_w), v(p + "ln_1.bias", b.norm1_b);
      v(p + "attn.in_proj_weight", b.qkv_w), v(p + "attn.in_proj_bias", b.qkv_b);
      v(p + "attn.out_proj.weight", b.proj_w), v(p + "attn.out_proj.bias", b.proj_b);
      if (config.layerscale) v(p + "ls_1.gamma", b.ls1);
      v(p + "ln_2.weight", b.norm2_w), v(p + "ln_2.bias", b.norm2_b);
      v(p + "mlp.c_fc.weight", b.fc1_w), v(p + "mlp.c_fc.bias", b.fc1_b);
      v(p + "mlp.c_proj.weight", b.fc2_w), v(p + "mlp.c_proj.bias", b.fc2_b);
      if (config.layerscale) v(p + "ls_2.gamma", b.ls2);
    }
    if (config.final_norm) v(join_name(prefix, "ln_post.weight"), norm_w), v(join_name(prefix, "ln_post.bias"), norm_b);
  }

  /// HuggingFace SiglipVisionModel's names (pass the "vision_model." prefix of a full checkpoint).
  template <class V>
  void visit_siglip_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "embeddings.patch_embedding.weight"), patch_w);
    v(join_name(prefix, "embeddings.patch_embedding.bias"), patch_b);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      auto& b = blocks[i];
      const std::string p = join_name(prefix, "encoder.layers." + std::to_string(i) + ".");
      v(p + "layer_norm1.weight", b.norm1_w), v(p + "layer_norm1.bias", b.norm1_b);
      v(p + "self_attn.q_proj.weight", b.q_w), v(p + "self_attn.q_proj.bias", b.q_b);
      v(p + "self_attn.k_proj.weight", b.k_w), v(p + "self_attn.k_proj.bias", b.k_b);
      v(p + "self_attn.v_proj.weight", b.v_w), v(p + "self_attn.v_proj.bias", b.v_b);
      v(p + "self_attn.out_proj.weight", b.proj_w), v(p + "self_attn.out_proj.bias", b.proj_b);
      v(p + "layer_norm2.weight", b.norm2_w), v(p + "layer_norm2.bias", b.norm2_b);
      v(p + "mlp.fc1.weight", b.fc1_w), v(p + "mlp.fc1.bias", b.fc1_b);
      v(p + "mlp.fc2.weight", b.fc2_w), v(p + "mlp.fc2.bias", b.fc2_b);
    }
    v(join_name(prefix, "post_layernorm.weight"), norm_w);
    v(join_name(prefix, "post_layernorm.bias"), norm_b);
  }

  /// HuggingFace Dinov2Model's names.
  template <class V>
  void visit_hf_dinov2_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "embeddings.cls_token"), cls_token);
    v(join_name(prefix, "embeddings.mask_token"), mask_token);
    v(join_name(prefix, "embeddings.patch_embeddings.projection.weight"), patch_w);
    v(join_name(prefix, "embeddings.patch_embeddings.projection.bias"), patch_b);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      auto& b = blocks[i];
      const std::string p = join_name(prefix, "encoder.layer." + std::to_string(i) + ".");
      v(p + "norm1.weight", b.norm1_w), v(p + "norm1.bias", b.norm1_b);
      v(p + "attention.attention.query.weight", b.q_w), v(p + "attention.attention.query.bias", b.q_b);
      v(p + "attention.attention.key.weight", b.k_w), v(p + "attention.attention.key.bias", b.k_b);
      v(p + "attention.attention.value.weight", b.v_w), v(p + "attention.attention.value.bias", b.v_b);
      v(p + "attention.output.dense.weight", b.proj_w), v(p + "attention.output.dense.bias", b.proj_b);
      v(p + "layer_scale1.lambda1", b.ls1);
      v(p + "norm2.weight", b.norm2_w), v(p + "norm2.bias", b.norm2_b);
      const char* fc1 = config.swiglu ? "mlp.weights_in." : "mlp.fc1.";
      const char* fc2 = config.swiglu ? "mlp.weights_out." : "mlp.fc2.";
      v(p + fc1 + "weight", b.fc1_w), v(p + fc1 + "bias", b.fc1_b);
      v(p + fc2 + "weight", b.fc2_w), v(p + fc2 + "bias", b.fc2_b);
      v(p + "layer_scale2.lambda1", b.ls2);
    }
    v(join_name(prefix, "layernorm.weight"), norm_w);
    v(join_name(prefix, "layernorm.bias"), norm_b);
  }

  /// The name of the learned position table in this family's checkpoints.
  std::string pos_embed_name() const {
    if (config.open_clip_names()) return "positional_embedding";
    if (config.family == VitFamily::SigLIP) return "embeddings.position_embedding.weight";
    if (config.family == VitFamily::HFDinov2) return "embeddings.position_embeddings";
    return "pos_embed";
  }
  /// Tensors of released checkpoints that the target does not use (pooling heads, projections,
  /// the final norm of a model whose target is taken before it); absent ones are fine.
  std::vector<std::string> unused_names() const {
    std::vector<std::string> u;
    if (config.open_clip_names()) {
      u = {"proj", "attn_pool.probe", "attn_pool.attn.in_proj_weight", "attn_pool.attn.in_proj_bias", "attn_pool.attn.out_proj.weight",
           "attn_pool.attn.out_proj.bias", "attn_pool.layernorm.weight", "attn_pool.layernorm.bias", "attn_pool.mlp.c_fc.weight",
           "attn_pool.mlp.c_fc.bias", "attn_pool.mlp.c_proj.weight", "attn_pool.mlp.c_proj.bias"};
      if (!config.final_norm) u.insert(u.end(), {"ln_post.weight", "ln_post.bias"});
    } else if (config.family == VitFamily::SigLIP) {
      u = {"head.probe", "head.attention.in_proj_weight", "head.attention.in_proj_bias", "head.attention.out_proj.weight",
           "head.attention.out_proj.bias", "head.layernorm.weight", "head.layernorm.bias", "head.mlp.fc1.weight", "head.mlp.fc1.bias",
           "head.mlp.fc2.weight", "head.mlp.fc2.bias"};
    } else if (config.family == VitFamily::DINOv3) {
      u = {"local_cls_norm.weight", "local_cls_norm.bias"};  // the 7B's norm for local crops, used only in training
    } else if (!config.final_norm) {
      u = {"norm.weight", "norm.bias"};
    }
    return u;
  }

  std::string block_prefix(std::int64_t i) const {
    if (config.block_chunks <= 0) return "blocks." + std::to_string(i) + ".";
    const std::int64_t per = (config.depth + config.block_chunks - 1) / config.block_chunks;
    return "blocks." + std::to_string(i / per) + "." + std::to_string(i) + ".";
  }

  /// Whether a checkpoint uses DINOv2's chunked block names (blocks.<c>.<i>.), and how many chunks.
  static std::int64_t detect_block_chunks(const io::SafeTensorsFile& f, std::string_view prefix, std::int64_t depth) {
    if (f.contains(std::string(prefix) + "blocks.0.norm1.weight")) return 0;
    for (std::int64_t chunks = 1; chunks <= depth; ++chunks) {
      const std::int64_t per = (depth + chunks - 1) / chunks;
      const std::int64_t last = depth - 1;
      if (f.contains(std::string(prefix) + "blocks.0.0.norm1.weight") &&
          f.contains(std::string(prefix) + "blocks." + std::to_string(last / per) + "." + std::to_string(last) + ".norm1.weight"))
        return chunks;
    }
    return 0;
  }

  /// Every parameter by its original name under prefix; pos_embed may hold another square grid
  /// (the released 37x37) and is then resampled to this grid. Missing or mis-shaped tensors are
  /// named in one error and nothing changes. On a device, the file is read into a host twin and
  /// what the forward needs is prepared there and copied up once.
  void load(const io::SafeTensorsFile& f, std::string_view prefix = {}) {
    update_through_host(*this, false, [&](HostModel& host) {
      const Tensor<T> table = host.read(f, prefix);
      prepare(host, table);
    });
  }

  /// This encoder on Dev from a loaded (or randomly initialised) host one: its arena and what
  /// load prepared, copied. A file is read and prepared once on the host, and the encoder is then
  /// placed where the model runs (the trainer does this for its online targets).
  static VitEncoder from_host(const HostModel& host) {
    VitEncoder e(host.config);
    copy_from_host(e.params().values(), ConstView<T>(host.params().values()));
    for (std::size_t l = 0; l < e.blocks.size(); ++l) {
      const auto& hb = host.blocks[l];
      auto& b = e.blocks[l];
      b.fused_w = detail::device_copy<T, Dev>(hb.fused_w), b.qkv_bias = detail::device_copy<T, Dev>(hb.qkv_bias);
      b.fused_fc1_w = detail::device_copy<T, Dev>(hb.fused_fc1_w), b.fused_fc1_b = detail::device_copy<T, Dev>(hb.fused_fc1_b);
    }
    e.pos_grid = detail::device_copy<T, Dev>(host.pos_grid), e.prefix_embed = detail::device_copy<T, Dev>(host.prefix_embed);
    e.rope_cos = detail::device_copy<T, Dev>(host.rope_cos), e.rope_sin = detail::device_copy<T, Dev>(host.rope_sin);
    return e;
  }

  /// Random weights of this architecture, N(0, std) (and a random position table), prepared as
  /// load would: for benchmarks, whose speed does not depend on the values.
  void init_random(std::uint64_t seed, T std) {
    update_through_host(*this, false, [&](HostModel& host) {
      Philox rng(seed);
      rng.normal(host.params().values(), T(0), std);
      Tensor<T> table;
      if (config.pos_table()) {
        table = Tensor<T>(Shape{1, (config.cls_token ? 1 : 0) + config.grid() * config.grid(), config.embed_dim});
        rng.normal(table.view(), T(0), std);
      }
      prepare(host, table);
    });
  }

  /// The arena's values from the file (a host model); returns the position table resampled to
  /// this grid, [1, cls + grid^2, D] (empty for a family without one).
  Tensor<T> read(const io::SafeTensorsFile& f, std::string_view prefix) {
    if (!config.pos_table()) {
      io::load_params(f, arena_, prefix, io::LoadParamsOptions{.read_by_caller = unused_names()});
      return {};
    }
    const std::string name = pos_embed_name();
    const std::string pk = std::string(prefix) + name;
    IREPA_CHECK(f.contains(pk), "VitEncoder: '{}' has no '{}'", f.path(), pk);
    const Shape ps = f.info(pk).shape;
    const std::int64_t cls = config.cls_token ? 1 : 0, D = config.embed_dim;
    const bool flat = config.open_clip_names() || config.family == VitFamily::SigLIP;  // [N, D] rather than [1, N, D]
    const bool shape_ok = flat ? ps.rank() == 2 && ps[1] == D : ps.rank() == 3 && ps[0] == 1 && ps[2] == D;
    const auto n = shape_ok ? ps[ps.rank() - 2] - cls : -1;
    const auto g = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(std::max<std::int64_t>(n, 0)))));
    IREPA_CHECK(shape_ok && n > 0 && g * g == n, "VitEncoder: '{}' has shape {}, expected {}{} + G*G, {}] ({}a square grid)", pk,
                ps.str(), flat ? "[" : "[1, ", cls, D, cls ? "a class position and " : "");
    std::vector<std::string> unused = unused_names();
    unused.push_back(name);
    io::load_params(f, arena_, prefix, io::LoadParamsOptions{.read_by_caller = unused});
    // HF's Dinov2Model resizes a table of another grid on the fly with its own rule (bicubic with
    // a 0.1 offset in the scale); that is not reproduced, so the table must fit.
    IREPA_CHECK(config.family != VitFamily::HFDinov2 || g == config.grid(),
                "VitEncoder: '{}' holds a {}x{} position grid; this HF Dinov2 model needs {}x{} at resolution {}", pk, g, g,
                config.grid(), config.grid(), config.resolution);
    const Tensor<T> stored = f.load<T>(pk);
    const auto table = stored.reshape(Shape{1, ps[ps.rank() - 2], D});
    return config.pe() ? resample_pos_embed(table, config.grid(), cls, ops::ResizeMode::Bilinear, false)
                       : resample_pos_embed(table, config.grid(), cls);  // timm's resample (bicubic, antialias)
  }

  /// What the forward needs beyond the arena, from a host model's values: the fused projections
  /// (SigLIP / HF q, k, v; DINOv3's SwiGLU w1, w2), the qkv bias with DINOv3's mask applied, the
  /// position grid, the prefix tokens and the RoPE tables.
  void prepare(const HostModel& host, const Tensor<T>& table) {
    const std::int64_t D = config.embed_dim, H = config.mlp_hidden(), C = config.cls_token ? 1 : 0, R = config.registers;
    const std::int64_t N = config.grid() * config.grid();
    for (std::size_t l = 0; l < blocks.size(); ++l) {
      const auto& hb = host.blocks[l];
      auto& b = blocks[l];
      Tensor<T> bias(Shape{3 * D});
      if (config.separate_qkv()) {
        Tensor<T> w(Shape{3 * D, D});
        int j = 0;
        for (const auto* q : {&hb.q_w, &hb.k_w, &hb.v_w}) std::copy_n(q->value.data(), D * D, w.data() + (j++) * D * D);
        j = 0;
        for (const auto* q : {&hb.q_b, &hb.k_b, &hb.v_b}) std::copy_n(q->value.data(), D, bias.data() + (j++) * D);
        b.fused_w = detail::device_copy<T, Dev>(w);
      } else {
        for (std::int64_t i = 0; i < 3 * D; ++i)
          bias[i] = !config.qkv_bias ? T(0) : hb.qkv_b.value.data()[i] * (config.mask_k_bias ? hb.qkv_bias_mask.value.data()[i] : T(1));
      }
      b.qkv_bias = detail::device_copy<T, Dev>(bias);
      if (config.split_swiglu()) {
        Tensor<T> w(Shape{2 * H, D}), bb(Shape{2 * H});
        std::copy_n(hb.w1.value.data(), H * D, w.data());
        std::copy_n(hb.w2.value.data(), H * D, w.data() + H * D);
        std::copy_n(hb.b1.value.data(), H, bb.data());
        std::copy_n(hb.b2.value.data(), H, bb.data() + H);
        b.fused_fc1_w = detail::device_copy<T, Dev>(w), b.fused_fc1_b = detail::device_copy<T, Dev>(bb);
      }
    }
    Tensor<T> pre(Shape{C + R, D});
    const bool pt = config.pos_table();  // else table is empty
    for (std::int64_t d = 0; d < D * C; ++d) pre[d] = host.cls_token.value.data()[d] + (pt ? table[d] : T(0));
    std::copy_n(host.register_tokens.value.data(), R * D, pre.data() + C * D);
    prefix_embed = detail::device_copy<T, Dev>(pre);
    pos_grid = pt ? detail::device_copy<T, Dev>(Tensor<T>::copy_of(table.cview().reshape(Shape{C + N, D}).slice(0, C, N))) : Tensor<T, Dev>{};
    if (config.pe()) {
      auto [cos, sin] = ops::rope_table_axial_2d<T>(config.grid(), config.grid(), D / config.heads, 10000.0, C, C, /*columns_first=*/true);
      rope_cos = detail::device_copy<T, Dev>(cos), rope_sin = detail::device_copy<T, Dev>(sin);
    } else if (config.rope()) {
      Tensor<T> cos, sin;
      host.rope_tables(C + R + N, cos, sin);
      rope_cos = detail::device_copy<T, Dev>(cos), rope_sin = detail::device_copy<T, Dev>(sin);
    }
  }

  /// The class position (if any) kept, the grid part resized. The default is timm's
  /// resample_abs_pos_embed (DINOv2: bicubic with antialiasing); PE resizes bilinearly without.
  /// [1, cls + G*G, D] -> [1, cls + g*g, D]. On the host (set-up).
  static Tensor<T> resample_pos_embed(ConstView<T> pe, std::int64_t g, std::int64_t cls = 1,
                                      ops::ResizeMode mode = ops::ResizeMode::Bicubic, bool antialias = true) {
    const std::int64_t D = pe.size(2),
                       G = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(pe.size(1) - cls))));
    Tensor<T> out(Shape{1, cls + g * g, D});
    if (G == g) {
      std::copy_n(pe.data(), pe.numel(), out.data());
      return out;
    }
    Tensor<T> grid(Shape{1, D, G, G});  // [1, D, G, G]
    for (std::int64_t t = 0; t < G * G; ++t)
      for (std::int64_t d = 0; d < D; ++d) grid[d * G * G + t] = pe.data()[(cls + t) * D + d];
    const Tensor<T> r = ops::interpolate<T>(CpuContext(1), grid, g, g, mode, antialias);
    std::copy_n(pe.data(), cls * D, out.data());
    for (std::int64_t t = 0; t < g * g; ++t)
      for (std::int64_t d = 0; d < D; ++d) out[(cls + t) * D + d] = r[d * g * g + t];
    return out;
  }

  /// images [B, 3, R, R] in 0..255 -> the network input [B, 3, S, S] (S = 224 at R = 256).
  Tensor<T, Dev> preprocess(const Context& ctx, ConstView<T, Dev> images) const {
    IREPA_CHECK(images.rank() == 4 && images.size(1) == 3 && images.is_contiguous(),
                "VitEncoder: images have shape {}, expected contiguous [B, 3, H, W] in 0..255", images.shape().str());
    const VitPreprocessing pp = config.preprocessing();
    const std::int64_t S = config.input_size();
    const ops::ChannelNorm u8{.divisor = 255.0}, stats{.mean = {pp.mean[0], pp.mean[1], pp.mean[2], 0}, .std = {pp.std[0], pp.std[1], pp.std[2], 1}};
    ops::ChannelNorm both = stats;
    both.divisor = 255.0;
    Tensor<T, Dev> x(images.shape());
    const bool same = images.size(2) == S && images.size(3) == S;
    ops::normalize_channels<T>(ctx, images, same || pp.normalize_first ? both : u8, x.view());
    if (same) return x;
    Tensor<T, Dev> r = ops::interpolate<T>(ctx, x, S, S, pp.mode, pp.antialias);
    if (!pp.normalize_first) ops::normalize_channels<T>(ctx, r, stats, r.view());  // /255, resize, then mean/std
    return r;
  }

  /// x [B, 3, S, S] preprocessed -> patch tokens [B, grid^2, D] (after the final norm unless
  /// the config takes them before it; dinov2mixed: cls_mix cls + (1 - cls_mix) patch).
  Tensor<T, Dev> forward(const Context& ctx, ConstView<T, Dev> x) const {
    const Tensor<T, Dev> all = tokens(ctx, x);
    const std::int64_t B = all.size(0), T1 = all.size(1), N = config.grid() * config.grid();
    Tensor<T, Dev> out(Shape{B, N, config.embed_dim});
    if (config.cls_mix != 0.0) {
      IREPA_CHECK(config.cls_token, "VitEncoder: cls_mix needs a class token");
      ops::blend_first_token<T>(ctx, all, T1 - N, static_cast<T>(config.cls_mix), static_cast<T>(1.0 - config.cls_mix), out.view());
    } else {
      ops::slice_tokens<T>(ctx, all, T1 - N, out.view());
    }
    return out;
  }

  /// x [B, 3, S, S] preprocessed -> every token [B, prefix + grid^2, D]: class token (if any),
  /// registers / storage tokens, patches; after the final norm unless the config takes them before it.
  Tensor<T, Dev> tokens(const Context& ctx, ConstView<T, Dev> x) const {
    const std::int64_t S = config.input_size(), D = config.embed_dim, g = config.grid();
    IREPA_CHECK(x.rank() == 4 && x.size(1) == 3 && x.size(2) == S && x.size(3) == S,
                "VitEncoder: input has shape {}, expected [B, 3, {}, {}] (preprocess first)", x.shape().str(), S, S);
    const std::int64_t P = config.prefix_tokens();
    const std::int64_t B = x.size(0), N = g * g, T1 = P + N;
    Tensor<T, Dev> patches(Shape{B, N, D});  // [B, N, D]
    ops::patchify_forward<T>(ctx, x, patch_w.value, config.open_clip_names() ? ConstView<T, Dev>{} : ConstView<T, Dev>(patch_b.value),
                             patches.view());  // PE / CLIP: conv1 has no bias
    if (config.pos_table()) ops::add_broadcast<T>(ctx, patches.view(), pos_grid);
    Tensor<T, Dev> h;  // [B, P + N, D]: cls, registers, patches
    if (P > 0) {
      Tensor<T, Dev> none(Shape{B, D});  // prepend_context adds a per-image row to the prefix: none here
      fill(ctx, none.view(), T(0));
      h = Tensor<T, Dev>(Shape{B, T1, D});
      ops::prepend_context<T>(ctx, none, prefix_embed, patches, h.view());
    } else {
      h = std::move(patches);
    }
    if (config.open_clip_names()) {  // ln_pre
      Tensor<T, Dev> pre(h.shape());
      norm(ctx, h, pre_norm_w.value, pre_norm_b.value, pre);
      h = std::move(pre);
    }
    const std::int64_t Hm = config.mlp_hidden();
    Tensor<T, Dev> n(h.shape()), qkv(Shape{B, T1, 3 * D}), a(h.shape()), o(h.shape()),
        m1(Shape{B, T1, config.swiglu ? 2 * Hm : Hm}), m2(Shape{B, T1, Hm});
    const bool fused = config.separate_qkv();
    ops::AttentionSpec<T, Dev> spec;  // softmax attention, scale head_dim^-0.5
    spec.heads = config.heads;
    if (config.rope()) {
      spec.rope_cos = rope_cos.cview(), spec.rope_sin = rope_sin.cview();
      spec.rope_mode = config.pe() ? ops::RopeMode::Interleaved : ops::RopeMode::HalfSplit;
    }
    for (const auto& blk : blocks) {
      norm(ctx, h, blk.norm1_w.value, blk.norm1_b.value, n);
      ops::linear_forward<T>(ctx, n, blk.qkv_weight(fused), blk.qkv_bias, qkv.view());
      ops::attention_forward<T>(ctx, qkv, spec, a.view());
      ops::linear_forward<T>(ctx, a, blk.proj_w.value, blk.proj_b.value, o.view());
      residual(ctx, h, o, blk.ls1.value);
      norm(ctx, h, blk.norm2_w.value, blk.norm2_b.value, n);
      ops::linear_forward<T>(ctx, n, blk.fc1_weight(config.split_swiglu()), blk.fc1_bias(config.split_swiglu()), m1.view());
      if (config.swiglu)
        ops::swiglu_forward<T>(ctx, m1, m2.view());
      else
        detail::vit_activate(ctx, m1, config.activation);
      ops::linear_forward<T>(ctx, config.swiglu ? m2 : m1, blk.fc2_w.value, blk.fc2_b.value, o.view());
      residual(ctx, h, o, blk.ls2.value);
    }
    if (!config.final_norm) return h;
    norm(ctx, h, norm_w.value, norm_b.value, n);
    return n;
  }

  /// uint8-valued images [B, 3, R, R] -> patch tokens [B, grid^2, D].
  Tensor<T, Dev> encode(const Context& ctx, ConstView<T, Dev> images) const { return forward(ctx, preprocess(ctx, images)); }

  /// DINOv3's RoPE angles for [prefix tokens, grid]: identity rows for the class and storage
  /// tokens; per patch (row i, column j) the first hd/4 angles from the row coordinate, the next
  /// hd/4 from the column, angle = 2 pi c / period with c = 2 (i + 0.5) / g - 1. Host model only.
  void rope_tables(std::int64_t T1, Tensor<T>& cos, Tensor<T>& sin) const {
    const std::int64_t hd = config.embed_dim / config.heads, q = hd / 4, g = config.grid(), P = T1 - g * g;
    cos = Tensor<T>(Shape{T1, hd / 2}), sin = Tensor<T>(Shape{T1, hd / 2});
    cos.fill(T(1)), sin.fill(T(0));
    for (std::int64_t i = 0; i < g; ++i)
      for (std::int64_t j = 0; j < g; ++j)
        for (int axis = 0; axis < 2; ++axis) {
          const double c = 2.0 * ((static_cast<double>(axis == 0 ? i : j) + 0.5) / static_cast<double>(g)) - 1.0;
          for (std::int64_t k = 0; k < q; ++k) {
            const double a = 2.0 * M_PI * c / static_cast<double>(rope_periods.value.data()[k]);
            const std::int64_t at = (P + i * g + j) * (hd / 2) + axis * q + k;
            cos[at] = static_cast<T>(std::cos(a)), sin[at] = static_cast<T>(std::sin(a));
          }
        }
  }

 private:
  void norm(const Context& ctx, const Tensor<T, Dev>& x, ConstView<T, Dev> w, ConstView<T, Dev> b, Tensor<T, Dev>& y) const {
    detail::affine_layer_norm(ctx, x, w, b, static_cast<T>(config.norm_eps), y);
  }
  void residual(const Context& ctx, Tensor<T, Dev>& h, const Tensor<T, Dev>& o, ConstView<T, Dev> gamma) const {
    ops::add_scaled_rows<T>(ctx, h.view(), config.layerscale ? gamma : ConstView<T, Dev>{}, o);
  }

  ParamArena<T, Dev> arena_;
};

}  // namespace irepa
