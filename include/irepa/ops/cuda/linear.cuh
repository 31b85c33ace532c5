#pragma once
// Linear layer on the GPU (CudaContext overloads of ops/cpu/linear.hpp): y = x W^T + b through
// cuBLAS (ops/cuda/gemm.cuh; in float through cuBLASLt with the bias in the epilogue when it
// offers an algorithm), float (in the context's matmul precision) or double, and the
// mixed-precision overloads (bf16 activations and weight copies, FP32 accumulation, float
// weight and bias gradients). The bias gradient is a product with a ones vector (deterministic,
// unlike atomics).

#include <cublasLt.h>
#include <cublas_v2.h>

#include <climits>
#include <cstdint>

#include "irepa/ops/cpu/linear.hpp"
#include "irepa/ops/cuda/gemm.cuh"

namespace irepa::ops {

namespace cuda_detail {

template <class T>
__global__ void add_bias_kernel(T* y, const T* b, std::int64_t O, std::int64_t total) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    y[i] += b[i % O];
}

__global__ inline void bias_round_bf16_kernel(const float* c, const float* b, __nv_bfloat16* y, std::int64_t O, std::int64_t total) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(b ? c[i] + b[i % O] : c[i]);
}

/// Row-major c [M, N] (type Tc) = op(a) op(b) + beta c with bf16 a and b, FP32 accumulation.
inline void gemm_bf16_row_major(const CudaContext& ctx, std::int64_t M, std::int64_t N, std::int64_t K, const bf16* a, bool ta,
                                const bf16* b, bool tb, void* c, cudaDataType_t c_type, float beta, std::string_view op) {
  if (M == 0 || N == 0) return;
  IREPA_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX, "{}: GEMM of [{}, {}] x [{}, {}] exceeds cuBLAS's int sizes", op, M, K,
              K, N);
  const float alpha = 1;
  const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
  CudaContext::check_cublas(cublasGemmEx(ctx.cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha,
                                         b, CUDA_R_16BF, static_cast<int>(tb ? K : N), a, CUDA_R_16BF, static_cast<int>(ta ? M : K),
                                         &beta, c, c_type, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                            op);
}

/// Largest power of two (up to 256) dividing the address: cuBLASLt's alignment preferences.
inline std::uint64_t pointer_alignment(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uint64_t al = 256;
  while (al > 1 && a % al != 0) al /= 2;
  return al;
}

/// y [rows, O] = x [rows, I] W^T + b as one cublasLtMatmul with the bias epilogue (float, in the
/// context's matmul precision). Returns false, having done nothing, when cuBLASLt offers no
/// algorithm (or the bias is not 16-byte aligned, which the epilogue needs); the caller then
/// runs the product and adds the bias itself.
inline bool linear_bias_lt(const CudaContext& ctx, std::int64_t rows, std::int64_t O, std::int64_t I, const float* x, const float* w,
                           const float* b, float* y) {
  if (rows > INT_MAX || O > INT_MAX || I > INT_MAX || pointer_alignment(b) < 16) return false;
  const cublasComputeType_t ct = ctx.matmul_precision() == MatmulPrecision::bf16   ? CUBLAS_COMPUTE_32F_FAST_16BF
                                 : ctx.matmul_precision() == MatmulPrecision::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                                   : CUBLAS_COMPUTE_32F;
  // Column-major view: y^T [O, rows] = (W^T [I, O])^T x^T [I, rows]; the bias runs along y^T's rows.
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  struct Cleanup {
    cublasLtMatmulDesc_t& d;
    cublasLtMatrixLayout_t &a, &b, &c;
    cublasLtMatmulPreference_t& p;
    ~Cleanup() {
      if (p) cublasLtMatmulPreferenceDestroy(p);
      if (c) cublasLtMatrixLayoutDestroy(c);
      if (b) cublasLtMatrixLayoutDestroy(b);
      if (a) cublasLtMatrixLayoutDestroy(a);
      if (d) cublasLtMatmulDescDestroy(d);
    }
  } cleanup{desc, la, lb, lc, pref};
  auto ok = [](cublasStatus_t s, std::string_view call) { CudaContext::check_cublas(s, call); };
  ok(cublasLtMatmulDescCreate(&desc, ct, CUDA_R_32F), "linear_forward: cublasLtMatmulDescCreate");
  const cublasOperation_t opT = CUBLAS_OP_T;
  const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
  ok(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(opT)), "linear_forward: TRANSA");
  ok(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), "linear_forward: EPILOGUE");
  ok(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof(b)), "linear_forward: BIAS_POINTER");
  ok(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, static_cast<std::uint64_t>(I), static_cast<std::uint64_t>(O), I),
     "linear_forward: layout W");
  ok(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, static_cast<std::uint64_t>(I), static_cast<std::uint64_t>(rows), I),
     "linear_forward: layout x");
  ok(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, static_cast<std::uint64_t>(O), static_cast<std::uint64_t>(rows), O),
     "linear_forward: layout y");
  ok(cublasLtMatmulPreferenceCreate(&pref), "linear_forward: cublasLtMatmulPreferenceCreate");
  const std::uint64_t ws = CudaContext::kWorkspaceBytes;
  const std::uint64_t aa = pointer_alignment(w), ab = pointer_alignment(x), ac = pointer_alignment(y);
  ok(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)), "linear_forward: workspace");
  ok(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof(aa)), "linear_forward: align A");
  ok(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof(ab)), "linear_forward: align B");
  ok(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof(ac)), "linear_forward: align C");
  ok(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof(ac)), "linear_forward: align D");
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  if (cublasLtMatmulAlgoGetHeuristic(ctx.cublaslt(), desc, la, lb, lc, lc, pref, 1, &heur, &found) != CUBLAS_STATUS_SUCCESS ||
      found == 0)
    return false;
  const float alpha = 1, beta = 0;
  ok(cublasLtMatmul(ctx.cublaslt(), desc, &alpha, w, la, x, lb, &beta, y, lc, y, lc, &heur.algo, ctx.workspace(), ws, ctx.stream()),
     "linear_forward: cublasLtMatmul (bias epilogue)");
  return true;
}

}  // namespace cuda_detail

/// y = x W^T + b.   x [N.., I], w [O, I], b [O] (empty view: no bias), y [N.., O].
template <class T>
void linear_forward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> w, In<T, Cuda> b, TensorView<T, Cuda> y) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "linear_forward on CUDA: float or double");
  detail::check_linear<T>("linear_forward", x.shape(), w.shape(), b.numel() > 0, b.shape(), y.shape());
  check_contiguous("linear_forward", x, w, b, y);
  const std::int64_t rows = x.shape().rows(), I = w.size(1), O = w.size(0);
  if constexpr (std::is_same_v<T, float>) {  // the bias in the product's epilogue when cuBLASLt can
    if (b.numel() > 0 && rows * O > 0 && I > 0 &&
        cuda_detail::linear_bias_lt(ctx, rows, O, I, x.data(), w.data(), b.data(), y.data()))
      return;
  }
  cuda_detail::gemm_row_major<T>(ctx, rows, O, I, x.data(), false, w.data(), true, y.data(), T(1), T(0), "linear_forward: gemm");
  if (b.numel() > 0 && rows * O > 0) {
    cuda_detail::add_bias_kernel<T><<<cuda_detail::blocks_for(rows * O), cuda_detail::kThreads, 0, ctx.stream()>>>(
        y.data(), b.data(), O, rows * O);
    CudaContext::check_launch("linear_forward: bias");
  }
}

/// dx = dy W (assigned; skipped when dx is empty); dw += dy^T x; db += sum_rows dy (when non-empty).
template <class T>
void linear_backward(const CudaContext& ctx, In<T, Cuda> x, In<T, Cuda> w, In<T, Cuda> dy, TensorView<T, Cuda> dx,
                     TensorView<T, Cuda> dw, TensorView<T, Cuda> db) {
  detail::check_linear<T>("linear_backward", x.shape(), w.shape(), db.numel() > 0, db.shape(), dy.shape());
  check_shape("linear_backward", "dw", dw.shape(), w.shape());
  check_contiguous("linear_backward", x, w, dy, dx, dw, db);
  const std::int64_t rows = x.shape().rows(), I = w.size(1), O = w.size(0);
  if (dx.numel()) {
    check_shape("linear_backward", "dx", dx.shape(), x.shape());
    cuda_detail::gemm_row_major<T>(ctx, rows, I, O, dy.data(), false, w.data(), false, dx.data(), T(1), T(0),
                                   "linear_backward: dx gemm");
  }
  cuda_detail::gemm_row_major<T>(ctx, O, I, rows, dy.data(), true, x.data(), false, dw.data(), T(1), T(1),
                                 "linear_backward: dw gemm");
  if (db.numel() && rows) {
    Tensor<T, Cuda> ones(Shape{rows});
    fill<T>(ctx, ones.view(), T(1));
    const T one = 1;
    // Row-major dy [rows, O] is column-major [O, rows]: db += dy^T 1.
    IREPA_CHECK(rows <= INT32_MAX, "linear_backward: {} rows exceed cuBLAS's int sizes", rows);
    if constexpr (std::is_same_v<T, float>)
      CudaContext::check_cublas(cublasSgemv(ctx.cublas(), CUBLAS_OP_N, static_cast<int>(O), static_cast<int>(rows), &one, dy.data(),
                                            static_cast<int>(O), ones.data(), 1, &one, db.data(), 1),
                                "linear_backward: db gemv");
    else
      CudaContext::check_cublas(cublasDgemv(ctx.cublas(), CUBLAS_OP_N, static_cast<int>(O), static_cast<int>(rows), &one, dy.data(),
                                            static_cast<int>(O), ones.data(), 1, &one, db.data(), 1),
                                "linear_backward: db gemv");
  }
}

/// Mixed precision (autocast's linear): bf16 x [N.., I] and w [O, I] (a bf16 copy of the float
/// master weights, see convert), FP32 accumulation, the float bias added before the single
/// rounding to bf16 y [N.., O]. Call without template arguments.
inline void linear_forward(const CudaContext& ctx, In<bf16, Cuda> x, In<bf16, Cuda> w, In<float, Cuda> b, TensorView<bf16, Cuda> y) {
  detail::check_linear<float>("linear_forward (bf16)", x.shape(), w.shape(), b.numel() > 0, b.shape(), y.shape());
  check_contiguous("linear_forward (bf16)", x, w, b, y);
  const std::int64_t rows = x.shape().rows(), I = w.size(1), O = w.size(0);
  if (rows * O == 0) return;
  Tensor<float, Cuda> acc(Shape{rows, O});  // FP32 result, rounded once below
  cuda_detail::gemm_bf16_row_major(ctx, rows, O, I, x.data(), false, w.data(), true, acc.data(), CUDA_R_32F, 0.0f,
                                   "linear_forward (bf16): gemm");
  cuda_detail::bias_round_bf16_kernel<<<cuda_detail::blocks_for(rows * O), cuda_detail::kThreads, 0, ctx.stream()>>>(
      acc.data(), b.numel() ? b.data() : nullptr, cuda_detail::as_cuda(y.data()), O, rows * O);
  CudaContext::check_launch("linear_forward (bf16): bias");
}

/// Mixed precision backward: dx = dy W in bf16 (assigned; skipped when empty); dw += dy^T x and
/// db += sum_rows dy into the float gradient arena, accumulated in FP32 by cuBLAS.
inline void linear_backward(const CudaContext& ctx, In<bf16, Cuda> x, In<bf16, Cuda> w, In<bf16, Cuda> dy, TensorView<bf16, Cuda> dx,
                            TensorView<float, Cuda> dw, TensorView<float, Cuda> db) {
  detail::check_linear<float>("linear_backward (bf16)", x.shape(), w.shape(), db.numel() > 0, db.shape(), dy.shape());
  check_shape("linear_backward (bf16)", "dw", dw.shape(), w.shape());
  check_contiguous("linear_backward (bf16)", x, w, dy, dx, dw, db);
  const std::int64_t rows = x.shape().rows(), I = w.size(1), O = w.size(0);
  if (dx.numel()) {
    check_shape("linear_backward (bf16)", "dx", dx.shape(), x.shape());
    cuda_detail::gemm_bf16_row_major(ctx, rows, I, O, dy.data(), false, w.data(), false, dx.data(), CUDA_R_16BF, 0.0f,
                                     "linear_backward (bf16): dx gemm");
  }
  cuda_detail::gemm_bf16_row_major(ctx, O, I, rows, dy.data(), true, x.data(), false, dw.data(), CUDA_R_32F, 1.0f,
                                   "linear_backward (bf16): dw gemm");
  if (db.numel() && rows) {
    // db += dy^T 1 as a [1, rows] x [rows, O] product with a bf16 ones row (exact), FP32 out.
    Tensor<float, Cuda> ones_f(Shape{rows});
    Tensor<bf16, Cuda> ones(Shape{rows});
    fill<float>(ctx, ones_f.view(), 1.0f);
    convert(ctx, ones_f.view(), ones.view());
    cuda_detail::gemm_bf16_row_major(ctx, 1, O, rows, ones.data(), false, dy.data(), false, db.data(), CUDA_R_32F, 1.0f,
                                     "linear_backward (bf16): db gemm");
  }
}

}  // namespace irepa::ops
