#pragma once
// Counter-based random numbers: Philox 4x32-10 (Salmon et al., SC'11). A draw is a pure
// function of (key = seed, counter), so every device computes element i of a draw without
// state, and a resumed run continues bit-identically. Counter layout:
//   words 0,1: block index within the stream (64 bit)    words 2,3: stream id (64 bit)
// A block yields four 32-bit words. Uniform floats take 24 bits of one word, doubles 53 bits
// of two words; normals use Box-Muller on pairs of uniforms (4 float / 2 double normals per block).

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
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
      for (int p = 0; p < 2; ++p) {
        // Box-Muller; u1 in (0, 1] so log(u1) is finite.
        const float u1 = 1.0f - u32_to_unit_float(r[2 * p]);
        const float u2 = u32_to_unit_float(r[2 * p + 1]);
        const float rad = std::sqrt(-2.0f * std::log(u1));
        const float th = 2.0f * std::numbers::pi_v<float> * u2;
        out[2 * p] = rad * std::cos(th);
        out[2 * p + 1] = rad * std::sin(th);
      }
    }
  } else {
    if constexpr (Kind == 0) {
      out[0] = u64_to_unit_double(r[0], r[1]);
      out[1] = u64_to_unit_double(r[2], r[3]);
    } else {
      const double u1 = 1.0 - u64_to_unit_double(r[0], r[1]);
      const double u2 = u64_to_unit_double(r[2], r[3]);
      const double rad = std::sqrt(-2.0 * std::log(u1));
      const double th = 2.0 * std::numbers::pi * u2;
      out[0] = rad * std::cos(th);
      out[1] = rad * std::sin(th);
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
    std::int64_t i = 0;
    out.for_each_index([&](std::int64_t off) {
      const std::uint64_t block = start + static_cast<std::uint64_t>(i) / 2;
      const int lane = static_cast<int>(i % 2);
      const std::uint32_t ctr[4] = {static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                                    static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32)};
      std::uint32_t r[4];
      philox4x32_10(ctr, key_, r);
      const std::uint64_t x = static_cast<std::uint64_t>(r[2 * lane]) << 32 | r[2 * lane + 1];
      out.data()[off] = lo + static_cast<std::int64_t>((x * range) >> 64);
      ++i;
    });
    block_ += (static_cast<std::uint64_t>(out.numel()) + 1) / 2;
  }

 private:
  template <class T, int Kind>
  void fill(TensorView<T> out, T a, T b) {
    constexpr int per = philox_per_block<T>;
    T v[4];
    std::int64_t i = 0;
    std::uint64_t block = block_;
    out.for_each_index([&](std::int64_t off) {
      if (i % per == 0) philox_block<T, Kind>(key_, stream_, block++, v);
      out.data()[off] = a + b * v[i % per];
      ++i;
    });
    block_ = block;
  }

  std::uint32_t key_[2] = {0, 0};
  std::uint64_t stream_ = 0;
  std::uint64_t block_ = 0;
};

}  // namespace irepa
