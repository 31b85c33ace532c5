// irepa-bench-cuda-ops: the CUDA ops at SiT shapes, timed with CUDA events after a warm-up,
// printed as one table (needs a GPU). The cuBLAS bf16 GEMM rows give the ceiling that MFU is
// measured against; the rest say where our kernels stand next to it.
//
//   irepa-bench-cuda-ops [--batch 256] [--width 768] [--heads 12] [--tokens 256] [--reps 20]

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "irepa/core/rng.hpp"
#include "irepa/ops/cuda/activation.cuh"
#include "irepa/ops/cuda/attention.cuh"
#include "irepa/ops/cuda/linear.cuh"
#include "irepa/ops/cuda/modulate.cuh"
#include "irepa/ops/cuda/norm.cuh"

using namespace irepa;

namespace {

/// Median milliseconds of f over reps runs (after two warm-ups), timed on ctx's stream.
double time_ms(const CudaContext& ctx, int reps, const std::function<void()>& f) {
  f();
  f();
  cudaEvent_t a, b;
  CudaContext::check(cudaEventCreate(&a), "cudaEventCreate");
  CudaContext::check(cudaEventCreate(&b), "cudaEventCreate");
  std::vector<float> ms;
  for (int r = 0; r < reps; ++r) {
    CudaContext::check(cudaEventRecord(a, ctx.stream()), "cudaEventRecord");
    f();
    CudaContext::check(cudaEventRecord(b, ctx.stream()), "cudaEventRecord");
    CudaContext::check(cudaEventSynchronize(b), "cudaEventSynchronize");
    float t = 0;
    CudaContext::check(cudaEventElapsedTime(&t, a, b), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

template <class T>
Tensor<T, Cuda> random_device(const CudaContext& ctx, const Shape& s, float std = 1.0f) {
  Tensor<float> h(s);
  Philox(7, static_cast<std::uint64_t>(s.numel())).normal(h.view(), 0.0f, std);
  Tensor<float, Cuda> d = to_device<float>(ctx, h.view());
  if constexpr (std::is_same_v<T, float>) {
    return d;
  } else {
    Tensor<bf16, Cuda> b(s);
    convert(ctx, d.view(), b.view());
    return b;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t batch = 256, width = 768, heads = 12, tokens = 256;
  int reps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long long v = std::atoll(argv[i + 1]);
    if (k == "--batch") batch = v;
    else if (k == "--width") width = v;
    else if (k == "--heads") heads = v;
    else if (k == "--tokens") tokens = v;
    else if (k == "--reps") reps = static_cast<int>(v);
    else {
      std::fprintf(stderr, "irepa-bench-cuda-ops: unknown option %s (--batch, --width, --heads, --tokens, --reps)\n", k.c_str());
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "irepa-bench-cuda-ops: no CUDA device\n");
    return 1;
  }
  try {
    CudaContext ctx(0);
    cudaDeviceProp prop{};
    CudaContext::check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    const std::int64_t rows = batch * tokens, D = width;
    std::printf("device: %s; batch %lld, tokens %lld, width %lld, heads %lld\n\n", prop.name, static_cast<long long>(batch),
                static_cast<long long>(tokens), static_cast<long long>(D), static_cast<long long>(heads));
    std::printf("| op | shape | time | rate |\n|---|---|---|---|\n");
    auto row = [](const char* op, const std::string& shape, double ms, double flops, double bytes) {
      if (flops > 0) std::printf("| %s | %s | %.3f ms | %.1f TFLOP/s |\n", op, shape.c_str(), ms, flops / ms / 1e9);
      else std::printf("| %s | %s | %.3f ms | %.0f GB/s |\n", op, shape.c_str(), ms, bytes / ms / 1e6);
    };
    for (const std::int64_t O : {3 * D, 4 * D}) {  // qkv and fc1; fc2 is the transpose of fc1's shape
      const std::string shape = "[" + std::to_string(rows) + ", " + std::to_string(D) + "] x [" + std::to_string(D) + ", " +
                                std::to_string(O) + "]";
      {
        auto x = random_device<bf16>(ctx, Shape{rows, D}), w = random_device<bf16>(ctx, Shape{O, D}, 0.03f);
        Tensor<float, Cuda> b = random_device<float>(ctx, Shape{O});
        Tensor<bf16, Cuda> y(Shape{rows, O});
        const double ms = time_ms(ctx, reps, [&] { ops::linear_forward(ctx, x.view(), w.view(), b.view(), y.view()); });
        row("linear fwd bf16 (cuBLAS + bias/round)", shape, ms, 2.0 * rows * D * O, 0);
        Tensor<float, Cuda> acc(Shape{rows, O});
        const double gms = time_ms(ctx, reps, [&] {
          ops::cuda_detail::gemm_bf16_row_major(ctx, rows, O, D, x.data(), false, w.data(), true, acc.data(), CUDA_R_32F, 0.0f, "gemm");
        });
        row("cuBLAS bf16 GEMM alone (ceiling)", shape, gms, 2.0 * rows * D * O, 0);
      }
      {
        auto x = random_device<float>(ctx, Shape{rows, D}), w = random_device<float>(ctx, Shape{O, D}, 0.03f), b = random_device<float>(ctx, Shape{O});
        Tensor<float, Cuda> y(Shape{rows, O});
        const double ms = time_ms(ctx, reps, [&] { ops::linear_forward<float>(ctx, x.view(), w.view(), b.view(), y.view()); });
        row("linear fwd fp32 (no TF32)", shape, ms, 2.0 * rows * D * O, 0);
      }
    }
    {
      auto x = random_device<float>(ctx, Shape{rows, 4 * D}), dy = random_device<float>(ctx, Shape{rows, 4 * D});
      Tensor<float, Cuda> y(Shape{rows, 4 * D});
      const std::string shape = "[" + std::to_string(rows) + ", " + std::to_string(4 * D) + "]";
      row("gelu_tanh fwd fp32", shape, time_ms(ctx, reps, [&] { ops::gelu_tanh_forward<float>(ctx, x.view(), y.view()); }), 0,
          8.0 * x.numel());
      row("gelu_tanh bwd fp32", shape, time_ms(ctx, reps, [&] { ops::gelu_tanh_backward<float>(ctx, x.view(), dy.view(), y.view()); }),
          0, 12.0 * x.numel());
    }
    {
      auto x = random_device<float>(ctx, Shape{rows, D});
      Tensor<float, Cuda> y(Shape{rows, D}), r(Shape{rows});
      const std::string shape = "[" + std::to_string(rows) + ", " + std::to_string(D) + "]";
      row("layer_norm fwd fp32", shape, time_ms(ctx, reps, [&] { ops::layer_norm_forward<float>(ctx, x.view(), 1e-6f, y.view(), r.view()); }),
          0, 8.0 * x.numel());
      auto sh = random_device<float>(ctx, Shape{batch, D}), sc = random_device<float>(ctx, Shape{batch, D});
      const auto x3 = x.view().reshape(Shape{batch, tokens, D});
      auto y3 = y.view().reshape(Shape{batch, tokens, D});
      row("modulate fwd fp32", shape, time_ms(ctx, reps, [&] { ops::modulate_forward<float>(ctx, x3, sh.view(), sc.view(), y3); }), 0,
          8.0 * x.numel());
    }
    {
      auto qkv = random_device<float>(ctx, Shape{batch, tokens, 3 * D});
      Tensor<float, Cuda> out(Shape{batch, tokens, D}), dqkv(Shape{batch, tokens, 3 * D});
      ops::AttentionSpec<float, Cuda> spec;
      spec.heads = heads;
      const std::string shape = "B " + std::to_string(batch) + ", T " + std::to_string(tokens) + ", hd " + std::to_string(D / heads);
      const double flops = 4.0 * batch * heads * tokens * tokens * (D / heads);
      row("attention fwd fp32 (materialised)", shape,
          time_ms(ctx, reps, [&] { ops::attention_forward<float>(ctx, qkv.view(), spec, out.view()); }), flops, 0);
      const auto cache = ops::attention_forward<float>(ctx, qkv.view(), spec, out.view());
      row("attention bwd fp32 (materialised)", shape,
          time_ms(ctx, reps, [&] { ops::attention_backward<float>(ctx, spec, cache, out.view(), dqkv.view()); }), 2.0 * flops, 0);
    }
    const auto st = irepa::detail::CudaMemoryCache::instance().stats();
    std::printf("\ndevice memory: peak %.2f GiB in use, %.2f GiB cached at the end\n", st.peak_in_use / 1073741824.0,
                st.cached / 1073741824.0);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "irepa-bench-cuda-ops: %s\n", e.what());
    return 1;
  }
}
