// irepa-eval --device cuda: the FID Inception-v3 on a GPU, FP32 products (see eval_job.hpp).

#include "eval_job.hpp"

namespace irepa::examples {

namespace {
class CudaInception final : public InceptionRunner {
 public:
  CudaInception(const InceptionV3<float>& host, int device) : ctx_(device), net_(InceptionV3<float, Cuda>::from_host(host)), device_(device) {
    ctx_.set_matmul_precision(MatmulPrecision::fp32);
  }
  InceptionActivations run(const Tensor<float>& images) override { return run_inception(ctx_, net_, images); }
  std::string where() const override { return "cuda:" + std::to_string(device_) + " (fp32 products)"; }

 private:
  CudaContext ctx_;
  InceptionV3<float, Cuda> net_;
  int device_;
};
}  // namespace

std::unique_ptr<InceptionRunner> make_cuda_inception(const InceptionV3<float>& host, int device) {
  return std::make_unique<CudaInception>(host, device);
}

}  // namespace irepa::examples
