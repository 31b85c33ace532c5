#pragma once
// Linear: y = x W^T + b on the CPU. x [..., I], W [O, I] (PyTorch layout), b [O] or empty.

#include "irepa/ops/cpu/gemm.hpp"

namespace irepa::ops {

namespace detail {
template <class T>
void check_linear(std::string_view op, const Shape& x, const Shape& w, bool has_bias, const Shape& b, const Shape& y) {
  IREPA_CHECK(w.rank() == 2, "{}: weight has shape {}, expected [out, in]", op, w.str());
  IREPA_CHECK(x.rank() >= 1 && x.last() == w[1], "{}: input has shape {}, expected [..., {}] for weight {}", op, x.str(),
              w[1], w.str());
  IREPA_CHECK(!has_bias || b == Shape{w[0]}, "{}: bias has shape {}, expected [{}] (or empty)", op, b.str(), w[0]);
  Shape want = x;
  want[-1] = w[0];
  check_shape(op, "output", y, want);
}
}  // namespace detail

/// y = x W^T + b.   x [N.., I], w [O, I], b [O] (empty view: no bias), y [N.., O].
template <class T>
void linear_forward(const CpuContext& ctx, In<T> x, In<T> w, In<T> b, TensorView<T> y) {
  detail::check_linear<T>("linear_forward", x.shape(), w.shape(), b.numel() > 0, b.shape(), y.shape());
  auto ym = y.matrix();
  cpu::gemm<T>(ctx, x.matrix(), cpu::Trans::N, w.matrix(), cpu::Trans::T, ym, false);
  cpu::add_bias_rows<T>(ctx, ym, b);
}

/// dx = dy W (assigned; skipped when dx is empty); dw += dy^T x; db += sum_rows dy (when non-empty).
template <class T>
void linear_backward(const CpuContext& ctx, In<T> x, In<T> w, In<T> dy, TensorView<T> dx,
                     TensorView<T> dw, TensorView<T> db) {
  detail::check_linear<T>("linear_backward", x.shape(), w.shape(), db.numel() > 0, db.shape(), dy.shape());
  check_shape("linear_backward", "dw", dw.shape(), w.shape());
  if (dx.numel()) {
    check_shape("linear_backward", "dx", dx.shape(), x.shape());
    cpu::gemm<T>(ctx, dy.matrix(), cpu::Trans::N, w.matrix(), cpu::Trans::N, dx.matrix(), false);
  }
  cpu::gemm<T>(ctx, dy.matrix(), cpu::Trans::T, x.matrix(), cpu::Trans::N, dw.matrix(), true);
  if (db.numel()) cpu::add_row_sum<T>(ctx, dy.matrix(), db.flat());
}

}  // namespace irepa::ops
