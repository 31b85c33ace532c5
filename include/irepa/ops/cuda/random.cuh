#pragma once
// Random fills on the GPU (CudaContext overloads of ops/cpu/random.hpp): one thread per Philox
// block, the same counter layout and Box-Muller steps as the host, so the values are the host's
// bit for bit; the generator's position advances by the blocks the draw used.

#include "irepa/core/rng.hpp"
#include "irepa/ops/cpu/random.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {
template <class T, int Kind>
__global__ void philox_fill_kernel(T* out, std::int64_t n, std::uint32_t k0, std::uint32_t k1, std::uint64_t stream,
                                   std::uint64_t first_block, T a, T b) {
  constexpr int per = philox_per_block<T>;
  const std::uint32_t key[2] = {k0, k1};
  const std::int64_t blocks = (n + per - 1) / per;
  for (std::int64_t k = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; k < blocks;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    T v[4];
    philox_block<T, Kind>(key, stream, first_block + static_cast<std::uint64_t>(k), v);
    for (int l = 0; l < per; ++l) {
      const std::int64_t i = k * per + l;
      if (i < n) out[i] = philox_affine(a, b, v[l]);
    }
  }
}

/// A sharded generator's fill (Philox::shard): element i is element sharded_index(i) of the
/// unsplit fill from block first_block; one thread per element.
template <class T, int Kind>
__global__ void philox_sharded_fill_kernel(T* out, std::int64_t n, std::uint32_t k0, std::uint32_t k1, std::uint64_t stream,
                                           std::uint64_t first_block, std::int64_t per_row, std::int64_t rank, std::int64_t world,
                                           T a, T b) {
  const std::uint32_t key[2] = {k0, k1};
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t g = first_block * philox_per_block<T> + Philox::sharded_index(i, per_row, rank, world);
    out[i] = philox_affine(a, b, philox_element<T, Kind>(key, stream, g));
  }
}

template <class T, int Kind>
void philox_fill(const CudaContext& ctx, Philox& rng, TensorView<T, Cuda> out, T a, T b, const char* op) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "random fills: float or double");
  check_contiguous(op, out);
  const std::int64_t n = out.numel();
  const std::uint64_t first = rng.take_blocks<T>(n);
  if (n == 0) return;
  if (rng.shard_world() > 1) {
    const std::int64_t rows = out.rank() > 0 ? out.size(0) : 1;
    philox_sharded_fill_kernel<T, Kind><<<blocks_for(n), kThreads, 0, ctx.stream()>>>(
        out.data(), n, rng.key()[0], rng.key()[1], rng.stream(), first, rows > 0 ? n / rows : 1, rng.shard_rank(), rng.shard_world(), a, b);
    CudaContext::check_launch(op);
    return;
  }
  const std::int64_t blocks = (n + philox_per_block<T> - 1) / philox_per_block<T>;
  philox_fill_kernel<T, Kind><<<blocks_for(blocks), kThreads, 0, ctx.stream()>>>(out.data(), n, rng.key()[0], rng.key()[1],
                                                                                   rng.stream(), first, a, b);
  CudaContext::check_launch(op);
}
}  // namespace cuda_detail

/// out = lo + (hi - lo) U[0, 1) on the device, the host's values.
template <class T>
void random_uniform(const CudaContext& ctx, Philox& rng, TensorView<T, Cuda> out, std::type_identity_t<T> lo = T(0),
                    std::type_identity_t<T> hi = T(1)) {
  cuda_detail::philox_fill<T, 0>(ctx, rng, out, lo, static_cast<T>(hi - lo), "random_uniform");
}

/// out = mean + std N(0, 1) on the device, the host's values.
template <class T>
void random_normal(const CudaContext& ctx, Philox& rng, TensorView<T, Cuda> out, std::type_identity_t<T> mean = T(0),
                   std::type_identity_t<T> std = T(1)) {
  cuda_detail::philox_fill<T, 1>(ctx, rng, out, mean, std, "random_normal");
}

}  // namespace irepa::ops
