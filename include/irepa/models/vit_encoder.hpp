#pragma once
// Frozen ViT target encoders, forward only, on device Dev, loaded from safetensors under the
// released parameter names (REFERENCE.md section 6). One encoder for every family: a patch
// embedding, [class token, register / storage tokens, patches] with a learned position table
// or RoPE, pre-norm nn::VitBlocks, a final norm. Each family's file in models/vit/ holds its
// reference names -> config, its preprocessing notes and its checkpoint layout:
//   dinov2.hpp     DINOv2 (+ registers, the reference's dinov2mixed), -g's SwiGLU
//   dinov3.hpp     DINOv3 s16 / b16 / l16 / h16plus / 7b16 (storage tokens, RoPE, masked k bias)
//   open_clip.hpp  Perception Encoder core / lang / spatial (2-D RoPE) and CLIP ViT-L/14
//   timm.hpp       MAE, MoCo v3, DINO, I-JEPA
//   siglip.hpp     SigLIP / SigLIP2 (HuggingFace SiglipVisionModel)
//   webssl.hpp     WebSSL (HuggingFace Dinov2Model, architecture from config.json)
// What the forward needs beyond the checkpoint's tensors (fused projections, the bias as used,
// the resampled position grid, the prefix tokens, RoPE tables) is prepared once on the host
// and copied to Dev.

#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"
#include "irepa/core/host_twin.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/io/params.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/vit/config.hpp"
#include "irepa/models/vit/dinov2.hpp"
#include "irepa/models/vit/dinov3.hpp"
#include "irepa/models/vit/open_clip.hpp"
#include "irepa/models/vit/siglip.hpp"
#include "irepa/models/vit/timm.hpp"
#include "irepa/models/vit/webssl.hpp"
#include "irepa/nn/embedders.hpp"
#include "irepa/nn/vit_layers.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/ops/resize.hpp"
#include "irepa/ops/rope.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

/// The reference's ViT names: dinov2[mixed][reg]-vit-{s,b,l,g}, dinov3-vit-{s16,b16,l16,h16plus,7b16},
/// pe-vit-{t,s,b,l,g}[norm], spatialpe-vit-{b,l,g}, langpe-vit-{l,g}, clip-vit-L, mae-vit-l,
/// mocov3-vit-{s,b,l}, dino-vit-{s,b}, jepa-vit-h, siglip-vit-{b,l,so400m}, siglip2-vit-{b,l,so400m,g}
/// (webssl-* take theirs from config.json: vit_config_from_hf_dinov2).
inline VitConfig vit_config_from_name(std::string_view name, std::int64_t resolution = 256) {
  auto starts = [&](std::initializer_list<std::string_view> ps) {
    for (auto p : ps)
      if (name.starts_with(p)) return true;
    return false;
  };
  if (starts({"dinov2-vit-", "dinov2reg-vit-", "dinov2mixed-vit-", "dinov2mixedreg-vit-"})) return dinov2_config_from_name(name, resolution);
  if (starts({"dinov3-vit-"})) return dinov3_config_from_name(name, resolution);
  if (starts({"pe-vit-", "spatialpe-vit-", "langpe-vit-"})) return pe_config_from_name(name, resolution);
  if (name == "clip-vit-L") return clip_config_from_name(name, resolution);
  if (starts({"siglip-vit-", "siglip2-vit-"})) return siglip_config_from_name(name, resolution);
  if (name == "mae-vit-l" || name == "jepa-vit-h" || starts({"mocov3-vit-", "dino-vit-"})) {
    if (name == "mae-vit-l" || name == "jepa-vit-h" || name == "mocov3-vit-s" || name == "mocov3-vit-b" || name == "mocov3-vit-l" ||
        name == "dino-vit-s" || name == "dino-vit-b")
      return timm_config_from_name(name, resolution);
  }
  if (starts({"webssl-"}))
    fail("ViT encoder '{}': WebSSL models take their architecture from the checkpoint's config.json "
         "(make_target_encoder reads <dir>/{}.json; vit_config_from_hf_dinov2 parses it)",
         name, name);
  if (starts({"sam-vit-", "sam2-vit-", "vgg-", "hog-"}))
    fail("'{}' is not a ViT encoder: make_target_encoder builds it (SamEncoder, Sam2Encoder, VggEncoder, HogEncoder)", name);
  fail("ViT encoder '{}' is not available in this build; implemented: dinov2[mixed][reg]-vit-{{s,b,l,g}}, "
       "dinov3-vit-{{s16,b16,l16,h16plus,7b16}}, pe-vit-{{t,s,b,l,g}}[norm], spatialpe-vit-{{b,l,g}}, langpe-vit-{{l,g}}, clip-vit-L, "
       "mae-vit-l, mocov3-vit-{{s,b,l}}, dino-vit-{{s,b}}, jepa-vit-h, siglip-vit-{{b,l,so400m}}, siglip2-vit-{{b,l,so400m,g}}, "
       "webssl-* (HF config.json); other encoders: sam-vit-{{b,l,h}}, sam2-vit-{{s,b,l}}, vgg-*, hog-*",
       name);
}

namespace vit {
/// f(Layout{}) with the family's checkpoint layout (models/vit/*.hpp).
template <class F>
decltype(auto) with_layout(VitFamily family, F&& f) {
  switch (family) {
    case VitFamily::DINOv2: return f(Dinov2Layout{});
    case VitFamily::DINOv3: return f(Dinov3Layout{});
    case VitFamily::PE:
    case VitFamily::CLIP: return f(OpenClipLayout{});
    case VitFamily::Timm: return f(TimmLayout{});
    case VitFamily::SigLIP: return f(SiglipLayout{});
    case VitFamily::HFDinov2: return f(WebSslLayout{});
  }
  fail("ViT encoder: unknown family {}", static_cast<int>(family));
}
}  // namespace vit

namespace detail {

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

}  // namespace detail

/// A frozen ViT encoder on device Dev: its layers' parameters under the family's released names
/// in a flat arena, plus what load prepares from them on the host.
template <class T, class Dev = Cpu>
struct VitEncoder {
  using scalar_type = T;
  using device_type = Dev;
  using Context = ContextOf<Dev>;
  using HostModel = VitEncoder<T, Cpu>;
  template <class D2>
  using On = VitEncoder<T, D2>;  // the same encoder on another device
  using Block = nn::VitBlock<T, Dev>;

  VitConfig config;
  nn::PatchEmbed<T, Dev> patch_embed;       // [D, 3, p, p] (+ [D]; PE / CLIP's conv1 has no bias)
  Param<T, Dev> cls_token;                  // [1, 1, D] ([D] in open_clip)
  Param<T, Dev> register_tokens;            // [1, R, D]: DINOv2's registers, DINOv3's storage tokens
  Param<T, Dev> mask_token;                 // [1, D]: in DINO checkpoints, unused by the forward
  nn::LayerNorm<T, Dev> pre_norm, norm;     // open_clip's ln_pre; the final norm
  Param<T, Dev> rope_periods;               // DINOv3: [head_dim / 4], a buffer of the checkpoint
  std::vector<Block> blocks;
  // Prepared at load:
  Tensor<T, Dev> pos_grid;            // [grid^2, D] the patches' positions (resampled when the file's grid differs)
  Tensor<T, Dev> prefix_embed;        // [prefix tokens, D]: class token (+ its position), registers / storage tokens
  Tensor<T, Dev> rope_cos, rope_sin;  // [tokens, head_dim / 2] (RoPE families)

  explicit VitEncoder(const VitConfig& c) : config(c) {
    const std::int64_t D = c.embed_dim;
    IREPA_CHECK(D > 0 && c.heads > 0 && D % c.heads == 0 && c.depth > 0 && c.patch > 0 && c.resolution >= 256 &&
                    c.resolution % 256 == 0,
                "VitEncoder: width {}, {} heads, depth {}, patch {}, resolution {} (a multiple of 256) do not make an encoder", D,
                c.heads, c.depth, c.patch, c.resolution);
    IREPA_CHECK(!c.rope() || (D / c.heads) % 4 == 0, "VitEncoder: RoPE needs a head dim divisible by 4, got {}", D / c.heads);
    IREPA_CHECK(!(c.family == VitFamily::DINOv2 && !c.cls_token) &&
                    !(c.family != VitFamily::DINOv2 && c.family != VitFamily::DINOv3 && c.registers > 0) && c.registers >= 0,
                "VitEncoder: this family cannot have cls {} / {} registers", c.cls_token, c.registers);
    patch_embed = nn::PatchEmbed<T, Dev>(3, D, c.patch, !c.open_clip_names());
    cls_token = Param<T, Dev>(c.open_clip_names() ? Shape{D} : Shape{1, 1, D});
    register_tokens = Param<T, Dev>(Shape{1, c.registers, D});
    mask_token = Param<T, Dev>(Shape{1, D});
    pre_norm = nn::LayerNorm<T, Dev>(D, c.norm_eps), norm = nn::LayerNorm<T, Dev>(D, c.norm_eps);
    rope_periods = Param<T, Dev>(Shape{(D / c.heads) / 4});
    const nn::VitBlockOptions bo = c.block_options();
    blocks.reserve(static_cast<std::size_t>(c.depth));
    for (std::int64_t i = 0; i < c.depth; ++i) blocks.emplace_back(bo);
    arena_ = ParamArena<T, Dev>(*this);
  }
  VitEncoder(VitEncoder&&) noexcept = default;

  std::int64_t dim() const { return config.embed_dim; }
  std::int64_t tokens() const { return config.grid() * config.grid(); }
  const ParamArena<T, Dev>& params() const { return arena_; }
  ParamArena<T, Dev>& params() { return arena_; }
  HostModel host_twin() const { return HostModel(config); }

  /// Every parameter under its released name (the family's layout).
  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    vit::with_layout(config.family, [&](auto layout) { decltype(layout)::visit(*this, v, prefix); });
  }

  /// The name of the learned position table in this family's checkpoints.
  std::string pos_embed_name() const {
    return vit::with_layout(config.family, [](auto layout) { return decltype(layout)::pos_embed(); });
  }
  /// Tensors of released checkpoints that the target does not use (pooling heads, projections,
  /// the final norm of a model whose target is taken before it); absent ones are fine.
  std::vector<std::string> unused_names() const {
    return vit::with_layout(config.family, [&](auto layout) { return decltype(layout)::unused(config); });
  }

  /// Whether a checkpoint uses DINOv2's chunked block names (blocks.<c>.<i>.), and how many chunks.
  static std::int64_t detect_block_chunks(const io::SafeTensorsFile& f, std::string_view prefix, std::int64_t depth) {
    return vit::detect_block_chunks(f, prefix, depth);
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
    for (std::size_t l = 0; l < e.blocks.size(); ++l) e.blocks[l].prepare(host.blocks[l]);
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
    const bool flat = vit::with_layout(config.family, [](auto layout) { return decltype(layout)::flat_pos_embed; });  // [N, D]
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
    const std::int64_t D = config.embed_dim, C = config.cls_token ? 1 : 0, R = config.registers;
    const std::int64_t N = config.grid() * config.grid();
    for (std::size_t l = 0; l < blocks.size(); ++l) blocks[l].prepare(host.blocks[l]);
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
    patch_embed.forward(ctx, x, patches.view());
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
    typename Block::Workspace w(B, T1, blocks.front());
    if (config.open_clip_names()) {  // ln_pre
      pre_norm.infer(ctx, h, w.n.view());
      std::swap(h, w.n);
    }
    ops::AttentionSpec<T, Dev> spec;  // softmax attention, scale head_dim^-0.5
    spec.heads = config.heads;
    if (config.rope()) {
      spec.rope_cos = rope_cos.cview(), spec.rope_sin = rope_sin.cview();
      spec.rope_mode = config.pe() ? ops::RopeMode::Interleaved : ops::RopeMode::HalfSplit;
    }
    for (const auto& blk : blocks) blk.infer(ctx, h.view(), spec, w);
    if (!config.final_norm) return h;
    norm.infer(ctx, h, w.n.view());
    return std::move(w.n);
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
  ParamArena<T, Dev> arena_;
};

/// A checkpoint file of this architecture under its family's released names, with random
/// values: every parameter N(0, std), a position table of the file's [1 | -, cls + grid^2, D]
/// layout, DINOv3's RoPE periods spread as the released ones (1 .. 100) and its bias mask zero
/// on the k part. For benchmarks (whose speed does not depend on the values) and for tests
/// that run one model on two devices or element types. Written as float32.
inline void write_random_vit_checkpoint(const VitConfig& cfg, const std::string& path, std::uint64_t seed, float std = 0.02f) {
  VitEncoder<float> enc(cfg);
  Philox rng(seed);
  rng.normal(enc.params().values(), 0.0f, std);
  const std::int64_t D = cfg.embed_dim, q = D / cfg.heads / 4;
  if (cfg.rope() && !cfg.pe())
    for (std::int64_t k = 0; k < q; ++k)
      enc.rope_periods.value.data()[k] = std::pow(100.0f, static_cast<float>(k) / static_cast<float>(std::max<std::int64_t>(q - 1, 1)));
  for (auto& b : enc.blocks)
    if (b.attn.options.k_mask)
      for (std::int64_t i = 0; i < 3 * D; ++i) b.attn.bias_mask.value.data()[i] = (i >= D && i < 2 * D) ? 0.0f : 1.0f;
  io::SafeTensorsWriter w;
  io::add_params(w, enc.params());
  if (cfg.pos_table()) {
    const bool flat = vit::with_layout(cfg.family, [](auto layout) { return decltype(layout)::flat_pos_embed; });
    const std::int64_t n = (cfg.cls_token ? 1 : 0) + cfg.grid() * cfg.grid();
    Tensor<float> table(flat ? Shape{n, D} : Shape{1, n, D});
    rng.normal(table.view(), 0.0f, std);
    w.add<float>(enc.pos_embed_name(), table);
  }
  w.write(path);
}

}  // namespace irepa
