// irepa-generate --device cuda: sampling (SiT or JiT) and VAE decoding on a GPU (see generate_job.hpp).

#include "generate_job.hpp"

namespace irepa::examples {

namespace {
template <template <class> class Gen>
class CudaGenerator final : public SampleGenerator {
 public:
  CudaGenerator(const Gen<Cpu>& host, const SdVae<float>* vae, GenerateSpec spec, int device, const std::string& precision)
      : ctx_(device), model_(host.config, REPAHead{}), spec_(std::move(spec)), device_(device), precision_(precision) {
    ctx_.set_matmul_precision(parse_matmul_precision(precision));
    copy_from_host(model_.params().values(), ConstView<float>(host.params().values()));
    if (vae) vae_.emplace(SdVae<float, Cuda>::from_host(*vae));
  }
  Tensor<std::uint8_t> generate(const Tensor<std::int64_t>& labels, std::uint64_t seed) override {
    return generate_batch(ctx_, model_, vae_ ? &*vae_ : nullptr, spec_, labels, seed);
  }
  std::string where() const override { return "cuda:" + std::to_string(device_) + " (matmul " + precision_ + ")"; }

 private:
  CudaContext ctx_;
  Gen<Cuda> model_;
  std::optional<SdVae<float, Cuda>> vae_;
  GenerateSpec spec_;
  int device_;
  std::string precision_;
};
}  // namespace

std::unique_ptr<SampleGenerator> make_cuda_generator(const GenSiT<>& model, const SdVae<float>* vae, GenerateSpec spec, int device,
                                                     const std::string& precision) {
  return std::make_unique<CudaGenerator<GenSiT>>(model, vae, std::move(spec), device, precision);
}
std::unique_ptr<SampleGenerator> make_cuda_generator(const GenJiT<>& model, const SdVae<float>* vae, GenerateSpec spec, int device,
                                                     const std::string& precision) {
  return std::make_unique<CudaGenerator<GenJiT>>(model, vae, std::move(spec), device, precision);
}

}  // namespace irepa::examples
