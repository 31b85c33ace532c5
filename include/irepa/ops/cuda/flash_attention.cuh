#pragma once
// Fused softmax attention on the GPU (float, head dim <= 128): the logits never leave the chip.
// The forward streams key/value tiles of 32 rows through shared memory and keeps a running
// max and sum per query (online softmax), saving only the output and the row log-sum-exp; the
// backward recomputes the probabilities from them, one kernel for dQ (a warp per query) and one
// for dK, dV (a warp per key), so no gradient is accumulated by atomics and the results are
// deterministic. Logits, probabilities and every sum are float32.
//
// Work split: a block of 8 warps; in the score step each lane owns one key (or query) of the
// tile and computes its full dot product from shared memory (rows padded by one value so the 32
// lanes hit 32 banks); in the accumulation step each lane owns head-dim columns lane, lane + 32,
// ... (R of them, R = ceil(hd / 32)).
// Memory: O(B H T hd) instead of the O(B H T^2) probabilities of the materialised path.

#include <cmath>
#include <type_traits>

#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops::cuda_detail {

constexpr int kFlashWarps = 8;  // query (or key) rows per block
constexpr int kFlashTile = 32;  // rows of the streamed operand per step

__device__ inline float flash_dot(const float* a, const float* b, int hd) {
  float s = 0;
  for (int d = 0; d < hd; ++d) s += a[d] * b[d];
  return s;
}

/// q, k, v [B H, N, hd] -> o [B H, N, hd], out [B, N, H hd] (the same values, merged heads),
/// lse [B H, N]. Grid (ceil(N / 8), B H), 256 threads.
template <int R>
__global__ void __launch_bounds__(kFlashWarps * 32)
    flash_forward_kernel(const float* q, const float* k, const float* v, float* o, float* out, float* lse, int H, int N, int hd,
                         float scale) {
  constexpr int HD = 32 * R, S = HD + 1;
  __shared__ float ks[kFlashTile][S], vs[kFlashTile][HD];
  __shared__ float qs[kFlashWarps][HD], ps[kFlashWarps][kFlashTile];
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.y, base = bh * N * hd;
  const int i = blockIdx.x * kFlashWarps + w;
  const bool active = i < N;
  if (active)
    for (int d = lane; d < hd; d += 32) qs[w][d] = q[base + static_cast<std::int64_t>(i) * hd + d];
  float m = -INFINITY, l = 0, acc[R];
  for (int r = 0; r < R; ++r) acc[r] = 0;
  for (int j0 = 0; j0 < N; j0 += kFlashTile) {
    __syncthreads();  // the previous tile is no longer read
    for (int e = threadIdx.x; e < kFlashTile * hd; e += blockDim.x) {
      const int r = e / hd, d = e % hd, j = j0 + r;
      ks[r][d] = j < N ? k[base + static_cast<std::int64_t>(j) * hd + d] : 0.0f;
      vs[r][d] = j < N ? v[base + static_cast<std::int64_t>(j) * hd + d] : 0.0f;
    }
    __syncthreads();
    if (!active) continue;  // still at every barrier above
    const int j = j0 + lane, nj = min(kFlashTile, N - j0);
    const float s = j < N ? flash_dot(qs[w], ks[lane], hd) * scale : -INFINITY;
    const float m_new = fmaxf(m, warp_reduce<MaxOp>(s));  // finite: lane 0's key exists
    const float p = j < N ? expf(s - m_new) : 0.0f, corr = expf(m - m_new);
    l = l * corr + warp_reduce<SumOp>(p);
    ps[w][lane] = p;
    __syncwarp();
    for (int r = 0; r < R; ++r) {
      const int d = lane + 32 * r;
      if (d >= hd) break;
      float a = acc[r] * corr;
      for (int jj = 0; jj < nj; ++jj) a += ps[w][jj] * vs[jj][d];
      acc[r] = a;
    }
    __syncwarp();
    m = m_new;
  }
  if (!active) return;
  const float inv = 1.0f / l;
  const std::int64_t b = bh / H, h = bh % H, width = static_cast<std::int64_t>(H) * hd;
  for (int r = 0; r < R; ++r) {
    const int d = lane + 32 * r;
    if (d >= hd) break;
    const float val = acc[r] * inv;
    o[base + static_cast<std::int64_t>(i) * hd + d] = val;
    out[(b * N + i) * width + h * hd + d] = val;
  }
  if (lane == 0) lse[bh * N + i] = m + logf(l);
}

/// delta[row] = sum_d dO[row, d] o[row, d] over [rows, hd] (softmax's backward term).
__global__ inline void flash_delta_kernel(const float* dO, const float* o, float* delta, std::int64_t rows, int hd) {
  for (std::int64_t r = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    float s = 0;
    for (int d = 0; d < hd; ++d) s += dO[r * hd + d] * o[r * hd + d];
    delta[r] = s;
  }
}

/// dQ [B H, N, hd] (assigned): a warp per query, streaming key / value tiles.
template <int R>
__global__ void __launch_bounds__(kFlashWarps * 32)
    flash_backward_dq_kernel(const float* q, const float* k, const float* v, const float* dO, const float* lse, const float* delta,
                             float* dq, int N, int hd, float scale) {
  constexpr int HD = 32 * R, S = HD + 1;
  __shared__ float ks[kFlashTile][S], vs[kFlashTile][S];
  __shared__ float qs[kFlashWarps][HD], dos[kFlashWarps][HD], dss[kFlashWarps][kFlashTile];
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.y, base = bh * N * hd;
  const int i = blockIdx.x * kFlashWarps + w;
  const bool active = i < N;
  float L = 0, Di = 0, acc[R];
  for (int r = 0; r < R; ++r) acc[r] = 0;
  if (active) {
    for (int d = lane; d < hd; d += 32) {
      qs[w][d] = q[base + static_cast<std::int64_t>(i) * hd + d];
      dos[w][d] = dO[base + static_cast<std::int64_t>(i) * hd + d];
    }
    L = lse[bh * N + i], Di = delta[bh * N + i];
  }
  for (int j0 = 0; j0 < N; j0 += kFlashTile) {
    __syncthreads();
    for (int e = threadIdx.x; e < kFlashTile * hd; e += blockDim.x) {
      const int r = e / hd, d = e % hd, j = j0 + r;
      ks[r][d] = j < N ? k[base + static_cast<std::int64_t>(j) * hd + d] : 0.0f;
      vs[r][d] = j < N ? v[base + static_cast<std::int64_t>(j) * hd + d] : 0.0f;
    }
    __syncthreads();
    if (!active) continue;
    const int j = j0 + lane, nj = min(kFlashTile, N - j0);
    float ds = 0;
    if (j < N) {
      const float p = expf(flash_dot(qs[w], ks[lane], hd) * scale - L);
      ds = p * (flash_dot(dos[w], vs[lane], hd) - Di);
    }
    dss[w][lane] = ds;
    __syncwarp();
    for (int r = 0; r < R; ++r) {
      const int d = lane + 32 * r;
      if (d >= hd) break;
      float a = acc[r];
      for (int jj = 0; jj < nj; ++jj) a += dss[w][jj] * ks[jj][d];
      acc[r] = a;
    }
    __syncwarp();
  }
  if (!active) return;
  for (int r = 0; r < R; ++r) {
    const int d = lane + 32 * r;
    if (d < hd) dq[base + static_cast<std::int64_t>(i) * hd + d] = acc[r] * scale;
  }
}

/// dK, dV [B H, N, hd] (assigned): a warp per key, streaming query / dO tiles.
template <int R>
__global__ void __launch_bounds__(kFlashWarps * 32)
    flash_backward_dkv_kernel(const float* q, const float* k, const float* v, const float* dO, const float* lse, const float* delta,
                              float* dk, float* dv, int N, int hd, float scale) {
  constexpr int HD = 32 * R, S = HD + 1;
  __shared__ float qs[kFlashTile][S], dos[kFlashTile][S], ls[kFlashTile], des[kFlashTile];
  __shared__ float kw[kFlashWarps][HD], vw[kFlashWarps][HD], pw[kFlashWarps][kFlashTile], dsw[kFlashWarps][kFlashTile];
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.y, base = bh * N * hd;
  const int j = blockIdx.x * kFlashWarps + w;
  const bool active = j < N;
  float ak[R], av[R];
  for (int r = 0; r < R; ++r) ak[r] = av[r] = 0;
  if (active)
    for (int d = lane; d < hd; d += 32) {
      kw[w][d] = k[base + static_cast<std::int64_t>(j) * hd + d];
      vw[w][d] = v[base + static_cast<std::int64_t>(j) * hd + d];
    }
  for (int i0 = 0; i0 < N; i0 += kFlashTile) {
    __syncthreads();
    for (int e = threadIdx.x; e < kFlashTile * hd; e += blockDim.x) {
      const int r = e / hd, d = e % hd, i = i0 + r;
      qs[r][d] = i < N ? q[base + static_cast<std::int64_t>(i) * hd + d] : 0.0f;
      dos[r][d] = i < N ? dO[base + static_cast<std::int64_t>(i) * hd + d] : 0.0f;
    }
    if (threadIdx.x < kFlashTile) {
      const int i = i0 + threadIdx.x;
      ls[threadIdx.x] = i < N ? lse[bh * N + i] : 0.0f;
      des[threadIdx.x] = i < N ? delta[bh * N + i] : 0.0f;
    }
    __syncthreads();
    if (!active) continue;
    const int i = i0 + lane, ni = min(kFlashTile, N - i0);
    float p = 0, ds = 0;
    if (i < N) {
      p = expf(flash_dot(qs[lane], kw[w], hd) * scale - ls[lane]);
      ds = p * (flash_dot(dos[lane], vw[w], hd) - des[lane]);
    }
    pw[w][lane] = p, dsw[w][lane] = ds;
    __syncwarp();
    for (int r = 0; r < R; ++r) {
      const int d = lane + 32 * r;
      if (d >= hd) break;
      float a = av[r], b = ak[r];
      for (int ii = 0; ii < ni; ++ii) a += pw[w][ii] * dos[ii][d], b += dsw[w][ii] * qs[ii][d];
      av[r] = a, ak[r] = b;
    }
    __syncwarp();
  }
  if (!active) return;
  for (int r = 0; r < R; ++r) {
    const int d = lane + 32 * r;
    if (d >= hd) continue;
    dk[base + static_cast<std::int64_t>(j) * hd + d] = ak[r] * scale;
    dv[base + static_cast<std::int64_t>(j) * hd + d] = av[r];
  }
}

/// Whether the fused kernels take this attention: float, head dim 1..128, grid limits.
template <class T>
bool flash_supported(std::int64_t BH, std::int64_t N, std::int64_t hd) {
  return std::is_same_v<T, float> && hd >= 1 && hd <= 128 && BH <= 65535 && N <= (std::int64_t{1} << 30);
}

template <class F>
void flash_dispatch(std::int64_t hd, F&& f) {
  if (hd <= 32) f(std::integral_constant<int, 1>{});
  else if (hd <= 64) f(std::integral_constant<int, 2>{});
  else if (hd <= 96) f(std::integral_constant<int, 3>{});
  else f(std::integral_constant<int, 4>{});
}

inline void flash_forward(const CudaContext& ctx, const float* q, const float* k, const float* v, float* o, float* out, float* lse,
                          std::int64_t B, std::int64_t H, std::int64_t N, std::int64_t hd, float scale) {
  const dim3 grid(static_cast<unsigned>((N + kFlashWarps - 1) / kFlashWarps), static_cast<unsigned>(B * H));
  flash_dispatch(hd, [&](auto R) {
    flash_forward_kernel<decltype(R)::value><<<grid, kFlashWarps * 32, 0, ctx.stream()>>>(q, k, v, o, out, lse, static_cast<int>(H),
                                                                           static_cast<int>(N), static_cast<int>(hd), scale);
  });
  CudaContext::check_launch("attention_forward: fused kernel");
}

/// dO [B H, N, hd] (split heads) -> dq, dk, dv [B H, N, hd], all assigned.
inline void flash_backward(const CudaContext& ctx, const float* q, const float* k, const float* v, const float* o, const float* lse,
                           const float* dO, float* dq, float* dk, float* dv, std::int64_t B, std::int64_t H, std::int64_t N,
                           std::int64_t hd, float scale) {
  Tensor<float, Cuda> delta(Shape{B * H * N});
  flash_delta_kernel<<<blocks_for(B * H * N), kThreads, 0, ctx.stream()>>>(dO, o, delta.data(), B * H * N, static_cast<int>(hd));
  CudaContext::check_launch("attention_backward: fused delta");
  const dim3 grid(static_cast<unsigned>((N + kFlashWarps - 1) / kFlashWarps), static_cast<unsigned>(B * H));
  const int n = static_cast<int>(N), h = static_cast<int>(hd);
  flash_dispatch(hd, [&](auto R) {
    flash_backward_dq_kernel<decltype(R)::value><<<grid, kFlashWarps * 32, 0, ctx.stream()>>>(q, k, v, dO, lse, delta.data(), dq, n, h, scale);
  });
  CudaContext::check_launch("attention_backward: fused dq");
  flash_dispatch(hd, [&](auto R) {
    flash_backward_dkv_kernel<decltype(R)::value><<<grid, kFlashWarps * 32, 0, ctx.stream()>>>(q, k, v, dO, lse, delta.data(), dk, dv, n, h, scale);
  });
  CudaContext::check_launch("attention_backward: fused dk dv");
}

}  // namespace irepa::ops::cuda_detail
