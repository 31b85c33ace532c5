#include "vae_reference.hpp"

#include "irepa/io/safetensors.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/ops/norm.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace vae_ref {

using namespace irepa;

T2 conv2d(const T2& x, const T2& w, const T2& b, const ops::Conv2dSpec& s) {
  CpuContext ctx;
  const std::int64_t k = w.size(2);
  T2 y(Shape{x.size(0), s.out_h(x.size(1), k), s.out_w(x.size(2), k), w.size(0)});
  ops::conv2d_forward<double>(ctx, x, w, b, s, y.view());
  return y;
}

T2 group_norm(const T2& x, std::int64_t groups, double eps, const T2& w, const T2& b, bool silu) {
  CpuContext ctx;
  T2 y(x.shape());
  ops::group_norm_forward<double>(ctx, x, groups, eps, w, b, silu, y.view());
  return y;
}

T2 upsample2x(const T2& x) {
  CpuContext ctx;
  T2 y(Shape{x.size(0), 2 * x.size(1), 2 * x.size(2), x.size(3)});
  ops::upsample_nearest2x<double>(ctx, x, y.view());
  return y;
}

T2 channels_first(const T2& x) {
  CpuContext ctx;
  T2 y(Shape{x.size(0), x.size(3), x.size(1), x.size(2)});
  ops::channels_first<double>(ctx, x, y.view());
  return y;
}

void vae(const SdVaeConfig& cfg, const std::string& weights, const T2& x, const T2& z, T2& moments, T2& decoded) {
  CpuContext ctx;
  SdVae<double> m(cfg);
  m.load(io::SafeTensorsFile(weights));
  moments = m.encode_moments(ctx, x);
  decoded = m.decode(ctx, z);
}

}  // namespace vae_ref
