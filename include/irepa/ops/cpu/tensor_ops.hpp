#pragma once
// Whole-tensor helpers the device-generic layers need, CPU backend (CpuContext overloads):
// copies, fills, sums, adaLN's chunking, a broadcast row add, the reference's unpatchify and
// JiT's in-context token handling (prepend, slice).
// ops/cuda/tensor_ops.cuh has the same functions for CudaContext.

#include <algorithm>
#include <cstring>

#include "irepa/core/concepts.hpp"
#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa {

/// Every element of a contiguous view set to v.
template <class T>
void fill(const CpuContext&, TensorView<T> t, std::type_identity_t<T> v) {
  t.fill(v);
}

/// dst = src converted elementwise to dst's type (same shape, contiguous): an encoder's float
/// tokens as a model's targets in its own type. (The CUDA overloads: ops/cuda/common.cuh.)
template <class To, class From>
void convert(const CpuContext&, ConstView<From> src, TensorView<To> dst) {
  check_shape("convert", "output", dst.shape(), src.shape());
  check_contiguous("convert", src, dst);
  for (std::int64_t i = 0; i < src.numel(); ++i) dst.data()[i] = static_cast<To>(src.data()[i]);
}

/// A copy of a host view on the context's device (here: a plain copy; the CPU twin of the CUDA
/// to_device, for device-generic code).
/// Counted as an upload (CpuContext::transfers), as the CUDA one is.
template <class T>
Tensor<T> to_device(const CpuContext& ctx, ConstView<T> host) {
  ctx.count_upload(sizeof(T) * static_cast<std::size_t>(host.numel()));
  return Tensor<T>::copy_of(host);
}

/// A host copy of a view (the CPU twin of the CUDA to_host; lets device-generic code read
/// values); counted as a download.
template <class T>
Tensor<T> to_host(const CpuContext& ctx, ConstView<T> v) {
  ctx.count_download(sizeof(T) * static_cast<std::size_t>(v.numel()));
  return Tensor<T>::copy_of(v);
}

namespace ops {

namespace detail {
inline void check_chunks(std::string_view op, const Shape& m, const Shape& c) {
  IREPA_CHECK(m.rank() == 2 && c.rank() == 3 && c[1] == m[0] && c[0] * c[2] == m[1],
              "{}: [B, k D] {} and [k, B, D] {} do not match", op, m.str(), c.str());
}
inline void check_unpatchify(const Shape& tokens, const Shape& image, std::int64_t C, std::int64_t p, TokenGrid g) {
  IREPA_CHECK(image.rank() == 4 && image[1] == C && image[2] == g.h * p && image[3] == g.w * p,
              "unpatchify: image has shape {}, expected [B, {}, {}, {}]", image.str(), C, g.h * p, g.w * p);
  check_shape("unpatchify", "tokens", tokens, Shape{image[0], g.tokens(), p * p * C});
}
}  // namespace detail

/// dst = src (same shape, contiguous).
template <class T>
void copy(const CpuContext&, In<T> src, TensorView<T> dst) {
  check_shape("copy", "destination", dst.shape(), src.shape());
  check_contiguous("copy", src, dst);
  if (src.numel()) std::memcpy(dst.data(), src.data(), sizeof(T) * static_cast<std::size_t>(src.numel()));
}

/// acc += x, elementwise (same shapes).
template <class T>
void add_into(const CpuContext& ctx, TensorView<T> acc, In<T> x) {
  check_shape("add_into", "addend", x.shape(), acc.shape());
  check_contiguous("add_into", acc, x);
  acc.flat().device(ctx.device()) += x.flat();
}

/// x *= s, elementwise.
template <class T>
void scale(const CpuContext&, TensorView<T> x, std::type_identity_t<T> s) {
  check_contiguous("scale", x);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] *= s;
}

/// acc [n, ...] += row [...] for each of the n leading slices (a position table over a batch).
template <class T>
void add_broadcast(const CpuContext& ctx, TensorView<T> acc, In<T> row) {
  check_contiguous("add_broadcast", acc, row);
  const std::int64_t R = row.numel();
  IREPA_CHECK(R > 0 && acc.numel() % R == 0, "add_broadcast: {} values do not repeat a row of {}", acc.numel(), R);
  ctx.parallel_for(acc.numel() / R, static_cast<double>(R), [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t i = 0; i < R; ++i) acc.data()[b * R + i] += row.data()[i];
  });
}

namespace detail {
inline void check_row_vector(std::string_view op, std::string_view what, std::int64_t n, const Shape& x) {
  IREPA_CHECK(x.rank() >= 1 && n == x.last(), "{}: {} has {} values, expected the last dimension of {}", op, what, n, x.str());
}
}  // namespace detail

namespace detail {
inline void check_channels_last(std::string_view op, const Shape& x, const Shape& y) {
  const bool ok = x.rank() == 4 && y.rank() == 4 && y[0] == x[0] && y[1] == x[2] && y[2] == x[3] && y[3] == x[1];
  IREPA_CHECK(ok, "{}: input {} and output {}, expected [B, C, H, W] and [B, H, W, C]", op, x.str(), y.str());
}
}  // namespace detail

/// y [B, H, W, C] = x [B, C, H, W] (an image as a channels-last grid).
template <class T>
void channels_last(const CpuContext& ctx, In<T> x, TensorView<T> y) {
  detail::check_channels_last("channels_last", x.shape(), y.shape());
  check_contiguous("channels_last", x, y);
  const std::int64_t B = x.size(0), C = x.size(1), P = x.size(2) * x.size(3);
  ctx.parallel_for(B * P, static_cast<double>(C), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t b = r / P, p = r % P;
      for (std::int64_t c = 0; c < C; ++c) y.data()[r * C + c] = x.data()[(b * C + c) * P + p];
    }
  });
}

/// y [B, C, H, W] = x [B, H, W, C] (a channels-last grid back as an image; channels_last's inverse).
template <class T>
void channels_first(const CpuContext& ctx, In<T> x, TensorView<T> y) {
  detail::check_channels_last("channels_first", y.shape(), x.shape());
  check_contiguous("channels_first", x, y);
  const std::int64_t B = y.size(0), C = y.size(1), P = y.size(2) * y.size(3);
  ctx.parallel_for(B * C, static_cast<double>(P), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t b = r / C, c = r % C;
      for (std::int64_t p = 0; p < P; ++p) y.data()[r * P + p] = x.data()[(b * P + p) * C + c];
    }
  });
}

namespace detail {
inline void check_copy_channels(std::string_view op, const Shape& part, const Shape& whole, std::int64_t offset) {
  IREPA_CHECK(part.rank() >= 1 && whole.rank() == part.rank() && offset >= 0 && offset + part[part.rank() - 1] <= whole[whole.rank() - 1],
              "{}: part {} at channel {} of {}, expected equal leading dimensions and the part's channels inside the whole's", op,
              part.str(), offset, whole.str());
  for (std::int64_t i = 0; i + 1 < part.rank(); ++i)
    IREPA_CHECK(part[i] == whole[i], "{}: part {} and whole {} differ in dimension {}", op, part.str(), whole.str(), i);
}
}  // namespace detail

namespace detail {
/// dst[r, dst_off + j] = src[r, src_off + j] for j < c over rows rows (channels-last blocks).
template <class T>
void copy_channel_block(const CpuContext& ctx, const T* src, std::int64_t src_stride, std::int64_t src_off, T* dst,
                        std::int64_t dst_stride, std::int64_t dst_off, std::int64_t c, std::int64_t rows) {
  ctx.parallel_for(rows, static_cast<double>(c), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) std::copy_n(src + r * src_stride + src_off, c, dst + r * dst_stride + dst_off);
  });
}
}  // namespace detail

/// whole[..., offset : offset + c] = part[..., :c]: concatenation along the last (channel) axis of
/// channels-last maps, one part at a time.
template <class T>
void copy_channels(const CpuContext& ctx, In<T> part, std::int64_t offset, TensorView<T> whole) {
  detail::check_copy_channels("copy_channels", part.shape(), whole.shape(), offset);
  check_contiguous("copy_channels", part, whole);
  const std::int64_t c = part.size(part.rank() - 1), C = whole.size(whole.rank() - 1);
  if (c > 0) detail::copy_channel_block(ctx, part.data(), c, 0, whole.data(), C, offset, c, part.numel() / c);
}

/// part[..., :c] = whole[..., offset : offset + c]: copy_channels' inverse (a channel slice).
template <class T>
void slice_channels(const CpuContext& ctx, In<T> whole, std::int64_t offset, TensorView<T> part) {
  detail::check_copy_channels("slice_channels", part.shape(), whole.shape(), offset);
  check_contiguous("slice_channels", part, whole);
  const std::int64_t c = part.size(part.rank() - 1), C = whole.size(whole.rank() - 1);
  if (c > 0) detail::copy_channel_block(ctx, whole.data(), C, offset, part.data(), c, 0, c, part.numel() / c);
}

namespace detail {
inline void check_upsample2x(std::string_view op, const Shape& x, const Shape& y) {
  IREPA_CHECK(x.rank() == 4 && y == Shape({x[0], 2 * x[1], 2 * x[2], x[3]}), "{}: input {} and output {}, expected [B, H, W, C] and [B, 2H, 2W, C]",
              op, x.str(), y.str());
}
}  // namespace detail

/// Nearest-neighbour x2 upsampling of channels-last maps (F.interpolate(scale_factor=2,
/// mode="nearest")): y [B, 2H, 2W, C], y[b, i, j] = x[b, i / 2, j / 2].
template <class T>
void upsample_nearest2x(const CpuContext& ctx, In<T> x, TensorView<T> y) {
  detail::check_upsample2x("upsample_nearest2x", x.shape(), y.shape());
  check_contiguous("upsample_nearest2x", x, y);
  const std::int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  ctx.parallel_for(B * 2 * H, static_cast<double>(2 * W * C), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t b = r / (2 * H), i = r % (2 * H);
      T* out = y.data() + r * 2 * W * C;
      const T* in = x.data() + (b * H + i / 2) * W * C;
      for (std::int64_t j = 0; j < 2 * W; ++j) std::memcpy(out + j * C, in + (j / 2) * C, static_cast<std::size_t>(C) * sizeof(T));
    }
  });
}

/// x [..., D] = x * w + b per column, in place (a LayerNorm's affine part); w, b [D].
template <class T>
void scale_shift_rows(const CpuContext& ctx, TensorView<T> x, In<T> w, In<T> b) {
  detail::check_row_vector("scale_shift_rows", "weight", w.numel(), x.shape());
  detail::check_row_vector("scale_shift_rows", "bias", b.numel(), x.shape());
  check_contiguous("scale_shift_rows", x, w, b);
  const std::int64_t D = x.shape().last();
  ctx.parallel_for(x.shape().rows(), 2.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      for (std::int64_t d = 0; d < D; ++d) x.data()[r * D + d] = x.data()[r * D + d] * w.data()[d] + b.data()[d];
  });
}

/// acc [..., D] += gamma * x per column (a residual branch with LayerScale); gamma [D], or
/// empty for acc += x.
template <class T>
void add_scaled_rows(const CpuContext& ctx, TensorView<T> acc, In<T> gamma, In<T> x) {
  check_shape("add_scaled_rows", "addend", x.shape(), acc.shape());
  if (gamma.numel() > 0) detail::check_row_vector("add_scaled_rows", "gamma", gamma.numel(), acc.shape());
  check_contiguous("add_scaled_rows", acc, gamma, x);
  const std::int64_t D = acc.shape().last();
  const bool ls = gamma.numel() > 0;
  ctx.parallel_for(acc.shape().rows(), 2.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t i = r0 * D; i < r1 * D; ++i) acc.data()[i] += (ls ? gamma.data()[i % D] : T(1)) * x.data()[i];
  });
}

/// m [B, k D] -> out [k, B, D]: adaLN's chunk(k, dim=-1), each chunk contiguous.
template <class T>
void split_chunks(const CpuContext&, In<T> m, TensorView<T> out) {
  detail::check_chunks("split_chunks", m.shape(), out.shape());
  check_contiguous("split_chunks", m, out);
  const std::int64_t k = out.size(0), B = out.size(1), D = out.size(2);
  for (std::int64_t j = 0; j < k; ++j)
    for (std::int64_t b = 0; b < B; ++b) std::copy_n(m.data() + b * k * D + j * D, D, out.data() + (j * B + b) * D);
}

/// c [k, B, D] -> out [B, k D], the inverse of split_chunks.
template <class T>
void merge_chunks(const CpuContext&, In<T> c, TensorView<T> out) {
  detail::check_chunks("merge_chunks", out.shape(), c.shape());
  check_contiguous("merge_chunks", c, out);
  const std::int64_t k = c.size(0), B = c.size(1), D = c.size(2);
  for (std::int64_t j = 0; j < k; ++j)
    for (std::int64_t b = 0; b < B; ++b) std::copy_n(c.data() + (j * B + b) * D, D, out.data() + b * k * D + j * D);
}

/// The reference's unpatchify: tokens [B, h w, p p C] (token, then (i, j, c)) -> image
/// [B, C, h p, w p]; inverse = true gathers the other way (its backward).
template <class T>
void unpatchify(const CpuContext& ctx, In<T> src, TensorView<T> dst, std::int64_t C, std::int64_t p, TokenGrid grid,
                bool inverse) {
  detail::check_unpatchify(inverse ? dst.shape() : src.shape(), inverse ? src.shape() : dst.shape(), C, p, grid);
  check_contiguous("unpatchify", src, dst);
  const std::int64_t B = inverse ? src.size(0) : dst.size(0), gh = grid.h, gw = grid.w;
  const std::int64_t H = gh * p, W = gw * p;
  ctx.parallel_for(B * gh, static_cast<double>(gw * p * p * C), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t br = r0; br < r1; ++br) {
      const std::int64_t b = br / gh, r = br % gh;
      for (std::int64_t q = 0; q < gw; ++q)
        for (std::int64_t i = 0; i < p; ++i)
          for (std::int64_t j = 0; j < p; ++j)
            for (std::int64_t ch = 0; ch < C; ++ch) {
              const std::int64_t tk = ((b * gh + r) * gw + q) * (p * p * C) + (i * p + j) * C + ch;
              const std::int64_t px = ((b * C + ch) * H + r * p + i) * W + q * p + j;
              if (inverse)
                dst.data()[tk] = src.data()[px];
              else
                dst.data()[px] = src.data()[tk];
            }
    }
  });
}

namespace detail {
inline void check_context_tokens(std::string_view op, const Shape& emb, const Shape& posemb, const Shape& x, const Shape& out) {
  IREPA_CHECK(x.rank() == 3, "{}: tokens have shape {}, expected [B, N, D]", op, x.str());
  check_shape(op, "label embedding", emb, Shape{x[0], x[2]});
  IREPA_CHECK(posemb.rank() == 2 && posemb[1] == x[2], "{}: in-context positions have shape {}, expected [L, {}]", op, posemb.str(),
              x[2]);
  check_shape(op, "output", out, Shape{x[0], posemb[0] + x[1], x[2]});
}
inline void check_token_slice(std::string_view op, const Shape& whole, std::int64_t start, const Shape& part) {
  IREPA_CHECK(whole.rank() == 3 && part.rank() == 3 && whole[0] == part[0] && whole[2] == part[2] && start >= 0 &&
                  start + part[1] <= whole[1],
              "{}: tokens [{}, {}) of {} do not fit a slice of shape {}", op, start, start + (part.rank() == 3 ? part[1] : 0),
              whole.str(), part.str());
}
}  // namespace detail

/// JiT's in-context tokens: out [B, L + N, D] = (emb[b] + posemb[l] for l < L, then x [B, N, D]).
/// emb [B, D], posemb [L, D].
template <class T>
void prepend_context(const CpuContext&, In<T> emb, In<T> posemb, In<T> x, TensorView<T> out) {
  detail::check_context_tokens("prepend_context", emb.shape(), posemb.shape(), x.shape(), out.shape());
  check_contiguous("prepend_context", emb, posemb, x, out);
  const std::int64_t B = x.size(0), N = x.size(1), D = x.size(2), L = posemb.size(0);
  for (std::int64_t b = 0; b < B; ++b) {
    T* row = out.data() + b * (L + N) * D;
    for (std::int64_t l = 0; l < L; ++l)
      for (std::int64_t d = 0; d < D; ++d) row[l * D + d] = emb.data()[b * D + d] + posemb.data()[l * D + d];
    std::copy_n(x.data() + b * N * D, N * D, row + L * D);
  }
}

/// Its backward: demb [B, D] and dposemb [L, D] accumulated (images in order), dx [B, N, D] assigned.
template <class T>
void prepend_context_backward(const CpuContext&, In<T> dout, TensorView<T> demb, TensorView<T> dposemb, TensorView<T> dx) {
  detail::check_context_tokens("prepend_context_backward", demb.shape(), dposemb.shape(), dx.shape(), dout.shape());
  check_contiguous("prepend_context_backward", dout, demb, dposemb, dx);
  const std::int64_t B = dx.size(0), N = dx.size(1), D = dx.size(2), L = dposemb.size(0);
  for (std::int64_t b = 0; b < B; ++b) {
    const T* row = dout.data() + b * (L + N) * D;
    for (std::int64_t l = 0; l < L; ++l)
      for (std::int64_t d = 0; d < D; ++d) {
        dposemb.data()[l * D + d] += row[l * D + d];
        demb.data()[b * D + d] += row[l * D + d];
      }
    std::copy_n(row + L * D, N * D, dx.data() + b * N * D);
  }
}

/// out [B, N, D] = x [B, M, D] tokens [start, start + N).
template <class T>
void slice_tokens(const CpuContext&, In<T> x, std::int64_t start, TensorView<T> out) {
  detail::check_token_slice("slice_tokens", x.shape(), start, out.shape());
  check_contiguous("slice_tokens", x, out);
  const std::int64_t B = x.size(0), M = x.size(1), N = out.size(1), D = x.size(2);
  for (std::int64_t b = 0; b < B; ++b) std::copy_n(x.data() + (b * M + start) * D, N * D, out.data() + b * N * D);
}

/// dst [B, M, D] tokens [start, start + N) += src [B, N, D] (slice_tokens' backward).
template <class T>
void add_slice_tokens(const CpuContext&, TensorView<T> dst, std::int64_t start, In<T> src) {
  detail::check_token_slice("add_slice_tokens", dst.shape(), start, src.shape());
  check_contiguous("add_slice_tokens", dst, src);
  const std::int64_t B = dst.size(0), M = dst.size(1), N = src.size(1), D = dst.size(2);
  for (std::int64_t b = 0; b < B; ++b) {
    T* d = dst.data() + (b * M + start) * D;
    const T* s = src.data() + b * N * D;
    for (std::int64_t i = 0; i < N * D; ++i) d[i] += s[i];
  }
}

/// out [B, N, D] = a * x[b, 0] + keep * x[b, start + t]: each token of a slice blended with the
/// first (class) token (DINOv2-mixed targets).
template <class T>
void blend_first_token(const CpuContext&, In<T> x, std::int64_t start, std::type_identity_t<T> a, std::type_identity_t<T> keep,
                       TensorView<T> out) {
  detail::check_token_slice("blend_first_token", x.shape(), start, out.shape());
  IREPA_CHECK(start >= 1, "blend_first_token: the slice starts at token {}, which must come after the first", start);
  check_contiguous("blend_first_token", x, out);
  const std::int64_t B = x.size(0), M = x.size(1), N = out.size(1), D = x.size(2);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < N; ++t)
      for (std::int64_t d = 0; d < D; ++d)
        out.data()[(b * N + t) * D + d] = x.data()[b * M * D + d] * a + x.data()[(b * M + start + t) * D + d] * keep;
}

}  // namespace ops
}  // namespace irepa
