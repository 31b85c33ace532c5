#pragma once
// Shared pieces of the CUDA ops (compiled by nvcc only): launch shapes, warp and block sums,
// host <-> device copies on a context's stream.

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "irepa/core/context.hpp"
#include "irepa/core/dtype.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa {

/// A host tensor copied to the device (on ctx's stream, through its pinned staging buffers:
/// returns before the copy lands; the host memory may be reused at once).
template <class T>
Tensor<T, Cuda> to_device(const CudaContext& ctx, ConstView<T> host) {
  check_contiguous("to_device", host);
  Tensor<T, Cuda> d(host.shape());
  ctx.upload(d.data(), host.data(), sizeof(T) * static_cast<std::size_t>(host.numel()));
  return d;
}

/// A device tensor copied to the host; waits for ctx's stream (so for every op before it).
template <class T>
Tensor<T> to_host(const CudaContext& ctx, ConstView<T, Cuda> dev) {
  check_contiguous("to_host", dev);
  Tensor<T> h(dev.shape());
  ctx.download(h.data(), dev.data(), sizeof(T) * static_cast<std::size_t>(dev.numel()));
  ctx.synchronize();
  return h;
}

namespace ops::cuda_detail {

constexpr int kThreads = 256;

/// Blocks for a grid-stride loop over n items (capped: each thread then takes several).
inline unsigned blocks_for(std::int64_t n, int threads = kThreads) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((n + threads - 1) / threads, 1, 65536));
}

/// Threads per block for kernels that give a block to each row of D values.
inline int row_threads(std::int64_t D) { return static_cast<int>(std::clamp<std::int64_t>((D + 31) / 32 * 32, 128, 1024)); }

struct SumOp {
  template <class T>
  __device__ static T apply(T a, T b) {
    return a + b;
  }
};
struct MaxOp {
  template <class T>
  __device__ static T apply(T a, T b) {
    return a > b ? a : b;
  }
};

template <class Op, class T>
__device__ inline T warp_reduce(T v) {
  for (int o = 16; o > 0; o >>= 1) v = Op::apply(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// Op over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
/// `scratch` holds 32 values of shared memory; `identity` is Op's neutral value. The block
/// synchronises inside.
template <class Op, class T>
__device__ inline T block_reduce(T v, T* scratch, T identity) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_reduce<Op>(v);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_reduce<Op>(lane < warps ? scratch[lane] : identity);
}
template <class T>
__device__ inline T block_sum(T v, T* scratch) {
  return block_reduce<SumOp>(v, scratch, T(0));
}
template <class T>
__device__ inline T block_max(T v, T* scratch) {
  return block_reduce<MaxOp>(v, scratch, T(-INFINITY));
}

template <class T>
__global__ void fill_kernel(T* p, T v, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    p[i] = v;
}

/// irepa::bf16 (Eigen's) and CUDA's __nv_bfloat16 share one bit layout.
inline const __nv_bfloat16* as_cuda(const bf16* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }
inline __nv_bfloat16* as_cuda(bf16* p) { return reinterpret_cast<__nv_bfloat16*>(p); }

__global__ inline void to_bf16_kernel(const float* x, __nv_bfloat16* y, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}
__global__ inline void from_bf16_kernel(const __nv_bfloat16* x, float* y, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    y[i] = __bfloat162float(x[i]);
}

template <class To, class From>
__global__ void convert_kernel(const From* x, To* y, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    y[i] = static_cast<To>(x[i]);
}

}  // namespace ops::cuda_detail

/// y = x converted elementwise (same shape, contiguous) between arithmetic types (float,
/// double); bf16 has the two overloads below.
template <class To, class From>
  requires(std::is_arithmetic_v<To> && std::is_arithmetic_v<From>)
void convert(const CudaContext& ctx, ConstView<From, Cuda> x, TensorView<To, Cuda> y) {
  check_shape("convert", "output", y.shape(), x.shape());
  check_contiguous("convert", x, y);
  if (x.numel() == 0) return;
  ops::cuda_detail::convert_kernel<To, From><<<ops::cuda_detail::blocks_for(x.numel()), ops::cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), y.data(), x.numel());
  CudaContext::check_launch("convert");
}
/// bf16 copy of float values (round to nearest even, as autocast's casts): master weights ->
/// GEMM inputs, float activations -> bf16 ones.
inline void convert(const CudaContext& ctx, ConstView<float, Cuda> x, TensorView<bf16, Cuda> y) {
  check_shape("convert", "output", y.shape(), x.shape());
  check_contiguous("convert", x, y);
  if (x.numel() == 0) return;
  ops::cuda_detail::to_bf16_kernel<<<ops::cuda_detail::blocks_for(x.numel()), ops::cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data(), ops::cuda_detail::as_cuda(y.data()), x.numel());
  CudaContext::check_launch("convert to bf16");
}
/// float copy of bf16 values (exact).
inline void convert(const CudaContext& ctx, ConstView<bf16, Cuda> x, TensorView<float, Cuda> y) {
  check_shape("convert", "output", y.shape(), x.shape());
  check_contiguous("convert", x, y);
  if (x.numel() == 0) return;
  ops::cuda_detail::from_bf16_kernel<<<ops::cuda_detail::blocks_for(x.numel()), ops::cuda_detail::kThreads, 0, ctx.stream()>>>(
      ops::cuda_detail::as_cuda(x.data()), y.data(), x.numel());
  CudaContext::check_launch("convert from bf16");
}

/// Every element of a contiguous device view set to v (on ctx's stream).
template <class T>
void fill(const CudaContext& ctx, TensorView<T, Cuda> t, std::type_identity_t<T> v) {
  check_contiguous("fill", t);
  if (t.numel() == 0) return;
  ops::cuda_detail::fill_kernel<T><<<ops::cuda_detail::blocks_for(t.numel()), ops::cuda_detail::kThreads, 0, ctx.stream()>>>(
      t.data(), v, t.numel());
  CudaContext::check_launch("fill");
}

}  // namespace irepa
