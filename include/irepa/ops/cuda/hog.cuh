#pragma once
// CUDA backend of ops/cpu/hog.hpp (CudaContext overloads; nvcc only). The same arithmetic in the
// same precisions and order as the CPU: float resize and grey (its double formula rounded once),
// float gradients, double magnitude and angle, cell sums accumulated in a float in pixel order,
// L2-Hys in double, the per-position norm in float, the float bilinear resize to the grid.
// Four kernels, one thread per output element of each stage; the intermediate images are
// tensors from the context's caching allocator.

#include "irepa/ops/cpu/hog.hpp"
#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops {

namespace cuda_detail {

/// torch's bilinear rule for output index o of `out` from `in`: the two sources and the weight
/// of the second.
__device__ inline void hog_axis(std::int64_t in, std::int64_t out, std::int64_t o, std::int64_t& i0, std::int64_t& i1, float& l1) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const float s = fmaxf(__fadd_rn(__fmul_rn(scale, __fadd_rn(static_cast<float>(o), 0.5f)), -0.5f), 0.0f);
  i0 = static_cast<std::int64_t>(s);
  i1 = i0 + (i0 < in - 1 ? 1 : 0);
  l1 = __fsub_rn(s, static_cast<float>(i0));
}

/// b0 (a0 v00 + a1 v01) + b1 (a0 v10 + a1 v11), rounded at each step (no contraction).
__device__ inline float hog_lerp2(float v00, float v01, float v10, float v11, float a1, float b1) {
  const float a0 = __fsub_rn(1.0f, a1), b0 = __fsub_rn(1.0f, b1);
  const float top = __fadd_rn(__fmul_rn(a0, v00), __fmul_rn(a1, v01)), bot = __fadd_rn(__fmul_rn(a0, v10), __fmul_rn(a1, v11));
  return __fadd_rn(__fmul_rn(b0, top), __fmul_rn(b1, bot));
}

/// grey [B, R, R] from images [B, C, H, W]: each channel resized to R x R, then the reference's grey.
__global__ void hog_gray_kernel(const float* images, float* gray, std::int64_t C, std::int64_t H, std::int64_t W, std::int64_t R,
                                std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t x = i % R, y = (i / R) % R, b = i / (R * R);
    std::int64_t y0, y1, x0, x1;
    float ly, lx;
    hog_axis(H, R, y, y0, y1, ly);
    hog_axis(W, R, x, x0, x1, lx);
    float v[3];
    for (std::int64_t ch = 0; ch < 3; ++ch) {
      const float* p = images + (b * C + (C == 3 ? ch : 0)) * H * W;
      v[ch] = fminf(fmaxf(hog_lerp2(p[y0 * W + x0], p[y0 * W + x1], p[y1 * W + x0], p[y1 * W + x1], lx, ly), 0.0f), 255.0f);
    }
    const double g = __ddiv_rn(__dadd_rn(__dadd_rn(__dmul_rn(0.2126, v[0]), __dmul_rn(0.7152, v[1])), __dmul_rn(0.0722, v[2])), 255.0);
    gray[i] = fminf(fmaxf(static_cast<float>(g), 0.0f), 1.0f);
  }
}

/// Cell histograms [B, nc, nc, nb] (double) from grey [B, R, R].
__global__ void hog_cells_kernel(const float* gray, double* hist, std::int64_t R, std::int64_t ppc, std::int64_t nc, std::int64_t nb,
                                 std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t o = i % nb, cx = (i / nb) % nc, cy = (i / (nb * nc)) % nc, b = i / (nb * nc * nc);
    const float* g = gray + b * R * R;
    const float per = 180.0f / static_cast<float>(nb);
    const float start = __fmul_rn(per, static_cast<float>(o + 1)), end = __fmul_rn(per, static_cast<float>(o));
    const std::int64_t r = ppc / 2 + cy * ppc, c = ppc / 2 + cx * ppc, lo = -(ppc / 2), hi = (ppc + 1) / 2;
    float total = 0;
    for (std::int64_t dy = lo; dy < hi; ++dy) {
      const std::int64_t y = r + dy;
      if (y < 0 || y >= R) continue;
      for (std::int64_t dx = lo; dx < hi; ++dx) {
        const std::int64_t x = c + dx;
        if (x < 0 || x >= R) continue;
        const float gr = (y == 0 || y == R - 1) ? 0.0f : __fsub_rn(g[(y + 1) * R + x], g[(y - 1) * R + x]);
        const float gc = (x == 0 || x == R - 1) ? 0.0f : __fsub_rn(g[y * R + x + 1], g[y * R + x - 1]);
        // numpy: rad2deg(arctan2(g_row, g_col)) % 180 (floor-mod; -0 becomes +0).
        const double a = __dmul_rn(atan2(static_cast<double>(gr), static_cast<double>(gc)), 180.0 / M_PI);
        double m = fmod(a, 180.0);
        if (m != 0 && m < 0) m = __dadd_rn(m, 180.0);
        if (m == 0) m = 0.0;
        if (m >= static_cast<double>(start) || m < static_cast<double>(end)) continue;
        total = static_cast<float>(__dadd_rn(static_cast<double>(total), hypot(static_cast<double>(gc), static_cast<double>(gr))));
      }
    }
    hist[i] = static_cast<double>(__fdiv_rn(total, static_cast<float>(ppc * ppc)));
  }
}

/// Blocks [B, NB, NB, D] (float): L2-Hys in double, then the per-position float L2 norm.
__global__ void hog_blocks_kernel(const double* hist, float* blocks, std::int64_t nc, std::int64_t nb, std::int64_t cb, std::int64_t NB,
                                  std::int64_t n) {
  constexpr double eps2 = 1e-5 * 1e-5;
  const std::int64_t D = cb * cb * nb;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t bx = i % NB, by = (i / NB) % NB, b = i / (NB * NB);
    auto value = [&](std::int64_t k) {  // element k of the block vector (cell row, cell column, orientation)
      const std::int64_t o = k % nb, j = (k / nb) % cb, r = k / (nb * cb);
      return hist[((b * nc + by + r) * nc + bx + j) * nb + o];
    };
    double s = 0;
    for (std::int64_t k = 0; k < D; ++k) s = __dadd_rn(s, __dmul_rn(value(k), value(k)));
    const double n1 = sqrt(__dadd_rn(s, eps2));
    double s2 = 0;
    for (std::int64_t k = 0; k < D; ++k) {
      const double e = fmin(__ddiv_rn(value(k), n1), 0.2);
      s2 = __dadd_rn(s2, __dmul_rn(e, e));
    }
    const double n2 = sqrt(__dadd_rn(s2, eps2));
    float* dst = blocks + i * D;
    float f = 0;
    for (std::int64_t k = 0; k < D; ++k) {
      dst[k] = static_cast<float>(__ddiv_rn(fmin(__ddiv_rn(value(k), n1), 0.2), n2));
      f = __fadd_rn(f, __fmul_rn(dst[k], dst[k]));
    }
    const float norm = fmaxf(__fsqrt_rn(f), 1e-12f);
    for (std::int64_t k = 0; k < D; ++k) dst[k] = __fdiv_rn(dst[k], norm);
  }
}

/// out [B, G, G, D] from blocks [B, NB, NB, D]: each channel resized bilinearly.
__global__ void hog_resize_kernel(const float* blocks, float* out, std::int64_t NB, std::int64_t G, std::int64_t D, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t d = i % D, x = (i / D) % G, y = (i / (D * G)) % G, b = i / (D * G * G);
    std::int64_t y0, y1, x0, x1;
    float ly, lx;
    hog_axis(NB, G, y, y0, y1, ly);
    hog_axis(NB, G, x, x0, x1, lx);
    const float* p = blocks + b * NB * NB * D + d;
    out[i] = hog_lerp2(p[(y0 * NB + x0) * D], p[(y0 * NB + x1) * D], p[(y1 * NB + x0) * D], p[(y1 * NB + x1) * D], lx, ly);
  }
}

}  // namespace cuda_detail

/// out [B, grid^2, dim] (float32) from images [B, C, H, W] in 0..255 (C = 3, or 1 used as grey).
inline void hog_tokens(const CudaContext& ctx, In<float, Cuda> images, const HogParams& p, TensorView<float, Cuda> out) {
  detail::check_hog(images.shape(), p, out.shape());
  check_contiguous("hog_tokens", images, out);
  const std::int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3), R = p.resolution;
  const std::int64_t nc = p.cells(), nb = p.orientations(), NB = p.blocks(), D = p.dim, G = p.grid;
  if (B == 0) return;
  Tensor<float, Cuda> gray(Shape{B, R, R});
  Tensor<double, Cuda> hist(Shape{B, nc, nc, nb});
  Tensor<float, Cuda> blocks(Shape{B, NB, NB, D});
  using cuda_detail::blocks_for, cuda_detail::kThreads;
  cuda_detail::hog_gray_kernel<<<blocks_for(gray.numel()), kThreads, 0, ctx.stream()>>>(images.data(), gray.data(), C, H, W, R,
                                                                                         gray.numel());
  CudaContext::check_launch("hog_tokens: grey");
  cuda_detail::hog_cells_kernel<<<blocks_for(hist.numel()), kThreads, 0, ctx.stream()>>>(gray.data(), hist.data(), R,
                                                                                          p.pixels_per_cell, nc, nb, hist.numel());
  CudaContext::check_launch("hog_tokens: cells");
  cuda_detail::hog_blocks_kernel<<<blocks_for(B * NB * NB), kThreads, 0, ctx.stream()>>>(hist.data(), blocks.data(), nc, nb,
                                                                                          p.cells_per_block, NB, B * NB * NB);
  CudaContext::check_launch("hog_tokens: blocks");
  cuda_detail::hog_resize_kernel<<<blocks_for(out.numel()), kThreads, 0, ctx.stream()>>>(blocks.data(), out.data(), NB, G, D,
                                                                                          out.numel());
  CudaContext::check_launch("hog_tokens: resize to the grid");
}

}  // namespace irepa::ops
