#pragma once
// irepa-eval's network half: the FID Inception-v3 over batches of uint8 NHWC images, on the CPU
// (eval.cpp) or a GPU (eval_cuda.cu, compiled by nvcc; nvcc never sees the CPU side). The GPU
// runs its products in FP32: TF32 moves FID.

#include <memory>
#include <string>

#include <irepa/models/inception_v3.hpp>

namespace irepa::examples {

/// One batch's features on the host: pool_3 [B, 2048], spatial [B, 2023], logits [B, 1008].
struct InceptionActivations {
  Tensor<float> pool3, spatial, logits;
};

class InceptionRunner {
 public:
  virtual ~InceptionRunner() = default;
  /// images: uint8 values as float, [B, H, W, 3].
  virtual InceptionActivations run(const Tensor<float>& images) = 0;
  virtual std::string where() const = 0;
};

template <class Ctx>
InceptionActivations run_inception(const Ctx& ctx, const InceptionV3<float, typename Ctx::device_type>& net, const Tensor<float>& images) {
  const auto x = to_device(ctx, images.cview());
  const auto f = net.forward(ctx, x.cview());
  return {to_host(ctx, f.pool3.cview()), to_host(ctx, f.spatial.cview()), to_host(ctx, f.logits.cview())};
}

/// The network on GPU `device` (a build with CUDA).
std::unique_ptr<InceptionRunner> make_cuda_inception(const InceptionV3<float>& host, int device);

}  // namespace irepa::examples
