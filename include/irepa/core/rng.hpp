#pragma once
// Counter-based random numbers: Philox 4x32-10 (Salmon et al., SC'11). A draw is a pure
// function of (key = seed, counter), so every device computes element i of a draw without
// state, and a resumed run continues bit-identically. Counter layout:
//   words 0,1: block index within the stream (64 bit)    words 2,3: stream id (64 bit)
// A block yields four 32-bit words. Uniform floats take 24 bits of one word, doubles 53 bits
// of two words; normals use Box-Muller on pairs of uniforms (4 float / 2 double normals per block),
// computed with our own correctly-rounded-step log / sin / cos so that host and device agree bit for bit.

#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"

#if defined(__CUDACC__)
#define IREPA_HOST_DEVICE __host__ __device__
#else
#define IREPA_HOST_DEVICE
#endif

namespace irepa {

using PhiloxCounter = std::array<std::uint32_t, 4>;
using PhiloxKey = std::array<std::uint32_t, 2>;

namespace detail {
IREPA_HOST_DEVICE inline void mulhilo32(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}
}  // namespace detail

/// One Philox 4x32-10 block: 10 rounds of the Feistel-like network on the counter.
IREPA_HOST_DEVICE inline void philox4x32_10(const std::uint32_t ctr_in[4], const std::uint32_t key_in[2],
                                            std::uint32_t out[4]) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  std::uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
  std::uint32_t k0 = key_in[0], k1 = key_in[1];
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += W0;
      k1 += W1;
    }
    std::uint32_t hi0, lo0, hi1, lo1;
    detail::mulhilo32(M0, c0, hi0, lo0);
    detail::mulhilo32(M1, c2, hi1, lo1);
    const std::uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

inline PhiloxCounter philox4x32_10(const PhiloxCounter& ctr, const PhiloxKey& key) {
  PhiloxCounter out{};
  philox4x32_10(ctr.data(), key.data(), out.data());
  return out;
}

/// 24 random bits -> float in [0, 1) (exact multiples of 2^-24).
IREPA_HOST_DEVICE inline float u32_to_unit_float(std::uint32_t x) { return static_cast<float>(x >> 8) * 0x1p-24f; }
/// 53 random bits of two words -> double in [0, 1).
IREPA_HOST_DEVICE inline double u64_to_unit_double(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t x = (static_cast<std::uint64_t>(hi) << 32 | lo) >> 11;
  return static_cast<double>(x) * 0x1p-53;
}

// ---------------------------------------------------------------------------------------------
// Box-Muller with bit-identical results on host and device. Library log / sin / cos differ by
// an ulp between glibc and CUDA, so the normals use our own: every operation is a correctly
// rounded IEEE add, multiply, divide, square root or fused multiply-add (the __f*_rn / __d*_rn
// intrinsics on the device, which nvcc never contracts; polynomials are Horner chains of fma,
// so a host compiler's contraction has nothing to fuse). Accuracy: a few ulp.
namespace detail::det {

// Float and double steps; on the device, the *_rn intrinsic of the type.
#if defined(__CUDA_ARCH__)
#define IREPA_DET_STEP(float_call, double_call, host_expr) \
  if constexpr (sizeof(T) == 4) return float_call;         \
  else return double_call;
#else
#define IREPA_DET_STEP(float_call, double_call, host_expr) return host_expr;
#endif
template <class T>
IREPA_HOST_DEVICE inline T add(T a, T b) { IREPA_DET_STEP(__fadd_rn(a, b), __dadd_rn(a, b), a + b) }
template <class T>
IREPA_HOST_DEVICE inline T mul(T a, T b) { IREPA_DET_STEP(__fmul_rn(a, b), __dmul_rn(a, b), a * b) }
template <class T>
IREPA_HOST_DEVICE inline T div(T a, T b) { IREPA_DET_STEP(__fdiv_rn(a, b), __ddiv_rn(a, b), a / b) }
template <class T>
IREPA_HOST_DEVICE inline T sqrt(T a) { IREPA_DET_STEP(__fsqrt_rn(a), __dsqrt_rn(a), std::sqrt(a)) }
template <class T>
IREPA_HOST_DEVICE inline T fma(T a, T b, T c) { IREPA_DET_STEP(__fmaf_rn(a, b, c), __fma_rn(a, b, c), std::fma(a, b, c)) }
#undef IREPA_DET_STEP

/// Horner: c[0] + z (c[1] + z (c[2] + ...)).
template <class T, int N>
IREPA_HOST_DEVICE inline T horner(const T (&c)[N], T z) {
  T q = c[N - 1];
  for (int k = N - 2; k >= 0; --k) q = fma(q, z, c[k]);
  return q;
}

/// Natural log of a positive normal x: x = m 2^e with m in (1/sqrt2, sqrt2],
/// log m = 2 s (1 + z/3 + z^2/5 + ...), s = (m - 1) / (m + 1), z = s^2 <= 0.0295.
template <class T>
IREPA_HOST_DEVICE inline T log(T x) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  constexpr int mant = sizeof(T) == 4 ? 23 : 52;
  constexpr int bias = sizeof(T) == 4 ? 127 : 1023;
  U bits;
  __builtin_memcpy(&bits, &x, sizeof(T));
  int e = static_cast<int>(bits >> mant) - bias;
  bits = (bits & ((U(1) << mant) - 1)) | (static_cast<U>(bias) << mant);  // m in [1, 2)
  T m;
  __builtin_memcpy(&m, &bits, sizeof(T));
  if (m > T(1.4142135623730951)) {
    m = mul(m, T(0.5));
    ++e;
  }
  const T s = div(add(m, T(-1)), add(m, T(1)));
  const T z = mul(s, s);
  T q;
  if constexpr (sizeof(T) == 4) {
    constexpr float c[] = {1.0f, 1.0f / 3, 1.0f / 5, 1.0f / 7, 1.0f / 9, 1.0f / 11};
    q = horner(c, z);
  } else {
    constexpr double c[] = {1.0, 1.0 / 3, 1.0 / 5, 1.0 / 7, 1.0 / 9, 1.0 / 11, 1.0 / 13, 1.0 / 15, 1.0 / 17, 1.0 / 19, 1.0 / 21};
    q = horner(c, z);
  }
  const T logm = mul(mul(T(2), s), q);
  // e * ln2 in two pieces (hi has few mantissa bits, so e * hi is exact).
  const T ln2_hi = sizeof(T) == 4 ? T(0.693145751953125) : T(6.93147180369123816490e-01);
  const T ln2_lo = sizeof(T) == 4 ? T(1.428606765330187e-06) : T(1.90821492927058770002e-10);
  return fma(static_cast<T>(e), ln2_hi, fma(static_cast<T>(e), ln2_lo, logm));
}

/// sin and cos of 2 pi u for u in [0, 1): 4u = q + r exactly (quadrant q), the angle
/// pi/4 + a with a = (r - 1/2) pi/2 in [-pi/4, pi/4) goes through Taylor polynomials.
template <class T>
IREPA_HOST_DEVICE inline void sincos_2pi(T u, T& sin_out, T& cos_out) {
  const T v = mul(u, T(4));
  const int q = static_cast<int>(v);  // v >= 0: truncation is floor
  const T a = mul(add(v, static_cast<T>(-q - 0.5)), T(1.5707963267948966));
  const T z = mul(a, a);
  T sa, ca;
  if constexpr (sizeof(T) == 4) {
    constexpr float cs[] = {1.0f, -1.0f / 6, 1.0f / 120, -1.0f / 5040, 1.0f / 362880};
    constexpr float cc[] = {1.0f, -1.0f / 2, 1.0f / 24, -1.0f / 720, 1.0f / 40320, -1.0f / 3628800};
    sa = mul(a, horner(cs, z));
    ca = horner(cc, z);
  } else {
    constexpr double cs[] = {1.0, -1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880, -1.0 / 39916800,
                             1.0 / 6227020800.0, -1.0 / 1307674368000.0, 1.0 / 355687428096000.0};
    constexpr double cc[] = {1.0, -1.0 / 2, 1.0 / 24, -1.0 / 720, 1.0 / 40320, -1.0 / 3628800,
                             1.0 / 479001600.0, -1.0 / 87178291200.0, 1.0 / 20922789888000.0, -1.0 / 6402373705728000.0};
    sa = mul(a, horner(cs, z));
    ca = horner(cc, z);
  }
  const T r2 = T(0.70710678118654752);  // sin and cos of pi/4
  const T s = mul(add(ca, sa), r2), c = mul(add(ca, -sa), r2);
  switch (q & 3) {
    case 0: sin_out = s; cos_out = c; break;
    case 1: sin_out = c; cos_out = -s; break;
    case 2: sin_out = -s; cos_out = -c; break;
    default: sin_out = -c; cos_out = s; break;
  }
}

/// Box-Muller: two standard normals from u1 in (0, 1] and u2 in [0, 1).
template <class T>
IREPA_HOST_DEVICE inline void box_muller(T u1, T u2, T& z0, T& z1) {
  const T rad = sqrt(mul(T(-2), log(u1)));
  T s, c;
  sincos_2pi(u2, s, c);
  z0 = mul(rad, c);
  z1 = mul(rad, s);
}

}  // namespace detail::det

/// Numbers per Philox block: 4 for float, 2 for double (uniform and normal alike).
template <class T>
inline constexpr int philox_per_block = sizeof(T) == 4 ? 4 : 2;

/// The numbers of one block of the stream. Kind 0: uniform [0,1); Kind 1: standard normal.
template <class T, int Kind>
IREPA_HOST_DEVICE inline void philox_block(const std::uint32_t key[2], std::uint64_t stream, std::uint64_t block,
                                           T out[]) {
  const std::uint32_t ctr[4] = {static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                                static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)};
  std::uint32_t r[4];
  philox4x32_10(ctr, key, r);
  if constexpr (sizeof(T) == 4) {
    if constexpr (Kind == 0) {
      for (int l = 0; l < 4; ++l) out[l] = u32_to_unit_float(r[l]);
    } else {
      // u1 in (0, 1] so log(u1) is finite.
      for (int p = 0; p < 2; ++p)
        detail::det::box_muller(1.0f - u32_to_unit_float(r[2 * p]), u32_to_unit_float(r[2 * p + 1]), out[2 * p],
                                out[2 * p + 1]);
    }
  } else {
    if constexpr (Kind == 0) {
      out[0] = u64_to_unit_double(r[0], r[1]);
      out[1] = u64_to_unit_double(r[2], r[3]);
    } else {
      detail::det::box_muller(1.0 - u64_to_unit_double(r[0], r[1]), u64_to_unit_double(r[2], r[3]), out[0], out[1]);
    }
  }
}

/// Element i of the stream, as a function of (key, stream, i) alone (what a GPU thread computes).
template <class T, int Kind>
IREPA_HOST_DEVICE inline T philox_element(const std::uint32_t key[2], std::uint64_t stream, std::uint64_t i) {
  T v[4];
  philox_block<T, Kind>(key, stream, i / philox_per_block<T>, v);
  return v[i % philox_per_block<T>];
}

/// a + b v as one fused multiply-add, so that a device fill of the stream gives the same bits.
template <class T>
IREPA_HOST_DEVICE inline T philox_affine(T a, T b, T v) {
  return detail::det::fma(b, v, a);
}

/// A generator: (seed, stream) plus a position, in elements, that each fill advances.
/// Every fill starts at a block boundary, so a draw of n numbers consumes ceil(n / per_block)
/// blocks whatever the device; position() / set_position() save and restore the state.
class Philox {
 public:
  explicit Philox(std::uint64_t seed = 0, std::uint64_t stream = 0) : stream_(stream) {
    key_[0] = static_cast<std::uint32_t>(seed);
    key_[1] = static_cast<std::uint32_t>(seed >> 32);
  }

  std::uint64_t seed() const { return static_cast<std::uint64_t>(key_[1]) << 32 | key_[0]; }
  std::uint64_t stream() const { return stream_; }
  /// Blocks consumed so far (the counter's low 64 bits for the next draw).
  std::uint64_t position() const { return block_; }
  void set_position(std::uint64_t block) { block_ = block; }
  /// Reserves the blocks of a draw of n values of T made elsewhere (a device fill): returns the
  /// first block and moves the position past ceil(n / per block), as a host fill would.
  template <class T>
  std::uint64_t take_blocks(std::int64_t n) {
    const std::uint64_t first = block_;
    block_ += (static_cast<std::uint64_t>(n) * static_cast<std::uint64_t>(world_) + philox_per_block<T> - 1) / philox_per_block<T>;
    return first;
  }

  /// Splits every later fill across `world` processes the way DistributedSampler splits an
  /// epoch: a fill of out [b, ...] on rank r writes rows r, r + world, r + 2 world, ... of the
  /// fill [world b, ...] an unsplit generator would make here, and moves past that whole fill.
  /// So each image of a global batch draws the same numbers at any world size (a trainer's
  /// noise, times, label dropout and flips), and the position is the same on every rank.
  void shard(std::int64_t rank, std::int64_t world) {
    IREPA_CHECK(world >= 1 && rank >= 0 && rank < world, "Philox::shard: rank {} of {} processes", rank, world);
    rank_ = rank, world_ = world;
  }
  std::int64_t shard_rank() const { return rank_; }
  std::int64_t shard_world() const { return world_; }
  /// Element i (of n) of a sharded fill of out [rows, ...]: its index in the unsplit fill.
  IREPA_HOST_DEVICE static std::uint64_t sharded_index(std::int64_t i, std::int64_t per_row, std::int64_t rank, std::int64_t world) {
    return static_cast<std::uint64_t>((world * (i / per_row) + rank) * per_row + i % per_row);
  }
  const std::uint32_t* key() const { return key_; }

  /// Uniform in [0, 1).
  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  void uniform(TensorView<T> out) {
    fill<T, 0>(out, T(0), T(1));
  }
  /// Uniform in [lo, hi).
  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  void uniform(TensorView<T> out, T lo, T hi) {
    fill<T, 0>(out, lo, hi - lo);
  }
  /// Normal with the given mean and standard deviation.
  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  void normal(TensorView<T> out, T mean = T(0), T std = T(1)) {
    fill<T, 1>(out, mean, std);
  }
  /// Integers uniform in [lo, hi): the high 64 bits of (64 random bits * range), bias <= range / 2^64.
  void randint(TensorView<std::int64_t> out, std::int64_t lo, std::int64_t hi) {
    IREPA_CHECK(hi > lo, "Philox::randint: empty range [{}, {})", lo, hi);
    const auto range = static_cast<uint128_t>(static_cast<std::uint64_t>(hi - lo));
    const std::uint64_t start = block_;
    const std::int64_t per_row = rows_of(out) > 0 ? out.numel() / rows_of(out) : 1;
    std::int64_t i = 0;
    out.for_each_index([&](std::int64_t off) {
      const std::uint64_t g = world_ == 1 ? static_cast<std::uint64_t>(i) : sharded_index(i, per_row, rank_, world_);
      const std::uint64_t block = start + g / 2;
      const int lane = static_cast<int>(g % 2);
      const std::uint32_t ctr[4] = {static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                                    static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32)};
      std::uint32_t r[4];
      philox4x32_10(ctr, key_, r);
      const std::uint64_t x = static_cast<std::uint64_t>(r[2 * lane]) << 32 | r[2 * lane + 1];
      out.data()[off] = lo + static_cast<std::int64_t>((x * range) >> 64);
      ++i;
    });
    block_ += (static_cast<std::uint64_t>(out.numel() * world_) + 1) / 2;
  }

 private:
  template <class V>
  static std::int64_t rows_of(const V& out) {
    return out.rank() > 0 ? out.size(0) : 1;
  }

  template <class T, int Kind>
  void fill(TensorView<T> out, T a, T b) {
    constexpr int per = philox_per_block<T>;
    if (world_ > 1) {  // this rank's rows of the unsplit fill, element by element
      const std::int64_t rows = rows_of(out), per_row = rows > 0 ? out.numel() / rows : 1;
      const std::uint64_t first = block_ * per;
      std::int64_t i = 0;
      out.for_each_index([&](std::int64_t off) {
        const std::uint64_t g = first + sharded_index(i++, per_row, rank_, world_);
        out.data()[off] = philox_affine(a, b, philox_element<T, Kind>(key_, stream_, g));
      });
      block_ += (static_cast<std::uint64_t>(out.numel() * world_) + per - 1) / per;
      return;
    }
    T v[4];
    std::int64_t i = 0;
    std::uint64_t block = block_;
    out.for_each_index([&](std::int64_t off) {
      if (i % per == 0) philox_block<T, Kind>(key_, stream_, block++, v);
      out.data()[off] = philox_affine(a, b, v[i % per]);
      ++i;
    });
    block_ = block;
  }

  std::uint32_t key_[2] = {0, 0};
  std::uint64_t stream_ = 0;
  std::uint64_t block_ = 0;
  std::int64_t rank_ = 0, world_ = 1;  // shard()
};

/// 64 well-mixed bits of x (SplitMix64's finaliser): seeds of independent batches from a run's
/// seed and a batch's coordinates (irepa-generate, online evaluation).
constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace irepa
