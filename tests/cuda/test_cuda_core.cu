// CUDA side of the core (label "cuda"; needs a GPU): device tensors and contexts, Philox on the
// device against the host (uniform and normal draws bit-identical, float and double), and bf16
// rounding of CUDA's __float2bfloat16_rn against Eigen's on the host (bit-identical).
// Also the device memory cache and cuBLAS error reporting.

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "irepa/core/context.hpp"
#include "irepa/core/dtype.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/ops/cuda/common.cuh"
#include "irepa/ops/cuda/random.cuh"

namespace {

template <class T>
__global__ void philox_kernel(std::uint32_t k0, std::uint32_t k1, std::uint64_t stream, std::int64_t n, T* u, T* z) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const std::uint32_t key[2] = {k0, k1};
  u[i] = irepa::philox_element<T, 0>(key, stream, static_cast<std::uint64_t>(i));
  z[i] = irepa::philox_element<T, 1>(key, stream, static_cast<std::uint64_t>(i));
}

/// Draws n uniforms and normals on the device and on the host; counts the differing bits.
template <class T>
void compare_philox(const irepa::CudaContext& ctx, std::int64_t n) {
  irepa::Tensor<T, irepa::Cuda> du(irepa::Shape{n}), dz(irepa::Shape{n});
  irepa::Philox host(0x1234abcd5678ULL, 9);
  irepa::Tensor<T> hu(irepa::Shape{n}), hz(irepa::Shape{n});
  host.uniform(hu.view());
  host.set_position(0);
  host.normal(hz.view());
  philox_kernel<T><<<static_cast<unsigned>((n + 255) / 256), 256, 0, ctx.stream()>>>(host.key()[0], host.key()[1], 9, n,
                                                                                    du.data(), dz.data());
  irepa::CudaContext::check(cudaGetLastError(), "philox_kernel launch");
  ctx.synchronize();
  std::vector<T> gu(n), gz(n);
  irepa::CudaContext::check(cudaMemcpy(gu.data(), du.data(), n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  irepa::CudaContext::check(cudaMemcpy(gz.data(), dz.data(), n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  std::int64_t umis = 0, zmis = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    umis += std::memcmp(&gu[i], &hu[i], sizeof(T)) != 0;
    zmis += std::memcmp(&gz[i], &hz[i], sizeof(T)) != 0;
  }
  IREPA_CUDA_EXPECT(umis == 0, "%s: %lld of %lld uniform draws differ between device and host", sizeof(T) == 4 ? "float" : "double",
         static_cast<long long>(umis), static_cast<long long>(n));
  IREPA_CUDA_EXPECT(zmis == 0, "%s: %lld of %lld normal draws differ between device and host", sizeof(T) == 4 ? "float" : "double",
         static_cast<long long>(zmis), static_cast<long long>(n));
}

__global__ void bf16_kernel(const float* in, std::uint16_t* out, std::int64_t n) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const __nv_bfloat16 b = __float2bfloat16_rn(in[i]);
  out[i] = *reinterpret_cast<const std::uint16_t*>(&b);
}
}  // namespace

int main() {
  if (!cuda_test::have_device()) return 1;
  irepa::CudaContext ctx(0);
  compare_philox<float>(ctx, 1 << 22);
  compare_philox<double>(ctx, 1 << 21);
  // A sharded generator (data-parallel ranks): the device fill is the host's, rank by rank.
  for (int world : {2, 3}) {
    for (int rank = 0; rank < world; ++rank) {
      irepa::Philox h(77, 5), d(77, 5);
      h.set_position(11), d.set_position(11);
      h.shard(rank, world), d.shard(rank, world);
      irepa::Tensor<float> hu(irepa::Shape{33, 3, 5});
      irepa::Tensor<double> hn(irepa::Shape{17});
      h.uniform(hu.view());
      h.normal(hn.view());
      irepa::Tensor<float, irepa::Cuda> du(hu.shape());
      irepa::Tensor<double, irepa::Cuda> dn(hn.shape());
      irepa::ops::random_uniform<float>(ctx, d, du.view());
      irepa::ops::random_normal<double>(ctx, d, dn.view());
      const auto bu = irepa::to_host<float>(ctx, du.cview());
      const auto bn = irepa::to_host<double>(ctx, dn.cview());
      IREPA_CUDA_EXPECT(std::memcmp(bu.data(), hu.data(), sizeof(float) * hu.numel()) == 0 &&
                            std::memcmp(bn.data(), hn.data(), sizeof(double) * hn.numel()) == 0 && d.position() == h.position(),
                        "sharded fill, rank %d of %d: device and host differ", rank, world);
    }
  }

  // bf16: every 97th float bit pattern (finite), device RNE against Eigen's host RNE.
  std::vector<float> f;
  for (std::uint64_t u = 0; u <= 0xFFFFFFFFull; u += 97 * 4096) {
    const float v = std::bit_cast<float>(static_cast<std::uint32_t>(u));
    if (!std::isnan(v)) f.push_back(v);
  }
  const auto m = static_cast<std::int64_t>(f.size());
  irepa::Tensor<float, irepa::Cuda> df(irepa::Shape{m});
  irepa::Tensor<std::uint16_t, irepa::Cuda> db(irepa::Shape{m});
  irepa::CudaContext::check(cudaMemcpy(df.data(), f.data(), m * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  bf16_kernel<<<static_cast<unsigned>((m + 255) / 256), 256>>>(df.data(), db.data(), m);
  std::vector<std::uint16_t> gb(m);
  irepa::CudaContext::check(cudaMemcpy(gb.data(), db.data(), m * sizeof(std::uint16_t), cudaMemcpyDeviceToHost), "cudaMemcpy");
  std::int64_t bmis = 0;
  for (std::int64_t i = 0; i < m; ++i) bmis += gb[i] != Eigen::numext::bit_cast<std::uint16_t>(irepa::bf16(f[i]));
  IREPA_CUDA_EXPECT(bmis == 0, "%lld of %lld bf16 conversions differ between CUDA and Eigen", static_cast<long long>(bmis),
         static_cast<long long>(m));


  // The device memory cache: a freed block of a size class comes back for the next request of
  // that class, without cudaMalloc; the counts follow.
  {
    auto& cache = irepa::detail::CudaMemoryCache::instance();
    const auto before = cache.stats();
    const void* first = nullptr;
    {
      irepa::Tensor<float, irepa::Cuda> a(irepa::Shape{1000});
      first = a.data();
      IREPA_CUDA_EXPECT(cache.stats().in_use == before.in_use + 4096, "in use %zu after a 4000-byte tensor (was %zu)",
                        cache.stats().in_use, before.in_use);
    }
    irepa::Tensor<float, irepa::Cuda> b(irepa::Shape{1010});  // the same 4096-byte class
    IREPA_CUDA_EXPECT(b.data() == first, "the cached block was not reused");
    IREPA_CUDA_EXPECT(cache.stats().peak_in_use >= before.in_use + 4096, "peak %zu", cache.stats().peak_in_use);
  }
  // Pinned staging: uploads return before their DMA lands and the host buffer is overwritten at
  // once; every upload must still arrive whole (two staging buffers, reused in turn and grown).
  {
    std::vector<irepa::Tensor<float, irepa::Cuda>> dev;
    irepa::Tensor<float> host(irepa::Shape{1});
    std::vector<std::int64_t> sizes;
    for (int k = 0; k < 9; ++k) {
      const std::int64_t n = (std::int64_t{1} << (12 + 2 * (k % 5))) + 37 * k;  // 4 K .. 1 M values, growing and shrinking
      sizes.push_back(n);
      host = irepa::Tensor<float>(irepa::Shape{n});
      for (std::int64_t i = 0; i < n; ++i) host[i] = static_cast<float>(k * 1000003 + i);
      dev.push_back(irepa::to_device<float>(ctx, host.cview()));
      for (std::int64_t i = 0; i < n; ++i) host[i] = -1.0f;  // reused before the copy is known to be done
    }
    std::int64_t wrong = 0;
    for (int k = 0; k < 9; ++k) {
      const auto back = irepa::to_host<float>(ctx, dev[static_cast<std::size_t>(k)].cview());
      for (std::int64_t i = 0; i < sizes[static_cast<std::size_t>(k)]; ++i) wrong += back[i] != static_cast<float>(k * 1000003 + i);
    }
    IREPA_CUDA_EXPECT(wrong == 0, "%lld values wrong after staged uploads and downloads", static_cast<long long>(wrong));
  }
  // cuBLAS errors become irepa::Error naming the call and cuBLAS's status.
  {
    const float one = 1;
    bool named = false;
    try {
      irepa::CudaContext::check_cublas(
          cublasSgemm(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, -1, 1, 1, &one, nullptr, 1, nullptr, 1, &one, nullptr, 1),
          "cublasSgemm (m = -1)");
    } catch (const irepa::Error& e) {
      named = std::string(e.what()).find("cublasSgemm (m = -1)") != std::string::npos &&
              std::string(e.what()).find("status") != std::string::npos;
    }
    IREPA_CUDA_EXPECT(named, "an invalid cuBLAS call was not an irepa::Error naming it");
  }
  return cuda_test::finish("cuda_core");
}
