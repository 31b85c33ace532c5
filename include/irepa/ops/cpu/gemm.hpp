#pragma once
// GEMM on the CPU: float through our packed AVX-512 / AVX2 kernel (sgemm.hpp), double (and
// float in builds without AVX2/FMA) through Eigen's tensor contraction; both on the context's
// thread pool. All operands are contiguous row-major matrices.

#include <array>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/ops/cpu/sgemm.hpp"

namespace irepa::ops::cpu {

enum class Trans { N, T };

/// The same product through Eigen's contraction (the path for double; kept callable for float
/// so benchmarks can put the two side by side).
template <class T>
void gemm_eigen(const CpuContext& ctx, EigenMap<const T, 2> a, Trans ta, EigenMap<const T, 2> b, Trans tb,
                EigenMap<T, 2> c, bool accumulate) {
  // Contract a's K dimension with b's K dimension: a's dim 1 when not transposed, else 0.
  const std::array<Eigen::IndexPair<Eigen::Index>, 1> dims{
      Eigen::IndexPair<Eigen::Index>(ta == Trans::N ? 1 : 0, tb == Trans::N ? 0 : 1)};
  if (accumulate)
    c.device(ctx.device()) += a.contract(b, dims);
  else
    c.device(ctx.device()) = a.contract(b, dims);
}

/// c = op(a) * op(b)   (accumulate: c += op(a) * op(b)), with op(x) = x or x^T.
/// Shapes: op(a) [M, K], op(b) [K, N], c [M, N].
template <class T>
void gemm(const CpuContext& ctx, EigenMap<const T, 2> a, Trans ta, EigenMap<const T, 2> b, Trans tb, EigenMap<T, 2> c,
          bool accumulate) {
  if constexpr (std::is_same_v<T, float> && kSgemmAvailable) {
    const std::int64_t M = ta == Trans::N ? a.dimension(0) : a.dimension(1);
    const std::int64_t K = ta == Trans::N ? a.dimension(1) : a.dimension(0);
    const std::int64_t N = tb == Trans::N ? b.dimension(1) : b.dimension(0);
    IREPA_CHECK((tb == Trans::N ? b.dimension(0) : b.dimension(1)) == K && c.dimension(0) == M && c.dimension(1) == N,
                "gemm: op(a) is [{}, {}], op(b) [{}, {}] and c [{}, {}]", M, K, tb == Trans::N ? b.dimension(0) : b.dimension(1),
                N, c.dimension(0), c.dimension(1));
    sgemm(ctx, M, N, K, SgemmOperand{a.data(), a.dimension(1), ta == Trans::T},
          SgemmOperand{b.data(), b.dimension(1), tb == Trans::T}, c.data(), c.dimension(1), accumulate);
  } else {
    gemm_eigen<T>(ctx, a, ta, b, tb, c, accumulate);
  }
}

template <class T>
EigenMap<const T, 2> as_matrix(const T* p, std::int64_t rows, std::int64_t cols) {
  return EigenMap<const T, 2>(p, rows, cols);
}
template <class T>
EigenMap<T, 2> as_matrix(T* p, std::int64_t rows, std::int64_t cols) {
  return EigenMap<T, 2>(p, rows, cols);
}

/// Adds the bias b [O] to every row of y [N, O] (no-op for an empty b).
template <class T>
void add_bias_rows(const CpuContext& ctx, EigenMap<T, 2> y, ConstView<T> b) {
  if (b.numel() == 0) return;
  const std::array<Eigen::Index, 2> bshape{1, y.dimension(1)}, bcast{y.dimension(0), 1};
  y.device(ctx.device()) += b.flat().reshape(bshape).broadcast(bcast);
}

/// Adds sum over rows of dy [N, O] to db [O]: threads take blocks of columns and walk the rows
/// in order (Eigen's reduction over a row-major matrix's first axis is strided and slow).
template <class T>
void add_row_sum(const CpuContext& ctx, EigenMap<const T, 2> dy, EigenMap<T, 1> db) {
  constexpr std::int64_t kBlock = 128;
  const std::int64_t rows = dy.dimension(0), cols = dy.dimension(1);
  const T* p = dy.data();
  T* out = db.data();
  const std::int64_t blocks = (cols + kBlock - 1) / kBlock;
  ctx.parallel_for(blocks, static_cast<double>(rows * kBlock), [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t blk = b0; blk < b1; ++blk) {
      const std::int64_t c0 = blk * kBlock, n = std::min(kBlock, cols - c0);
      T acc[kBlock] = {};
      for (std::int64_t r = 0; r < rows; ++r) {
        const T* row = p + r * cols + c0;
        for (std::int64_t j = 0; j < n; ++j) acc[j] += row[j];
      }
      for (std::int64_t j = 0; j < n; ++j) out[c0 + j] += acc[j];
    }
  });
}

}  // namespace irepa::ops::cpu
