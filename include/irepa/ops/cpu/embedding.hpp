#pragma once
// Embedding lookup and the fixed sinusoidal features on the CPU.
//  - embedding: out[b] = table[idx[b]]; table [N, D], idx [B] int64, out [B, D].
//  - sincos_2d_table: the fixed 2-D position table of SiT / JiT / MAE, [gh*gw, D].
//  - timestep_features: SiT's time features [cos(t f_k) | sin(t f_k)], [B, dim].
// The tables are computed in double and rounded once to T.

#include <cmath>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops {

namespace detail {
inline void check_indices(std::string_view op, ConstView<std::int64_t> idx, std::int64_t rows) {
  for (std::int64_t b = 0; b < idx.size(0); ++b)
    IREPA_CHECK(idx[b] >= 0 && idx[b] < rows, "{}: index {} at position {} is outside the table's {} rows", op, idx[b], b,
                rows);
}
}  // namespace detail

template <class T>
void embedding_forward(const CpuContext& ctx, In<T> table, In<std::int64_t> idx, TensorView<T> out) {
  IREPA_CHECK(table.rank() == 2, "embedding_forward: table has shape {}, expected [N, D]", table.shape().str());
  IREPA_CHECK(idx.rank() == 1, "embedding_forward: indices have shape {}, expected [B]", idx.shape().str());
  check_shape("embedding_forward", "output", out.shape(), Shape{idx.size(0), table.size(1)});
  check_contiguous("embedding_forward", table, idx, out);
  const std::int64_t N = table.size(0), D = table.size(1);
  detail::check_indices("embedding_forward", idx, N);
  ctx.parallel_for(idx.size(0), static_cast<double>(D), [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) std::copy_n(table.data() + idx[b] * D, D, out.data() + b * D);
  });
}

/// dtable[idx[b]] += dy[b] (a row used twice gets both contributions).
template <class T>
void embedding_backward(const CpuContext& ctx, In<std::int64_t> idx, In<T> dy, TensorView<T> dtable) {
  IREPA_CHECK(dtable.rank() == 2, "embedding_backward: dtable has shape {}, expected [N, D]", dtable.shape().str());
  check_shape("embedding_backward", "dy", dy.shape(), Shape{idx.size(0), dtable.size(1)});
  check_contiguous("embedding_backward", idx, dy, dtable);
  const std::int64_t N = dtable.size(0), D = dtable.size(1);
  detail::check_indices("embedding_backward", idx, N);
  // Parallel over channels: rows may repeat, channels never collide.
  ctx.parallel_for(D, static_cast<double>(idx.size(0)), [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t b = 0; b < idx.size(0); ++b)
      for (std::int64_t c = c0; c < c1; ++c) dtable.data()[idx[b] * D + c] += dy.data()[b * D + c];
  });
}

/// 2-D sin-cos position table [gh*gw, D], tokens row-major (t = row * gw + col). Channels
/// [0, D/2) encode the column, [D/2, D) the row; each half is [sin(pos w_k) | cos(pos w_k)],
/// w_k = 10000^(-k / (D/4)), k < D/4. D must be a multiple of 4.
template <class T>
Tensor<T> sincos_2d_table(std::int64_t gh, std::int64_t gw, std::int64_t D) {
  IREPA_CHECK(D % 4 == 0 && D > 0, "sincos_2d_table: width {} must be a positive multiple of 4", D);
  IREPA_CHECK(gh > 0 && gw > 0, "sincos_2d_table: grid {}x{} must be non-empty", gh, gw);
  const std::int64_t q = D / 4;
  Tensor<T> out(Shape{gh * gw, D});
  for (std::int64_t r = 0; r < gh; ++r)
    for (std::int64_t c = 0; c < gw; ++c) {
      T* o = out.data() + (r * gw + c) * D;
      for (std::int64_t k = 0; k < q; ++k) {
        const double w = 1.0 / std::pow(10000.0, static_cast<double>(k) / static_cast<double>(q));
        o[k] = static_cast<T>(std::sin(static_cast<double>(c) * w));
        o[q + k] = static_cast<T>(std::cos(static_cast<double>(c) * w));
        o[2 * q + k] = static_cast<T>(std::sin(static_cast<double>(r) * w));
        o[3 * q + k] = static_cast<T>(std::cos(static_cast<double>(r) * w));
      }
    }
  return out;
}

/// SiT's timestep features: half = dim/2, f_k = exp(-ln(max_period) k / half),
/// out[b] = [cos(t_b f_k), k < half | sin(t_b f_k), k < half] (+ a zero column for odd dim).
/// t [B], out [B, dim].
template <class T>
void timestep_features_forward(const CpuContext& ctx, In<T> t, std::int64_t dim, TensorView<T> out,
                               double max_period = 10000.0) {
  IREPA_CHECK(t.rank() == 1, "timestep_features_forward: t has shape {}, expected [B]", t.shape().str());
  check_shape("timestep_features_forward", "output", out.shape(), Shape{t.size(0), dim});
  check_contiguous("timestep_features_forward", t, out);
  const std::int64_t half = dim / 2;
  ctx.parallel_for(t.size(0), 40.0 * static_cast<double>(dim), [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      T* o = out.data() + b * dim;
      for (std::int64_t k = 0; k < half; ++k) {
        const double f = std::exp(-std::log(max_period) * static_cast<double>(k) / static_cast<double>(half));
        const double a = static_cast<double>(t[b]) * f;
        o[k] = static_cast<T>(std::cos(a));
        o[half + k] = static_cast<T>(std::sin(a));
      }
      if (dim % 2) o[dim - 1] = T(0);
    }
  });
}

/// dt[b] = sum_k f_k (-sin(t f_k) dcos_k + cos(t f_k) dsin_k). dt assigned.
template <class T>
void timestep_features_backward(const CpuContext& ctx, In<T> t, In<T> dout, TensorView<T> dt, double max_period = 10000.0) {
  IREPA_CHECK(t.rank() == 1 && dout.rank() == 2 && dout.size(0) == t.size(0),
              "timestep_features_backward: t {} and dout {} do not match ([B] and [B, dim])", t.shape().str(),
              dout.shape().str());
  check_shape("timestep_features_backward", "dt", dt.shape(), t.shape());
  check_contiguous("timestep_features_backward", t, dout, dt);
  const std::int64_t dim = dout.size(1), half = dim / 2;
  ctx.parallel_for(t.size(0), 40.0 * static_cast<double>(dim), [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      double acc = 0;
      const T* g = dout.data() + b * dim;
      for (std::int64_t k = 0; k < half; ++k) {
        const double f = std::exp(-std::log(max_period) * static_cast<double>(k) / static_cast<double>(half));
        const double a = static_cast<double>(t[b]) * f;
        acc += f * (-std::sin(a) * static_cast<double>(g[k]) + std::cos(a) * static_cast<double>(g[half + k]));
      }
      dt[b] = static_cast<T>(acc);
    }
  });
}

}  // namespace irepa::ops
