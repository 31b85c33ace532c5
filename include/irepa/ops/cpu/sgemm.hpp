#pragma once
// Single-precision GEMM on the CPU: packed panels and a register-tiled FMA micro-kernel
// (AVX-512: 12 x 32 tile, AVX2: 6 x 16), blocked for the caches and run on the context's pool.
//
// Why our own: Eigen's tensor contraction reaches ~60% of the FMA peak of an AVX-512 core on
// SiT's shapes, and a SiT training step on the CPU is ~90% GEMM (docs/benchmarks.md).
//
// Every element of C is summed in an order fixed by the shapes alone (K in blocks of kKC,
// in order; inside a block, k in order), never by the thread count or the scheduling: results
// are the same with 1 or 16 threads, so training stays bit-reproducible.
//
// Without AVX2/FMA at compile time, kSgemmAvailable is false and cpu::gemm keeps Eigen.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#include "irepa/core/context.hpp"

namespace irepa::ops::cpu {

#if defined(__AVX512F__)
inline constexpr bool kSgemmAvailable = true;
inline constexpr std::string_view kSgemmIsa = "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
inline constexpr bool kSgemmAvailable = true;
inline constexpr std::string_view kSgemmIsa = "avx2";
#else
inline constexpr bool kSgemmAvailable = false;
inline constexpr std::string_view kSgemmIsa = "none";
#endif

/// A row-major operand as the GEMM sees it: op(X)[i, j] = trans ? p[j * ld + i] : p[i * ld + j].
struct SgemmOperand {
  const float* p = nullptr;
  std::int64_t ld = 0;
  bool trans = false;
};

namespace sgemm_detail {

#if defined(__AVX512F__)
inline constexpr int kMR = 12, kNR = 32;
#else
inline constexpr int kMR = 6, kNR = 16;
#endif
// kc x kNR of B (48 KiB with AVX-512) is read once per A row panel from L2; the A row panel
// (kMR x kc) stays in L1 while the kernel walks the B block.
inline constexpr std::int64_t kKC = 384;
inline constexpr std::int64_t kMCMax = 16 * kMR;  // rows of A packed per task
inline constexpr std::int64_t kNCMax = 512;       // columns of C per task (B block in L2)

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
inline std::int64_t round_up(std::int64_t a, std::int64_t b) { return ceil_div(a, b) * b; }

/// Packs rows [i0, i0 + mc) x cols [k0, k0 + kc) of op(A) into panels of kMR rows:
/// dst[panel][k][r]; rows past mc are zero.
inline void pack_a(const SgemmOperand& a, std::int64_t i0, std::int64_t mc, std::int64_t k0, std::int64_t kc,
                   float* dst) {
  for (std::int64_t ip = 0; ip < mc; ip += kMR, dst += kc * kMR) {
    const std::int64_t mr = std::min<std::int64_t>(kMR, mc - ip);
    if (a.trans) {  // op(A)[i, k] = p[k * ld + i]: kMR contiguous values per k
      for (std::int64_t k = 0; k < kc; ++k) {
        const float* src = a.p + (k0 + k) * a.ld + i0 + ip;
        float* d = dst + k * kMR;
        std::int64_t r = 0;
        for (; r < mr; ++r) d[r] = src[r];
        for (; r < kMR; ++r) d[r] = 0.0f;
      }
    } else {  // op(A)[i, k] = p[i * ld + k]: one row of A per r, written with stride kMR
      for (std::int64_t r = 0; r < kMR; ++r) {
        float* d = dst + r;
        if (r < mr) {
          const float* src = a.p + (i0 + ip + r) * a.ld + k0;
          for (std::int64_t k = 0; k < kc; ++k) d[k * kMR] = src[k];
        } else {
          for (std::int64_t k = 0; k < kc; ++k) d[k * kMR] = 0.0f;
        }
      }
    }
  }
}

/// Packs rows [k0, k0 + kc) x cols [j0, j0 + nr) of op(B), nr <= kNR, into one panel
/// dst[k][c]; columns past nr are zero.
inline void pack_b_panel(const SgemmOperand& b, std::int64_t k0, std::int64_t kc, std::int64_t j0, std::int64_t nr,
                         float* dst) {
  if (!b.trans) {  // op(B)[k, j] = p[k * ld + j]: nr contiguous values per k
    for (std::int64_t k = 0; k < kc; ++k) {
      const float* src = b.p + (k0 + k) * b.ld + j0;
      float* d = dst + k * kNR;
      if (nr == kNR) {
        std::memcpy(d, src, sizeof(float) * kNR);
      } else {
        std::int64_t c = 0;
        for (; c < nr; ++c) d[c] = src[c];
        for (; c < kNR; ++c) d[c] = 0.0f;
      }
    }
  } else {  // op(B)[k, j] = p[j * ld + k]: one row of B per column c
    for (std::int64_t c = 0; c < kNR; ++c) {
      float* d = dst + c;
      if (c < nr) {
        const float* src = b.p + (j0 + c) * b.ld + k0;
        for (std::int64_t k = 0; k < kc; ++k) d[k * kNR] = src[k];
      } else {
        for (std::int64_t k = 0; k < kc; ++k) d[k * kNR] = 0.0f;
      }
    }
  }
}

#if defined(__AVX512F__)
/// c[0:kMR, 0:kNR] (row stride ldc) = (add ? c : 0) + sum_k a[k][r] * b[k][:].
inline void kernel(std::int64_t kc, const float* a, const float* b, float* c, std::int64_t ldc, bool add) {
#define IREPA_SG_DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
  IREPA_SG_DECL(0) IREPA_SG_DECL(1) IREPA_SG_DECL(2) IREPA_SG_DECL(3) IREPA_SG_DECL(4) IREPA_SG_DECL(5)
  IREPA_SG_DECL(6) IREPA_SG_DECL(7) IREPA_SG_DECL(8) IREPA_SG_DECL(9) IREPA_SG_DECL(10) IREPA_SG_DECL(11)
#undef IREPA_SG_DECL
  // C's tile is read and written only after the k loop: fetch it now (it is usually in L3).
  for (int r = 0; r < kMR; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16), _MM_HINT_T0);
  }
  for (std::int64_t k = 0; k < kc; ++k, a += kMR, b += kNR) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#define IREPA_SG_ROW(r)                                   \
  {                                                       \
    const __m512 ar = _mm512_set1_ps(a[r]);               \
    c##r##0 = _mm512_fmadd_ps(ar, b0, c##r##0);           \
    c##r##1 = _mm512_fmadd_ps(ar, b1, c##r##1);           \
  }
    IREPA_SG_ROW(0) IREPA_SG_ROW(1) IREPA_SG_ROW(2) IREPA_SG_ROW(3) IREPA_SG_ROW(4) IREPA_SG_ROW(5)
    IREPA_SG_ROW(6) IREPA_SG_ROW(7) IREPA_SG_ROW(8) IREPA_SG_ROW(9) IREPA_SG_ROW(10) IREPA_SG_ROW(11)
#undef IREPA_SG_ROW
  }
#define IREPA_SG_STORE(r)                                                                          \
  {                                                                                                \
    float* cr = c + (r) * ldc;                                                                     \
    if (add) {                                                                                     \
      c##r##0 = _mm512_add_ps(c##r##0, _mm512_loadu_ps(cr));                                       \
      c##r##1 = _mm512_add_ps(c##r##1, _mm512_loadu_ps(cr + 16));                                  \
    }                                                                                              \
    _mm512_storeu_ps(cr, c##r##0);                                                                 \
    _mm512_storeu_ps(cr + 16, c##r##1);                                                            \
  }
  IREPA_SG_STORE(0) IREPA_SG_STORE(1) IREPA_SG_STORE(2) IREPA_SG_STORE(3) IREPA_SG_STORE(4) IREPA_SG_STORE(5)
  IREPA_SG_STORE(6) IREPA_SG_STORE(7) IREPA_SG_STORE(8) IREPA_SG_STORE(9) IREPA_SG_STORE(10) IREPA_SG_STORE(11)
#undef IREPA_SG_STORE
}
#elif defined(__AVX2__) && defined(__FMA__)
inline void kernel(std::int64_t kc, const float* a, const float* b, float* c, std::int64_t ldc, bool add) {
#define IREPA_SG_DECL(r) __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps();
  IREPA_SG_DECL(0) IREPA_SG_DECL(1) IREPA_SG_DECL(2) IREPA_SG_DECL(3) IREPA_SG_DECL(4) IREPA_SG_DECL(5)
#undef IREPA_SG_DECL
  for (int r = 0; r < kMR; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 8), _MM_HINT_T0);
  }
  for (std::int64_t k = 0; k < kc; ++k, a += kMR, b += kNR) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#define IREPA_SG_ROW(r)                                   \
  {                                                       \
    const __m256 ar = _mm256_broadcast_ss(a + (r));       \
    c##r##0 = _mm256_fmadd_ps(ar, b0, c##r##0);           \
    c##r##1 = _mm256_fmadd_ps(ar, b1, c##r##1);           \
  }
    IREPA_SG_ROW(0) IREPA_SG_ROW(1) IREPA_SG_ROW(2) IREPA_SG_ROW(3) IREPA_SG_ROW(4) IREPA_SG_ROW(5)
#undef IREPA_SG_ROW
  }
#define IREPA_SG_STORE(r)                                                                          \
  {                                                                                                \
    float* cr = c + (r) * ldc;                                                                     \
    if (add) {                                                                                     \
      c##r##0 = _mm256_add_ps(c##r##0, _mm256_loadu_ps(cr));                                       \
      c##r##1 = _mm256_add_ps(c##r##1, _mm256_loadu_ps(cr + 8));                                   \
    }                                                                                              \
    _mm256_storeu_ps(cr, c##r##0);                                                                 \
    _mm256_storeu_ps(cr + 8, c##r##1);                                                             \
  }
  IREPA_SG_STORE(0) IREPA_SG_STORE(1) IREPA_SG_STORE(2) IREPA_SG_STORE(3) IREPA_SG_STORE(4) IREPA_SG_STORE(5)
#undef IREPA_SG_STORE
}
#endif

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
/// A tile of mr <= kMR rows and nr <= kNR columns: full tiles go straight to C, edge tiles
/// through a local tile (same arithmetic, so edges sum exactly as full tiles do).
inline void tile(std::int64_t kc, const float* a, const float* b, float* c, std::int64_t ldc, bool add, std::int64_t mr,
                 std::int64_t nr) {
  if (mr == kMR && nr == kNR) {
    kernel(kc, a, b, c, ldc, add);
    return;
  }
  alignas(64) float t[kMR * kNR];
  kernel(kc, a, b, t, kNR, false);
  for (std::int64_t r = 0; r < mr; ++r)
    for (std::int64_t j = 0; j < nr; ++j) c[r * ldc + j] = add ? c[r * ldc + j] + t[r * kNR + j] : t[r * kNR + j];
}
#endif

#if defined(__AVX512F__)
using Vec = __m512;
inline constexpr int kW = 16;
inline Vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline Vec vset1(float x) { return _mm512_set1_ps(x); }
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float vsum(Vec v) {  // halves, then AVX's tree (GCC 12's _mm512_reduce_add_ps trips -Wmaybe-uninitialized)
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  const __m256 s8 = _mm256_add_ps(_mm256_load_ps(t), _mm256_load_ps(t + 8));
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 u = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}
inline void vstore(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec vadd(Vec a, Vec b) { return _mm512_add_ps(a, b); }
#elif defined(__AVX2__) && defined(__FMA__)
using Vec = __m256;
inline constexpr int kW = 8;
inline Vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline Vec vset1(float x) { return _mm256_set1_ps(x); }
inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float vsum(Vec v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}
inline void vstore(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec vadd(Vec a, Vec b) { return _mm256_add_ps(a, b); }
#endif

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
/// Few rows (M <= kSmallM: adaLN and embedder products, one row per image): memory-bound on B,
/// so B is read once, unpacked, and the work is split over B's columns.
inline constexpr std::int64_t kSmallM = 8;

inline float a_at(const SgemmOperand& a, std::int64_t i, std::int64_t k) {
  return a.trans ? a.p[k * a.ld + i] : a.p[i * a.ld + k];
}

/// Columns [j0, j1) of C when op(B) is B^T (B's rows are contiguous in k): one dot product per
/// (i, j), vectorised over k.
inline void small_m_bt(std::int64_t M, std::int64_t K, const float* const* arows, const SgemmOperand& b, float* c,
                       std::int64_t ldc, bool accumulate, std::int64_t j0, std::int64_t j1) {
  for (std::int64_t j = j0; j < j1; ++j) {
    const float* brow = b.p + j * b.ld;
    Vec acc[kSmallM];
    for (std::int64_t i = 0; i < kSmallM; ++i) acc[i] = vzero();
    std::int64_t k = 0;
    for (; k + kW <= K; k += kW) {
      const Vec w = vload(brow + k);
      for (std::int64_t i = 0; i < M; ++i) acc[i] = vfma(vload(arows[i] + k), w, acc[i]);
    }
    for (std::int64_t i = 0; i < M; ++i) {
      float s = vsum(acc[i]);
      for (std::int64_t kk = k; kk < K; ++kk) s += arows[i][kk] * brow[kk];
      float& out = c[i * ldc + j];
      out = accumulate ? out + s : s;
    }
  }
}

/// Columns [j0, j1) of C when op(B) is B (B's rows are contiguous in j): rows of C built in
/// registers, two vectors wide, over k in order.
inline void small_m_bn(std::int64_t M, std::int64_t K, const SgemmOperand& a, const SgemmOperand& b, float* c,
                       std::int64_t ldc, bool accumulate, std::int64_t j0, std::int64_t j1) {
  std::int64_t j = j0;
  for (; j + 2 * kW <= j1; j += 2 * kW) {
    Vec acc[kSmallM][2];
    for (std::int64_t i = 0; i < kSmallM; ++i) acc[i][0] = acc[i][1] = vzero();
    for (std::int64_t k = 0; k < K; ++k) {
      const Vec b0 = vload(b.p + k * b.ld + j), b1 = vload(b.p + k * b.ld + j + kW);
      for (std::int64_t i = 0; i < M; ++i) {
        const Vec av = vset1(a_at(a, i, k));
        acc[i][0] = vfma(av, b0, acc[i][0]);
        acc[i][1] = vfma(av, b1, acc[i][1]);
      }
    }
    for (std::int64_t i = 0; i < M; ++i) {
      float* out = c + i * ldc + j;
      if (accumulate) {
        acc[i][0] = vadd(acc[i][0], vload(out));
        acc[i][1] = vadd(acc[i][1], vload(out + kW));
      }
      vstore(out, acc[i][0]);
      vstore(out + kW, acc[i][1]);
    }
  }
  for (; j < j1; ++j)
    for (std::int64_t i = 0; i < M; ++i) {
      float s = 0.0f;
      for (std::int64_t k = 0; k < K; ++k) s += a_at(a, i, k) * b.p[k * b.ld + j];
      float& out = c[i * ldc + j];
      out = accumulate ? out + s : s;
    }
}
#endif

/// Per-thread packing buffers, grown as needed and kept (no allocation per call).
inline std::vector<float>& a_buffer() {
  thread_local std::vector<float> buf;
  return buf;
}
inline std::vector<float>& b_buffer() {
  thread_local std::vector<float> buf;
  return buf;
}

/// Splits n items into `workers` contiguous ranges and runs f(begin, end) on each through
/// parallel_for (inline or on a pool): a static split, so each range does the same work every
/// call, whatever the scheduler does.
template <class ParallelFor, class F>
void split_run(ParallelFor& parallel_for, int workers, std::int64_t n, F&& f) {
  const std::int64_t w = std::max<std::int64_t>(1, std::min<std::int64_t>(workers, n));
  parallel_for(w, 1e9, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) f(r * n / w, (r + 1) * n / w);
  });
}

/// The blocked product; parallel_for(n, cost, f(begin, end)) runs ranges of work on `workers`
/// threads (or inline).
template <class ParallelFor>
void sgemm_run(ParallelFor&& parallel_for, int workers, std::int64_t M, std::int64_t N, std::int64_t K, SgemmOperand a,
               SgemmOperand b, float* c, std::int64_t ldc, bool accumulate) {
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (std::int64_t i = 0; i < M; ++i) std::fill_n(c + i * ldc, N, 0.0f);
    return;
  }
  if (M <= kSmallM) {
    // Work split over B's columns, in blocks of 2 vectors so that every range but the last is full.
    const std::int64_t blocks = ceil_div(N, 2 * kW);
    if (b.trans) {
      std::vector<float> packed;  // op(A)'s rows made contiguous when A is transposed
      const float* arows[kSmallM];
      if (a.trans) {
        packed.resize(static_cast<std::size_t>(M * K));
        for (std::int64_t i = 0; i < M; ++i)
          for (std::int64_t k = 0; k < K; ++k) packed[static_cast<std::size_t>(i * K + k)] = a_at(a, i, k);
      }
      for (std::int64_t i = 0; i < M; ++i) arows[i] = a.trans ? packed.data() + i * K : a.p + i * a.ld;
      split_run(parallel_for, workers, blocks, [&](std::int64_t r0, std::int64_t r1) {
        small_m_bt(M, K, arows, b, c, ldc, accumulate, r0 * 2 * kW, std::min(N, r1 * 2 * kW));
      });
    } else {
      split_run(parallel_for, workers, blocks, [&](std::int64_t r0, std::int64_t r1) {
        small_m_bn(M, K, a, b, c, ldc, accumulate, r0 * 2 * kW, std::min(N, r1 * 2 * kW));
      });
    }
    return;
  }
  // Even task sizes: split M and N into as few blocks as the maxima allow, rounded to the tile.
  const std::int64_t mblocks = ceil_div(M, kMCMax), nblocks = ceil_div(N, kNCMax);
  const std::int64_t mc_size = round_up(ceil_div(M, mblocks), kMR), nc_size = round_up(ceil_div(N, nblocks), kNR);
  const std::int64_t mtasks = ceil_div(M, mc_size), ntasks = ceil_div(N, nc_size);
  const std::int64_t npanels = ceil_div(N, kNR);
  std::vector<float>& bpack = b_buffer();
  if (static_cast<std::int64_t>(bpack.size()) < npanels * kNR * kKC) bpack.resize(static_cast<std::size_t>(npanels * kNR * kKC));

  for (std::int64_t k0 = 0; k0 < K; k0 += kKC) {
    const std::int64_t kc = std::min(kKC, K - k0);
    float* bp = bpack.data();
    split_run(parallel_for, workers, npanels, [&](std::int64_t p0, std::int64_t p1) {
      for (std::int64_t p = p0; p < p1; ++p)
        pack_b_panel(b, k0, kc, p * kNR, std::min<std::int64_t>(kNR, N - p * kNR), bp + p * kc * kNR);
    });
    const bool add = accumulate || k0 > 0;
    split_run(parallel_for, workers, mtasks * ntasks, [&](std::int64_t t0, std::int64_t t1) {
      std::vector<float>& apack = a_buffer();
      if (static_cast<std::int64_t>(apack.size()) < mc_size * kKC) apack.resize(static_cast<std::size_t>(mc_size * kKC));
      std::int64_t packed_block = -1;
      for (std::int64_t t = t0; t < t1; ++t) {
        const std::int64_t ib = t / ntasks, jb = t % ntasks;
        const std::int64_t i0 = ib * mc_size, mc = std::min(mc_size, M - i0);
        const std::int64_t j0 = jb * nc_size, nc = std::min(nc_size, N - j0);
        if (ib != packed_block) {
          pack_a(a, i0, mc, k0, kc, apack.data());
          packed_block = ib;
        }
        for (std::int64_t ir = 0; ir < mc; ir += kMR) {
          const float* ap = apack.data() + ir * kc;
          for (std::int64_t jr = 0; jr < nc; jr += kNR)
            tile(kc, ap, bp + (j0 + jr) / kNR * kc * kNR, c + (i0 + ir) * ldc + j0 + jr, ldc, add,
                 std::min<std::int64_t>(kMR, mc - ir), std::min<std::int64_t>(kNR, nc - jr));
        }
      }
    });
  }
#else
  (void)parallel_for, (void)workers, (void)M, (void)N, (void)K, (void)a, (void)b, (void)c, (void)ldc, (void)accumulate;
  IREPA_CHECK(false, "sgemm: this build has neither AVX-512 nor AVX2/FMA (compile with -march=native)");
#endif
}

}  // namespace sgemm_detail

/// C = op(A) op(B) (accumulate: C += op(A) op(B)) on the context's pool.  op(A) [M, K],
/// op(B) [K, N], C [M, N] with row stride ldc. Requires kSgemmAvailable.
inline void sgemm(const CpuContext& ctx, std::int64_t M, std::int64_t N, std::int64_t K, SgemmOperand a, SgemmOperand b,
                  float* c, std::int64_t ldc, bool accumulate) {
  // Tiny products stay on the calling thread (waking the pool costs more than they do).
  const int workers = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) < 2e5 ? 1 : ctx.threads();
  sgemm_detail::sgemm_run([&ctx](std::int64_t n, double cost, auto&& f) { ctx.parallel_for(n, cost, f); }, workers, M, N,
                          K, a, b, c, ldc, accumulate);
}

/// The same product on the calling thread only (for use inside a parallel loop); the same
/// results as sgemm.
inline void sgemm_serial(std::int64_t M, std::int64_t N, std::int64_t K, SgemmOperand a, SgemmOperand b, float* c,
                         std::int64_t ldc, bool accumulate) {
  sgemm_detail::sgemm_run([](std::int64_t n, double, auto&& f) { f(std::int64_t{0}, n); }, 1, M, N, K, a, b, c, ldc,
                          accumulate);
}

}  // namespace irepa::ops::cpu
