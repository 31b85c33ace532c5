// irepa-extract-features: precomputes frozen target encoders' patch tokens for an image dataset
// and writes safetensors shards that irepa-train reads (--data-dir): images [n, C, H, W] uint8,
// labels [n], features.<encoder> [n, T, D] float32, one file per --shard-size images, each
// written to a temporary file and renamed.
//
//   irepa-extract-features --dataset fashion-mnist --enc-type hog-x-g7_d128 --output-dir fm-hog/
//   irepa-extract-features --dataset shards --data-dir imagenet256/ --enc-type dinov2-vit-b
//                          --encoder-dir encoders/ --output-dir imagenet256-dinov2/
//   irepa-train --data-dir fm-hog/ --model custom ...      # targets from features.hog-x-g7_d128
//   mpirun -np 4 irepa-extract-features ...                # or torchrun: process r writes shards r, r + 4, ...
//
// As N processes (mpirun's or torchrun's variables) each writes every N-th shard: the folder is
// the one a single process writes, file for file; the processes need not talk to each other.

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <thread>

#include <irepa/data/fashion_mnist.hpp>
#include <irepa/data/shards.hpp>
#include <irepa/models/target_encoder.hpp>
#include <irepa/train/communicator.hpp>
#include "fail_safe.hpp"

namespace {

using namespace irepa;
namespace fs = std::filesystem;

std::string shard_name(std::int64_t part) { return fmt::format("part-{:05d}.safetensors", part); }

/// A used folder would mix stale shards into the trainer's dataset: refused. Each process looks
/// before it writes, and the processes do not wait for each other, so a process may already
/// see the shards (and temporaries) of the others: those are allowed, nothing else. A stale
/// file is still found: under another name by every process, and under a shard's name by the
/// process whose shard it is, which cannot have written it yet.
void refuse_used_folder(const std::string& out, std::int64_t parts, const LaunchInfo& launch) {
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  IREPA_CHECK(fs::is_directory(out, ec), "irepa-extract-features: --output-dir '{}' exists and is not a folder", out);
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string n = e.path().filename().string();
    // part-NNNNN.safetensors (or its temporary) of a shard another process of this job writes?
    bool others = false;
    std::int64_t p = -1;
    int used = 0;
    if (launch.world > 1 && std::sscanf(n.c_str(), "part-%ld.safetensors%n", &p, &used) == 1 && used > 0 &&
        (static_cast<std::size_t>(used) == n.size() || n.compare(static_cast<std::size_t>(used), 5, ".tmp.") == 0))
      others = p >= 0 && p < parts && p % launch.world != launch.rank && n.starts_with(shard_name(p));
    IREPA_CHECK(others, "irepa-extract-features: --output-dir '{}' exists and is not an empty folder ('{}'); its files would mix with the new shards",
                out, n);
  }
}

template <class Dataset>
int extract(const Dataset& ds, const std::vector<TargetEncoder>& encs, const std::string& out, std::int64_t shard_size,
            std::int64_t batch, std::int64_t limit, int threads, const LaunchInfo& launch) {
  IREPA_CHECK(ds.kind() == "images", "irepa-extract-features: the data holds {}, expected images (uint8)", ds.kind());
  CpuContext ctx(threads);
  const std::int64_t N = limit > 0 ? std::min(limit, ds.size()) : ds.size();
  const Shape s = ds.sample_shape();  // [C, H, W]
  const std::int64_t parts = (N + shard_size - 1) / shard_size;
  refuse_used_folder(out, parts, launch);
  fs::create_directories(out);
  std::int64_t written = 0;
  for (std::int64_t start = 0, part = 0; start < N; start += shard_size, ++part) {
    const std::int64_t n = std::min(shard_size, N - start);
    if (part % launch.world != launch.rank) {  // another process's shard
      written += n;
      continue;
    }
    Tensor<std::uint8_t> images(Shape{n, s[0], s[1], s[2]});
    Tensor<std::int64_t> labels(Shape{n});
    std::vector<Tensor<float>> feats;
    for (const auto& e : encs) feats.emplace_back(Shape{n, e.tokens, e.dim});
    for (std::int64_t b0 = 0; b0 < n; b0 += batch) {
      const std::int64_t bn = std::min(batch, n - b0);
      std::vector<std::int64_t> idx(static_cast<std::size_t>(bn));
      for (std::int64_t i = 0; i < bn; ++i) idx[static_cast<std::size_t>(i)] = start + b0 + i;
      const auto b = ds.template get<float>(idx);  // [bn, C, H, W] in 0..255
      const std::int64_t px = s.numel();
      for (std::int64_t i = 0; i < bn * px; ++i) images[b0 * px + i] = static_cast<std::uint8_t>(b.x[i]);
      for (std::int64_t i = 0; i < bn; ++i) labels[b0 + i] = b.y[i];
      for (std::size_t j = 0; j < encs.size(); ++j) {
        const auto z = encs[j].encode(ctx, b.x);  // [bn, T, D]
        std::copy_n(z.data(), z.numel(), feats[j].data() + b0 * encs[j].tokens * encs[j].dim);
      }
    }
    io::SafeTensorsWriter w;
    w.add("images", images);
    w.add("labels", labels);
    for (std::size_t j = 0; j < encs.size(); ++j) w.add("features." + encs[j].name, feats[j]);
    const auto path = (fs::path(out) / shard_name(part)).string();
    w.write(path);
    written += n;
    std::printf("%swrote %s: %lld images (%lld / %lld)\n", launch.distributed() ? fmt::format("rank {}: ", launch.rank).c_str() : "", path.c_str(), static_cast<long long>(n), static_cast<long long>(written),
                static_cast<long long>(N));
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dataset = "fashion-mnist", data_dir, split = "train", enc_type, encoder_dir, output_dir;
  std::int64_t shard_size = 10000, batch = 256, limit = 0;
  int threads = 0;
  CLI::App app{"irepa-extract-features: target encoders' patch tokens for an image dataset, as safetensors shards"};
  app.add_option("--dataset", dataset, "fashion-mnist or shards (a folder of shards holding images)")->capture_default_str();
  app.add_option("--data-dir", data_dir, "the shards' folder, or Fashion-MNIST's (default: Debian's)");
  app.add_option("--split", split, "fashion-mnist: train or test")->capture_default_str();
  app.add_option("--enc-type", enc_type, "encoders, comma-separated (hog-x-g7_d128, dinov2-vit-b, ...)")->required();
  app.add_option("--encoder-dir", encoder_dir, "folder of converted ViT weights <name>.safetensors");
  app.add_option("--output-dir", output_dir, "where the shards go")->required();
  app.add_option("--shard-size", shard_size, "images per shard")->capture_default_str();
  app.add_option("--batch-size", batch, "images per encoder call")->capture_default_str();
  app.add_option("--limit", limit, "only the first N images (0: all)")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0: all cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    IREPA_CHECK(shard_size > 0 && batch > 0 && limit >= 0, "irepa-extract-features: --shard-size and --batch-size must be positive");
    auto run = [&](const auto& ds) {
      const auto encs = make_target_encoders(enc_type, ds.sample_shape()[1], encoder_dir);
      IREPA_CHECK(!encs.empty(), "irepa-extract-features: --enc-type names no encoder");
      const LaunchInfo launch = LaunchInfo::from_env();
      if (threads == 0 && launch.local_world > 1) threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / launch.local_world);
      return extract(ds, encs, output_dir, shard_size, batch, limit, threads, launch);
    };
    if (dataset == "fashion-mnist")
      return run(data::ImageDataset::fashion_mnist(data_dir.empty() ? data::kFashionMnistDir : data_dir, split));
    IREPA_CHECK(dataset == "shards", "irepa-extract-features: --dataset '{}' is not known; expected fashion-mnist or shards", dataset);
    IREPA_CHECK(!data_dir.empty(), "irepa-extract-features: --data-dir is required with --dataset shards");
    return run(data::ShardedDataset(data_dir));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "irepa-extract-features: %s\n", e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "irepa-extract-features: stopped by an unknown exception\n");
    return 1;
  }
}
