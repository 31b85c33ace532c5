#pragma once
// Row-major matrix products on cuBLAS (float or double; float products in the context's
// MatmulPrecision: FP32 math without TF32 by default): row-major tensors
// are handed to column-major cuBLAS as their transposes, c^T = op(b)^T op(a)^T.

#include <cublas_v2.h>

#include <climits>
#include <type_traits>

#include "irepa/ops/cuda/common.cuh"

namespace irepa::ops::cuda_detail {

/// c [M, N] = alpha op(a) op(b) + beta c for `batch` products at the given element strides, with
/// a stored [M, K] ([K, M] when ta) and b stored [K, N] ([N, K] when tb), each contiguous.
/// Float products follow ctx.matmul_precision() unless exact.
template <class T>
void gemm_row_major_batched(const CudaContext& ctx, std::int64_t batch, std::int64_t M, std::int64_t N, std::int64_t K, const T* a,
                            bool ta, std::int64_t stride_a, const T* b, bool tb, std::int64_t stride_b, T* c, std::int64_t stride_c,
                            T alpha, T beta, std::string_view op, bool exact = false) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "cuBLAS GEMM: float or double");
  if (batch == 0 || M == 0 || N == 0) return;
  IREPA_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && batch <= INT_MAX,
              "{}: GEMM of [{}, {}] x [{}, {}] (batch {}) exceeds cuBLAS's int sizes", op, M, K, K, N, batch);
  const auto opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
  const int ldb = static_cast<int>(tb ? K : N), lda = static_cast<int>(ta ? M : K);
  if constexpr (std::is_same_v<T, float>) {
    if (!exact && ctx.matmul_precision() != MatmulPrecision::fp32) {  // tensor cores: TF32 or bf16 inputs, FP32 accumulation
      const cublasComputeType_t ct = ctx.matmul_precision() == MatmulPrecision::bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                                                                      : CUBLAS_COMPUTE_32F_FAST_TF32;
      CudaContext::check_cublas(cublasGemmStridedBatchedEx(ctx.cublas(), opb, opa, m, n, k, &alpha, b, CUDA_R_32F, ldb, stride_b, a,
                                                           CUDA_R_32F, lda, stride_a, &beta, c, CUDA_R_32F, m, stride_c,
                                                           static_cast<int>(batch), ct, CUBLAS_GEMM_DEFAULT),
                                op);
      return;
    }
  }
  if (batch == 1) {
    if constexpr (std::is_same_v<T, float>)
      CudaContext::check_cublas(cublasSgemm(ctx.cublas(), opb, opa, m, n, k, &alpha, b, ldb, a, lda, &beta, c, m), op);
    else
      CudaContext::check_cublas(cublasDgemm(ctx.cublas(), opb, opa, m, n, k, &alpha, b, ldb, a, lda, &beta, c, m), op);
    return;
  }
  const int bc = static_cast<int>(batch);
  if constexpr (std::is_same_v<T, float>)
    CudaContext::check_cublas(cublasSgemmStridedBatched(ctx.cublas(), opb, opa, m, n, k, &alpha, b, ldb, stride_b, a, lda, stride_a,
                                                        &beta, c, m, stride_c, bc),
                              op);
  else
    CudaContext::check_cublas(cublasDgemmStridedBatched(ctx.cublas(), opb, opa, m, n, k, &alpha, b, ldb, stride_b, a, lda, stride_a,
                                                        &beta, c, m, stride_c, bc),
                              op);
}

/// One product: c [M, N] = alpha op(a) op(b) + beta c. exact: FP32 math whatever the context's
/// precision (bias products, whose inputs would otherwise be rounded).
template <class T>
void gemm_row_major(const CudaContext& ctx, std::int64_t M, std::int64_t N, std::int64_t K, const T* a, bool ta, const T* b,
                    bool tb, T* c, T alpha, T beta, std::string_view op, bool exact = false) {
  gemm_row_major_batched<T>(ctx, 1, M, N, K, a, ta, 0, b, tb, 0, c, 0, alpha, beta, op, exact);
}

}  // namespace irepa::ops::cuda_detail
