// irepa-bench-encoder --device cuda: see encoder_cuda.hpp.

#include <chrono>
#include <memory>

#include "encoder_cuda.hpp"
#include "irepa/ops/cuda/tensor_ops.cuh"

namespace bench {

EncoderTiming time_vit_cuda(const irepa::VitConfig& cfg_in, const std::string& weights, std::int64_t batch, std::int64_t resolution,
                            int steps, const std::string& precision, bool fused_attention) {
  using namespace irepa;
  CudaContext ctx;
  ctx.set_matmul_precision(parse_matmul_precision(precision));
  ctx.set_fused_attention(fused_attention);
  VitConfig cfg = cfg_in;
  std::unique_ptr<VitEncoder<float, Cuda>> enc;
  if (!weights.empty()) {
    const io::SafeTensorsFile f(weights);
    cfg.block_chunks = VitEncoder<float>::detect_block_chunks(f, "", cfg.depth);
    enc = std::make_unique<VitEncoder<float, Cuda>>(cfg);
    enc->load(f);
  } else {
    enc = std::make_unique<VitEncoder<float, Cuda>>(cfg);
    enc->init_random(1, 0.02f);
  }
  Tensor<float> host(Shape{batch, 3, resolution, resolution});
  Philox(2).uniform(host.view(), 0.0f, 255.0f);
  const Tensor<float, Cuda> images = to_device(ctx, host.cview());
  (void)enc->encode(ctx, images);  // warm-up: cuBLAS handles, the memory cache
  ctx.synchronize();
  EncoderTiming t;
  Cuda::reset_peak();
  const double base = static_cast<double>(Cuda::memory_stats().in_use);
  for (int s = 0; s < steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto out = enc->encode(ctx, images);
    ctx.synchronize();
    t.seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    IREPA_CHECK(out.size(0) == batch, "bench: encoder returned {} rows", out.size(0));
  }
  t.peak_gib = (static_cast<double>(Cuda::memory_stats().peak_in_use) - base) / (1024.0 * 1024.0 * 1024.0);
  return t;
}

}  // namespace bench
