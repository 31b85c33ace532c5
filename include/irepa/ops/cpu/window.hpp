#pragma once
// CPU backend of ops/window.hpp: windowed attention for SAM and SAM2 (Hiera), forward only.
//  - window_partition: a channels-last grid [B, S, S, C] cut into ws x ws windows, zero-padded to
//    a whole number of them per side (the padded cells take part as keys, as in SAM and SAM2);
//  - window_merge: windows put back onto a grid, the padding dropped;
//  - window_attention_forward: softmax attention inside each window from fused qkv, with SAM's
//    decomposed relative positions (read by the unscaled query) or SAM2's queries max-pooled
//    s x s inside the window. Global attention is one window over the whole grid.

#include <algorithm>
#include <cmath>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/ops/cpu/attention.hpp"

namespace irepa::ops {

template <class T, class D = Cpu>
struct WindowAttentionSpec {
  std::int64_t heads = 1;
  std::int64_t window = 0;        // the window's side ws: L = ws^2 tokens per window
  std::int64_t query_stride = 1;  // SAM2's pooling blocks: queries max-pooled s x s, Lq = (ws / s)^2
  ConstView<T, D> rel_h, rel_w;   // SAM: [2 ws - 1, head dim] each; empty without relative positions
  bool relative() const { return rel_h.numel() > 0; }
};

namespace detail {

inline std::int64_t windows_per_side(std::int64_t side, std::int64_t ws) { return (side + ws - 1) / ws; }

inline void check_window_partition(const Shape& x, std::int64_t ws, const Shape& out) {
  IREPA_CHECK(x.rank() == 4 && x[1] == x[2] && ws > 0, "window_partition: input {} with window {}, expected a square [B, S, S, C]",
              x.str(), ws);
  const std::int64_t per = windows_per_side(x[1], ws);
  check_shape("window_partition", "output", out, Shape{x[0] * per * per, ws * ws, x[3]});
}

/// The window side q of w [B per^2, q^2, C] put back onto out [B, S, S, C].
inline std::int64_t check_window_merge(const Shape& w, const Shape& out) {
  IREPA_CHECK(out.rank() == 4 && out[1] == out[2] && w.rank() == 3 && w[2] == out[3],
              "window_merge: windows {} onto {}, expected [B per^2, q^2, C] onto a square [B, S, S, C]", w.str(), out.str());
  const auto q = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(w[1]))));
  const std::int64_t per = q > 0 ? windows_per_side(out[1], q) : 0;
  IREPA_CHECK(q > 0 && q * q == w[1] && w[0] == out[0] * per * per,
              "window_merge: windows {} do not tile {} (square windows, ceil(S / q)^2 of them per image)", w.str(), out.str());
  return q;
}

/// The head dim, after checking qkv [U, ws^2, 3D], the spec and out [U, Lq, D].
template <class T, class D>
std::int64_t check_window_attention(const Shape& qkv, const WindowAttentionSpec<T, D>& s, const Shape& out) {
  const std::int64_t ws = s.window, st = s.query_stride;
  IREPA_CHECK(qkv.rank() == 3 && ws > 0 && qkv[1] == ws * ws && s.heads > 0 && qkv[2] % (3 * s.heads) == 0 && st > 0 && ws % st == 0,
              "window_attention_forward: qkv {} for windows of {}, {} heads, query stride {}; expected [U, ws^2, 3 D] with D a "
              "multiple of the heads and ws a multiple of the stride",
              qkv.str(), ws, s.heads, st);
  const std::int64_t Dm = qkv[2] / 3, hd = Dm / s.heads, q = ws / st;
  check_shape("window_attention_forward", "output", out, Shape{qkv[0], q * q, Dm});
  if (s.relative()) {
    IREPA_CHECK(st == 1, "window_attention_forward: relative positions with pooled queries (stride {}) are not defined", st);
    check_shape("window_attention_forward", "rel_h", s.rel_h.shape(), Shape{2 * ws - 1, hd});
    check_shape("window_attention_forward", "rel_w", s.rel_w.shape(), Shape{2 * ws - 1, hd});
  }
  return hd;
}

}  // namespace detail

/// out [B per^2, ws^2, C] = the ws x ws windows of x [B, S, S, C], per = ceil(S / ws), windows
/// row-major per image and tokens row-major in each; zeros past the grid's edge.
template <class T>
void window_partition(const CpuContext& ctx, In<T> x, std::int64_t ws, TensorView<T> out) {
  detail::check_window_partition(x.shape(), ws, out.shape());
  check_contiguous("window_partition", x, out);
  const std::int64_t S = x.size(1), C = x.size(3), per = detail::windows_per_side(S, ws), L = ws * ws;
  ctx.parallel_for(out.size(0) * L, static_cast<double>(C), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t u = r / L, t = r % L, b = u / (per * per), w = u % (per * per);
      const std::int64_t row = (w / per) * ws + t / ws, col = (w % per) * ws + t % ws;
      T* o = out.data() + r * C;
      if (row < S && col < S) std::copy_n(x.data() + ((b * S + row) * S + col) * C, C, o);
      else std::fill_n(o, C, T(0));
    }
  });
}

/// out [B, S, S, C] from the windows w [B per^2, q^2, C] in window_partition's order
/// (per = ceil(S / q)); the cells of the padding are dropped.
template <class T>
void window_merge(const CpuContext& ctx, In<T> w, TensorView<T> out) {
  const std::int64_t q = detail::check_window_merge(w.shape(), out.shape());
  check_contiguous("window_merge", w, out);
  const std::int64_t S = out.size(1), C = out.size(3), per = detail::windows_per_side(S, q);
  ctx.parallel_for(out.size(0) * S * S, static_cast<double>(C), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t b = r / (S * S), row = (r / S) % S, col = r % S;
      const std::int64_t u = (b * per + row / q) * per + col / q, t = (row % q) * q + col % q;
      std::copy_n(w.data() + (u * q * q + t) * C, C, out.data() + r * C);
    }
  });
}

/// out [U, Lq, D] = softmax(q k^T / sqrt(hd) (+ relative positions)) v per window and head, from
/// qkv [U, ws^2, 3D]. With query_stride s each query is the max of an s x s block of the window's
/// queries (SAM2's q-pooling); with rel_h / rel_w the logit of query (qh, qw) and key (kh, kw)
/// gains q . rel_h[qh - kh + ws - 1] + q . rel_w[qw - kw + ws - 1] (SAM).
template <class T>
void window_attention_forward(const CpuContext& ctx, In<T> qkv, const WindowAttentionSpec<T>& spec, TensorView<T> out) {
  const std::int64_t hd = detail::check_window_attention(qkv.shape(), spec, out.shape());
  check_contiguous("window_attention_forward", qkv, out, spec.rel_h, spec.rel_w);
  const std::int64_t U = qkv.size(0), L = qkv.size(1), Dm = qkv.size(2) / 3, H = spec.heads, ws = spec.window;
  const std::int64_t s = spec.query_stride, qs = ws / s, Lq = qs * qs;
  const bool rel = spec.relative();
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
  const double cost = 4.0 * static_cast<double>(Lq * L * hd) + (rel ? 4.0 * static_cast<double>(L * ws * hd) : 0.0);
  ctx.parallel_for(U * H, cost, [&](std::int64_t i0, std::int64_t i1) {
    detail::RowMat<T> Q(Lq, hd), Qs(Lq, hd), K(L, hd), V(L, hd), P(Lq, L), O(Lq, hd), RH(rel ? Lq : 0, ws), RW(rel ? Lq : 0, ws);
    Eigen::Array<T, 1, Eigen::Dynamic> e(L);
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t u = i / H, hh = i % H;
      const T* base = qkv.data() + u * L * 3 * Dm + hh * hd;
      for (std::int64_t t = 0; t < L; ++t)
        for (std::int64_t j = 0; j < hd; ++j) K(t, j) = base[t * 3 * Dm + Dm + j], V(t, j) = base[t * 3 * Dm + 2 * Dm + j];
      for (std::int64_t a = 0; a < qs; ++a)  // query (a, c): the max over its s x s block (itself when s = 1)
        for (std::int64_t c = 0; c < qs; ++c)
          for (std::int64_t j = 0; j < hd; ++j) {
            T m = base[((a * s) * ws + c * s) * 3 * Dm + j];
            for (std::int64_t di = 0; di < s; ++di)
              for (std::int64_t dj = 0; dj < s; ++dj) m = std::max(m, base[((a * s + di) * ws + c * s + dj) * 3 * Dm + j]);
            Q(a * qs + c, j) = m, Qs(a * qs + c, j) = m * scale;
          }
      detail::head_gemm<T>(Lq, L, hd, Qs.data(), false, K.data(), true, P.data());  // (q scale) k^T
      for (std::int64_t t = 0; t < Lq; ++t) {
        if (rel) {  // decomposed relative positions, by the unscaled query
          const std::int64_t qh = t / ws, qw = t % ws;
          for (std::int64_t k = 0; k < ws; ++k) {
            const T* rh = spec.rel_h.data() + (qh - k + ws - 1) * hd;
            const T* rw = spec.rel_w.data() + (qw - k + ws - 1) * hd;
            T sh = 0, sw = 0;
            for (std::int64_t j = 0; j < hd; ++j) sh += Q(t, j) * rh[j], sw += Q(t, j) * rw[j];
            RH(t, k) = sh, RW(t, k) = sw;
          }
          T* pr = P.data() + t * L;
          for (std::int64_t kh = 0; kh < ws; ++kh)
            for (std::int64_t kw = 0; kw < ws; ++kw) pr[kh * ws + kw] = (pr[kh * ws + kw] + RH(t, kh)) + RW(t, kw);
        }
        auto row = P.row(t).array();
        row -= row.maxCoeff();
        e = row.exp();
        row = e / e.sum();
      }
      detail::head_gemm<T>(Lq, hd, L, P.data(), false, V.data(), false, O.data());
      for (std::int64_t t = 0; t < Lq; ++t) std::copy_n(O.data() + t * hd, hd, out.data() + (u * Lq + t) * Dm + hh * hd);
    }
  });
}

}  // namespace irepa::ops
