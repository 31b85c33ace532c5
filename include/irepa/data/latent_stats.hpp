#pragma once
// Per-channel latent statistics of the SD-VAE: the reference trains on
// z = (mean + std * eps - latents_bias) * latents_scale and decodes z / latents_scale +
// latents_bias. They come from a file (the reference's sdvae-ft-mse-f8d4-latents-stats.pt,
// converted by tools/convert_encoder.py: latents_scale and latents_bias, [E] or [1, E, 1, 1]) or
// are computed from a dataset of stored posteriors (mean | std) with compute_latent_stats:
// per channel, the mean and the standard deviation (unbiased, over every image and position)
// of posterior draws z = mean + std * eps (eps from Philox(seed), image by image in dataset
// order), scale = 1 / std, bias = mean; or of the posterior means alone (of = Means).

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "irepa/core/rng.hpp"
#include "irepa/io/safetensors.hpp"

namespace irepa::data {

struct LatentStats {
  Tensor<double> scale, bias;  // [E]

  LatentStats() = default;
  LatentStats(Tensor<double> s, Tensor<double> b) : scale(std::move(s)), bias(std::move(b)) {}
  // Copyable (a run's options hold them): four numbers, copied by value.
  LatentStats(const LatentStats& o) : scale(Tensor<double>::copy_of(o.scale.cview())), bias(Tensor<double>::copy_of(o.bias.cview())) {}
  LatentStats& operator=(const LatentStats& o) {
    if (this != &o) scale = Tensor<double>::copy_of(o.scale.cview()), bias = Tensor<double>::copy_of(o.bias.cview());
    return *this;
  }
  LatentStats(LatentStats&&) noexcept = default;
  LatentStats& operator=(LatentStats&&) noexcept = default;

  std::int64_t channels() const { return scale.numel(); }

  /// Checks E values each, finite, scales non-zero; `what` names the source in the error.
  void validate(const std::string& what) const {
    IREPA_CHECK(scale.rank() == 1 && bias.shape() == scale.shape() && scale.numel() > 0,
                "latent stats '{}': latents_scale {} and latents_bias {}, expected [E] each (one per latent channel)", what,
                scale.shape().str(), bias.shape().str());
    for (std::int64_t c = 0; c < channels(); ++c)
      IREPA_CHECK(std::isfinite(scale[c]) && std::isfinite(bias[c]) && scale[c] != 0,
                  "latent stats '{}': channel {} has scale {} and bias {}, expected finite values and a non-zero scale", what, c,
                  scale[c], bias[c]);
  }
  /// Checks that there is one value per latent channel of the data (`channels` of them).
  void expect_channels(std::int64_t e, const std::string& what) const {
    IREPA_CHECK(channels() == e, "latent stats '{}' hold {} channels, but the latents have {}", what, channels(), e);
  }

  /// latents_scale and latents_bias from a safetensors file, each [E] or [1, E, 1, 1].
  static LatentStats load(const std::string& path) {
    io::SafeTensorsFile f(path);
    LatentStats s;
    for (const char* key : {"latents_scale", "latents_bias"}) {
      IREPA_CHECK(f.contains(key), "latent stats '{}': no tensor '{}' (expected latents_scale and latents_bias)", path, key);
      const Shape& sh = f.info(key).shape;
      const bool flat = sh.rank() == 1, nchw = sh.rank() == 4 && sh[0] == 1 && sh[2] == 1 && sh[3] == 1;
      IREPA_CHECK(flat || nchw, "latent stats '{}': '{}' has shape {}, expected [E] or [1, E, 1, 1]", path, key, sh.str());
      Tensor<double> t = f.load<double>(key);
      Tensor<double> v(Shape{t.numel()});
      for (std::int64_t i = 0; i < t.numel(); ++i) v[i] = t[i];
      (std::string(key) == "latents_scale" ? s.scale : s.bias) = std::move(v);
    }
    s.validate(path);
    return s;
  }

  /// Writes latents_scale and latents_bias ([E], float32 as the reference's) atomically.
  void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const {
    validate(path);
    io::SafeTensorsWriter w;
    w.add_as<double>("latents_scale", scale.cview(), DType::F32);
    w.add_as<double>("latents_bias", bias.cview(), DType::F32);
    for (const auto& [k, v] : metadata) w.set_metadata(k, v);
    w.write(path);
  }

  /// The stats as T (what the latent ops take).
  template <class T>
  std::pair<Tensor<T>, Tensor<T>> as() const {
    Tensor<T> s(scale.shape()), b(bias.shape());
    for (std::int64_t c = 0; c < channels(); ++c) s[c] = static_cast<T>(scale[c]), b[c] = static_cast<T>(bias[c]);
    return {std::move(s), std::move(b)};
  }
};

enum class LatentStatsOf { Draws, Means };

/// The statistics of a dataset whose samples are posteriors [2E, h, w] (mean | std), read in
/// batches of `batch` images in index order. Two passes (mean, then squared deviations), sums
/// in double; the draws of both passes are the same (Philox(seed) restarted).
template <class Dataset>
LatentStats compute_latent_stats(const Dataset& ds, LatentStatsOf of = LatentStatsOf::Draws, std::uint64_t seed = 0,
                                 std::int64_t batch = 64) {
  const Shape& s = ds.sample_shape();
  IREPA_CHECK(ds.kind() == "posteriors" && s.rank() == 3 && s[0] % 2 == 0,
              "compute_latent_stats: the data holds {} of shape {}, expected VAE posteriors [2E, h, w] (mean | std)", ds.kind(), s.str());
  IREPA_CHECK(ds.size() > 0 && batch > 0, "compute_latent_stats: {} samples, batch {}", ds.size(), batch);
  const std::int64_t E = s[0] / 2, P = s[1] * s[2], N = ds.size();
  IREPA_CHECK(N * P > 1, "compute_latent_stats: one value per channel has no standard deviation");
  std::vector<double> sum(static_cast<std::size_t>(E), 0.0), sq(static_cast<std::size_t>(E), 0.0);
  for (int pass = 0; pass < 2; ++pass) {
    Philox rng(seed, 7);
    for (std::int64_t i0 = 0; i0 < N; i0 += batch) {
      std::vector<std::int64_t> idx;
      for (std::int64_t i = i0; i < std::min(N, i0 + batch); ++i) idx.push_back(i);
      const auto b = ds.template get<double>(idx);
      const auto B = static_cast<std::int64_t>(idx.size());
      Tensor<double> eps(Shape{B, E, s[1], s[2]});
      if (of == LatentStatsOf::Draws) rng.normal(eps.view());
      for (std::int64_t n = 0; n < B; ++n)
        for (std::int64_t c = 0; c < E; ++c) {
          const double* mean = b.x.data() + (n * 2 * E + c) * P;
          const double* sd = mean + E * P;
          const double* e = eps.data() + (n * E + c) * P;
          double acc = 0;
          for (std::int64_t p = 0; p < P; ++p) {
            const double z = of == LatentStatsOf::Draws ? mean[p] + sd[p] * e[p] : mean[p];
            acc += pass == 0 ? z : (z - sum[static_cast<std::size_t>(c)]) * (z - sum[static_cast<std::size_t>(c)]);
          }
          (pass == 0 ? sum : sq)[static_cast<std::size_t>(c)] += acc;
        }
    }
    if (pass == 0)
      for (double& v : sum) v /= static_cast<double>(N * P);  // sum now holds the means
  }
  LatentStats st{Tensor<double>(Shape{E}), Tensor<double>(Shape{E})};
  for (std::int64_t c = 0; c < E; ++c) {
    const double sd = std::sqrt(sq[static_cast<std::size_t>(c)] / static_cast<double>(N * P - 1));
    IREPA_CHECK(sd > 0 && std::isfinite(sd), "compute_latent_stats: channel {} has standard deviation {}", c, sd);
    st.bias[c] = sum[static_cast<std::size_t>(c)], st.scale[c] = 1.0 / sd;
  }
  return st;
}

}  // namespace irepa::data
