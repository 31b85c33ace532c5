#pragma once
// VGG16 pool4 features as the reference's VGGEncoder uses them (torchvision's vgg16 with
// IMAGENET1K_FEATURES weights, features[0:24]): stride 16, 512 channels.
//
//   uint8 [B, 3, R, R] -> /255 -> bilinear to R (the identity at the trainer's R) -> ImageNet mean/std
//   -> 4 stages of 3x3 convs (2, 2, 3, 3 convs of 64, 128, 256, 512 channels, each + ReLU), a 2x2
//      max pool after each -> [B, R/16, R/16, 512] -> tokens [B, (R/16)^2, 512]
//
// torchvision's names: features.<i>.weight / .bias at the conv indices 0, 2, 5, 7, 10, 12, 14, 17,
// 19, 21; the classifier in the file is ignored. Forward only, float or double, on device Dev
// (read on the host and copied up: from_host).

#include <algorithm>
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"
#include "irepa/core/host_twin.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/io/params.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/ops/activation.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/models/vit_encoder.hpp"
#include "irepa/ops/pool.hpp"
#include "irepa/ops/resize.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

struct VggConfig {
  std::array<std::int64_t, 4> widths = {64, 128, 256, 512};  // channels of the four stages
  std::array<std::int64_t, 4> convs = {2, 2, 3, 3};          // 3x3 convs per stage
  std::int64_t resolution = 256;
  std::int64_t side() const { return resolution / 16; }
};

/// vgg-<arch>-<config>: the reference reads only the type; any three-part name starting with
/// "vgg-" is VGG16 pool4.
inline VggConfig vgg_config_from_name(std::string_view name, std::int64_t resolution = 256) {
  const auto parts = std::count(name.begin(), name.end(), '-');
  IREPA_CHECK(name.starts_with("vgg-") && parts == 2,
              "VGG encoder '{}': expected vgg-<arch>-<config> (three parts, as the reference's names), e.g. vgg-cnn-16", name);
  IREPA_CHECK(resolution >= 16 && resolution % 16 == 0, "VGG encoder '{}': resolution {} is not a multiple of 16", name,
              resolution);
  VggConfig c;
  c.resolution = resolution;
  return c;
}

template <class T, class Dev = Cpu>
struct VggEncoder {
  using scalar_type = T;
  using device_type = Dev;
  using Context = ContextOf<Dev>;
  using HostModel = VggEncoder<T, Cpu>;
  template <class D2>
  using On = VggEncoder<T, D2>;  // the same encoder on another device

  struct Conv {
    std::int64_t index;  // position in torchvision's features Sequential
    Param<T, Dev> w, b;  // [C_out, C_in, 3, 3], [C_out]
  };

  VggConfig config;
  std::vector<Conv> convs;

  explicit VggEncoder(const VggConfig& c) : config(c) {
    std::int64_t in = 3, index = 0;
    for (std::size_t s = 0; s < 4; ++s) {
      IREPA_CHECK(c.widths[s] > 0 && c.convs[s] > 0, "VggEncoder: stage {} has {} convs of {} channels", s, c.convs[s], c.widths[s]);
      for (std::int64_t k = 0; k < c.convs[s]; ++k) {
        convs.push_back({index, Param<T, Dev>(Shape{c.widths[s], in, 3, 3}), Param<T, Dev>(Shape{c.widths[s]})});
        in = c.widths[s];
        index += 2;  // conv, ReLU
      }
      index += 1;  // max pool
    }
    arena_ = ParamArena<T, Dev>(*this);
  }
  VggEncoder(VggEncoder&&) noexcept = default;

  std::int64_t tokens() const { return config.side() * config.side(); }
  std::int64_t dim() const { return config.widths[3]; }
  const ParamArena<T, Dev>& params() const { return arena_; }
  ParamArena<T, Dev>& params() { return arena_; }
  HostModel host_twin() const { return HostModel(config); }

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    for (Conv& c : convs) {
      const std::string p = join_name(prefix, "features." + std::to_string(c.index) + ".");
      v(p + "weight", c.w), v(p + "bias", c.b);
    }
  }

  /// torchvision's state dict: the features' convs are read, the classifier is left alone.
  void load(const io::SafeTensorsFile& f) {
    update_through_host(*this, false, [&](HostModel& host) {
      std::vector<std::string> other;
      for (const auto& k : f.names())
        if (!k.starts_with("features.")) other.push_back(k);
      io::load_params(f, host.params(), "", io::LoadParamsOptions{.allow_unexpected = false, .read_by_caller = other});
    });
  }

  /// Random weights N(0, std) (benchmarks; speed does not depend on values).
  void init_random(std::uint64_t seed, T std) {
    update_through_host(*this, false, [&](HostModel& host) { Philox(seed).normal(host.params().values(), T(0), std); });
  }

  /// This encoder on Dev from a loaded host one (the trainer places its online targets so).
  static VggEncoder from_host(const HostModel& host) {
    VggEncoder e(host.config);
    copy_from_host(e.params().values(), ConstView<T>(host.params().values()));
    return e;
  }

  /// uint8-valued images [B, 3, R, R] -> [B, 3, R, R]: /255, bilinear to R, ImageNet mean/std.
  Tensor<T, Dev> preprocess(const Context& ctx, ConstView<T, Dev> images) const {
    const std::int64_t R = config.resolution;
    IREPA_CHECK(images.rank() == 4 && images.size(1) == 3 && images.size(2) == R && images.size(3) == R,
                "VggEncoder: images have shape {}, expected [B, 3, {}, {}]", images.shape().str(), R, R);
    return detail::resize_then_imagenet_normalise<T>(ctx, images, R, ops::ResizeMode::Bilinear);
  }

  /// x [B, 3, R, R] preprocessed -> tokens [B, (R/16)^2, 512].
  Tensor<T, Dev> forward(const Context& ctx, ConstView<T, Dev> x) const {
    const std::int64_t R = config.resolution;
    IREPA_CHECK(x.rank() == 4 && x.size(1) == 3 && x.size(2) == R && x.size(3) == R,
                "VggEncoder: input has shape {}, expected [B, 3, {}, {}] (preprocess first)", x.shape().str(), R, R);
    const std::int64_t B = x.size(0);
    Tensor<T, Dev> h(Shape{B, R, R, 3});  // channels-last for the convs
    ops::channels_last<T>(ctx, x, h.view());
    std::size_t ci = 0;
    std::int64_t side = R;
    for (std::size_t s = 0; s < 4; ++s) {
      for (std::int64_t k = 0; k < config.convs[s]; ++k, ++ci) {
        const Conv& cv = convs[ci];
        Tensor<T, Dev> y(Shape{B, side, side, cv.w.value.size(0)});
        ops::conv2d_same_forward<T>(ctx, h, cv.w.value, cv.b.value, y.view());
        ops::relu_forward<T>(ctx, y.cview(), y.view());
        h = std::move(y);
      }
      h = ops::max_pool_channels_last<T>(ctx, h, 2);
      side /= 2;
    }
    Tensor<T, Dev> out(Shape{B, side * side, h.size(3)});  // [B, side, side, C] is already token-major
    ops::copy<T>(ctx, h.cview().reshape(out.shape()), out.view());
    return out;
  }

  Tensor<T, Dev> encode(const Context& ctx, ConstView<T, Dev> images) const { return forward(ctx, preprocess(ctx, images)); }

 private:
  ParamArena<T, Dev> arena_;
};

}  // namespace irepa
