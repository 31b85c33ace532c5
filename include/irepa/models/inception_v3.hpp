#pragma once
// The FID Inception-v3: the 2015-12-05 TensorFlow graph the ADM evaluator
// (guided-diffusion evaluations/evaluator.py) runs, as torch-fidelity's port computes it,
// forward only, float or double, on device Dev.
//
//   images uint8 NHWC [B, H, W, 3] -> TF1 bilinear resize to 299x299 (float32-rounded scale)
//   -> (x - 128) / 128 -> Conv2d_1a_3x3 (s2) .. MaxPool_2 -> Mixed_5b/5c/5d (InceptionA)
//   -> Mixed_6a (B) -> Mixed_6b..6e (C) -> Mixed_7a (D) -> Mixed_7b/7c (E) -> mean over 8x8
//   -> pool_3 [B, 2048];  logits = pool_3 @ fc.weight^T (no bias: what the evaluator's
//   Inception Score multiplies) [B, 1008].
//   sFID features: mixed_6/conv, Mixed_6d's 1x1 branch after BatchNorm and ReLU [B, 17, 17, 192],
//   its first 7 channels flattened in NHWC order -> [B, 2023].
//
// Every conv is BasicConv2d: conv without bias -> BatchNorm (eps 1e-3, running statistics) ->
// ReLU. The BatchNorm is folded into the conv's weight and bias at load (computed in double), so
// a layer is one conv2d_forward and one ReLU. The TF graph's variants of torchvision's blocks are
// kept: the pool branches of A, C and E_1 average over in-image pixels only; Mixed_7c's pool
// branch is a 3x3 max pool. Activations run channels-last through the ops.
//
// Parameters keep torch-fidelity's names (Conv2d_1a_3x3.conv.weight, Mixed_6d.branch1x1.bn.running_var,
// ..., fc.weight [1008, 2048], fc.bias); tools/convert_encoder.py turns its released
// weights-inception-2015-12-05 .pth into safetensors.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"
#include "irepa/core/host_twin.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/io/params.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/nn/vit_layers.hpp"
#include "irepa/ops/activation.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/ops/linear.hpp"
#include "irepa/ops/pool.hpp"
#include "irepa/ops/resize.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

/// What one forward pass gives: pool_3, the sFID features and the unbiased logits; with
/// keep_intermediate also the resized input (before normalising) and mixed_6/conv.
template <class T, class Dev>
struct InceptionFeatures {
  Tensor<T, Dev> pool3;            // [B, 2048]
  Tensor<T, Dev> spatial;          // [B, 2023]: mixed_6/conv[..., :7], NHWC-flattened
  Tensor<T, Dev> logits;           // [B, 1008], without fc.bias
  Tensor<T, Dev> resized;          // [B, 299, 299, 3] channels-last, 0..255 (keep_intermediate)
  Tensor<T, Dev> mixed_6_conv;     // [B, 17, 17, 192] channels-last (keep_intermediate)
};

template <class T, class Dev = Cpu>
struct InceptionV3 {
  using scalar_type = T;
  using device_type = Dev;
  using Context = ContextOf<Dev>;
  using HostModel = InceptionV3<T, Cpu>;
  template <class D2>
  using On = InceptionV3<T, D2>;

  static constexpr std::int64_t kInput = 299, kPool3 = 2048, kClasses = 1008, kSpatialChannels = 7;
  static constexpr double kBnEps = 1e-3;

  /// conv (no bias) -> BatchNorm -> ReLU, folded at load into weight w and bias b.
  struct BasicConv {
    Param<T, Dev> weight, bn_weight, bn_bias, running_mean, running_var;
    ops::Conv2dSpec spec;
    Tensor<T, Dev> w, b;  // folded: [Cout, Cin, kh, kw], [Cout]
    BasicConv() = default;
    BasicConv(std::int64_t in, std::int64_t out, std::int64_t kh, std::int64_t kw, std::int64_t stride = 1, std::int64_t ph = 0,
              std::int64_t pw = 0)
        : weight(Shape{out, in, kh, kw}), bn_weight(Shape{out}), bn_bias(Shape{out}), running_mean(Shape{out}), running_var(Shape{out}),
          spec{stride, ph, ph, pw, pw} {}
    std::int64_t out() const { return weight.shape[0]; }
    template <class V>
    void visit(V& v, const std::string& p) {
      v(p + ".conv.weight", weight), v(p + ".bn.weight", bn_weight), v(p + ".bn.bias", bn_bias), v(p + ".bn.running_mean", running_mean),
          v(p + ".bn.running_var", running_var);
    }
    /// w = weight * g / sqrt(var + eps) per output channel, b = beta - mean * g / sqrt(var + eps).
    template <class HostConv>
    void prepare(const HostConv& h) {
      const std::int64_t Co = weight.shape[0], per = weight.shape.numel() / Co;
      Tensor<T> fw(weight.shape), fb(Shape{Co});
      for (std::int64_t o = 0; o < Co; ++o) {
        const double g = static_cast<double>(h.bn_weight.value.data()[o]) /
                         std::sqrt(static_cast<double>(h.running_var.value.data()[o]) + kBnEps);
        for (std::int64_t i = 0; i < per; ++i) fw.data()[o * per + i] = static_cast<T>(static_cast<double>(h.weight.value.data()[o * per + i]) * g);
        fb.data()[o] = static_cast<T>(static_cast<double>(h.bn_bias.value.data()[o]) - static_cast<double>(h.running_mean.value.data()[o]) * g);
      }
      w = detail::device_copy<T, Dev>(fw), b = detail::device_copy<T, Dev>(fb);
    }
  };

  struct BlockA {  // InceptionA: 64 + 64 + 96 + pool_features channels
    BasicConv branch1x1, branch5x5_1, branch5x5_2, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3, branch_pool;
    BlockA(std::int64_t in, std::int64_t pool)
        : branch1x1(in, 64, 1, 1), branch5x5_1(in, 48, 1, 1), branch5x5_2(48, 64, 5, 5, 1, 2, 2), branch3x3dbl_1(in, 64, 1, 1),
          branch3x3dbl_2(64, 96, 3, 3, 1, 1, 1), branch3x3dbl_3(96, 96, 3, 3, 1, 1, 1), branch_pool(in, pool, 1, 1) {}
    template <class S, class F>
    static void each(S& m, F&& f) {
      f("branch1x1", m.branch1x1), f("branch5x5_1", m.branch5x5_1), f("branch5x5_2", m.branch5x5_2), f("branch3x3dbl_1", m.branch3x3dbl_1),
          f("branch3x3dbl_2", m.branch3x3dbl_2), f("branch3x3dbl_3", m.branch3x3dbl_3), f("branch_pool", m.branch_pool);
    }
  };
  struct BlockB {  // InceptionB (Mixed_6a): 384 + 96 + in channels, stride 2
    BasicConv branch3x3, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3;
    explicit BlockB(std::int64_t in)
        : branch3x3(in, 384, 3, 3, 2), branch3x3dbl_1(in, 64, 1, 1), branch3x3dbl_2(64, 96, 3, 3, 1, 1, 1), branch3x3dbl_3(96, 96, 3, 3, 2) {}
    template <class S, class F>
    static void each(S& m, F&& f) {
      f("branch3x3", m.branch3x3), f("branch3x3dbl_1", m.branch3x3dbl_1), f("branch3x3dbl_2", m.branch3x3dbl_2),
          f("branch3x3dbl_3", m.branch3x3dbl_3);
    }
  };
  struct BlockC {  // InceptionC: 4 x 192 channels, factorised 7x7
    BasicConv branch1x1, branch7x7_1, branch7x7_2, branch7x7_3, branch7x7dbl_1, branch7x7dbl_2, branch7x7dbl_3, branch7x7dbl_4,
        branch7x7dbl_5, branch_pool;
    BlockC(std::int64_t in, std::int64_t c7)
        : branch1x1(in, 192, 1, 1), branch7x7_1(in, c7, 1, 1), branch7x7_2(c7, c7, 1, 7, 1, 0, 3), branch7x7_3(c7, 192, 7, 1, 1, 3, 0),
          branch7x7dbl_1(in, c7, 1, 1), branch7x7dbl_2(c7, c7, 7, 1, 1, 3, 0), branch7x7dbl_3(c7, c7, 1, 7, 1, 0, 3),
          branch7x7dbl_4(c7, c7, 7, 1, 1, 3, 0), branch7x7dbl_5(c7, 192, 1, 7, 1, 0, 3), branch_pool(in, 192, 1, 1) {}
    template <class S, class F>
    static void each(S& m, F&& f) {
      f("branch1x1", m.branch1x1), f("branch7x7_1", m.branch7x7_1), f("branch7x7_2", m.branch7x7_2), f("branch7x7_3", m.branch7x7_3),
          f("branch7x7dbl_1", m.branch7x7dbl_1), f("branch7x7dbl_2", m.branch7x7dbl_2), f("branch7x7dbl_3", m.branch7x7dbl_3),
          f("branch7x7dbl_4", m.branch7x7dbl_4), f("branch7x7dbl_5", m.branch7x7dbl_5), f("branch_pool", m.branch_pool);
    }
  };
  struct BlockD {  // InceptionD (Mixed_7a): 320 + 192 + in channels, stride 2
    BasicConv branch3x3_1, branch3x3_2, branch7x7x3_1, branch7x7x3_2, branch7x7x3_3, branch7x7x3_4;
    explicit BlockD(std::int64_t in)
        : branch3x3_1(in, 192, 1, 1), branch3x3_2(192, 320, 3, 3, 2), branch7x7x3_1(in, 192, 1, 1), branch7x7x3_2(192, 192, 1, 7, 1, 0, 3),
          branch7x7x3_3(192, 192, 7, 1, 1, 3, 0), branch7x7x3_4(192, 192, 3, 3, 2) {}
    template <class S, class F>
    static void each(S& m, F&& f) {
      f("branch3x3_1", m.branch3x3_1), f("branch3x3_2", m.branch3x3_2), f("branch7x7x3_1", m.branch7x7x3_1), f("branch7x7x3_2", m.branch7x7x3_2),
          f("branch7x7x3_3", m.branch7x7x3_3), f("branch7x7x3_4", m.branch7x7x3_4);
    }
  };
  struct BlockE {  // InceptionE: 320 + 768 + 768 + 192 channels; max_pool: Mixed_7c's pool branch
    BasicConv branch1x1, branch3x3_1, branch3x3_2a, branch3x3_2b, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3a, branch3x3dbl_3b,
        branch_pool;
    bool max_pool = false;
    BlockE(std::int64_t in, bool max)
        : branch1x1(in, 320, 1, 1), branch3x3_1(in, 384, 1, 1), branch3x3_2a(384, 384, 1, 3, 1, 0, 1), branch3x3_2b(384, 384, 3, 1, 1, 1, 0),
          branch3x3dbl_1(in, 448, 1, 1), branch3x3dbl_2(448, 384, 3, 3, 1, 1, 1), branch3x3dbl_3a(384, 384, 1, 3, 1, 0, 1),
          branch3x3dbl_3b(384, 384, 3, 1, 1, 1, 0), branch_pool(in, 192, 1, 1), max_pool(max) {}
    template <class S, class F>
    static void each(S& m, F&& f) {
      f("branch1x1", m.branch1x1), f("branch3x3_1", m.branch3x3_1), f("branch3x3_2a", m.branch3x3_2a), f("branch3x3_2b", m.branch3x3_2b),
          f("branch3x3dbl_1", m.branch3x3dbl_1), f("branch3x3dbl_2", m.branch3x3dbl_2), f("branch3x3dbl_3a", m.branch3x3dbl_3a),
          f("branch3x3dbl_3b", m.branch3x3dbl_3b), f("branch_pool", m.branch_pool);
    }
  };

  BasicConv Conv2d_1a_3x3{3, 32, 3, 3, 2}, Conv2d_2a_3x3{32, 32, 3, 3}, Conv2d_2b_3x3{32, 64, 3, 3, 1, 1, 1}, Conv2d_3b_1x1{64, 80, 1, 1},
      Conv2d_4a_3x3{80, 192, 3, 3};
  BlockA Mixed_5b{192, 32}, Mixed_5c{256, 64}, Mixed_5d{288, 64};
  BlockB Mixed_6a{288};
  BlockC Mixed_6b{768, 128}, Mixed_6c{768, 160}, Mixed_6d{768, 160}, Mixed_6e{768, 192};
  BlockD Mixed_7a{768};
  BlockE Mixed_7b{1280, false}, Mixed_7c{2048, true};
  Param<T, Dev> fc_weight{Shape{kClasses, kPool3}}, fc_bias{Shape{kClasses}};

  InceptionV3() { arena_ = ParamArena<T, Dev>(*this); }
  InceptionV3(InceptionV3&&) noexcept = default;

  const ParamArena<T, Dev>& params() const { return arena_; }
  ParamArena<T, Dev>& params() { return arena_; }
  HostModel host_twin() const { return HostModel(); }

  /// f(name, conv) for every BasicConv of m, in the network's order (m: this model or its twin).
  template <class S, class F>
  static void each_conv(S& m, F&& f) {
    f(std::string("Conv2d_1a_3x3"), m.Conv2d_1a_3x3), f(std::string("Conv2d_2a_3x3"), m.Conv2d_2a_3x3);
    f(std::string("Conv2d_2b_3x3"), m.Conv2d_2b_3x3), f(std::string("Conv2d_3b_1x1"), m.Conv2d_3b_1x1);
    f(std::string("Conv2d_4a_3x3"), m.Conv2d_4a_3x3);
    const auto block = [&](const char* name, auto& b) {
      std::remove_cvref_t<decltype(b)>::each(b, [&](const char* branch, auto& c) { f(std::string(name) + "." + branch, c); });
    };
    block("Mixed_5b", m.Mixed_5b), block("Mixed_5c", m.Mixed_5c), block("Mixed_5d", m.Mixed_5d), block("Mixed_6a", m.Mixed_6a);
    block("Mixed_6b", m.Mixed_6b), block("Mixed_6c", m.Mixed_6c), block("Mixed_6d", m.Mixed_6d), block("Mixed_6e", m.Mixed_6e);
    block("Mixed_7a", m.Mixed_7a), block("Mixed_7b", m.Mixed_7b), block("Mixed_7c", m.Mixed_7c);
  }

  template <class V>
  void visit_params(V&& v, std::string_view prefix = {}) {
    const std::string p(prefix);
    each_conv(*this, [&](const std::string& name, BasicConv& c) { c.visit(v, p + name); });
    v(p + "fc.weight", fc_weight), v(p + "fc.bias", fc_bias);
  }

  /// Every parameter from f under prefix (torch-fidelity's names) through io::load_params:
  /// missing, mis-shaped and unexpected tensors are named in one error before anything changes;
  /// BatchNorm's num_batches_tracked counters are ignored; a non-finite weight is an error.
  void load(const io::SafeTensorsFile& f, std::string_view prefix = {}) {
    update_through_host(*this, false, [&](HostModel& host) {
      io::LoadParamsOptions opt;  // BatchNorm's counters are in the released file, unused
      for (const auto& k : f.names())
        if (k.compare(0, prefix.size(), prefix) == 0 && k.ends_with("num_batches_tracked")) opt.read_by_caller.push_back(k.substr(prefix.size()));
      io::load_params(f, host.params(), prefix, opt);
      const auto v = host.params().values();
      for (std::int64_t i = 0; i < v.numel(); ++i)
        IREPA_CHECK(std::isfinite(static_cast<double>(v.data()[i])), "InceptionV3: '{}' holds a non-finite weight (value {} of the arena)",
                    f.path(), i);
      prepare(host);
    });
  }

  /// Random weights (tests, benchmarks): convs N(0, sqrt(2 / fan_in)), BatchNorm near identity
  /// with small random statistics, fc N(0, 0.01).
  void init_random(std::uint64_t seed) {
    update_through_host(*this, false, [&](HostModel& host) {
      Philox rng(seed);
      host.params().for_each([&](std::string_view name, TensorView<T> v, TensorView<T>) {
        if (name.ends_with("conv.weight")) {
          const double fan_in = static_cast<double>(v.numel() / v.size(0));
          rng.normal(v, T(0), static_cast<T>(std::sqrt(2.0 / fan_in)));
        } else if (name.ends_with("running_var")) {
          rng.uniform(v, T(0.5), T(1.5));
        } else if (name.ends_with("bn.weight")) {
          rng.uniform(v, T(0.8), T(1.2));
        } else {
          rng.normal(v, T(0), T(0.01));
        }
      });
      prepare(host);
    });
  }

  /// This network on Dev from a loaded host one.
  static InceptionV3 from_host(const HostModel& host) {
    InceptionV3 m;
    copy_from_host(m.params().values(), ConstView<T>(host.params().values()));
    m.prepare(host);
    return m;
  }

  /// images: uint8 [B, H, W, 3] (an .npz arr_0 batch) already converted to T, on Dev.
  InceptionFeatures<T, Dev> forward(const Context& ctx, ConstView<T, Dev> images, bool keep_intermediate = false) const {
    IREPA_CHECK(images.rank() == 4 && images.size(3) == 3 && images.size(1) > 0 && images.size(2) > 0,
                "InceptionV3: images have shape {}, expected [B, H, W, 3] (uint8 values, channels last)", images.shape().str());
    const std::int64_t B = images.size(0);
    InceptionFeatures<T, Dev> out;
    // TF1 resize (per channel plane), then (x - 128) / 128, back to channels-last.
    Tensor<T, Dev> planes(Shape{B, 3, images.size(1), images.size(2)});
    ops::channels_first<T>(ctx, images, planes.view());
    Tensor<T, Dev> resized = ops::interpolate<T>(ctx, planes.cview(), kInput, kInput, ops::ResizeMode::BilinearTf1);
    Tensor<T, Dev> x(Shape{B, kInput, kInput, 3});
    if (keep_intermediate) {
      out.resized = Tensor<T, Dev>(x.shape());
      ops::channels_last<T>(ctx, resized.cview(), out.resized.view());
    }
    ops::ChannelNorm norm;
    norm.mean = {128, 128, 128, 128}, norm.std = {128, 128, 128, 128};
    ops::normalize_channels<T>(ctx, resized.cview(), norm, resized.view());
    ops::channels_last<T>(ctx, resized.cview(), x.view());
    resized = {};

    x = conv(ctx, Conv2d_1a_3x3, x);  // [B, 149, 149, 32]
    x = conv(ctx, Conv2d_2a_3x3, x);  // [B, 147, 147, 32]
    x = conv(ctx, Conv2d_2b_3x3, x);  // [B, 147, 147, 64]
    x = pool(ctx, x, {3, 2, 0, ops::PoolMode::Max});  // [B, 73, 73, 64]
    x = conv(ctx, Conv2d_3b_1x1, x);  // [B, 73, 73, 80]
    x = conv(ctx, Conv2d_4a_3x3, x);  // [B, 71, 71, 192]
    x = pool(ctx, x, {3, 2, 0, ops::PoolMode::Max});  // [B, 35, 35, 192]
    x = block_a(ctx, Mixed_5b, x);  // [B, 35, 35, 256]
    x = block_a(ctx, Mixed_5c, x);  // 288
    x = block_a(ctx, Mixed_5d, x);  // 288
    x = block_b(ctx, Mixed_6a, x);  // [B, 17, 17, 768]
    x = block_c(ctx, Mixed_6b, x);
    x = block_c(ctx, Mixed_6c, x);
    Tensor<T, Dev> m6;  // mixed_6/conv: Mixed_6d's 1x1 branch
    x = block_c(ctx, Mixed_6d, x, &m6);
    x = block_c(ctx, Mixed_6e, x);
    out.spatial = Tensor<T, Dev>(Shape{B, m6.size(1) * m6.size(2) * kSpatialChannels});
    ops::slice_channels<T>(ctx, m6.cview(), 0, out.spatial.view().reshape(Shape{B, m6.size(1), m6.size(2), kSpatialChannels}));
    if (keep_intermediate) out.mixed_6_conv = std::move(m6);
    x = block_d(ctx, Mixed_7a, x);  // [B, 8, 8, 1280]
    x = block_e(ctx, Mixed_7b, x);  // [B, 8, 8, 2048]
    x = block_e(ctx, Mixed_7c, x);
    const std::int64_t g = x.size(1);
    out.pool3 = Tensor<T, Dev>(Shape{B, kPool3});  // the mean over the 8x8 grid
    ops::pool2d_forward<T>(ctx, x.cview(), {g, 1, 0, ops::PoolMode::AvgInImage}, out.pool3.view().reshape(Shape{B, 1, 1, kPool3}));
    out.logits = Tensor<T, Dev>(Shape{B, kClasses});
    ops::linear_forward<T>(ctx, out.pool3.cview(), fc_weight.value, ConstView<T, Dev>(), out.logits.view());
    return out;
  }

 private:
  ParamArena<T, Dev> arena_;

  /// Folds every BatchNorm from the host twin's values (the same network, so the same order).
  void prepare(const HostModel& host) {
    std::vector<const typename HostModel::BasicConv*> src;
    HostModel::each_conv(host, [&](const std::string&, const auto& c) { src.push_back(&c); });
    std::size_t i = 0;
    each_conv(*this, [&](const std::string&, BasicConv& c) { c.prepare(*src[i++]); });
  }

 private:
  /// BasicConv on h [B, H, W, Cin] -> [B, Ho, Wo, Cout].
  Tensor<T, Dev> conv(const Context& ctx, const BasicConv& c, ConstView<T, Dev> h) const {
    const Shape& ws = c.weight.shape;
    Tensor<T, Dev> y(Shape{h.size(0), c.spec.out_h(h.size(1), ws[2]), c.spec.out_w(h.size(2), ws[3]), c.out()});
    ops::conv2d_forward<T>(ctx, h, c.w.cview(), c.b.cview(), c.spec, y.view());
    ops::relu_forward<T>(ctx, y.cview(), y.view());
    return y;
  }
  Tensor<T, Dev> pool(const Context& ctx, ConstView<T, Dev> h, const ops::Pool2dSpec& s) const {
    Tensor<T, Dev> y(Shape{h.size(0), s.out(h.size(1)), s.out(h.size(2)), h.size(3)});
    ops::pool2d_forward<T>(ctx, h, s, y.view());
    return y;
  }
  /// Concatenation of the branches along channels.
  Tensor<T, Dev> concat(const Context& ctx, std::initializer_list<const Tensor<T, Dev>*> parts) const {
    const Tensor<T, Dev>& first = **parts.begin();
    std::int64_t C = 0;
    for (const auto* p : parts) C += p->size(3);
    Tensor<T, Dev> y(Shape{first.size(0), first.size(1), first.size(2), C});
    std::int64_t off = 0;
    for (const auto* p : parts) {
      ops::copy_channels<T>(ctx, p->cview(), off, y.view());
      off += p->size(3);
    }
    return y;
  }
  Tensor<T, Dev> block_a(const Context& ctx, const BlockA& m, ConstView<T, Dev> x) const {
    const auto b1 = conv(ctx, m.branch1x1, x);
    const auto b5 = conv(ctx, m.branch5x5_2, conv(ctx, m.branch5x5_1, x));
    const auto b3 = conv(ctx, m.branch3x3dbl_3, conv(ctx, m.branch3x3dbl_2, conv(ctx, m.branch3x3dbl_1, x)));
    const auto bp = conv(ctx, m.branch_pool, pool(ctx, x, {3, 1, 1, ops::PoolMode::AvgInImage}));
    return concat(ctx, {&b1, &b5, &b3, &bp});
  }
  Tensor<T, Dev> block_b(const Context& ctx, const BlockB& m, ConstView<T, Dev> x) const {
    const auto b3 = conv(ctx, m.branch3x3, x);
    const auto bd = conv(ctx, m.branch3x3dbl_3, conv(ctx, m.branch3x3dbl_2, conv(ctx, m.branch3x3dbl_1, x)));
    const auto bp = pool(ctx, x, {3, 2, 0, ops::PoolMode::Max});
    return concat(ctx, {&b3, &bd, &bp});
  }
  Tensor<T, Dev> block_c(const Context& ctx, const BlockC& m, ConstView<T, Dev> x, Tensor<T, Dev>* branch1x1 = nullptr) const {
    auto b1 = conv(ctx, m.branch1x1, x);
    const auto b7 = conv(ctx, m.branch7x7_3, conv(ctx, m.branch7x7_2, conv(ctx, m.branch7x7_1, x)));
    auto bd = conv(ctx, m.branch7x7dbl_1, x);
    bd = conv(ctx, m.branch7x7dbl_3, conv(ctx, m.branch7x7dbl_2, bd));
    bd = conv(ctx, m.branch7x7dbl_5, conv(ctx, m.branch7x7dbl_4, bd));
    const auto bp = conv(ctx, m.branch_pool, pool(ctx, x, {3, 1, 1, ops::PoolMode::AvgInImage}));
    Tensor<T, Dev> y = concat(ctx, {&b1, &b7, &bd, &bp});
    if (branch1x1) *branch1x1 = std::move(b1);
    return y;
  }
  Tensor<T, Dev> block_d(const Context& ctx, const BlockD& m, ConstView<T, Dev> x) const {
    const auto b3 = conv(ctx, m.branch3x3_2, conv(ctx, m.branch3x3_1, x));
    auto b7 = conv(ctx, m.branch7x7x3_2, conv(ctx, m.branch7x7x3_1, x));
    b7 = conv(ctx, m.branch7x7x3_4, conv(ctx, m.branch7x7x3_3, b7));
    const auto bp = pool(ctx, x, {3, 2, 0, ops::PoolMode::Max});
    return concat(ctx, {&b3, &b7, &bp});
  }
  Tensor<T, Dev> block_e(const Context& ctx, const BlockE& m, ConstView<T, Dev> x) const {
    const auto b1 = conv(ctx, m.branch1x1, x);
    const auto t = conv(ctx, m.branch3x3_1, x);
    const auto b3a = conv(ctx, m.branch3x3_2a, t), b3b = conv(ctx, m.branch3x3_2b, t);
    const auto d = conv(ctx, m.branch3x3dbl_2, conv(ctx, m.branch3x3dbl_1, x));
    const auto bda = conv(ctx, m.branch3x3dbl_3a, d), bdb = conv(ctx, m.branch3x3dbl_3b, d);
    const auto bp = conv(ctx, m.branch_pool, pool(ctx, x, {3, 1, 1, m.max_pool ? ops::PoolMode::Max : ops::PoolMode::AvgInImage}));
    return concat(ctx, {&b1, &b3a, &b3b, &bda, &bdb, &bp});
  }
};

}  // namespace irepa
