#pragma once
// GEMM on the CPU through Eigen's tensor contraction on the context's thread pool.
// All operands are contiguous row-major matrices.

#include <array>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops::cpu {

enum class Trans { N, T };

/// c = op(a) * op(b)   (accumulate: c += op(a) * op(b)), with op(x) = x or x^T.
/// Shapes: op(a) [M, K], op(b) [K, N], c [M, N].
template <class T>
void gemm(const CpuContext& ctx, EigenMap<const T, 2> a, Trans ta, EigenMap<const T, 2> b, Trans tb, EigenMap<T, 2> c,
          bool accumulate) {
  // Contract a's K dimension with b's K dimension: a's dim 1 when not transposed, else 0.
  const std::array<Eigen::IndexPair<Eigen::Index>, 1> dims{
      Eigen::IndexPair<Eigen::Index>(ta == Trans::N ? 1 : 0, tb == Trans::N ? 0 : 1)};
  if (accumulate)
    c.device(ctx.device()) += a.contract(b, dims);
  else
    c.device(ctx.device()) = a.contract(b, dims);
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

/// Adds sum over rows of dy [N, O] to db [O].
template <class T>
void add_row_sum(const CpuContext& ctx, EigenMap<const T, 2> dy, EigenMap<T, 1> db) {
  const std::array<Eigen::Index, 1> rows{0};
  db.device(ctx.device()) += dy.sum(rows);
}

}  // namespace irepa::ops::cpu
