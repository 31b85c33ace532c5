// irepa-encode: the reference's preprocessing/dataset_tools.py encode step. Images (an
// ImageFolder as torchvision lists it, ADM-center-cropped to --resolution; the reference's
// imagenet-latents-images save_to_disk folder; or a folder of our image shards) go through the SD-VAE's encoder; each image's posterior (mean | std,
// [2E, R/8, R/8]: [8, 32, 32] at 256 px) is stored with its label in safetensors shards that
// irepa-train reads (--data-dir, with --latents-stats). --keep-images stores the uint8 images
// beside the posteriors (one folder for latent training with online target encoders).
// `stats` computes latents_scale / latents_bias from such a folder.
//
//   irepa-encode encode --source imagenet/train --dest imagenet-sdvae/ --vae vae/sdvae-ft-mse-f8d4.safetensors
//   irepa-encode encode ... --device cuda --batch-size 64 --precision tf32
//   mpirun -np 4 irepa-encode encode ...     # or torchrun: process r writes shards r, r + 4, ...
//   irepa-encode stats --source imagenet-sdvae/ --dest sdvae-latents-stats.safetensors
//
// --dest gets part-NNNNN.safetensors (posteriors F32, labels I64, images U8 with --keep-images),
// each written to a temporary file and renamed, and encode.json (the settings, and "finished"
// once every shard is there). A stopped run continues where it stopped (a shard that is there
// is kept); a finished folder, or one made with other settings, is refused.

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <irepa/data/hf_dataset.hpp>
#include <irepa/data/image_folder.hpp>
#include <irepa/data/latent_stats.hpp>
#include <irepa/data/shards.hpp>
#include <irepa/train/communicator.hpp>

#include "fail_safe.hpp"
#include "encode_job.hpp"
#include "tool_support.hpp"

namespace {

using namespace irepa;
namespace fs = std::filesystem;

class CpuPosteriorEncoder final : public examples::PosteriorEncoder {
 public:
  CpuPosteriorEncoder(SdVae<float> vae, int threads) : vae_(std::move(vae)), ctx_(threads) {}
  Tensor<float> encode(const Tensor<float>& images) override { return vae_.encode(ctx_, examples::scale_pixels(images)); }
  std::string where() const override { return "cpu (" + std::to_string(ctx_.threads()) + " threads)"; }

 private:
  SdVae<float> vae_;
  CpuContext ctx_;
};

struct EncodeOptions {
  std::string source, dest, vae, dataset = "auto", device = "cpu", precision = "fp32";
  std::int64_t resolution = 256, batch = 16, shard_size = 1000, limit = 0;
  int threads = 0;
  bool keep_images = false;
};

/// The manifest: what the folder is an encoding of, and whether it is complete.
nlohmann::json manifest(const EncodeOptions& o, std::int64_t count, const SdVaeConfig& vc) {
  return {{"tool", "irepa-encode"},
          {"source", fs::absolute(o.source).lexically_normal().string()},
          {"vae", fs::absolute(o.vae).lexically_normal().string()},
          {"resolution", o.resolution},
          {"shard_size", o.shard_size},
          {"count", count},
          {"keep_images", o.keep_images},
          {"latent_shape", {2 * vc.embed_dim, o.resolution / vc.factor(), o.resolution / vc.factor()}},
          {"finished", false}};
}

using examples::write_json_atomic;

/// Whether shard `path` is there and holds n posteriors of the expected shape (a resumed run keeps it).
bool shard_done(const fs::path& path, std::int64_t n, const Shape& latent) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  io::SafeTensorsFile f(path.string());
  const Shape want{n, latent[0], latent[1], latent[2]};
  IREPA_CHECK(f.contains("posteriors") && f.info("posteriors").shape == want && f.contains("labels"),
              "irepa-encode: '{}' is there but is not {} posteriors {} with labels: remove it to encode it again", path.string(), n,
              want.str());
  return true;
}

template <class Dataset>
int encode(const EncodeOptions& o, const Dataset& ds, examples::PosteriorEncoder& vae, const SdVaeConfig& vc, const LaunchInfo& launch) {
  IREPA_CHECK(ds.kind() == "images", "irepa-encode: '{}' holds {}, expected images", o.source, ds.kind());
  const Shape s = ds.sample_shape();
  IREPA_CHECK(s.rank() == 3 && s[0] == vc.in_channels && s[1] % vc.factor() == 0 && s[2] % vc.factor() == 0,
              "irepa-encode: images of shape {}, expected [{}, H, W] with H and W multiples of {}", s.str(), vc.in_channels, vc.factor());
  const std::int64_t N = o.limit > 0 ? std::min(o.limit, ds.size()) : ds.size();
  const Shape latent{2 * vc.embed_dim, s[1] / vc.factor(), s[2] / vc.factor()};
  const fs::path dest(o.dest), man = dest / "encode.json";
  nlohmann::json want = manifest(o, N, vc);
  const nlohmann::json have = examples::claim_folder(
      dest, man, want, {"tool", "source", "vae", "resolution", "keep_images", "shard_size", "count", "latent_shape"}, launch.rank,
      "irepa-encode", "--dest");
  IREPA_CHECK(!have.value("finished", false),
              "irepa-encode: '{}' holds a finished encoding of {} images; it is not overwritten (choose another --dest, or delete it)", o.dest,
              have.value("count", 0));
  const std::string who = launch.distributed() ? fmt::format("rank {}: ", launch.rank) : std::string();
  std::printf("%sencoding %lld images of %s to posteriors %s on %s\n", who.c_str(), static_cast<long long>(N), s.str().c_str(),
              latent.str().c_str(), vae.where().c_str());
  std::fflush(stdout);
  const auto t0 = std::chrono::steady_clock::now();
  std::int64_t done_here = 0;
  const std::int64_t parts = (N + o.shard_size - 1) / o.shard_size;
  for (std::int64_t part = launch.rank; part < parts; part += launch.world) {
    const std::int64_t start = part * o.shard_size, n = std::min(o.shard_size, N - start);
    const fs::path path = dest / fmt::format("part-{:05d}.safetensors", part);
    if (shard_done(path, n, latent)) continue;  // a resumed run: written before it stopped
    Tensor<float> post(Shape{n, latent[0], latent[1], latent[2]});
    Tensor<std::int64_t> labels(Shape{n});
    Tensor<std::uint8_t> images = o.keep_images ? Tensor<std::uint8_t>(Shape{n, s[0], s[1], s[2]}) : Tensor<std::uint8_t>();
    for (std::int64_t b0 = 0; b0 < n; b0 += o.batch) {
      const std::int64_t bn = std::min(o.batch, n - b0);
      std::vector<std::int64_t> idx(static_cast<std::size_t>(bn));
      for (std::int64_t i = 0; i < bn; ++i) idx[static_cast<std::size_t>(i)] = start + b0 + i;
      const auto b = ds.template get<float>(idx);
      const Tensor<float> p = vae.encode(b.x);
      std::copy_n(p.data(), p.numel(), post.data() + b0 * latent.numel());
      for (std::int64_t i = 0; i < bn; ++i) labels[b0 + i] = b.y[i];
      if (o.keep_images)
        for (std::int64_t i = 0; i < b.x.numel(); ++i) images[b0 * s.numel() + i] = static_cast<std::uint8_t>(b.x[i]);
      done_here += bn;
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("\r%s%lld images encoded this run, %.2f img/s", who.c_str(), static_cast<long long>(done_here),
                  sec > 0 ? static_cast<double>(done_here) / sec : 0.0);
      std::fflush(stdout);
    }
    io::SafeTensorsWriter w;
    w.add("posteriors", post);
    w.add("labels", labels);
    if (o.keep_images) w.add("images", images);
    w.set_metadata("source", o.source);
    w.write(path.string());
    std::printf("\n%swrote %s: %lld images\n", who.c_str(), path.string().c_str(), static_cast<long long>(n));
    std::fflush(stdout);
  }
  // Whichever process finds every shard there marks the folder finished (the same content from any of them).
  bool all = true;
  for (std::int64_t part = 0; part < parts && all; ++part)
    all = shard_done(dest / fmt::format("part-{:05d}.safetensors", part), std::min(o.shard_size, N - part * o.shard_size), latent);
  if (all) {
    want["finished"] = true;
    write_json_atomic(man, want);
    std::printf("%s%s: finished, %lld images in %lld shards\n", who.c_str(), o.dest.c_str(), static_cast<long long>(N),
                static_cast<long long>(parts));
  }
  return 0;
}

int run_encode(EncodeOptions o) {
  IREPA_CHECK(o.batch > 0 && o.shard_size > 0 && o.limit >= 0 && o.resolution > 0,
              "irepa-encode: --batch-size, --shard-size and --resolution must be positive, --limit not negative");
  IREPA_CHECK(o.device == "cpu" || o.device.starts_with("cuda"), "irepa-encode: --device '{}' is not cpu, cuda or cuda:N", o.device);
  const LaunchInfo launch = LaunchInfo::from_env();
  const SdVae<float> host = load_sd_vae<float>(o.vae);
  int threads = o.threads;
  if (threads == 0 && launch.local_world > 1) threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / launch.local_world);
  std::unique_ptr<examples::PosteriorEncoder> vae;
  if (o.device == "cpu") {
    vae = std::make_unique<CpuPosteriorEncoder>(SdVae<float>::from_host(host), threads);
  } else {
#if defined(IREPA_WITH_CUDA)
    const int device = o.device == "cuda" ? launch.local_rank : std::stoi(o.device.substr(5));
    vae = examples::make_cuda_posterior_encoder(host, device, o.precision);
#else
    fail("irepa-encode: --device {} needs a build with CUDA", o.device);
#endif
  }
  std::string kind = o.dataset;
  if (kind == "auto") {
    bool shards = false, arrow = false;
    std::error_code ec;
    if (fs::is_directory(o.source, ec))
      for (const auto& e : fs::directory_iterator(o.source)) {
        shards = shards || (e.is_regular_file() && e.path().extension() == ".safetensors");
        arrow = arrow || (e.is_regular_file() && (e.path().extension() == ".arrow" || e.path().filename() == "state.json"));
      }
    kind = shards ? "shards" : arrow ? "hf" : "image-folder";
  }
  if (kind == "shards") return encode(o, data::ShardedDataset(o.source), *vae, host.config, launch);
  // The reference's imagenet-latents-images folder: its stored (already cropped) images, or cropped to --resolution.
  if (kind == "hf") return encode(o, data::HfImageDataset(o.source, o.resolution, threads), *vae, host.config, launch);
  IREPA_CHECK(kind == "image-folder", "irepa-encode: --dataset '{}' is not auto, image-folder, hf or shards", kind);
  return encode(o, data::ImageFolder(o.source, o.resolution, threads), *vae, host.config, launch);
}

int run_stats(const std::string& source, const std::string& dest, const std::string& of, std::uint64_t seed) {
  IREPA_CHECK(of == "draws" || of == "means", "irepa-encode stats: --of '{}' is not draws or means", of);
  const data::ShardedDataset ds(source);
  const auto st = data::compute_latent_stats(ds, of == "draws" ? data::LatentStatsOf::Draws : data::LatentStatsOf::Means, seed);
  st.save(dest, {{"source", source}, {"of", of}, {"seed", std::to_string(seed)}, {"samples", std::to_string(ds.size())}});
  std::printf("%s: %lld posteriors of %s, per-channel (of the %s)\n", dest.c_str(), static_cast<long long>(ds.size()),
              ds.sample_shape().str().c_str(), of.c_str());
  for (std::int64_t c = 0; c < st.channels(); ++c) std::printf("  channel %lld: scale %.6f, bias %.6f\n", static_cast<long long>(c), st.scale[c], st.bias[c]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  EncodeOptions o;
  std::string stats_source, stats_dest, of = "draws";
  std::uint64_t seed = 0;
  CLI::App app{"irepa-encode: images to SD-VAE posteriors (the reference's dataset_tools.py encode), and their latent statistics"};
  app.require_subcommand(1);
  auto* enc = app.add_subcommand("encode", "images -> posterior shards (mean | std) with labels");
  enc->add_option("--source", o.source, "an ImageFolder (root/<class>/<image>) or a folder of image shards")->required();
  enc->add_option("--dest", o.dest, "the output folder (new, or a stopped run of the same settings)")->required();
  enc->add_option("--vae", o.vae, "SD-VAE weights (the reference's or diffusers' names)")->required();
  enc->add_option("--dataset", o.dataset, "auto, image-folder, hf (a datasets save_to_disk folder of images) or shards")->capture_default_str();
  enc->add_option("--resolution", o.resolution, "image-folder: the ADM center crop's side")->capture_default_str();
  enc->add_option("--batch-size", o.batch, "images per VAE call")->capture_default_str();
  enc->add_option("--shard-size", o.shard_size, "images per shard file")->capture_default_str();
  enc->add_option("--limit", o.limit, "only the first N images (0: all)")->capture_default_str();
  enc->add_option("--device", o.device, "cpu, cuda (the local rank's GPU) or cuda:N")->capture_default_str();
  enc->add_option("--precision", o.precision, "GPU products: fp32, tf32 or bf16")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}))
      ->capture_default_str();
  enc->add_option("--threads", o.threads, "CPU threads for decoding and the CPU VAE (0: all cores)")->capture_default_str();
  enc->add_flag("--keep-images", o.keep_images, "store the uint8 images beside the posteriors");
  auto* sts = app.add_subcommand("stats", "latents_scale / latents_bias of a posterior folder");
  sts->add_option("--source", stats_source, "a folder of posterior shards")->required();
  sts->add_option("--dest", stats_dest, "the stats file (safetensors)")->required();
  sts->add_option("--of", of, "draws (mean + std eps) or means")->capture_default_str();
  sts->add_option("--seed", seed, "seed of the draws")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    if (enc->parsed()) return run_encode(o);
    return run_stats(stats_source, stats_dest, of, seed);
  } catch (const std::exception& e) {
    return examples::report_error("irepa-encode", e);
  }
}
