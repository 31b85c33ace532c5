// CPU double reference paths for test_cuda_inception (host compiler only).

#include "inception_reference.hpp"

#include "irepa/io/safetensors.hpp"
#include "irepa/models/inception_v3.hpp"

namespace inception_ref {

T2 pool2d(const T2& x, const irepa::ops::Pool2dSpec& s) {
  T2 y(irepa::Shape{x.size(0), s.out(x.size(1)), s.out(x.size(2)), x.size(3)});
  irepa::ops::pool2d_forward<double>(irepa::CpuContext{}, x.cview(), s, y.view());
  return y;
}

T2 resize_tf1(const T2& x, std::int64_t out_h, std::int64_t out_w) {
  return irepa::ops::interpolate<double>(irepa::CpuContext{}, x.cview(), out_h, out_w, irepa::ops::ResizeMode::BilinearTf1);
}

void forward(const std::string& weights, const T2& images, T2& pool3, T2& spatial, T2& logits) {
  irepa::InceptionV3<double> net;
  net.load(irepa::io::SafeTensorsFile(weights));
  auto f = net.forward(irepa::CpuContext{}, images.cview());
  pool3 = std::move(f.pool3), spatial = std::move(f.spatial), logits = std::move(f.logits);
}

}  // namespace inception_ref
