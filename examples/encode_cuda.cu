// irepa-encode --device cuda: the SD-VAE's encoder on a GPU (see encode_job.hpp).

#include "encode_job.hpp"

namespace irepa::examples {

namespace {
class CudaPosteriorEncoder final : public PosteriorEncoder {
 public:
  CudaPosteriorEncoder(const SdVae<float>& host, int device, const std::string& precision)
      : ctx_(device), vae_(SdVae<float, Cuda>::from_host(host)), device_(device), precision_(precision) {
    ctx_.set_matmul_precision(parse_matmul_precision(precision));
  }
  Tensor<float> encode(const Tensor<float>& images) override {
    const Tensor<float> x = scale_pixels(images);
    const auto xd = to_device(ctx_, x.cview());
    return to_host(ctx_, vae_.encode(ctx_, xd.cview()).cview());
  }
  std::string where() const override { return "cuda:" + std::to_string(device_) + " (matmul " + precision_ + ")"; }

 private:
  CudaContext ctx_;
  SdVae<float, Cuda> vae_;
  int device_;
  std::string precision_;
};
}  // namespace

std::unique_ptr<PosteriorEncoder> make_cuda_posterior_encoder(const SdVae<float>& host, int device, const std::string& precision) {
  return std::make_unique<CudaPosteriorEncoder>(host, device, precision);
}

}  // namespace irepa::examples
