#pragma once
// The SD-VAE golden file (`model: sd-vae`): the AutoencoderKL rebuilt from its config (unknown
// keys are errors; the descriptive ones are read and checked where they state a setting), run
// through encode, the posterior, the reference's sample_posterior, decode and the uint8 conversion.

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "golden/format.hpp"
#include "irepa/models/sd_vae.hpp"

namespace irepa::golden {

inline SdVaeConfig sd_vae_setup(const nlohmann::json& c) {
  static const std::set<std::string> known = {
      "ch", "out_ch", "in_channels", "ch_mult", "num_res_blocks", "attn_resolutions", "resolution", "resolution_note", "attention",
      "dropout", "resamp_with_conv", "temb_channels", "z_channels", "double_z", "embed_dim", "use_variational",
      "decoder_res_blocks_per_level", "give_pre_end", "groupnorm", "nonlinearity", "downsample", "upsample", "logvar_clamp", "std",
      "sample_posterior", "decode", "decoded_uint8", "batch", "image_size", "latent_size", "params_dtype", "logvar_clamp_exercised"};
  for (const auto& [k, v] : c.items()) IREPA_CHECK(known.contains(k), "golden: SD-VAE config key '{}' is not known", k);
  SdVaeConfig v;
  try {
    v.ch = c.at("ch").get<std::int64_t>();
    v.out_ch = c.at("out_ch").get<std::int64_t>();
    v.in_channels = c.at("in_channels").get<std::int64_t>();
    v.ch_mult = c.at("ch_mult").get<std::vector<std::int64_t>>();
    v.num_res_blocks = c.at("num_res_blocks").get<std::int64_t>();
    v.attn_resolutions = c.at("attn_resolutions").get<std::vector<std::int64_t>>();
    v.resolution = c.at("resolution").get<std::int64_t>();
    v.z_channels = c.at("z_channels").get<std::int64_t>();
    v.double_z = c.at("double_z").get<bool>();
    v.embed_dim = c.at("embed_dim").get<std::int64_t>();
    const auto& gn = c.at("groupnorm");
    v.groups = gn.at("num_groups").get<std::int64_t>();
    v.eps = gn.at("eps").get<double>();
    IREPA_CHECK(gn.value("affine", true), "golden: SD-VAE GroupNorm without affine parameters is not what the reference builds");
    const auto clamp = c.value("logvar_clamp", std::vector<double>{-30, 20});
    IREPA_CHECK(clamp.size() == 2, "golden: SD-VAE logvar_clamp has {} values, expected [lo, hi]", clamp.size());
    v.logvar_min = clamp[0], v.logvar_max = clamp[1];
    IREPA_CHECK(c.value("dropout", 0.0) == 0.0, "golden: SD-VAE dropout {} (inference has none)", c.value("dropout", 0.0));
    IREPA_CHECK(c.value("resamp_with_conv", true), "golden: SD-VAE resampling without a conv is not implemented");
    IREPA_CHECK(c.value("temb_channels", 0) == 0, "golden: SD-VAE with a time embedding is not implemented");
    IREPA_CHECK(c.value("use_variational", true), "golden: SD-VAE without the variational posterior is not implemented");
    IREPA_CHECK(!c.value("give_pre_end", false), "golden: SD-VAE give_pre_end is not implemented");
    IREPA_CHECK(c.value("decoder_res_blocks_per_level", v.num_res_blocks + 1) == v.num_res_blocks + 1,
                "golden: SD-VAE decoder with {} blocks per level; the reference's has num_res_blocks + 1 = {}",
                c.value("decoder_res_blocks_per_level", 0), v.num_res_blocks + 1);
  } catch (const nlohmann::json::exception& e) {
    fail("golden: SD-VAE config is missing a key or has a wrong type: {}", e.what());
  }
  v.validate();
  return v;
}

namespace detail {
/// The first (part = 0) or second half of the channels of x [B, 2E, h, w].
template <class T>
Tensor<T> channel_half(ConstView<T> x, int part) {
  const std::int64_t B = x.size(0), n = x.numel() / B / 2;
  Tensor<T> out(Shape{B, x.size(1) / 2, x.size(2), x.size(3)});
  for (std::int64_t b = 0; b < B; ++b) std::copy_n(x.data() + (2 * b + part) * n, n, out.data() + b * n);
  return out;
}
}  // namespace detail

/// Runs an `sd-vae` file in T on the context's device. The last row is decoded_uint8's largest
/// absolute difference (tolerance 0 in double; a float build may be off by one).
template <class T, class Ctx = CpuContext>
std::vector<Row> check_sd_vae(const io::SafeTensorsFile& f, double tol, const Ctx& ctx = Ctx{}) {
  using Dev = typename Ctx::device_type;
  const SdVaeConfig cfg = sd_vae_setup(config_of(f));
  SdVae<T, Dev> vae(cfg);
  vae.load(*ParamsFile(f), "params/");
  RowCollector<T> rc{f, tol};
  const auto up = [&](const char* name) { return to_device(ctx, f.load<T>(name).cview()); };
  const auto x = up("inputs/x"), eps = up("inputs/eps"), scale = up("inputs/latents_scale"), bias = up("inputs/latents_bias");
  const auto moments = vae.encode_moments(ctx, x.cview());
  const auto post = vae.posterior(ctx, moments.cview());
  const Tensor<T> mean_std = to_host(ctx, post.mean_std.cview());
  rc.cmp("outputs/moments", to_host(ctx, moments.cview()));
  rc.cmp("outputs/mean", detail::channel_half<T>(mean_std, 0));
  rc.cmp("outputs/logvar", to_host(ctx, post.logvar.cview()));
  rc.cmp("outputs/std", detail::channel_half<T>(mean_std, 1));
  rc.cmp("outputs/mean_std", mean_std);
  Tensor<T, Dev> z(eps.shape()), unscaled(eps.shape());
  ops::sample_posterior<T>(ctx, post.mean_std.cview(), eps.cview(), scale.cview(), bias.cview(), z.view());
  rc.cmp("outputs/z", to_host(ctx, z.cview()));
  ops::unscale_latents<T>(ctx, z.cview(), scale.cview(), bias.cview(), unscaled.view());
  const Tensor<T> decoded = to_host(ctx, vae.decode(ctx, unscaled.cview()).cview());
  rc.cmp("outputs/decoded", decoded);
  const auto mean = to_device(ctx, detail::channel_half<T>(mean_std, 0).cview());
  rc.cmp("outputs/decoded_mean", to_host(ctx, vae.decode(ctx, mean.cview()).cview()));
  const auto u8 = decoded_to_uint8<T>(decoded);
  const auto ref = f.load<std::uint8_t>("outputs/decoded_uint8");
  IREPA_CHECK(ref.shape() == u8.shape(), "golden: decoded_uint8 has shape {}, ours {}", ref.shape().str(), u8.shape().str());
  double worst = 0;
  for (std::int64_t i = 0; i < u8.numel(); ++i) worst = std::max(worst, std::abs(double(u8[i]) - double(ref[i])));
  rc.rows.push_back({"outputs/decoded_uint8 (largest |difference|)", worst, std::is_same_v<T, double> ? 0.0 : 1.0});
  return rc.rows;
}

}  // namespace irepa::golden
