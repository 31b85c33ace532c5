#pragma once
// Multi-head softmax attention on the CPU, from a fused qkv projection.
//   qkv [B, T, 3D] (q | k | v, heads contiguous inside each: channel h*hd + j), out [B, T, D].
// Optional per-head q/k RMSNorm (weights [hd], JiT) and optional RoPE (tables [T, hd/2]),
// applied in that order, as the reference does. Logits and softmax run in T (float or double).
// Work is parallel over (image, head); each (b, h) multiplies [T, hd] matrices on its own thread
// (float: our packed kernel, sgemm_serial; double: Eigen).

#include <cmath>
#include <limits>
#include <vector>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/ops/cpu/norm.hpp"
#include "irepa/ops/cpu/rope.hpp"
#include "irepa/ops/cpu/sgemm.hpp"

namespace irepa::ops {

template <class T, class D = Cpu>
struct AttentionSpec {
  std::int64_t heads = 1;
  T scale = 0;                 // 0: head_dim^-0.5
  ConstView<T, D> q_norm_weight;  // [hd], or empty: no q/k RMSNorm
  ConstView<T, D> k_norm_weight;  // [hd], required with q_norm_weight
  T norm_eps = T(1e-6);
  ConstView<T, D> rope_cos;  // [T, hd/2], or empty: no RoPE
  ConstView<T, D> rope_sin;  // [T, hd/2]
  RopeMode rope_mode = RopeMode::Interleaved;

  bool qk_norm() const { return q_norm_weight.numel() > 0; }
  bool rope() const { return rope_cos.numel() > 0; }
};

/// What backward needs: the transformed q, k and v, the probabilities, and (with q/k norm)
/// the raw q, k and their RMS factors. Activation memory: 4 B H T hd + B H T T (+ 2 B H T hd).
/// D: where the tensors live (the CUDA overloads in ops/cuda/attention.cuh fill a Cuda one).
template <class T, class D = Cpu>
struct AttentionCache {
  Tensor<T, D> q, k, v;         // [B, H, T, hd], after norm and RoPE
  Tensor<T, D> q_raw, k_raw;    // [B, H, T, hd], before norm (only with q/k norm)
  Tensor<T, D> q_r, k_r;        // [B, H, T] RMS factors (only with q/k norm)
  Tensor<T, D> probs;           // [B, H, T, T] (empty on the GPU's fused path)
  Tensor<T, D> o, lse;          // [B, H, T, hd] output and [B, H, T] log-sum-exp (the GPU's fused path only)
};

namespace detail {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatMap = Eigen::Map<RowMat<T>>;
template <class T>
using CMatMap = Eigen::Map<const RowMat<T>>;

/// c [M, N] = op(a) [M, K] op(b) [K, N] on the calling thread; a is stored [M, K] (or [K, M]
/// when ta), b [K, N] (or [N, K] when tb), all contiguous.
template <class T>
void head_gemm(std::int64_t M, std::int64_t N, std::int64_t K, const T* a, bool ta, const T* b, bool tb, T* c) {
  if constexpr (std::is_same_v<T, float> && cpu::kSgemmAvailable) {
    cpu::sgemm_serial(M, N, K, cpu::SgemmOperand{a, ta ? M : K, ta}, cpu::SgemmOperand{b, tb ? K : N, tb}, c, N, false);
  } else {
    MatMap<T> C(c, M, N);
    const CMatMap<T> A(a, ta ? K : M, ta ? M : K), B(b, tb ? N : K, tb ? K : N);
    if (!ta && !tb) C.noalias() = A * B;
    else if (!ta && tb) C.noalias() = A * B.transpose();
    else if (ta && !tb) C.noalias() = A.transpose() * B;
    else C.noalias() = A.transpose() * B.transpose();
  }
}

template <class T, class Device>
std::int64_t check_attention(std::string_view op, const Shape& qkv, const AttentionSpec<T, Device>& s) {
  IREPA_CHECK(qkv.rank() == 3 && qkv[2] % 3 == 0, "{}: qkv has shape {}, expected [B, T, 3D]", op, qkv.str());
  const std::int64_t D = qkv[2] / 3;
  IREPA_CHECK(s.heads > 0 && D % s.heads == 0, "{}: width {} is not divisible by {} heads", op, D, s.heads);
  const std::int64_t hd = D / s.heads;
  if (s.qk_norm()) {
    check_shape(op, "q_norm weight", s.q_norm_weight.shape(), Shape{hd});
    check_shape(op, "k_norm weight", s.k_norm_weight.shape(), Shape{hd});
  }
  if (s.rope()) check_rope_table(op, s.rope_cos.shape(), s.rope_sin.shape(), qkv[1], hd);
  return hd;
}

}  // namespace detail

/// out = softmax(q k^T * scale) v per head; returns the cache for attention_backward.
template <class T>
AttentionCache<T> attention_forward(const CpuContext& ctx, In<T> qkv, const AttentionSpec<T>& spec, TensorView<T> out) {
  const std::int64_t hd = detail::check_attention("attention_forward", qkv.shape(), spec);
  const std::int64_t B = qkv.size(0), N = qkv.size(1), D = qkv.size(2) / 3, H = spec.heads;
  check_shape("attention_forward", "output", out.shape(), Shape{B, N, D});
  check_contiguous("attention_forward", qkv, out);
  const T scale = spec.scale != T(0) ? spec.scale : T(1) / std::sqrt(static_cast<T>(hd));
  AttentionCache<T> c;
  c.q = Tensor<T>(Shape{B, H, N, hd});
  c.k = Tensor<T>(Shape{B, H, N, hd});
  c.v = Tensor<T>(Shape{B, H, N, hd});
  c.probs = Tensor<T>(Shape{B, H, N, N});
  if (spec.qk_norm()) {
    c.q_raw = Tensor<T>(Shape{B, H, N, hd});
    c.k_raw = Tensor<T>(Shape{B, H, N, hd});
    c.q_r = Tensor<T>(Shape{B, H, N});
    c.k_r = Tensor<T>(Shape{B, H, N});
  }
  const double cost = 4.0 * static_cast<double>(N * N * hd) + 10.0 * static_cast<double>(N * N);
  ctx.parallel_for(B * H, cost, [&](std::int64_t i0, std::int64_t i1) {
    detail::RowMat<T> O(N, hd);
    Eigen::Array<T, 1, Eigen::Dynamic> e(N);
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t b = i / H, h = i % H;
      const std::int64_t off = i * N * hd;
      for (std::int64_t t = 0; t < N; ++t) {
        const T* src = qkv.data() + (b * N + t) * 3 * D + h * hd;
        T* q = c.q.data() + off + t * hd;
        T* k = c.k.data() + off + t * hd;
        std::copy_n(src + 2 * D, hd, c.v.data() + off + t * hd);
        if (spec.qk_norm()) {
          std::copy_n(src, hd, c.q_raw.data() + off + t * hd);
          std::copy_n(src + D, hd, c.k_raw.data() + off + t * hd);
          c.q_r.data()[i * N + t] = detail::rms_norm_row(src, spec.q_norm_weight.data(), hd, spec.norm_eps, q);
          c.k_r.data()[i * N + t] = detail::rms_norm_row(src + D, spec.k_norm_weight.data(), hd, spec.norm_eps, k);
        } else {
          std::copy_n(src, hd, q);
          std::copy_n(src + D, hd, k);
        }
        if (spec.rope()) {
          detail::rope_row(q, spec.rope_cos.data() + t * (hd / 2), spec.rope_sin.data() + t * (hd / 2), hd, spec.rope_mode, false);
          detail::rope_row(k, spec.rope_cos.data() + t * (hd / 2), spec.rope_sin.data() + t * (hd / 2), hd, spec.rope_mode, false);
        }
      }
      detail::MatMap<T> P(c.probs.data() + i * N * N, N, N);
      detail::head_gemm<T>(N, N, hd, c.q.data() + off, false, c.k.data() + off, true, P.data());  // q k^T
      P *= scale;
      // exp(l - max) < eps^2 is set to 0: it is far below what T resolves in the row sum
      // (>= 1), and such tiny probabilities feed subnormals into the GEMMs, which crawl.
      const T lo = T(2) * std::log(std::numeric_limits<T>::epsilon());
      for (std::int64_t r = 0; r < N; ++r) {
        auto row = P.row(r).array();
        row -= row.maxCoeff();
        e = row.max(lo).exp();  // max: exp never sees -inf-ish input; vectorised (a select is not)
        T* pr = P.data() + r * N;
        for (std::int64_t j = 0; j < N; ++j) pr[j] = pr[j] > lo ? e[j] : T(0);
        row /= row.sum();
      }
      detail::head_gemm<T>(N, hd, N, P.data(), false, c.v.data() + off, false, O.data());  // [N, hd]
      for (std::int64_t t = 0; t < N; ++t) std::copy_n(O.data() + t * hd, hd, out.data() + (b * N + t) * D + h * hd);
    }
  });
  return c;
}

/// dqkv [B, T, 3D] assigned; dq_norm_weight, dk_norm_weight [hd] accumulated (used only with q/k norm).
template <class T>
void attention_backward(const CpuContext& ctx, const AttentionSpec<T>& spec, const AttentionCache<T>& c, In<T> dout,
                        TensorView<T> dqkv, TensorView<T> dq_norm_weight = {}, TensorView<T> dk_norm_weight = {}) {
  const std::int64_t hd = detail::check_attention("attention_backward", dqkv.shape(), spec);
  const std::int64_t B = dqkv.size(0), N = dqkv.size(1), D = dqkv.size(2) / 3, H = spec.heads;
  check_shape("attention_backward", "dout", dout.shape(), Shape{B, N, D});
  check_shape("attention_backward", "cached q", c.q.shape(), Shape{B, H, N, hd});
  check_contiguous("attention_backward", dout, dqkv);
  if (spec.qk_norm()) {
    check_shape("attention_backward", "dq_norm_weight", dq_norm_weight.shape(), Shape{hd});
    check_shape("attention_backward", "dk_norm_weight", dk_norm_weight.shape(), Shape{hd});
  }
  const T scale = spec.scale != T(0) ? spec.scale : T(1) / std::sqrt(static_cast<T>(hd));
  // Per-(b, h) partial sums of the norm-weight gradients, reduced after the parallel loop.
  Tensor<T> dwq, dwk;
  if (spec.qk_norm()) {
    dwq = Tensor<T>::zeros(Shape{B * H, hd});
    dwk = Tensor<T>::zeros(Shape{B * H, hd});
  }
  const double cost = 8.0 * static_cast<double>(N * N * hd) + 10.0 * static_cast<double>(N * N);
  ctx.parallel_for(B * H, cost, [&](std::int64_t i0, std::int64_t i1) {
    detail::RowMat<T> dO(N, hd), dQ(N, hd), dK(N, hd), dV(N, hd), dP(N, N);
    std::vector<T> dwrow(static_cast<std::size_t>(hd));
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t b = i / H, h = i % H, off = i * N * hd;
      for (std::int64_t t = 0; t < N; ++t) std::copy_n(dout.data() + (b * N + t) * D + h * hd, hd, dO.data() + t * hd);
      const T* Q = c.q.data() + off;
      const T* K = c.k.data() + off;
      detail::CMatMap<T> P(c.probs.data() + i * N * N, N, N);
      detail::head_gemm<T>(N, hd, N, P.data(), true, dO.data(), false, dV.data());          // P^T dO
      detail::head_gemm<T>(N, N, hd, dO.data(), false, c.v.data() + off, true, dP.data());  // dO V^T
      // Softmax backward: dS = P * (dP - rowsum(dP * P)).
      for (std::int64_t r = 0; r < N; ++r) {
        const T dot = (dP.row(r).array() * P.row(r).array()).sum();
        dP.row(r) = (P.row(r).array() * (dP.row(r).array() - dot)).matrix();
      }
      detail::head_gemm<T>(N, hd, N, dP.data(), false, K, false, dQ.data());  // dS K
      dQ *= scale;
      detail::head_gemm<T>(N, hd, N, dP.data(), true, Q, false, dK.data());  // dS^T q
      dK *= scale;
      for (std::int64_t t = 0; t < N; ++t) {
        T* dst = dqkv.data() + (b * N + t) * 3 * D + h * hd;
        T* dq = dQ.data() + t * hd;
        T* dk = dK.data() + t * hd;
        if (spec.rope()) {
          detail::rope_row(dq, spec.rope_cos.data() + t * (hd / 2), spec.rope_sin.data() + t * (hd / 2), hd, spec.rope_mode, true);
          detail::rope_row(dk, spec.rope_cos.data() + t * (hd / 2), spec.rope_sin.data() + t * (hd / 2), hd, spec.rope_mode, true);
        }
        if (spec.qk_norm()) {
          detail::rms_norm_row_backward(c.q_raw.data() + off + t * hd, spec.q_norm_weight.data(), c.q_r.data()[i * N + t], dq,
                                        hd, dst, dwrow.data());
          for (std::int64_t j = 0; j < hd; ++j) dwq.data()[i * hd + j] += dwrow[static_cast<std::size_t>(j)];
          detail::rms_norm_row_backward(c.k_raw.data() + off + t * hd, spec.k_norm_weight.data(), c.k_r.data()[i * N + t], dk,
                                        hd, dst + D, dwrow.data());
          for (std::int64_t j = 0; j < hd; ++j) dwk.data()[i * hd + j] += dwrow[static_cast<std::size_t>(j)];
        } else {
          std::copy_n(dq, hd, dst);
          std::copy_n(dk, hd, dst + D);
        }
        std::copy_n(dV.data() + t * hd, hd, dst + 2 * D);
      }
    }
  });
  if (spec.qk_norm()) {
    detail::add_column_sums(ctx, dwq.data(), B * H, hd, dq_norm_weight.data());
    detail::add_column_sums(ctx, dwk.data(), B * H, hd, dk_norm_weight.data());
  }
}

}  // namespace irepa::ops
