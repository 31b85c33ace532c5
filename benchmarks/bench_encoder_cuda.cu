// irepa-bench-encoder --device cuda: see encoder_cuda.hpp.

#include <chrono>
#include <memory>

#include "encoder_cuda.hpp"
#include "irepa/models/hog.hpp"
#include "irepa/ops/cuda/tensor_ops.cuh"

namespace bench {

namespace {

using namespace irepa;

/// One warm-up batch (cuBLAS / cuDNN handles, the memory cache), then `steps` timed batches of
/// the same random uint8-valued images, each synchronised.
template <class Encode>
EncoderTiming time_batches(CudaContext& ctx, std::int64_t batch, std::int64_t resolution, int steps, Encode&& encode) {
  Tensor<float> host(Shape{batch, 3, resolution, resolution});
  Philox(2).uniform(host.view(), 0.0f, 255.0f);
  const Tensor<float, Cuda> images = to_device(ctx, host.cview());
  (void)encode(images);
  ctx.synchronize();
  EncoderTiming t;
  Cuda::reset_peak();
  const double base = static_cast<double>(Cuda::memory_stats().in_use);
  for (int s = 0; s < steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto out = encode(images);
    ctx.synchronize();
    t.seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    IREPA_CHECK(out.size(0) == batch, "bench: encoder returned {} rows", out.size(0));
  }
  t.peak_gib = (static_cast<double>(Cuda::memory_stats().peak_in_use) - base) / (1024.0 * 1024.0 * 1024.0);
  return t;
}

/// An encoder read (or drawn) on the host, then placed on the GPU by from_host, as the trainer
/// places its online targets.
template <class HostEnc, class Config>
EncoderTiming time_from_host(const Config& cfg, const std::string& weights, std::int64_t batch, std::int64_t resolution, int steps,
                             const std::string& precision) {
  CudaContext ctx;
  ctx.set_matmul_precision(parse_matmul_precision(precision));
  HostEnc host(cfg);
  if (!weights.empty()) host.load(io::SafeTensorsFile(weights));
  else host.init_random(1, 0.02f);
  const auto enc = HostEnc::template On<Cuda>::from_host(host);
  return time_batches(ctx, batch, resolution, steps, [&](const Tensor<float, Cuda>& x) { return enc.encode(ctx, x); });
}

}  // namespace

EncoderTiming time_vit_cuda(const irepa::VitConfig& cfg_in, const std::string& weights, std::int64_t batch, std::int64_t resolution,
                            int steps, const std::string& precision, bool fused_attention) {
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
  return time_batches(ctx, batch, resolution, steps, [&](const Tensor<float, Cuda>& x) { return enc->encode(ctx, x); });
}

EncoderTiming time_vgg_cuda(const irepa::VggConfig& cfg, const std::string& weights, std::int64_t batch, std::int64_t resolution,
                            int steps, const std::string& precision) {
  return time_from_host<VggEncoder<float>>(cfg, weights, batch, resolution, steps, precision);
}

EncoderTiming time_sam_cuda(const irepa::SamConfig& cfg, const std::string& weights, std::int64_t batch, std::int64_t resolution,
                            int steps, const std::string& precision) {
  return time_from_host<SamEncoder<float>>(cfg, weights, batch, resolution, steps, precision);
}

EncoderTiming time_sam2_cuda(const irepa::Sam2Config& cfg, const std::string& weights, std::int64_t batch, std::int64_t resolution,
                             int steps, const std::string& precision) {
  return time_from_host<Sam2Encoder<float>>(cfg, weights, batch, resolution, steps, precision);
}

EncoderTiming time_hog_cuda(const std::string& name, std::int64_t batch, std::int64_t resolution, int steps) {
  CudaContext ctx;
  const HogEncoder enc(name, resolution);
  return time_batches(ctx, batch, resolution, steps, [&](const Tensor<float, Cuda>& x) { return enc.encode(ctx, x); });
}

}  // namespace bench
