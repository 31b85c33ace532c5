// Latent data of the SD-VAE: the latent statistics (file and computed), posterior shards with
// and without their images, and the trainer's per-step posterior draw (the reference's
// sample_posterior), its resume, online targets from the paired images and decoded grids.

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "irepa/align/head.hpp"
#include "irepa/data/latent_stats.hpp"
#include "irepa/data/shards.hpp"
#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/io/png.hpp"
#include "irepa/models/sd_vae.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/models/target_encoder.hpp"
#include "irepa/train/trainer.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  const auto d = fs::temp_directory_path() / ("irepa_latent_" + name + "_" + std::to_string(::getpid()) + "_" +
                                             std::to_string(test::rng().seed()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

struct PosteriorData {
  Tensor<float> posteriors;     // [n, 2E, h, w]
  Tensor<std::uint8_t> images;  // [n, 3, H, W] or empty
  Tensor<std::int64_t> labels;  // [n]
};

/// n random posteriors (means ~ N(0.5, 2), stds in [0.05, 0.6]) and labels 0..9, with images when side > 0.
PosteriorData random_posteriors(std::int64_t n, std::int64_t E, std::int64_t h, std::int64_t side = 0) {
  PosteriorData d{Tensor<float>(Shape{n, 2 * E, h, h}), {}, Tensor<std::int64_t>(Shape{n})};
  Tensor<float> m(Shape{n, E, h, h}), s(Shape{n, E, h, h});
  test::rng().normal(m.view(), 0.5f, 2.0f);
  test::rng().uniform(s.view(), 0.05f, 0.6f);
  const std::int64_t P = E * h * h;
  for (std::int64_t i = 0; i < n; ++i) {
    std::copy_n(m.data() + i * P, P, d.posteriors.data() + i * 2 * P);
    std::copy_n(s.data() + i * P, P, d.posteriors.data() + i * 2 * P + P);
  }
  test::rng().randint(d.labels.view(), 0, 10);
  if (side > 0) {
    Tensor<std::int64_t> px(Shape{n * 3 * side * side});
    test::rng().randint(px.view(), 0, 256);
    d.images = Tensor<std::uint8_t>(Shape{n, 3, side, side});
    for (std::int64_t i = 0; i < px.numel(); ++i) d.images[i] = static_cast<std::uint8_t>(px[i]);
  }
  return d;
}

/// Rows [r0, r1) of d as one shard.
void write_shard(const PosteriorData& d, std::int64_t r0, std::int64_t r1, const fs::path& path) {
  io::SafeTensorsWriter w;
  w.add<float>("posteriors", d.posteriors.cview().slice(0, r0, r1 - r0));
  w.add<std::int64_t>("labels", d.labels.cview().slice(0, r0, r1 - r0));
  if (d.images.rank() == 4) w.add<std::uint8_t>("images", d.images.cview().slice(0, r0, r1 - r0));
  w.write(path.string());
}

data::LatentStats stats_of(std::vector<double> scale, std::vector<double> bias) {
  data::LatentStats s{Tensor<double>(Shape{static_cast<std::int64_t>(scale.size())}),
                      Tensor<double>(Shape{static_cast<std::int64_t>(bias.size())})};
  for (std::size_t i = 0; i < scale.size(); ++i) s.scale[static_cast<std::int64_t>(i)] = scale[i];
  for (std::size_t i = 0; i < bias.size(); ++i) s.bias[static_cast<std::int64_t>(i)] = bias[i];
  return s;
}

using test::same_bits;

}  // namespace

TEST_CASE("latent statistics: [E] or [1, E, 1, 1] from a file, written back, and what a bad file gets", "[latent][data]") {
  const auto dir = temp_dir("stats");
  const auto scale = test::rand_uniform<double>(Shape{1, 4, 1, 1}, 0.1, 1.0), bias = test::randn<double>(Shape{1, 4, 1, 1});
  {
    io::SafeTensorsWriter w;  // as tools/convert_encoder.py writes the reference's .pt
    w.add_as<double>("latents_scale", scale.cview(), DType::F32);
    w.add_as<double>("latents_bias", bias.cview(), DType::F32);
    w.write((dir / "ref.safetensors").string());
  }
  const auto s = data::LatentStats::load((dir / "ref.safetensors").string());
  REQUIRE(s.channels() == 4);
  for (std::int64_t c = 0; c < 4; ++c) {
    CHECK(s.scale[c] == static_cast<double>(static_cast<float>(scale[c])));
    CHECK(s.bias[c] == static_cast<double>(static_cast<float>(bias[c])));
  }
  s.save((dir / "again.safetensors").string(), {{"source", "test"}});
  const auto t = data::LatentStats::load((dir / "again.safetensors").string());
  CHECK(test::rel_error(t.scale, s.scale) == 0);
  CHECK(test::rel_error(t.bias, s.bias) == 0);
  REQUIRE_IREPA_ERROR(s.expect_channels(8, "x"), "hold 4 channels", "have 8");

  auto write = [&](const char* name, Shape ss, Shape bs, double s0) {
    io::SafeTensorsWriter w;
    auto sv = test::rand_uniform<double>(ss, 0.1, 1.0);
    if (sv.numel()) sv[0] = s0;
    w.add<double>("latents_scale", sv);
    if (bs.rank()) w.add<double>("latents_bias", test::randn<double>(bs));
    w.write((dir / name).string());
    return (dir / name).string();
  };
  REQUIRE_IREPA_ERROR(data::LatentStats::load(write("no_bias.safetensors", Shape{4}, Shape{}, 0.5)), "no tensor 'latents_bias'");
  REQUIRE_IREPA_ERROR(data::LatentStats::load(write("shape.safetensors", Shape{2, 4}, Shape{4}, 0.5)), "'latents_scale' has shape [2, 4]",
                      "[E] or [1, E, 1, 1]");
  REQUIRE_IREPA_ERROR(data::LatentStats::load(write("sizes.safetensors", Shape{4}, Shape{3}, 0.5)), "latents_scale [4] and latents_bias [3]");
  REQUIRE_IREPA_ERROR(data::LatentStats::load(write("zero.safetensors", Shape{4}, Shape{4}, 0.0)), "channel 0 has scale 0");
  REQUIRE_IREPA_ERROR(data::LatentStats::load(write("nan.safetensors", Shape{4}, Shape{4}, std::nan(""))), "channel 0 has scale nan");
  fs::remove_all(dir);
}

TEST_CASE("compute_latent_stats: per-channel mean and std of posterior draws (or means), 1 / std and mean", "[latent][data]") {
  const auto dir = temp_dir("compute");
  const std::int64_t n = 13, E = 3, h = 4, P = h * h;
  const auto d = random_posteriors(n, E, h);
  write_shard(d, 0, 6, dir / "a.safetensors");
  write_shard(d, 6, n, dir / "b.safetensors");
  const data::ShardedDataset ds(dir.string());
  REQUIRE(ds.kind() == "posteriors");
  for (const auto of : {data::LatentStatsOf::Means, data::LatentStatsOf::Draws}) {
    INFO((of == data::LatentStatsOf::Means ? "means" : "draws"));
    const std::uint64_t seed = test::rng().seed() % 1000;
    const auto st = data::compute_latent_stats(ds, of, seed, /*batch=*/5);  // batches that straddle the shards
    // Direct: draws image by image in index order from Philox(seed, 7), one fill per batch of 5.
    Philox rng(seed, 7);
    std::vector<std::vector<double>> z(static_cast<std::size_t>(E));
    for (std::int64_t i0 = 0; i0 < n; i0 += 5) {
      const std::int64_t B = std::min<std::int64_t>(5, n - i0);
      Tensor<double> eps(Shape{B, E, h, h});
      rng.normal(eps.view());
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t c = 0; c < E; ++c)
          for (std::int64_t p = 0; p < P; ++p) {
            const double m = d.posteriors[((i0 + b) * 2 * E + c) * P + p], s = d.posteriors[((i0 + b) * 2 * E + E + c) * P + p];
            z[static_cast<std::size_t>(c)].push_back(of == data::LatentStatsOf::Draws ? m + s * eps[(b * E + c) * P + p] : m);
          }
    }
    for (std::int64_t c = 0; c < E; ++c) {
      const auto& v = z[static_cast<std::size_t>(c)];
      double mean = 0, var = 0;
      for (double x : v) mean += x;
      mean /= static_cast<double>(v.size());
      for (double x : v) var += (x - mean) * (x - mean);
      var /= static_cast<double>(v.size() - 1);
      CHECK(st.bias[c] == Approx(mean).epsilon(1e-12));
      CHECK(st.scale[c] == Approx(1 / std::sqrt(var)).epsilon(1e-12));
    }
  }
  // Image data has no posteriors to draw from.
  io::SafeTensorsWriter w;
  w.add<std::uint8_t>("images", Tensor<std::uint8_t>(Shape{2, 1, 4, 4}));
  w.add<std::int64_t>("labels", Tensor<std::int64_t>(Shape{2}));
  fs::create_directories(dir / "img");
  w.write((dir / "img" / "x.safetensors").string());
  REQUIRE_IREPA_ERROR(data::compute_latent_stats(data::ShardedDataset((dir / "img").string())), "holds images", "VAE posteriors");
  fs::remove_all(dir);
}

TEST_CASE("posterior shards: mean | std with or without their images, and the shards that do not fit", "[latent][data]") {
  const auto dir = temp_dir("shards");
  const auto d = random_posteriors(7, 4, 2, 16);
  fs::create_directories(dir / "ok");
  write_shard(d, 0, 3, dir / "ok" / "0.safetensors");
  write_shard(d, 3, 7, dir / "ok" / "1.safetensors");
  const data::ShardedDataset ds((dir / "ok").string());
  CHECK(ds.kind() == "posteriors");
  CHECK(ds.size() == 7);
  CHECK(ds.sample_shape() == Shape{8, 2, 2});
  CHECK(ds.image_shape() == Shape{3, 16, 16});
  CHECK(ds.has_images());
  const auto b = ds.get<float>({5, 1});
  REQUIRE(b.images.shape() == Shape{2, 3, 16, 16});
  for (std::int64_t k = 0; k < 3 * 256; ++k) REQUIRE(b.images[768 + k] == static_cast<float>(d.images[1 * 768 + k]));
  for (std::int64_t k = 0; k < 32; ++k) REQUIRE(b.x[k] == d.posteriors[5 * 32 + k]);
  CHECK(b.y[0] == d.labels[5]);

  auto bad = [&](const std::string& name, auto&& fill) {
    fs::create_directories(dir / name);
    io::SafeTensorsWriter w;
    fill(w);
    w.write((dir / name / "0.safetensors").string());
    return (dir / name).string();
  };
  const auto labels = Tensor<std::int64_t>(Shape{3});
  REQUIRE_IREPA_ERROR(data::ShardedDataset(bad("odd", [&](auto& w) {
                        w.template add<float>("posteriors", test::randn<float>(Shape{3, 5, 2, 2}));
                        w.template add<std::int64_t>("labels", labels);
                      })),
                      "posteriors have shape [3, 5, 2, 2]", "[n, 2E, h, w]");
  REQUIRE_IREPA_ERROR(data::ShardedDataset(bad("count", [&](auto& w) {
                        w.template add<float>("posteriors", test::randn<float>(Shape{3, 8, 2, 2}));
                        w.template add<std::uint8_t>("images", Tensor<std::uint8_t>(Shape{2, 3, 16, 16}));
                        w.template add<std::int64_t>("labels", labels);
                      })),
                      "images are U8 [2, 3, 16, 16]", "[3, C, H, W]");
  REQUIRE_IREPA_ERROR(data::ShardedDataset(bad("both", [&](auto& w) {
                        w.template add<float>("latents", test::randn<float>(Shape{3, 4, 2, 2}));
                        w.template add<float>("posteriors", test::randn<float>(Shape{3, 8, 2, 2}));
                        w.template add<std::int64_t>("labels", labels);
                      })),
                      "exactly one of 'latents', 'posteriors' and 'images'", "latents and posteriors");
  REQUIRE_IREPA_ERROR(data::ShardedDataset(bad("side", [&](auto& w) {
                        w.template add<float>("posteriors", test::randn<float>(Shape{3, 8, 2, 2}));
                        w.template add<std::uint8_t>("images", Tensor<std::uint8_t>(Shape{3, 3, 15, 15}));
                        w.template add<std::int64_t>("labels", labels);
                      })),
                      "not one multiple of the latents'");
  // A second shard without the first one's images.
  fs::create_directories(dir / "mixed");
  write_shard(d, 0, 3, dir / "mixed" / "0.safetensors");
  PosteriorData no_images{Tensor<float>::copy_of(d.posteriors.cview()), {}, Tensor<std::int64_t>::copy_of(d.labels.cview())};
  write_shard(no_images, 3, 7, dir / "mixed" / "1.safetensors");
  REQUIRE_IREPA_ERROR(data::ShardedDataset((dir / "mixed").string()), "holds images none beside its posteriors", "[3, 16, 16]");
  fs::remove_all(dir);
}

namespace {

using TinySiT = SiT<Dynamic, DynamicPatch, REPAHead, float>;

SiTConfig tiny_latent_sit(std::vector<std::int64_t> z_dims = {}) {
  SiTConfig c;
  c.input_size = 4, c.in_channels = 4, c.num_classes = 10, c.encoder_depth = 1, c.z_dims = std::move(z_dims);
  c.depth = 2, c.hidden_size = 32, c.num_heads = 2, c.patch_size = 1;
  return c;
}

TrainerOptions tiny_options(const fs::path& run, const data::LatentStats& st) {
  TrainerOptions o;
  o.run_dir = run.string(), o.batch_size = 4, o.max_train_steps = 6, o.checkpointing_steps = 3, o.log_every = 2, o.quiet = true;
  o.seed = 3, o.schedule = LrSchedule{.kind = LrSchedule::Kind::Constant, .lr = 1e-3}, o.ema_decays = {0.9};
  o.latent_stats = st;
  return o;
}

TrainResult<float> train_tiny(const TrainerOptions& o, const data::ShardedDataset& ds, const std::vector<TargetEncoder>& online = {},
                              std::vector<std::int64_t> z_dims = {}) {
  CpuContext ctx(2);
  TinySiT m(tiny_latent_sit(std::move(z_dims)));
  m.init(9);
  return train(ctx, o, m, SiTObjective{}, ds, online, nlohmann::json{{"test", "latent"}});
}

}  // namespace

TEST_CASE("the trainer draws each step's latents as sample_posterior: z = (mean + std eps - bias) scale", "[latent][trainer]") {
  const auto dir = temp_dir("draw");
  // Two datasets and stats that give the same z for the same eps: (m, s) with scale 1, bias 0, and
  // (m / k + b, s / k) with scale k, bias b. Equal losses show the formula and that eps is the run's.
  const std::int64_t n = 10, E = 4, h = 4;
  const auto d = random_posteriors(n, E, h);
  const auto k = test::rand_uniform<double>(Shape{E}, 0.5, 3.0), bias = test::randn<double>(Shape{E});
  PosteriorData d2{Tensor<float>(d.posteriors.shape()), {}, Tensor<std::int64_t>::copy_of(d.labels.cview())};
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t c = 0; c < 2 * E; ++c)
      for (std::int64_t p = 0; p < h * h; ++p) {
        const std::int64_t at = (i * 2 * E + c) * h * h + p, e = c % E;
        d2.posteriors[at] = c < E ? static_cast<float>(d.posteriors[at] / k[e] + bias[e]) : static_cast<float>(d.posteriors[at] / k[e]);
      }
  fs::create_directories(dir / "a"), fs::create_directories(dir / "b");
  write_shard(d, 0, n, dir / "a" / "0.safetensors");
  write_shard(d2, 0, n, dir / "b" / "0.safetensors");
  std::vector<double> kv(static_cast<std::size_t>(E)), bv(static_cast<std::size_t>(E));
  for (std::int64_t c = 0; c < E; ++c) kv[static_cast<std::size_t>(c)] = k[c], bv[static_cast<std::size_t>(c)] = bias[c];
  const auto a = train_tiny(tiny_options(dir / "ra", stats_of({1, 1, 1, 1}, {0, 0, 0, 0})), data::ShardedDataset((dir / "a").string()));
  const auto b = train_tiny(tiny_options(dir / "rb", stats_of(kv, bv)), data::ShardedDataset((dir / "b").string()));
  REQUIRE(a.history.size() == 6);
  for (std::size_t i = 0; i < a.history.size(); ++i) {
    INFO("step " << a.history[i].step);
    CHECK(b.history[i].denoising == Approx(a.history[i].denoising).epsilon(1e-4));
  }
  // A different draw (another seed) changes the losses: the draw is not a no-op.
  auto o = tiny_options(dir / "rc", stats_of({1, 1, 1, 1}, {0, 0, 0, 0}));
  o.seed = 4;
  const auto c = train_tiny(o, data::ShardedDataset((dir / "a").string()));
  CHECK(c.history[0].denoising != a.history[0].denoising);

  // Posteriors need the stats, of one value per latent channel; other data refuses them.
  auto none = tiny_options(dir / "rd", stats_of({1}, {0}));
  none.latent_stats.reset();
  REQUIRE_IREPA_ERROR(train_tiny(none, data::ShardedDataset((dir / "a").string())), "VAE posteriors", "latent statistics");
  REQUIRE_IREPA_ERROR(train_tiny(tiny_options(dir / "re", stats_of({1, 1, 1}, {0, 0, 0})), data::ShardedDataset((dir / "a").string())),
                      "hold 3 channels", "have 4");
  fs::remove_all(dir);
}

TEST_CASE("posterior runs resume bit-identically, and online targets come from the images beside the posteriors", "[latent][trainer]") {
  const auto dir = temp_dir("resume");
  const auto d = random_posteriors(12, 4, 4, 16);  // images 16 px beside 4x4 latents
  fs::create_directories(dir / "data");
  write_shard(d, 0, 12, dir / "data" / "0.safetensors");
  const data::ShardedDataset ds((dir / "data").string());
  const auto online = make_target_encoders("hog-x-g4_d32", detail::image_side(ds));
  REQUIRE(online.front().tokens == 16);
  const auto st = stats_of({0.8, 1.2, 0.5, 2.0}, {0.1, -0.2, 0.3, 0.0});
  const auto straight = train_tiny(tiny_options(dir / "straight", st), ds, online, {32});
  fs::create_directories(dir / "resumed" / "checkpoints");
  fs::copy_file(dir / "straight" / "checkpoints" / "0000003.safetensors", dir / "resumed" / "checkpoints" / "0000003.safetensors");
  auto o = tiny_options(dir / "resumed", st);
  o.resume_step = 3;
  const auto resumed = train_tiny(o, ds, online, {32});
  REQUIRE(resumed.history.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(resumed.history[i].total == straight.history[i + 3].total);
    CHECK(resumed.history[i].alignment == straight.history[i + 3].alignment);
  }
  CHECK(straight.history[0].alignment != 0);  // the HOG targets of the images reach the loss
  CHECK(same_bits(resumed.ema.cview(), straight.ema.cview()));
  // Online encoders with posteriors alone (no images) are refused.
  fs::create_directories(dir / "bare");
  PosteriorData bare{Tensor<float>::copy_of(d.posteriors.cview()), {}, Tensor<std::int64_t>::copy_of(d.labels.cview())};
  write_shard(bare, 0, 12, dir / "bare" / "0.safetensors");
  REQUIRE_IREPA_ERROR(train_tiny(tiny_options(dir / "r2", st), data::ShardedDataset((dir / "bare").string()), online, {32}),
                      "online target encoders need images", "posteriors without images");
  fs::remove_all(dir);
}

TEST_CASE("latent sample grids and the ground-truth grid go through the grid decoder (a small SD-VAE)", "[latent][trainer][vae]") {
  const auto dir = temp_dir("grids");
  const auto d = random_posteriors(8, 4, 4);
  fs::create_directories(dir / "data");
  write_shard(d, 0, 8, dir / "data" / "0.safetensors");
  SdVaeConfig vc;
  vc.ch = 8, vc.ch_mult = {1, 2}, vc.num_res_blocks = 1, vc.groups = 4, vc.attn_resolutions = {};
  SdVae<float> vae(vc);
  vae.init_random(test::rng().seed(), 0.1f);
  save_sd_vae(vae, (dir / "vae.safetensors").string());
  const SdVae<float> loaded = load_sd_vae<float>((dir / "vae.safetensors").string());  // architecture read off the file
  CHECK(loaded.config.ch_mult == vc.ch_mult);
  CHECK(loaded.config.groups == 4);
  const auto st = stats_of({0.5, 0.5, 0.5, 0.5}, {0, 0, 0, 0});
  auto o = tiny_options(dir / "run", st);
  o.sampling_steps = 3, o.classes_in_grid = 2, o.samples_per_class = 2, o.grid.steps = 2;
  int calls = 0;
  CpuContext cpu(2);
  o.grid_decoder = [&](const Tensor<double>& z) {
    ++calls;
    Tensor<float> zf(z.shape()), un(z.shape());
    for (std::int64_t i = 0; i < z.numel(); ++i) zf[i] = static_cast<float>(z[i]);
    const auto [scale, bias] = st.as<float>();
    ops::unscale_latents<float>(cpu, zf, scale, bias, un.view());
    const auto px = loaded.decode(cpu, un);
    Tensor<double> out(px.shape());
    for (std::int64_t i = 0; i < px.numel(); ++i) out[i] = px[i];
    return out;
  };
  train_tiny(o, data::ShardedDataset((dir / "data").string()));
  CHECK(calls == 3);  // the ground truth at the start, the grids at steps 3 and 6
  for (const char* f : {"ground_truth.png", "0000003.png", "0000006.png"}) {
    INFO(f);
    REQUIRE(fs::exists(dir / "run" / "samples" / f));
    const auto png = io::read_png((dir / "run" / "samples" / f).string());
    CHECK(png.pixels.size(0) >= 2 * 8);  // two rows of 8 px images (the VAE's x2), decoded from 4x4 latents
  }
  fs::remove_all(dir);
}
