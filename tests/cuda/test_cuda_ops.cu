// CUDA ops against the CPU double path (label "cuda"; needs a GPU): activations (and SwiGLU,
// RoPE), the same-padded conv, the patch embedding, unpatchify and adaLN chunking, the label
// and timestep embeddings, the alignment reductions (token mean / std, SpatialNorm, cosine, L2
// norm), adaLN
// modulate / gated residual, LayerNorm, RMSNorm, the linear layer (cuBLAS), attention, the
// optimizer passes (norm and clip factor kept on the device), the diffusion objectives' and
// samplers' steps (interpolation, MSE and its gradient, training times, Euler / Heun / guidance /
// SDE updates), the cosine reduction and loss totals, the Philox fills (the host's bits), and
// the encoders' forward-only ops (exact and quick GELU, affine rows, LayerScale residual, the
// class-token blend, resize, channel normalisation), ReLU and softmax cross-entropy, and a whole
// fit of the metric classifier (nn::Linear + AdamW on the GPU against the same fit on the CPU),
// forward and backward, at several shapes (not all equal, not powers of two),
// in float (relative error <= 1e-5) and double (<= 1e-12); the mixed-precision bf16 linear at
// <= 2e-2. Inputs are fresh random draws each run; the seed is printed so that a failure can be
// replayed with IREPA_TEST_SEED.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu_reference.hpp"
#include "cuda_test_support.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/metrics/classifier.hpp"
#include "irepa/ops/cuda/activation.cuh"
#include "irepa/ops/cuda/attention.cuh"
#include "irepa/ops/cuda/conv.cuh"
#include "irepa/ops/cuda/diffusion.cuh"
#include "irepa/ops/cuda/embedding.cuh"
#include "irepa/ops/cuda/linear.cuh"
#include "irepa/ops/cuda/modulate.cuh"
#include "irepa/ops/cuda/norm.cuh"
#include "irepa/ops/cuda/optim.cuh"
#include "irepa/ops/cuda/pool.cuh"
#include "irepa/ops/cuda/random.cuh"
#include "irepa/ops/cuda/reduce.cuh"
#include "irepa/ops/cuda/resize.cuh"
#include "irepa/ops/cuda/rope.cuh"
#include "irepa/ops/cuda/tensor_ops.cuh"

using namespace irepa;

namespace {

using cuda_test::checks;
using cuda_test::failures;
std::uint64_t seed = 0;

Tensor<double> randn(const Shape& s, double std = 1.0) {
  static std::uint64_t stream = 0;
  Tensor<double> t(s);
  Philox(seed, ++stream).normal(t.view(), 0.0, std);
  return t;
}

template <class T>
Tensor<T> cast(const Tensor<double>& x) {
  Tensor<T> y(x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) y[i] = static_cast<T>(x[i]);
  return y;
}

template <class T>
Tensor<T, Cuda> dev(const CudaContext& ctx, const Tensor<double>& x) {
  const Tensor<T> h = cast<T>(x);
  return to_device<T>(ctx, h.view());
}

/// ||got - want|| / ||want|| for a device result against the CPU double one.
template <class T>
void expect_close(const CudaContext& ctx, const std::string& what, const Tensor<T, Cuda>& got, const Tensor<double>& want,
                  double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12) {
  const Tensor<T> h = to_host<T>(ctx, got.view());
  ++checks;
  if (h.numel() != want.numel()) {
    ++failures;
    std::printf("FAILED %s: %lld values, expected %lld\n", what.c_str(), static_cast<long long>(h.numel()),
                static_cast<long long>(want.numel()));
    return;
  }
  double d = 0, n = 0;
  for (std::int64_t i = 0; i < h.numel(); ++i) {
    d += (static_cast<double>(h[i]) - want[i]) * (static_cast<double>(h[i]) - want[i]);
    n += want[i] * want[i];
  }
  const double rel = std::sqrt(d / std::max(n, 1e-300));
  const bool ok = n > 0 && rel <= tol;  // an all-zero reference would prove nothing
  if (!ok) ++failures;
  std::printf("%-6s %-58s rel %.2e (tol %.0e) %s\n", std::is_same_v<T, float> ? "float" : "double", what.c_str(), rel, tol,
              ok ? "ok" : "FAILED");
}

template <class T>
void activations(const CudaContext& ctx, const Shape& s) {
  const auto x = randn(s, 1.5), dy = randn(s);
  Tensor<T, Cuda> y_(s), dx_(s);
  const auto x_ = dev<T>(ctx, x), dy_ = dev<T>(ctx, dy);
  ops::gelu_tanh_forward<T>(ctx, x_, y_.view());
  expect_close(ctx, "gelu_tanh_forward " + s.str(), y_, cpu_ref::gelu_tanh_forward(x));
  ops::gelu_tanh_backward<T>(ctx, x_, dy_, dx_.view());
  expect_close(ctx, "gelu_tanh_backward " + s.str(), dx_, cpu_ref::gelu_tanh_backward(x, dy));
  ops::silu_forward<T>(ctx, x_, y_.view());
  expect_close(ctx, "silu_forward " + s.str(), y_, cpu_ref::silu_forward(x));
  ops::silu_backward<T>(ctx, x_, dy_, dx_.view());
  expect_close(ctx, "silu_backward " + s.str(), dx_, cpu_ref::silu_backward(x, dy));
}

template <class T>
void swiglu_and_rope(const CudaContext& ctx, std::int64_t B, std::int64_t gh, std::int64_t gw, std::int64_t H, std::int64_t hd) {
  const std::int64_t N = gh * gw;
  const Shape xs{B, N, 2 * hd * H}, ys{B, N, hd * H};
  const auto x = randn(xs, 1.5), dy = randn(ys);
  Tensor<T, Cuda> y_(ys), dx_(xs);
  const auto x_ = dev<T>(ctx, x);
  ops::swiglu_forward<T>(ctx, x_, y_.view());
  expect_close(ctx, "swiglu_forward " + xs.str(), y_, cpu_ref::swiglu_forward(x));
  ops::swiglu_backward<T>(ctx, x_, dev<T>(ctx, dy), dx_.view());
  expect_close(ctx, "swiglu_backward " + xs.str(), dx_, cpu_ref::swiglu_backward(x, dy));
  const Shape rs{B, N, H, hd};
  const auto q = randn(rs), dq = randn(rs);
  for (const bool interleaved : {true, false}) {
    Tensor<double> cos, sin;
    const auto [want_y, want_dx] = cpu_ref::rope(q, dq, gh, gw, interleaved, cos, sin);
    const auto mode = interleaved ? ops::RopeMode::Interleaved : ops::RopeMode::HalfSplit;
    const std::string tag = std::string(interleaved ? " interleaved " : " half-split ") + rs.str();
    auto q_ = dev<T>(ctx, q), dq_ = dev<T>(ctx, dq);
    const auto cos_ = dev<T>(ctx, cos), sin_ = dev<T>(ctx, sin);
    ops::rope_forward<T>(ctx, q_, cos_, sin_, mode, q_.view());  // in place, as allowed
    expect_close(ctx, "rope_forward (in place)" + tag, q_, want_y);
    ops::rope_backward<T>(ctx, cos_, sin_, mode, dq_, dq_.view());
    expect_close(ctx, "rope_backward (in place)" + tag, dq_, want_dx);
  }
}

template <class T>
void adaln(const CudaContext& ctx, std::int64_t B, std::int64_t N, std::int64_t D) {
  const Shape s{B, N, D}, v{B, D};
  const auto x = randn(s), shift = randn(v, 0.5), scale = randn(v, 0.5), dy = randn(s), br = randn(s);
  const std::string tag = " " + s.str();
  Tensor<double> dx(s), dsh(v), dsc(v);
  Tensor<T, Cuda> y_(s), dx_(s), dsh_(v), dsc_(v);
  const auto x_ = dev<T>(ctx, x), scale_ = dev<T>(ctx, scale), dy_ = dev<T>(ctx, dy), br_ = dev<T>(ctx, br);
  ops::modulate_forward<T>(ctx, x_, dev<T>(ctx, shift), scale_, y_.view());
  expect_close(ctx, "modulate_forward" + tag, y_, cpu_ref::modulate_forward(x, shift, scale));
  cpu_ref::modulate_backward(x, scale, dy, dx, dsh, dsc);
  ops::modulate_backward<T>(ctx, x_, scale_, dy_, dx_.view(), dsh_.view(), dsc_.view());
  expect_close(ctx, "modulate_backward dx" + tag, dx_, dx);
  expect_close(ctx, "modulate_backward dshift" + tag, dsh_, dsh);
  expect_close(ctx, "modulate_backward dscale" + tag, dsc_, dsc);
  ops::gated_residual_forward<T>(ctx, x_, scale_, br_, y_.view());
  expect_close(ctx, "gated_residual_forward" + tag, y_, cpu_ref::gated_residual_forward(x, scale, br));
  cpu_ref::gated_residual_backward(scale, br, dy, dx, dsh);
  ops::gated_residual_backward<T>(ctx, scale_, br_, dy_, dx_.view(), dsh_.view());
  expect_close(ctx, "gated_residual_backward dy" + tag, dx_, dx);
  expect_close(ctx, "gated_residual_backward dgate" + tag, dsh_, dsh);

  // LayerNorm + modulate fused, and its backward with the residual gradient added.
  Tensor<double> xn(s), r(Shape{B * N}), dxn(s);
  cpu_ref::layer_norm_forward(x, 1e-6, xn, r);
  Tensor<T, Cuda> xn_(s), r_(Shape{B * N});
  ops::adaln_norm_forward<T>(ctx, x_, T(1e-6), dev<T>(ctx, shift), scale_, xn_.view(), r_.view(), y_.view());
  expect_close(ctx, "adaln_norm_forward xn" + tag, xn_, xn);
  expect_close(ctx, "adaln_norm_forward rstd" + tag, r_, r);
  expect_close(ctx, "adaln_norm_forward h" + tag, y_, cpu_ref::modulate_forward(xn, shift, scale));
  cpu_ref::modulate_backward(xn, scale, dy, dxn, dsh, dsc);
  Tensor<double> want = cpu_ref::layer_norm_backward(xn, r, dxn);
  for (std::int64_t i = 0; i < want.numel(); ++i) want[i] += br[i];
  ops::adaln_norm_backward<T>(ctx, xn_, r_, scale_, dy_, br_, dx_.view(), dsh_.view(), dsc_.view());
  expect_close(ctx, "adaln_norm_backward dx (+ residual)" + tag, dx_, want);
  expect_close(ctx, "adaln_norm_backward dshift" + tag, dsh_, dsh);
  expect_close(ctx, "adaln_norm_backward dscale" + tag, dsc_, dsc);
  ops::adaln_norm_backward<T>(ctx, xn_, r_, scale_, dy_, {}, dx_.view(), dsh_.view(), dsc_.view());
  expect_close(ctx, "adaln_norm_backward dx (no residual)" + tag, dx_, cpu_ref::layer_norm_backward(xn, r, dxn));
}

template <class T>
void norms(const CudaContext& ctx, std::int64_t rows, std::int64_t D) {
  const Shape s{rows, D};
  const std::string tag = " " + s.str();
  auto x = randn(s, 2.0);
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] += 0.5;  // a mean to remove
  const auto dy = randn(s), w = randn(Shape{D}, 0.3), dw0 = randn(Shape{D});
  Tensor<double> y(s), r(Shape{rows}), dx(s), dw(Shape{D});
  Tensor<T, Cuda> y_(s), r_(Shape{rows}), dx_(s);
  const auto x_ = dev<T>(ctx, x), dy_ = dev<T>(ctx, dy), w_ = dev<T>(ctx, w);
  cpu_ref::layer_norm_forward(x, 1e-6, y, r);
  ops::layer_norm_forward<T>(ctx, x_, T(1e-6), y_.view(), r_.view());
  expect_close(ctx, "layer_norm_forward y" + tag, y_, y);
  expect_close(ctx, "layer_norm_forward rstd" + tag, r_, r);
  ops::layer_norm_backward<T>(ctx, dev<T>(ctx, y), dev<T>(ctx, r), dy_, dx_.view());
  expect_close(ctx, "layer_norm_backward" + tag, dx_, cpu_ref::layer_norm_backward(y, r, dy));
  cpu_ref::rms_norm_forward(x, w, 1e-6, y, r);
  ops::rms_norm_forward<T>(ctx, x_, w_, T(1e-6), y_.view(), r_.view());
  expect_close(ctx, "rms_norm_forward y" + tag, y_, y);
  std::copy_n(dw0.data(), D, dw.data());  // dw accumulates onto what is there
  auto dw_ = dev<T>(ctx, dw0);
  cpu_ref::rms_norm_backward(x, w, r, dy, dx, dw);
  ops::rms_norm_backward<T>(ctx, x_, w_, dev<T>(ctx, r), dy_, dx_.view(), dw_.view());
  expect_close(ctx, "rms_norm_backward dx" + tag, dx_, dx);
  expect_close(ctx, "rms_norm_backward dw (accumulated)" + tag, dw_, dw);
}

/// A linear layer's inputs and the CPU double results: y, and dx, dw, db with dw, db
/// accumulated onto dw0, db0.
struct LinearCase {
  std::string tag;
  Tensor<double> x, w, b, dy, dw0, db0, y, dx, dw, db;
  LinearCase(std::int64_t rows, std::int64_t I, std::int64_t O)
      : tag(" rows " + std::to_string(rows) + " " + std::to_string(I) + " -> " + std::to_string(O)),
        x(randn(Shape{rows, I})), w(randn(Shape{O, I}, 1.0 / std::sqrt(static_cast<double>(I)))), b(randn(Shape{O})),
        dy(randn(Shape{rows, O})), dw0(randn(Shape{O, I})), db0(randn(Shape{O})), dx(Shape{rows, I}), dw(Shape{O, I}), db(Shape{O}) {
    std::copy_n(dw0.data(), dw0.numel(), dw.data());
    std::copy_n(db0.data(), db0.numel(), db.data());
    y = cpu_ref::linear_forward(x, w, b);
    cpu_ref::linear_backward(x, w, dy, dx, dw, db);
  }
};

template <class T>
void linear(const CudaContext& ctx, std::int64_t rows, std::int64_t I, std::int64_t O) {
  const LinearCase c(rows, I, O);
  Tensor<T, Cuda> y_(c.y.shape()), dx_(c.x.shape());
  auto dw_ = dev<T>(ctx, c.dw0), db_ = dev<T>(ctx, c.db0);
  const auto x_ = dev<T>(ctx, c.x), w_ = dev<T>(ctx, c.w);
  ops::linear_forward<T>(ctx, x_, w_, dev<T>(ctx, c.b), y_.view());
  expect_close(ctx, "linear_forward" + c.tag, y_, c.y);
  {  // operands at odd offsets (as parameters in the arena): float's cuBLASLt path must pick an
     // algorithm for 4-byte alignment or step aside for the plain product
    Tensor<T, Cuda> wb(Shape{c.w.numel() + c.b.numel() + 1}), out(Shape{c.y.numel() + 1});
    Tensor<T> packed(Shape{wb.numel()});
    for (std::int64_t i = 0; i < c.w.numel(); ++i) packed[1 + i] = static_cast<T>(c.w[i]);
    for (std::int64_t i = 0; i < c.b.numel(); ++i) packed[1 + c.w.numel() + i] = static_cast<T>(c.b[i]);
    packed[0] = T(0);
    Cuda::upload_sync(wb.data(), packed.data(), sizeof(T) * static_cast<std::size_t>(packed.numel()));
    const ConstView<T, Cuda> wv(wb.data() + 1, c.w.shape()), bv(wb.data() + 1 + c.w.numel(), c.b.shape());
    const TensorView<T, Cuda> yv(out.data() + 1, c.y.shape());
    ops::linear_forward<T>(ctx, x_, wv, bv, yv);
    Tensor<T, Cuda> y2(c.y.shape());
    ops::copy<T>(ctx, yv, y2.view());
    expect_close(ctx, "linear_forward (operands at odd offsets)" + c.tag, y2, c.y);
  }
  ops::linear_backward<T>(ctx, x_, w_, dev<T>(ctx, c.dy), dx_.view(), dw_.view(), db_.view());
  expect_close(ctx, "linear_backward dx" + c.tag, dx_, c.dx);
  expect_close(ctx, "linear_backward dw (accumulated)" + c.tag, dw_, c.dw);
  expect_close(ctx, "linear_backward db (accumulated)" + c.tag, db_, c.db);
}

/// JiT's in-context tokens: prepend (label embedding + positions), its backward (sums over
/// images and rows accumulated onto what is there), slicing tokens out and adding them back.
template <class T>
void context_tokens(const CudaContext& ctx, std::int64_t B, std::int64_t L, std::int64_t N, std::int64_t D) {
  const std::string tag = " B " + std::to_string(B) + " L " + std::to_string(L) + " N " + std::to_string(N) + " D " + std::to_string(D);
  const auto emb = randn(Shape{B, D}), pos = randn(Shape{L, D}), x = randn(Shape{B, N, D}), dout = randn(Shape{B, L + N, D});
  const auto demb0 = randn(Shape{B, D}), dpos0 = randn(Shape{L, D});
  Tensor<double> want(Shape{B, L + N, D}), demb = demb0.clone(), dpos = dpos0.clone(), dx(Shape{B, N, D});
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t l = 0; l < L; ++l)
      for (std::int64_t d = 0; d < D; ++d) {
        want[(b * (L + N) + l) * D + d] = emb[b * D + d] + pos[l * D + d];
        demb[b * D + d] += dout[(b * (L + N) + l) * D + d];
        dpos[l * D + d] += dout[(b * (L + N) + l) * D + d];
      }
    for (std::int64_t i = 0; i < N * D; ++i) {
      want[(b * (L + N) + L) * D + i] = x[b * N * D + i];
      dx[b * N * D + i] = dout[(b * (L + N) + L) * D + i];
    }
  }
  Tensor<T, Cuda> out_(want.shape()), dx_(dx.shape()), sl_(dx.shape());
  auto demb_ = dev<T>(ctx, demb0), dpos_ = dev<T>(ctx, dpos0), acc_ = dev<T>(ctx, dout);
  const auto x_ = dev<T>(ctx, x), dout_ = dev<T>(ctx, dout);
  ops::prepend_context<T>(ctx, dev<T>(ctx, emb), dev<T>(ctx, pos), x_, out_.view());
  expect_close(ctx, "prepend_context" + tag, out_, want);
  ops::prepend_context_backward<T>(ctx, dout_, demb_.view(), dpos_.view(), dx_.view());
  expect_close(ctx, "prepend_context_backward demb (accumulated)" + tag, demb_, demb);
  expect_close(ctx, "prepend_context_backward dposemb (accumulated)" + tag, dpos_, dpos);
  expect_close(ctx, "prepend_context_backward dx" + tag, dx_, dx);
  ops::slice_tokens<T>(ctx, dout_, L, sl_.view());
  expect_close(ctx, "slice_tokens" + tag, sl_, dx);
  Tensor<double> twice = dout.clone();
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < N * D; ++i) twice[(b * (L + N) + L) * D + i] += x[b * N * D + i];
  ops::add_slice_tokens<T>(ctx, acc_.view(), L, x_);
  expect_close(ctx, "add_slice_tokens" + tag, acc_, twice);
}

/// The same-padded conv (iREPA's 3x3 projector; k 1 and 5 too) and the embeddings.
template <class T>
void conv_and_embeddings(const CudaContext& ctx, std::int64_t B, std::int64_t H, std::int64_t W, std::int64_t Ci, std::int64_t Co,
                         std::int64_t k) {
  const Shape xs{B, H, W, Ci}, ws{Co, Ci, k, k}, ys{B, H, W, Co};
  const std::string tag = " " + xs.str() + " k " + std::to_string(k) + " -> " + std::to_string(Co);
  const auto x = randn(xs), w = randn(ws, 1.0 / std::sqrt(static_cast<double>(Ci * k * k))), b = randn(Shape{Co}), dy = randn(ys);
  const auto dw0 = randn(ws), db0 = randn(Shape{Co});
  Tensor<double> dx(xs), dw(ws), db(Shape{Co});
  std::copy_n(dw0.data(), dw0.numel(), dw.data());
  std::copy_n(db0.data(), db0.numel(), db.data());
  const auto x_ = dev<T>(ctx, x), w_ = dev<T>(ctx, w);
  Tensor<T, Cuda> y_(ys), dx_(xs);
  auto dw_ = dev<T>(ctx, dw0), db_ = dev<T>(ctx, db0);
  ops::conv2d_same_forward<T>(ctx, x_, w_, dev<T>(ctx, b), y_.view());
  expect_close(ctx, "conv2d_same_forward" + tag, y_, cpu_ref::conv2d_same_forward(x, w, b));
  cpu_ref::conv2d_same_backward(x, w, dy, dx, dw, db);
  ops::conv2d_same_backward<T>(ctx, x_, w_, dev<T>(ctx, dy), dx_.view(), dw_.view(), db_.view());
  expect_close(ctx, "conv2d_same_backward dx" + tag, dx_, dx);
  expect_close(ctx, "conv2d_same_backward dw (accumulated)" + tag, dw_, dw);
  expect_close(ctx, "conv2d_same_backward db (accumulated)" + tag, db_, db);

  // Labels with repeats (the backward must add both), table of 11 classes + the null class.
  Tensor<std::int64_t> idx(Shape{B * 3});
  for (std::int64_t i = 0; i < idx.numel(); ++i) idx[i] = (i * 5 + static_cast<std::int64_t>(seed % 7)) % 12;
  const auto table = randn(Shape{12, Co}), dyl = randn(Shape{B * 3, Co}), dt0 = randn(Shape{12, Co});
  Tensor<double> dtable(Shape{12, Co});
  std::copy_n(dt0.data(), dt0.numel(), dtable.data());
  Tensor<T, Cuda> e_(Shape{B * 3, Co});
  auto dtable_ = dev<T>(ctx, dt0);
  const auto idx_ = to_device<std::int64_t>(ctx, idx.cview());  // labels live on the device with the batch
  ops::embedding_forward<T>(ctx, dev<T>(ctx, table), idx_.cview(), e_.view());
  expect_close(ctx, "embedding_forward", e_, cpu_ref::embedding_forward(table, idx));
  cpu_ref::embedding_backward(idx, dyl, dtable);
  ops::embedding_backward<T>(ctx, idx_.cview(), dev<T>(ctx, dyl), dtable_.view());
  expect_close(ctx, "embedding_backward (accumulated, repeated labels)", dtable_, dtable);
  {  // An index past the table (one the upload's check would have refused) gives a NaN row and adds nothing.
    Tensor<std::int64_t> bad(Shape{2});
    bad[0] = 3, bad[1] = 12;
    const auto bad_ = to_device<std::int64_t>(ctx, bad.cview());
    Tensor<T, Cuda> eb_(Shape{2, Co});
    ops::embedding_forward<T>(ctx, dev<T>(ctx, table), bad_.cview(), eb_.view());
    const Tensor<T> eb = to_host<T>(ctx, eb_.cview());
    const Tensor<T> before = to_host<T>(ctx, dtable_.cview());
    ops::embedding_backward<T>(ctx, bad_.cview(), dev<T>(ctx, randn(Shape{2, Co})), dtable_.view());
    const Tensor<T> after = to_host<T>(ctx, dtable_.cview());
    bool ok = true;
    for (std::int64_t c = 0; c < Co; ++c) ok = ok && eb[c] == static_cast<T>(table[3 * Co + c]) && std::isnan(eb[Co + c]);
    for (std::int64_t i = 0; i < after.numel(); ++i) ok = ok && (i / Co == 3 || after[i] == before[i]);
    ++checks;
    if (!ok) ++failures;
    std::printf("%-6s %-58s %s\n", std::is_same_v<T, float> ? "float" : "double", "embedding: an index past the table is a NaN row",
                ok ? "ok" : "FAILED");
  }
  Tensor<double> t(Shape{B * 3});
  Philox(seed, 99).uniform(t.view(), 0.0, 1.0);
  for (const std::int64_t dim : {std::int64_t{256}, std::int64_t{33}}) {
    const auto dout = randn(Shape{B * 3, dim});
    const auto t_ = dev<T>(ctx, t);
    Tensor<T, Cuda> f_(Shape{B * 3, dim}), dt_(Shape{B * 3});
    ops::timestep_features_forward<T>(ctx, t_, dim, f_.view());
    expect_close(ctx, "timestep_features_forward dim " + std::to_string(dim), f_, cpu_ref::timestep_features_forward(t, dim));
    ops::timestep_features_backward<T>(ctx, t_, dev<T>(ctx, dout), dt_.view());
    expect_close(ctx, "timestep_features_backward dim " + std::to_string(dim), dt_, cpu_ref::timestep_features_backward(t, dout));
  }
}

/// The patch embedding and the whole-tensor helpers of the device-generic layers.
template <class T>
void patchify_and_tensor_ops(const CudaContext& ctx, std::int64_t B, std::int64_t C, std::int64_t gh, std::int64_t gw, std::int64_t p,
                             std::int64_t D) {
  const Shape xs{B, C, gh * p, gw * p}, ws{D, C, p, p}, ys{B, gh * gw, D};
  const std::string tag = " " + xs.str() + " p " + std::to_string(p) + " -> " + std::to_string(D);
  const auto x = randn(xs), w = randn(ws, 0.2), b = randn(Shape{D}), dy = randn(ys), dw0 = randn(ws), db0 = randn(Shape{D});
  Tensor<double> dx(xs), dw = dw0.clone(), db = db0.clone();
  const auto x_ = dev<T>(ctx, x), w_ = dev<T>(ctx, w);
  Tensor<T, Cuda> y_(ys), dx_(xs);
  auto dw_ = dev<T>(ctx, dw0), db_ = dev<T>(ctx, db0);
  ops::patchify_forward<T>(ctx, x_, w_, dev<T>(ctx, b), y_.view());
  expect_close(ctx, "patchify_forward" + tag, y_, cpu_ref::patchify_forward(x, w, b));
  cpu_ref::patchify_backward(x, w, dy, dx, dw, db);
  ops::patchify_backward<T>(ctx, x_, w_, dev<T>(ctx, dy), dx_.view(), dw_.view(), db_.view());
  expect_close(ctx, "patchify_backward dx" + tag, dx_, dx);
  expect_close(ctx, "patchify_backward dw (accumulated)" + tag, dw_, dw);
  expect_close(ctx, "patchify_backward db (accumulated)" + tag, db_, db);

  // unpatchify both ways: tokens [B, T, p p C] <-> image [B, C, H, W].
  const auto tok = randn(Shape{B, gh * gw, p * p * C}), img = randn(xs);
  Tensor<T, Cuda> img_(xs), tok_(tok.shape());
  ops::unpatchify<T>(ctx, dev<T>(ctx, tok), img_.view(), C, p, TokenGrid{gh, gw}, false);
  expect_close(ctx, "unpatchify" + tag, img_, cpu_ref::unpatchify(tok, C, p, gh, gw, false, xs));
  ops::unpatchify<T>(ctx, dev<T>(ctx, img), tok_.view(), C, p, TokenGrid{gh, gw}, true);
  expect_close(ctx, "unpatchify (inverse)" + tag, tok_, cpu_ref::unpatchify(img, C, p, gh, gw, true, tok.shape()));

  // adaLN's chunks of [B, 6 D], and a position row added over the batch.
  const auto m = randn(Shape{B, 6 * D});
  Tensor<T, Cuda> ch_(Shape{6, B, D}), back_(m.shape());
  ops::split_chunks<T>(ctx, dev<T>(ctx, m), ch_.view());
  const auto chunks = cpu_ref::split_chunks(m, 6);
  expect_close(ctx, "split_chunks 6" + tag, ch_, chunks);
  ops::merge_chunks<T>(ctx, ch_.cview(), back_.view());
  expect_close(ctx, "merge_chunks 6" + tag, back_, cpu_ref::merge_chunks(chunks));
  const auto acc = randn(ys), row = randn(Shape{gh * gw, D});
  auto acc_ = dev<T>(ctx, acc);
  ops::add_broadcast<T>(ctx, acc_.view(), dev<T>(ctx, row));
  expect_close(ctx, "add_broadcast" + tag, acc_, cpu_ref::add_broadcast(acc, row));
}

/// iREPA's alignment path: token mean / std and SpatialNorm, cosine similarity and L2 norm.
template <class T>
void alignment(const CudaContext& ctx, std::int64_t B, std::int64_t N, std::int64_t D) {
  const Shape s{B, N, D}, bd{B, D}, rows{B * N};
  const std::string tag = " " + s.str();
  auto z = randn(s);
  for (std::int64_t i = 0; i < z.numel(); ++i) z[i] = 0.7 * z[i] + 0.3 * static_cast<double>(i % D) / static_cast<double>(D);
  const auto dmean = randn(bd), dstd = randn(bd), a = randn(s), ds = randn(rows), dy = randn(s);
  Tensor<double> mean(bd), sd(bd), dz(s), cs(rows), da(s), db(s), y(s), norm(rows), dx(s);
  cpu_ref::token_mean_std(z, dmean, dstd, mean, sd, dz);
  const auto z_ = dev<T>(ctx, z);
  Tensor<T, Cuda> mean_(bd), sd_(bd), dz_(s);
  ops::token_mean_std_forward<T>(ctx, z_, mean_.view(), sd_.view());
  expect_close(ctx, "token_mean_std_forward mean" + tag, mean_, mean);
  expect_close(ctx, "token_mean_std_forward std" + tag, sd_, sd);
  ops::token_mean_std_backward<T>(ctx, z_, mean_, sd_, dev<T>(ctx, dmean), dev<T>(ctx, dstd), dz_.view());
  expect_close(ctx, "token_mean_std_backward" + tag, dz_, dz);
  Tensor<T, Cuda> zn_(s);
  ops::spatial_normalize<T>(ctx, z_, T(0.6), T(1e-6), zn_.view());
  expect_close(ctx, "spatial_normalize (SpatialNorm, alpha 0.6)" + tag, zn_, cpu_ref::spatial_norm(z, 0.6, 1e-6));
  cpu_ref::cosine(a, z, ds, cs, da, db);
  Tensor<T, Cuda> cs_(rows), da_(s), db_(s);
  const auto c = ops::cosine_similarity_forward<T>(ctx, dev<T>(ctx, a), z_, T(1e-8), cs_.view());
  expect_close(ctx, "cosine_similarity_forward" + tag, cs_, cs);
  ops::cosine_similarity_backward<T>(ctx, c, dev<T>(ctx, ds), T(1e-8), da_.view(), db_.view());
  expect_close(ctx, "cosine_similarity_backward da" + tag, da_, da);
  expect_close(ctx, "cosine_similarity_backward db" + tag, db_, db);
  cpu_ref::l2_normalize(a, dy, y, norm, dx);
  Tensor<T, Cuda> y_(s), norm_(rows), dx_(s);
  ops::l2_normalize_forward<T>(ctx, dev<T>(ctx, a), T(1e-12), y_.view(), norm_.view());
  expect_close(ctx, "l2_normalize_forward" + tag, y_, y);
  ops::l2_normalize_backward<T>(ctx, y_, norm_, dev<T>(ctx, dy), T(1e-12), dx_.view());
  expect_close(ctx, "l2_normalize_backward" + tag, dx_, dx);
}

/// With ctx.fused_attention() (float), the cache must come from the fused kernels: no
/// probabilities, one log-sum-exp per query row.
template <class T>
void expect_fused_when_asked(const CudaContext& ctx, const ops::AttentionCache<T, Cuda>& c, std::int64_t rows, const std::string& tag) {
  if (!ctx.fused_attention() || !std::is_same_v<T, float>) return;
  IREPA_CUDA_EXPECT(c.probs.numel() == 0 && c.lse.numel() == rows, "fused attention%s: the cache holds %lld probabilities, %lld lse",
                    tag.c_str(), static_cast<long long>(c.probs.numel()), static_cast<long long>(c.lse.numel()));
}

template <class T>
void attention(const CudaContext& ctx, std::int64_t B, std::int64_t N, std::int64_t D, std::int64_t H) {
  const std::string tag = " B " + std::to_string(B) + " T " + std::to_string(N) + " D " + std::to_string(D) + " heads " +
                          std::to_string(H);
  const auto qkv = randn(Shape{B, N, 3 * D}), dout = randn(Shape{B, N, D});
  Tensor<double> out(Shape{B, N, D}), dqkv(Shape{B, N, 3 * D});
  cpu_ref::attention(qkv, H, dout, out, dqkv);
  ops::AttentionSpec<T, Cuda> spec;
  spec.heads = H;
  Tensor<T, Cuda> out_(Shape{B, N, D}), dqkv_(Shape{B, N, 3 * D});
  const auto cache = ops::attention_forward<T>(ctx, dev<T>(ctx, qkv), spec, out_.view());
  expect_fused_when_asked(ctx, cache, B * H * N, tag);
  expect_close(ctx, "attention_forward" + tag, out_, out);
  ops::attention_backward<T>(ctx, spec, cache, dev<T>(ctx, dout), dqkv_.view());
  expect_close(ctx, "attention_backward dqkv" + tag, dqkv_, dqkv);
}

/// JiT's attention: q/k RMSNorm and 2-D RoPE inside, forward and backward (with the norm
/// weights' gradients), interleaved and half-split.
template <class T>
void attention_qk(const CudaContext& ctx, std::int64_t B, std::int64_t gh, std::int64_t gw, std::int64_t D, std::int64_t H,
                  bool interleaved) {
  const std::int64_t N = gh * gw, hd = D / H;
  const std::string tag = " B " + std::to_string(B) + " T " + std::to_string(N) + " D " + std::to_string(D) + " heads " +
                          std::to_string(H) + (interleaved ? " interleaved" : " half-split");
  const auto qkv = randn(Shape{B, N, 3 * D}), dout = randn(Shape{B, N, D});
  auto qw = randn(Shape{hd}, 0.3), kw = randn(Shape{hd}, 0.3);
  for (std::int64_t i = 0; i < hd; ++i) qw[i] += 1, kw[i] += 1;
  const auto dqw0 = randn(Shape{hd}), dkw0 = randn(Shape{hd});
  Tensor<double> cos, sin, out(Shape{B, N, D}), dqkv(Shape{B, N, 3 * D}), dqw = dqw0.clone(), dkw = dkw0.clone();
  cpu_ref::rope(randn(Shape{1, N, 1, hd}), randn(Shape{1, N, 1, hd}), gh, gw, true, cos, sin);  // JiT's axial table
  cpu_ref::attention_qk(qkv, H, qw, kw, cos, sin, interleaved, dout, out, dqkv, dqw, dkw);
  const auto qw_ = dev<T>(ctx, qw), kw_ = dev<T>(ctx, kw), cos_ = dev<T>(ctx, cos), sin_ = dev<T>(ctx, sin);
  ops::AttentionSpec<T, Cuda> spec;
  spec.heads = H, spec.q_norm_weight = qw_.cview(), spec.k_norm_weight = kw_.cview(), spec.rope_cos = cos_.cview();
  spec.rope_sin = sin_.cview(), spec.rope_mode = interleaved ? ops::RopeMode::Interleaved : ops::RopeMode::HalfSplit;
  Tensor<T, Cuda> out_(Shape{B, N, D}), dqkv_(Shape{B, N, 3 * D});
  auto dqw_ = dev<T>(ctx, dqw0), dkw_ = dev<T>(ctx, dkw0);
  const auto cache = ops::attention_forward<T>(ctx, dev<T>(ctx, qkv), spec, out_.view());
  expect_fused_when_asked(ctx, cache, B * H * N, tag);
  expect_close(ctx, "attention_forward q/k norm + RoPE" + tag, out_, out);
  ops::attention_backward<T>(ctx, spec, cache, dev<T>(ctx, dout), dqkv_.view(), dqw_.view(), dkw_.view());
  expect_close(ctx, "attention_backward q/k norm + RoPE dqkv" + tag, dqkv_, dqkv);
  expect_close(ctx, "attention_backward dq_norm_weight (accumulated)" + tag, dqw_, dqw);
  expect_close(ctx, "attention_backward dk_norm_weight (accumulated)" + tag, dkw_, dkw);
}

/// The mixed-precision linear (bf16 activations and weights, FP32 accumulation, float weight
/// and bias gradients) against the CPU double path on the unrounded inputs: bf16 tolerance.
void linear_bf16(const CudaContext& ctx, std::int64_t rows, std::int64_t I, std::int64_t O) {
  const LinearCase c(rows, I, O);
  auto bf = [&](const Tensor<double>& t) {  // float on the device, then converted there
    const auto f = dev<float>(ctx, t);
    Tensor<bf16, Cuda> out(t.shape());
    convert(ctx, f.view(), out.view());
    return out;
  };
  auto back = [&](const Tensor<bf16, Cuda>& t) {
    Tensor<float, Cuda> f(t.shape());
    convert(ctx, t.view(), f.view());
    return f;
  };
  const auto x_ = bf(c.x), w_ = bf(c.w), dy_ = bf(c.dy);
  Tensor<bf16, Cuda> y_(c.y.shape()), dx_(c.x.shape());
  auto dw_ = dev<float>(ctx, c.dw0), db_ = dev<float>(ctx, c.db0);
  ops::linear_forward(ctx, x_.view(), w_.view(), dev<float>(ctx, c.b).view(), y_.view());
  expect_close(ctx, "linear_forward (bf16)" + c.tag, back(y_), c.y, 2e-2);
  ops::linear_backward(ctx, x_.view(), w_.view(), dy_.view(), dx_.view(), dw_.view(), db_.view());
  expect_close(ctx, "linear_backward (bf16) dx" + c.tag, back(dx_), c.dx, 2e-2);
  expect_close(ctx, "linear_backward (bf16) dw (float, accumulated)" + c.tag, dw_, c.dw, 2e-2);
  expect_close(ctx, "linear_backward (bf16) db (float, accumulated)" + c.tag, db_, c.db, 2e-2);
}

/// f() must throw an irepa::Error whose message contains `needle`.
template <class F>
void expect_error(const std::string& what, const std::string& needle, F&& f) {
  ++checks;
  std::string message;
  try {
    f();
  } catch (const Error& e) {
    message = e.what();
  }
  if (message.find(needle) == std::string::npos) {
    ++failures;
    std::printf("FAILED %s: expected an error containing '%s', got '%s'\n", what.c_str(), needle.c_str(), message.c_str());
  }
}

/// The fused AdamW + two EMAs against the CPU AdamW::step on a two-parameter arena (the first
/// decayed, the second not), clipped to norm 1, over three steps; the norm against the CPU's.
template <class T>
void optimizer(const CudaContext& ctx, std::int64_t n0, std::int64_t n1) {
  const std::int64_t n = n0 + n1;
  const double lr = 3e-3, wd = 0.05;
  const auto p0 = randn(Shape{n});
  std::vector<Tensor<double>> grads;
  for (int s = 0; s < 3; ++s) grads.push_back(randn(Shape{n}, 2.0));
  const cpu_ref::AdamWRun want = cpu_ref::adamw_steps(p0, grads, n0, lr, wd);
  auto p_ = dev<T>(ctx, p0), m_ = dev<T>(ctx, Tensor<double>(Shape{n}, 0.0)), v_ = dev<T>(ctx, Tensor<double>(Shape{n}, 0.0));
  auto e0_ = dev<T>(ctx, p0), e1_ = dev<T>(ctx, p0);
  const ops::AdamWCoefficients defaults;
  for (int step = 1; step <= 3; ++step) {
    const auto k = static_cast<std::size_t>(step - 1);
    const auto g_ = dev<T>(ctx, grads[k]);
    // The norm and the clip factor stay on the device; the update reads the factor there.
    Tensor<double, Cuda> sq_(Shape{1}), norm_(Shape{1}), clip_(Shape{1});
    ops::grad_sq_sum<T>(ctx, g_.view(), sq_.view());
    ops::clip_scale(ctx, sq_.cview(), 1.0, norm_.view(), clip_.view());
    const double clip = to_host<double>(ctx, clip_.cview())[0];  // read back here only to check it
    ++checks;
    if (!(std::abs(clip - want.clip[k]) <= (std::is_same_v<T, float> ? 1e-6 : 1e-13) * want.clip[k]) || !(clip < 1.0)) {
      ++failures;
      std::printf("FAILED grad norm: clip factor %.17g against the CPU's %.17g\n", clip, want.clip[k]);
    }
    const double bc1 = 1 - std::pow(defaults.beta1, step), bc2 = 1 - std::pow(defaults.beta2, step);
    ops::AdamWCoefficients c = defaults;
    c.step_size = lr / bc1, c.bc2_sqrt = std::sqrt(bc2), c.keep = 1 - lr * wd;
    auto seg = [](auto& t, std::int64_t off, std::int64_t len) { return t.view().slice(0, off, len); };
    ops::adamw_ema_update<T>(ctx, seg(p_, 0, n0), seg(g_, 0, n0), seg(m_, 0, n0), seg(v_, 0, n0), c, clip_.cview(),
                             {e0_.data(), 0.999}, {e1_.data(), 0.9});
    c.keep = 1;  // b.bias: not decayed
    ops::adamw_ema_update<T>(ctx, seg(p_, n0, n1), seg(g_, n0, n1), seg(m_, n0, n1), seg(v_, n0, n1), c, clip_.cview(),
                             {e0_.data() + n0, 0.999}, {e1_.data() + n0, 0.9});
  }
  expect_close(ctx, "adamw_ema_update values after 3 clipped steps", p_, want.values);
  expect_close(ctx, "adamw_ema_update EMA 0.999", e0_, want.ema0);
  expect_close(ctx, "adamw_ema_update EMA 0.9", e1_, want.ema1);
  expect_close(ctx, "adamw_ema_update exp_avg_sq", v_, want.exp_avg_sq);
}

/// A device scalar against the CPU double value.
void expect_scalar(const CudaContext& ctx, const std::string& what, ConstView<double, Cuda> got, double want, double tol) {
  const double g = to_host<double>(ctx, got)[0];
  ++checks;
  const double rel = std::abs(g - want) / std::max(std::abs(want), 1e-300);
  const bool ok = want != 0 && rel <= tol;
  if (!ok) ++failures;
  std::printf("%-6s %-58s rel %.2e (tol %.0e) %s\n", "scalar", what.c_str(), rel, tol, ok ? "ok" : "FAILED");
}

/// The objectives' steps: SiT's interpolant (both paths) and per-image MSE with its gradient,
/// JiT's interpolation (t near 1: the t_eps clamp) and velocity MSE, the training times; the
/// cosine reduction and the loss totals.
template <class T>
void objectives(const CudaContext& ctx, std::int64_t B, std::int64_t C, std::int64_t H) {
  const Shape xs{B, C, H, H};
  const std::string tag = " " + xs.str();
  const double ltol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  const auto x = randn(xs), noise = randn(xs), out = randn(xs);
  Tensor<double> t(Shape{B});
  Philox(seed, 31).uniform(t.view(), 0.0, 1.0);
  t[0] = 0.99;  // JiT: 1 - t below t_eps
  const auto x_ = dev<T>(ctx, x), n_ = dev<T>(ctx, noise), t_ = dev<T>(ctx, t), out_ = dev<T>(ctx, out);
  for (const PathType path : {PathType::Linear, PathType::Cosine}) {
    Tensor<double> mi, tg, ps, dout;
    cpu_ref::sit_interpolate(x, noise, t, path, mi, tg);
    Tensor<T, Cuda> mi_(xs), tg_(xs), ps_(Shape{B}), dout_(xs);
    ops::sit_interpolate<T>(ctx, x_, n_, t_, path, mi_.view(), tg_.view());
    const std::string p = path == PathType::Linear ? " linear" : " cosine";
    expect_close(ctx, "sit_interpolate model input" + p + tag, mi_, mi);
    expect_close(ctx, "sit_interpolate target" + p + tag, tg_, tg);
    const double loss = cpu_ref::mse_per_image(out, tg, 0.7, ps, dout);
    Tensor<double, Cuda> loss_(Shape{1});
    ops::mse_per_image<T>(ctx, out_, dev<T>(ctx, tg), 0.7, ps_.view(), dout_.view(), loss_.view());
    expect_close(ctx, "mse_per_image per-sample" + p + tag, ps_, ps);
    expect_close(ctx, "mse_per_image d(output), grad scale 0.7" + p + tag, dout_, dout);
    expect_scalar(ctx, "mse_per_image loss" + p + tag, loss_.cview(), loss, ltol);
  }
  {
    Tensor<double> z, tv, vp, dout;
    cpu_ref::jit_interpolate(x, noise, t, 0.05, z, tv);
    Tensor<T, Cuda> z_(xs), tv_(xs), vp_(xs), dout_(xs);
    Tensor<double, Cuda> loss_(Shape{1});
    ops::jit_interpolate<T>(ctx, x_, n_, t_, 0.05, z_.view(), tv_.view());
    expect_close(ctx, "jit_interpolate z" + tag, z_, z);
    expect_close(ctx, "jit_interpolate target velocity (t_eps clamp)" + tag, tv_, tv);
    const double loss = cpu_ref::jit_velocity_mse(out, z, tv, t, 0.05, 1.3, vp, dout);
    ops::jit_velocity_mse<T>(ctx, out_, dev<T>(ctx, z), dev<T>(ctx, tv), t_, 0.05, 1.3, vp_.view(), dout_.view(), loss_.view());
    expect_close(ctx, "jit_velocity_mse v_pred" + tag, vp_, vp);
    expect_close(ctx, "jit_velocity_mse d(output), grad scale 1.3" + tag, dout_, dout);
    expect_scalar(ctx, "jit_velocity_mse loss" + tag, loss_.cview(), loss, ltol);
  }
  {  // training times from normal draws (double in, T out)
    const auto n = randn(Shape{B});
    const auto n_ = to_device<double>(ctx, n.cview());
    Tensor<T, Cuda> tt_(Shape{B});
    for (const PathType path : {PathType::Linear, PathType::Cosine}) {
      ops::lognormal_time<T>(ctx, n_.cview(), path, tt_.view());
      expect_close(ctx, std::string("lognormal_time ") + (path == PathType::Linear ? "linear" : "cosine"), tt_,
                   cpu_ref::lognormal_time(n, path));
    }
    ops::logit_normal_time<T>(ctx, n_.cview(), -0.8, 0.8, tt_.view());
    expect_close(ctx, "logit_normal_time (-0.8, 0.8)", tt_, cpu_ref::logit_normal_time(n, -0.8, 0.8));
  }
  {  // the cosine reduction: the alignment loss from per-row similarities, and the totals
    const std::int64_t rows = B * H * H;
    const auto sims = randn(Shape{rows}, 0.3);
    Tensor<double, Cuda> v_(Shape{1});
    ops::row_mean<T>(ctx, dev<T>(ctx, sims), -1.0, v_.view());
    expect_scalar(ctx, "row_mean (negative mean cosine) over " + std::to_string(rows) + " rows", v_.cview(), cpu_ref::row_mean(sims, -1.0),
                  ltol);
    const auto scalars = randn(Shape{5});  // total, denoising, alignment (overwritten), two encoders
    const auto want = cpu_ref::loss_totals(scalars, 0.5);
    auto s_ = to_device<double>(ctx, scalars.cview());
    ops::loss_totals(ctx, s_.view(), 2, 0.5);
    expect_close<double>(ctx, "loss_totals: total and alignment mean", s_, want, 1e-15);
  }
}

/// The sampler updates on [B, C, H, W] states against the CPU's.
template <class T>
void sampler_updates(const CudaContext& ctx, std::int64_t B, std::int64_t C, std::int64_t H) {
  const Shape xs{B, C, H, H}, x2s{2 * B, C, H, H};
  const std::string tag = " " + xs.str();
  const auto x = randn(xs), d1 = randn(xs), d2 = randn(xs), eps = randn(xs), dd = randn(x2s);
  const auto x_ = dev<T>(ctx, x), d1_ = dev<T>(ctx, d1), d2_ = dev<T>(ctx, d2);
  Tensor<T, Cuda> o_(xs);
  ops::euler_update<T>(ctx, x_, d1_, -0.0625, o_.view());
  expect_close(ctx, "euler_update" + tag, o_, cpu_ref::euler_update(x, d1, -0.0625));
  for (const bool half_each : {true, false}) {
    ops::heun_update<T>(ctx, x_, d1_, d2_, 0.125, half_each ? ops::HeunForm::HalfEach : ops::HeunForm::HalfSum, o_.view());
    expect_close(ctx, std::string("heun_update ") + (half_each ? "0.5 d1 + 0.5 d2" : "0.5 (d1 + d2)") + tag, o_,
                 cpu_ref::heun_update(x, d1, d2, 0.125, half_each));
  }
  ops::cfg_combine<T>(ctx, dev<T>(ctx, dd), 1.8, o_.view());
  expect_close(ctx, "cfg_combine of the doubled batch, scale 1.8" + tag, o_, cpu_ref::cfg_combine(dd, 1.8));
  const PathCoefficients k = interpolant(PathType::Linear, 0.37);
  const double r = k.alpha / k.d_alpha, var = k.sigma * k.sigma - r * k.d_sigma * k.sigma;
  ops::sde_drift<T>(ctx, d1_, x_, r, var, 0.74, o_.view());
  expect_close(ctx, "sde_drift at t 0.37" + tag, o_, cpu_ref::sde_drift(d1, x, r, var, 0.74));
  auto s_ = dev<T>(ctx, x);
  ops::sde_step<T>(ctx, s_.view(), d1_, dev<T>(ctx, eps), -0.04, 0.74);
  expect_close(ctx, "sde_step" + tag, s_, cpu_ref::sde_step(x, d1, eps, -0.04, 0.74));
  ops::velocity_from_x<T>(ctx, d1_, x_, 1 / 0.3, o_.view());
  expect_close(ctx, "velocity_from_x" + tag, o_, cpu_ref::velocity_from_x(d1, x, 1 / 0.3));
}

/// Philox fills on the device: the host's values bit for bit (uniform and normal, float and
/// double, lengths that end mid-block, a generator already advanced), and the same position after.
template <class T>
void random_fills(const CudaContext& ctx, std::int64_t n) {
  for (const int kind : {0, 1}) {
    Philox host(seed, 77), device(seed, 77);
    host.set_position(5), device.set_position(5);
    Tensor<T> want(Shape{n});
    Tensor<T, Cuda> got_(Shape{n});
    for (int draw = 0; draw < 2; ++draw) {  // two draws in a row: the second starts where the first ended
      if (kind == 0) {
        host.uniform(want.view(), T(-1), T(3));
        ops::random_uniform<T>(ctx, device, got_.view(), T(-1), T(3));
      } else {
        host.normal(want.view(), T(0.5), T(2));
        ops::random_normal<T>(ctx, device, got_.view(), T(0.5), T(2));
      }
    }
    const Tensor<T> got = to_host<T>(ctx, got_.cview());
    ++checks;
    const bool same = std::memcmp(got.data(), want.data(), sizeof(T) * static_cast<std::size_t>(n)) == 0 &&
                      host.position() == device.position();
    if (!same) ++failures;
    std::printf("%-6s %-58s %s\n", std::is_same_v<T, float> ? "float" : "double",
                (std::string(kind ? "random_normal" : "random_uniform") + " n " + std::to_string(n) + ": the host's bits").c_str(),
                same ? "ok" : "FAILED");
  }
}

/// The encoders' forward-only ops: exact GELU and QuickGELU, a LayerNorm's affine part, the
/// LayerScale residual (and the plain one), the class-token blend, the resize (bilinear and
/// bicubic, up and down, with and without antialias: DINOv2's 256 -> 224) and the channel
/// normalisation.
template <class T>
void encoder_ops(const CudaContext& ctx, std::int64_t B, std::int64_t Tn, std::int64_t D) {
  const Shape s{B, Tn, D};
  const auto x = randn(s, 1.5), acc = randn(s), w = randn(Shape{D}), b = randn(Shape{D});
  const auto x_ = dev<T>(ctx, x), w_ = dev<T>(ctx, w), b_ = dev<T>(ctx, b);
  Tensor<T, Cuda> y_(s);
  ops::gelu_forward<T>(ctx, x_, y_.view());
  expect_close(ctx, "gelu_forward " + s.str(), y_, cpu_ref::gelu_forward(x));
  ops::quick_gelu_forward<T>(ctx, x_, y_.view());
  expect_close(ctx, "quick_gelu_forward " + s.str(), y_, cpu_ref::quick_gelu_forward(x));
  auto z_ = dev<T>(ctx, x);
  ops::scale_shift_rows<T>(ctx, z_.view(), w_, b_);
  expect_close(ctx, "scale_shift_rows " + s.str(), z_, cpu_ref::scale_shift_rows(x, w, b));
  auto a_ = dev<T>(ctx, acc);
  ops::add_scaled_rows<T>(ctx, a_.view(), w_, x_);
  expect_close(ctx, "add_scaled_rows (LayerScale) " + s.str(), a_, cpu_ref::add_scaled_rows(acc, w, x));
  auto p_ = dev<T>(ctx, acc);
  ops::add_scaled_rows<T>(ctx, p_.view(), ConstView<T, Cuda>{}, x_);
  expect_close(ctx, "add_scaled_rows (plain) " + s.str(), p_, cpu_ref::add_scaled_rows(acc, Tensor<double>(Shape{0}), x));
  const std::int64_t start = Tn > 5 ? 5 : 1, n = Tn - start;
  Tensor<T, Cuda> blend_(Shape{B, n, D});
  ops::blend_first_token<T>(ctx, x_, start, T(0.1), T(0.9), blend_.view());
  expect_close(ctx, "blend_first_token " + s.str(), blend_, cpu_ref::blend_first_token(x, start, n, 0.1, 0.9));

  struct Case { std::int64_t h, w, oh, ow; bool bicubic, antialias; };
  for (const Case c : {Case{37, 37, 16, 16, true, true}, Case{20, 24, 16, 16, false, false}, Case{16, 16, 37, 30, true, false},
                       Case{19, 21, 13, 7, false, true}}) {
    const Shape is{B, 3, c.h, c.w};
    const auto img = randn(is);
    const auto got = ops::interpolate<T>(ctx, dev<T>(ctx, img).cview(), c.oh, c.ow,
                                         c.bicubic ? ops::ResizeMode::Bicubic : ops::ResizeMode::Bilinear, c.antialias);
    expect_close(ctx, std::string("interpolate ") + (c.bicubic ? "bicubic" : "bilinear") + (c.antialias ? " aa " : " ") + is.str(), got,
                 cpu_ref::interpolate(img, c.oh, c.ow, c.bicubic, c.antialias));
  }
  {  // DINOv2's preprocessing at 256: /255 and mean / std, then bicubic to 224
    Tensor<double> u8(Shape{B, 3, 256, 256});
    Philox(seed, 991).uniform(u8.view(), 0.0, 255.0);
    for (std::int64_t i = 0; i < u8.numel(); ++i) u8[i] = std::floor(u8[i]);
    const std::vector<double> mean{0.485, 0.456, 0.406}, sd{0.229, 0.224, 0.225};
    const auto u8_ = dev<T>(ctx, u8);
    Tensor<T, Cuda> nrm_(u8.shape());
    ops::normalize_channels<T>(ctx, u8_, ops::ChannelNorm{.divisor = 255.0, .mean = {0.485, 0.456, 0.406, 0}, .std = {0.229, 0.224, 0.225, 1}},
                               nrm_.view());
    const auto want = cpu_ref::normalize_channels(u8, 255.0, mean, sd);
    expect_close(ctx, "normalize_channels " + u8.shape().str(), nrm_, want);
    expect_close(ctx, "interpolate bicubic 256 -> 224", ops::interpolate<T>(ctx, nrm_.cview(), 224, 224, ops::ResizeMode::Bicubic, false),
                 cpu_ref::interpolate(want, 224, 224, true, false));
  }
}

/// ReLU forward / backward and the softmax cross-entropy (loss per row, scaled gradient).
template <class T>
void classifier_ops(const CudaContext& ctx, std::int64_t B, std::int64_t K) {
  const Shape s{B, K};
  const auto z = randn(s, 3.0), dy = randn(s);
  const auto z_ = dev<T>(ctx, z), dy_ = dev<T>(ctx, dy);
  Tensor<T, Cuda> y_(s), dx_(s);
  ops::relu_forward<T>(ctx, z_, y_.view());
  expect_close(ctx, "relu_forward " + s.str(), y_, cpu_ref::relu_forward(z));
  ops::relu_backward<T>(ctx, z_, dy_, dx_.view());
  expect_close(ctx, "relu_backward " + s.str(), dx_, cpu_ref::relu_backward(z, dy));
  Tensor<std::int64_t> labels(Shape{B});
  Philox(seed, 4242).randint(labels.view(), 0, K);
  // The CPU's double loss from the values the device sees (z rounded to T).
  Tensor<double> zt(s);
  const Tensor<T> zh = cast<T>(z);
  for (std::int64_t i = 0; i < zt.numel(); ++i) zt[i] = static_cast<double>(zh[i]);
  Tensor<double> loss, dz;
  cpu_ref::softmax_cross_entropy(zt, labels, 1.0 / static_cast<double>(B), loss, dz);
  Tensor<double, Cuda> loss_(Shape{B});
  ops::softmax_cross_entropy<T>(ctx, z_, to_device(ctx, labels.cview()).cview(), loss_.view(), dx_.view(), 1.0 / static_cast<double>(B));
  expect_close(ctx, "softmax_cross_entropy loss " + s.str(), loss_, loss, std::is_same_v<T, float> ? 1e-6 : 1e-12);
  expect_close(ctx, "softmax_cross_entropy dlogits " + s.str(), dx_, dz);
}

/// VGG's layout ops: an image to a channels-last grid, and 2x2 / 3x3 max pools (odd sizes drop
/// the last partial row and column, as torch's floor mode).
template <class T>
void vgg_ops(const CudaContext& ctx) {
  const auto x = randn(Shape{2, 5, 7, 9});
  Tensor<T, Cuda> y_(Shape{2, 7, 9, 5});
  ops::channels_last<T>(ctx, dev<T>(ctx, x), y_.view());
  const auto grid = cpu_ref::channels_last(x);
  expect_close(ctx, "channels_last [2, 5, 7, 9]", y_, grid);
  for (const std::int64_t s : {2, 3})
    expect_close(ctx, "max_pool_channels_last [2, 7, 9, 5] stride " + std::to_string(s),
                 ops::max_pool_channels_last<T>(ctx, y_.cview(), s), cpu_ref::max_pool_channels_last(grid, s));
}

/// SAM's and SAM2's ops: windows of a grid that needs padding and back, window attention with
/// SAM's relative positions, with SAM2's pooled queries, over a whole grid, and SAM2's strided columns.
template <class T>
void window_ops(const CudaContext& ctx) {
  const auto x = randn(Shape{2, 10, 10, 6});
  Tensor<T, Cuda> w_(Shape{2 * 9, 16, 6});
  ops::window_partition<T>(ctx, dev<T>(ctx, x), 4, w_.view());  // 10 padded to 12: 3 x 3 windows of 4
  const auto w = cpu_ref::window_partition(x, 4);
  expect_close(ctx, "window_partition [2, 10, 10, 6] in windows of 4", w_, w);
  Tensor<T, Cuda> back_(x.shape());
  ops::window_merge<T>(ctx, w_, back_.view());
  expect_close(ctx, "window_merge back to [2, 10, 10, 6]", back_, x);
  struct Case {
    std::int64_t units, ws, stride, heads, dim;
    bool rel;
  };
  for (const Case c : {Case{5, 4, 1, 2, 16, true}, Case{3, 14, 1, 3, 48, true}, Case{4, 4, 2, 2, 16, false}, Case{2, 6, 2, 1, 8, false},
                       Case{2, 8, 1, 4, 32, false}}) {
    const auto qkv = randn(Shape{c.units, c.ws * c.ws, 3 * c.dim});
    const std::int64_t hd = c.dim / c.heads, q = c.ws / c.stride;
    const auto rh = c.rel ? randn(Shape{2 * c.ws - 1, hd}, 0.5) : Tensor<double>(), rw = c.rel ? randn(Shape{2 * c.ws - 1, hd}, 0.5) : Tensor<double>();
    const auto rh_ = c.rel ? dev<T>(ctx, rh) : Tensor<T, Cuda>(), rw_ = c.rel ? dev<T>(ctx, rw) : Tensor<T, Cuda>();
    Tensor<T, Cuda> out_(Shape{c.units, q * q, c.dim});
    ops::window_attention_forward<T>(ctx, dev<T>(ctx, qkv), ops::WindowAttentionSpec<T, Cuda>{c.heads, c.ws, c.stride, rh_, rw_}, out_.view());
    expect_close(ctx,
                 "window_attention_forward " + qkv.shape().str() + " window " + std::to_string(c.ws) + " stride " + std::to_string(c.stride) +
                     (c.rel ? " + relative positions" : ""),
                 out_, cpu_ref::window_attention(qkv, c.heads, c.ws, c.stride, rh, rw));
  }
  const auto img = randn(Shape{2, 3, 23, 23});
  Tensor<T, Cuda> cols_(Shape{2, 6 * 6, 3 * 49});
  ops::im2col<T>(ctx, dev<T>(ctx, img), 7, 4, 3, cols_.view());
  expect_close(ctx, "im2col [2, 3, 23, 23] 7x7 stride 4 padding 3", cols_, cpu_ref::im2col(img, 7, 4, 3));
}

/// The metric classifier fitted on the GPU (float) against the same fit on the CPU: every epoch's
/// loss and the final parameters.
void classifier_fit(const CudaContext& ctx) {
  const std::int64_t N = 300, in = 24, K = 5;
  const auto centres = randn(Shape{K, in}, 2.0), noise = randn(Shape{N, in});
  Tensor<float> x(Shape{N, in});
  Tensor<std::int64_t> y(Shape{N});
  Philox(seed, 4343).randint(y.view(), 0, K);
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t d = 0; d < in; ++d) x[i * in + d] = static_cast<float>(noise[i * in + d] + centres[y[i] * in + d]);
  const auto cpu = cpu_ref::classifier_fit(x, y, K, 16, 3, 64, seed);
  metrics::MlpClassifier<float, Cuda> clf(in, K, {.hidden = 16, .epochs = 3, .batch_size = 64, .seed = seed});
  const auto losses = clf.fit(ctx, x, y);
  Tensor<double> want_loss(Shape{3}), want_values(Shape{cpu.values.numel()});
  Tensor<double, Cuda> got_loss(Shape{3});
  {
    Tensor<double> l(Shape{3});
    for (int e = 0; e < 3; ++e) l[e] = losses.at(static_cast<std::size_t>(e)), want_loss[e] = cpu.losses.at(static_cast<std::size_t>(e));
    got_loss = to_device(ctx, l.cview());
  }
  for (std::int64_t i = 0; i < want_values.numel(); ++i) want_values[i] = cpu.values[i];
  expect_close(ctx, "MlpClassifier fit: epoch losses, GPU vs CPU", got_loss, want_loss, 1e-4);
  Tensor<float, Cuda> got_values(Shape{want_values.numel()});
  Cuda::copy_sync(got_values.data(), clf.params().values().data(), sizeof(float) * static_cast<std::size_t>(want_values.numel()));
  expect_close(ctx, "MlpClassifier fit: parameters, GPU vs CPU", got_values, want_values, 1e-3);
  IREPA_CUDA_EXPECT(losses.back() < losses.front(), "the GPU fit's loss fell (%g -> %g)", losses.front(), losses.back());
}

template <class T>
void all(const CudaContext& ctx) {
  classifier_ops<T>(ctx, 37, 10);
  vgg_ops<T>(ctx);
  window_ops<T>(ctx);
  classifier_ops<T>(ctx, 1000, 1000);  // ImageNet's classes
  encoder_ops<T>(ctx, 2, 21, 40);
  encoder_ops<T>(ctx, 3, 261, 768);  // DINOv2-B's 1 + 4 + 256 tokens
  objectives<T>(ctx, 3, 4, 8);
  objectives<T>(ctx, 16, 4, 32);  // SiT's 32 x 32 latents
  objectives<T>(ctx, 2, 3, 64);   // JiT's pixels
  sampler_updates<T>(ctx, 3, 4, 8);
  sampler_updates<T>(ctx, 64, 4, 32);
  random_fills<T>(ctx, 1);
  random_fills<T>(ctx, 1027);
  random_fills<T>(ctx, 3 * 4 * 32 * 32);
  activations<T>(ctx, Shape{3, 17, 40});
  activations<T>(ctx, Shape{2, 256, 3072});
  swiglu_and_rope<T>(ctx, 2, 3, 5, 2, 8);
  swiglu_and_rope<T>(ctx, 2, 16, 16, 12, 64);  // JiT-B/16's grid and heads
  adaln<T>(ctx, 2, 17, 40);
  adaln<T>(ctx, 3, 256, 768);
  norms<T>(ctx, 34, 40);
  norms<T>(ctx, 513, 768);
  norms<T>(ctx, 7, 1152);
  linear<T>(ctx, 34, 40, 72);
  linear<T>(ctx, 300, 96, 384);
  linear<T>(ctx, 1024, 768, 2304);
  linear<T>(ctx, 5, 1152, 6912);  // adaLN's few-row product
  patchify_and_tensor_ops<T>(ctx, 3, 4, 16, 16, 2, 768);  // SiT-B/2's patch embedding of 32x32 latents
  patchify_and_tensor_ops<T>(ctx, 2, 3, 5, 7, 4, 40);
  context_tokens<T>(ctx, 3, 32, 256, 768);  // JiT-B/16 at 256 x 256: 32 class tokens before 256 patches
  context_tokens<T>(ctx, 2, 5, 7, 12);
  conv_and_embeddings<T>(ctx, 2, 7, 5, 6, 10, 3);
  conv_and_embeddings<T>(ctx, 4, 16, 16, 768, 768, 3);  // iREPA's projector on SiT-B's 16x16 tokens
  conv_and_embeddings<T>(ctx, 1, 9, 11, 4, 3, 5);
  conv_and_embeddings<T>(ctx, 2, 4, 4, 8, 8, 1);
  alignment<T>(ctx, 2, 17, 40);
  alignment<T>(ctx, 4, 256, 768);  // 256 target tokens of a 768-d encoder
  attention<T>(ctx, 2, 17, 64, 4);     // head dim 16
  attention<T>(ctx, 3, 256, 768, 12);  // SiT-B/2's blocks: head dim 64
  attention<T>(ctx, 1, 100, 288, 4);   // head dim 72
  attention_qk<T>(ctx, 2, 4, 5, 64, 4, true);
  attention_qk<T>(ctx, 2, 16, 16, 768, 12, true);  // JiT-B/16's blocks at 256 x 256
  attention_qk<T>(ctx, 1, 7, 9, 288, 4, false);    // head dim 72, half-split
  optimizer<T>(ctx, 1000, 37);
  optimizer<T>(ctx, 300'001, 768);
}

}  // namespace

int main() {
  if (!cuda_test::have_device()) return 1;
  const char* s = std::getenv("IREPA_TEST_SEED");
  seed = s && *s ? std::strtoull(s, nullptr, 10)
                 : static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  std::printf("seed %llu (IREPA_TEST_SEED=%llu replays it)\n", static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(seed));
  try {
    CudaContext ctx(0);
    all<float>(ctx);
    all<double>(ctx);
    classifier_fit(ctx);
    linear_bf16(ctx, 34, 40, 72);
    linear_bf16(ctx, 1024, 768, 2304);
    linear_bf16(ctx, 4096, 1152, 1152);
    // The fused attention kernels (float, head dim <= 128): partial tiles, head dims 16, 64, 72,
    // 96, 128 and 100 (not a multiple of 32), with and without q/k norm + RoPE.
    ctx.set_fused_attention(true);
    attention<float>(ctx, 2, 17, 64, 4);      // head dim 16
    attention<float>(ctx, 3, 256, 768, 12);   // 64, SiT-B/2
    attention<float>(ctx, 2, 100, 288, 4);    // 72 (SiT-XL's 1152 / 16)
    attention<float>(ctx, 1, 33, 384, 4);     // 96
    attention<float>(ctx, 2, 65, 1024, 8);    // 128
    attention<float>(ctx, 1, 40, 300, 3);     // 100
    attention_qk<float>(ctx, 2, 16, 16, 768, 12, true);
    attention_qk<float>(ctx, 1, 7, 9, 288, 4, false);
    ctx.set_fused_attention(false);
    // Errors before anything is launched: a wrong shape is named; what the GPU path lacks is
    // refused, never replaced by something else.
    Tensor<float, Cuda> a(Shape{2, 3, 4}), bad(Shape{2, 5}), qkv(Shape{2, 3, 12}), out(Shape{2, 3, 4});
    expect_error("modulate_forward with a [2, 5] shift", "shift",
                 [&] { ops::modulate_forward<float>(ctx, a.view(), bad.view(), bad.view(), a.view()); });
    Tensor<float, Cuda> w(Shape{3});
    ops::AttentionSpec<float, Cuda> normed;
    normed.heads = 2, normed.q_norm_weight = w.view(), normed.k_norm_weight = w.view();
    expect_error("attention_forward with a q/k norm weight of the wrong size", "q_norm weight",
                 [&] { ops::attention_forward<float>(ctx, qkv.view(), normed, out.view()); });
  } catch (const std::exception& e) {
    std::printf("FAILED with an exception: %s\n", e.what());
    return 1;
  }
  return cuda_test::finish("cuda_ops");
}
