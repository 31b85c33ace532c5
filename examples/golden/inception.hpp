#pragma once
// The `inception-fid` golden file: the FID Inception-v3 on uint8 NHWC images (TF1 resize,
// pool_3, mixed_6/conv, the sFID features, unbiased logits and their softmax), on any device.

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "golden/format.hpp"
#include "irepa/models/inception_v3.hpp"

namespace irepa::golden {

namespace detail {
/// y [B, C, H, W] from channels-last x [B, H, W, C] on the host (the file stores NCHW).
template <class T>
Tensor<T> nchw(const Tensor<T>& x) {
  Tensor<T> y(Shape{x.size(0), x.size(3), x.size(1), x.size(2)});
  ops::channels_first<T>(CpuContext{}, x.cview(), y.view());
  return y;
}
template <class T>
Tensor<T> softmax_rows(const Tensor<T>& x) {
  Tensor<T> y(x.shape());
  const std::int64_t N = x.size(0), K = x.size(1);
  for (std::int64_t i = 0; i < N; ++i) {
    double m = -INFINITY, s = 0;
    for (std::int64_t k = 0; k < K; ++k) m = std::max(m, static_cast<double>(x[i * K + k]));
    for (std::int64_t k = 0; k < K; ++k) s += std::exp(static_cast<double>(x[i * K + k]) - m);
    for (std::int64_t k = 0; k < K; ++k) y[i * K + k] = static_cast<T>(std::exp(static_cast<double>(x[i * K + k]) - m) / s);
  }
  return y;
}
}  // namespace detail

/// Runs an `inception-fid` file in T on the context's device.
template <class T, class Ctx = CpuContext>
std::vector<Row> check_inception_fid(const io::SafeTensorsFile& f, double tol, const Ctx& ctx = Ctx{}) {
  using Dev = typename Ctx::device_type;
  const auto c = config_of(f);
  IREPA_CHECK(c.value("batchnorm_eps", 1e-3) == 1e-3 && !c.value("conv_bias", false),
              "golden: inception-fid config has BatchNorm eps {} and conv_bias {}; the FID Inception has 1e-3 and none",
              c.value("batchnorm_eps", 0.0), c.value("conv_bias", false));
  InceptionV3<T, Dev> net;
  net.load(*ParamsFile(f), "params/");
  const Tensor<std::uint8_t> images = f.load<std::uint8_t>("inputs/images");
  Tensor<T> x(images.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<T>(images[i]);
  const auto dx = to_device(ctx, x.cview());
  const auto out = net.forward(ctx, dx.cview(), true);
  RowCollector<T> rc{f, tol};
  rc.cmp("outputs/resized", detail::nchw(to_host(ctx, out.resized.cview())));
  rc.cmp("outputs/mixed_6_conv", detail::nchw(to_host(ctx, out.mixed_6_conv.cview())));
  rc.cmp("outputs/spatial", to_host(ctx, out.spatial.cview()));
  rc.cmp("outputs/pool3", to_host(ctx, out.pool3.cview()));
  const Tensor<T> logits = to_host(ctx, out.logits.cview());
  rc.cmp("outputs/logits_unbiased", logits);
  rc.cmp("outputs/is_softmax", detail::softmax_rows(logits));
  // torch-fidelity's biased logits, for completeness: logits + fc.bias.
  const Tensor<T> bias = ParamsFile(f)->load<T>("params/fc.bias");
  Tensor<T> biased(logits.shape());
  for (std::int64_t i = 0; i < logits.numel(); ++i) biased[i] = logits[i] + bias[i % bias.numel()];
  rc.cmp("outputs/logits", biased);
  return rc.rows;
}

}  // namespace irepa::golden
