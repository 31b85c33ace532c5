// irepa-bench-train-cuda: the whole SiT training step on the GPU (needs one), as irepa-bench-train
// times it on the CPU (Trainer::step: forward, denoising + alignment losses, backward, grad-norm
// clip, AdamW and EMA) after warm-up steps, with the matrix products in fp32, tf32 or bf16.
// Prints a table: img/s, step time, peak device memory, host <-> device bytes per step, and MFU
// against cuBLAS fp32 and bf16 GEMMs measured in the same run.
//
//   irepa-bench-train-cuda --model SiT-B/2 --batch-size 256
//   irepa-bench-train-cuda --model SiT-XL/2 --batch-size 128 --steps 5
//
// Compare with benchmarks/reference/sit_step_torch.py --device cuda in the same run.

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "irepa/models/sit.hpp"
#include "irepa/ops/cuda/linear.cuh"
#include "train_step_timer.hpp"

using namespace irepa;

namespace {

struct Options {
  std::string model = "SiT-B/2", head = "irepa", precision = "fp32", attention = "materialized";
  std::int64_t batch = 256, input_size = 32, z_dim = 768, encoder_depth = 4;
  int steps = 10, warmup = 3;
};

/// TFLOP/s of an n x n x n cuBLAS GEMM (fp32 without TF32, or bf16 with fp32 accumulation).
double gemm_tflops(const CudaContext& ctx, bool bf16_inputs, std::int64_t n = 8192) {
  Tensor<float, Cuda> a(Shape{n, n}), c(Shape{n, n});
  fill(ctx, a.view(), 0.5f);
  Tensor<bf16, Cuda> ab(Shape{n, n});
  if (bf16_inputs) convert(ctx, a.cview(), ab.view());
  auto run = [&] {
    if (bf16_inputs)
      ops::cuda_detail::gemm_bf16_row_major(ctx, n, n, n, ab.data(), false, ab.data(), true, c.data(), CUDA_R_32F, 0.0f, "bench gemm");
    else
      ops::cuda_detail::gemm_row_major<float>(ctx, n, n, n, a.data(), false, a.data(), true, c.data(), 1.0f, 0.0f, "bench gemm");
  };
  run();
  ctx.synchronize();
  const int reps = 10;
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) run();
  ctx.synchronize();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
  return 2.0 * static_cast<double>(n) * n * n / s / 1e12;
}

/// Matrix-product FLOPs of one training step per image (forward x 3: the backward is two products
/// per forward product): the blocks' linears and attention, adaLN, patch embedding, final layer and
/// the projector.
double step_flops_per_image(const SiTConfig& cfg, std::int64_t D, std::int64_t depth, std::int64_t T, std::int64_t p,
                            const std::string& head, std::int64_t Z) {
  const double d = static_cast<double>(D), t = static_cast<double>(T), pc = static_cast<double>(p * p * cfg.in_channels);
  double fwd = static_cast<double>(depth) * (24.0 * d * d * t + 4.0 * t * t * d + 12.0 * d * d);
  fwd += 2.0 * t * d * pc * 2.0 + 4.0 * d * d;  // patch embed, final linear, final adaLN
  fwd += head == "irepa" ? 2.0 * 9.0 * d * static_cast<double>(Z) * t
                         : 2.0 * t * (d * 2048.0 + 2048.0 * 2048.0 + 2048.0 * static_cast<double>(Z));
  return 3.0 * fwd;
}

template <class Model>
void run(const Options& o, const SiTConfig& cfg, typename Model::head_type head) {
  CudaContext ctx;
  const MatmulPrecision precision = parse_matmul_precision(o.precision);
  ctx.set_matmul_precision(precision);
  IREPA_CHECK(o.attention == "fused" || o.attention == "materialized",
              "irepa-bench-train-cuda: --attention '{}' is not known; expected fused or materialized", o.attention);
  ctx.set_fused_attention(o.attention == "fused");
  detail::CudaMemoryCache::instance().reset_peak();
  const auto r = bench::time_train_steps<Model>(ctx, cfg, head, o.batch, o.z_dim, o.warmup, o.steps, o.head == "irepa" ? 1.0 : 0.5);
  const double median = r.median;
  const double peak_gb = static_cast<double>(detail::CudaMemoryCache::instance().stats().peak_in_use) / 1e9;
  const Model m(cfg, head);  // the sizes for the FLOP count (after the peak was read)
  const double flops = step_flops_per_image(cfg, m.hidden, m.depth, m.grid.tokens(), m.patch, o.head, o.z_dim) *
                       static_cast<double>(o.batch);
  ctx.set_matmul_precision(MatmulPrecision::fp32);  // the ceilings: plain FP32 and bf16 inputs
  const double f32 = gemm_tflops(ctx, false), b16 = gemm_tflops(ctx, true);
  const double achieved = flops / median / 1e12;
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, ctx.device());
  std::printf("device: %s; float storage, matrix products in %s%s; last loss %.4f; per step %lld bytes up, %lld down\n", prop.name,
              std::string(to_string(precision)).c_str(), precision == MatmulPrecision::fp32 ? " (no TF32)" : " (tensor cores, FP32 accumulation)",
              r.last_loss, static_cast<long long>(r.per_step.upload_bytes), static_cast<long long>(r.per_step.download_bytes));
  std::printf("| model | head | matmul | attention | batch | params | median step | best step | img/s | TFLOP/s | MFU vs fp32 GEMM (%.1f) | vs bf16 GEMM (%.1f) | peak memory |\n",
              f32, b16);
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::printf("| %s | %s | %s | %s | %lld | %.1fM | %.1f ms | %.1f ms | %.1f | %.1f | %.0f%% | %.0f%% | %.2f GB |\n", o.model.c_str(),
              o.head.c_str(), o.precision.c_str(), o.attention.c_str(), static_cast<long long>(o.batch), static_cast<double>(m.num_params()) / 1e6, median * 1e3,
              r.best * 1e3, static_cast<double>(o.batch) / median, achieved, 100.0 * achieved / f32, 100.0 * achieved / b16,
              peak_gb);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") o.model = v;
    else if (k == "--head") o.head = v;
    else if (k == "--batch-size") o.batch = std::atoll(v.c_str());
    else if (k == "--input-size") o.input_size = std::atoll(v.c_str());
    else if (k == "--z-dim") o.z_dim = std::atoll(v.c_str());
    else if (k == "--encoder-depth") o.encoder_depth = std::atoll(v.c_str());
    else if (k == "--steps") o.steps = std::atoi(v.c_str());
    else if (k == "--warmup") o.warmup = std::atoi(v.c_str());
    else if (k == "--precision") o.precision = v;
    else if (k == "--attention") o.attention = v;
    else {
      std::fprintf(stderr,
                   "irepa-bench-train-cuda: unknown option %s (--model, --head irepa|repa, --batch-size, --input-size, --z-dim, "
                   "--encoder-depth, --steps, --warmup, --precision fp32|tf32|bf16, --attention materialized|fused)\n",
                   k.c_str());
      return 2;
    }
  }
  try {
    IREPA_CHECK(o.head == "irepa" || o.head == "repa", "irepa-bench-train-cuda: --head '{}' is not known; expected irepa or repa", o.head);
    IREPA_CHECK(o.batch > 0 && o.steps > 0 && o.warmup >= 0, "irepa-bench-train-cuda: batch {} and steps {} must be positive", o.batch,
                o.steps);
    const SiTConfig cfg = bench::bench_sit_config(o.model, o.input_size, o.z_dim, o.encoder_depth);
    bench::with_bench_head(o.head, [&](auto head) { run<SiT<Dynamic, DynamicPatch, decltype(head), float, Cuda>>(o, cfg, head); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  return 0;
}
