// irepa-bench-images: the image data path (JPEG / PNG decode, ADM center crop, channels-first)
// over an ImageFolder, in batches on --threads threads, as the trainer's loader reads it; prints
// one table row (benchmarks/reference/images_pillow.py prints Pillow's beside it).
//
//   irepa-bench-images --dir /tmp/imgbench --threads 2 --resolution 256

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <vector>

#include "irepa/data/image_folder.hpp"
#include "../examples/fail_safe.hpp"

int main(int argc, char** argv) {
  std::string dir;
  int threads = 2, repeat = 3;
  std::int64_t resolution = 256, batch = 64;
  CLI::App app{"irepa-bench-images: ImageFolder decode + center crop, images/s"};
  app.add_option("--dir", dir, "an ImageFolder root")->required();
  app.add_option("--threads", threads, "decoding threads")->capture_default_str();
  app.add_option("--resolution", resolution, "crop side")->capture_default_str();
  app.add_option("--batch-size", batch, "images per batch")->capture_default_str();
  app.add_option("--repeat", repeat, "passes over the folder")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const irepa::data::ImageFolder ds(dir, resolution, threads);
    std::vector<double> t;
    for (int r = 0; r < repeat; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (std::int64_t i0 = 0; i0 < ds.size(); i0 += batch) {
        std::vector<std::int64_t> idx(static_cast<std::size_t>(std::min(batch, ds.size() - i0)));
        std::iota(idx.begin(), idx.end(), i0);
        (void)ds.get<float>(idx);
      }
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    const double med = t[t.size() / 2];
    std::printf("| irepa | %lld | %lld | %d threads | %.3f s | %.3f s | %.1f |\n", static_cast<long long>(ds.size()),
                static_cast<long long>(resolution), threads, med, t.front(), static_cast<double>(ds.size()) / med);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "irepa-bench-images: %s\n", e.what());
    return 1;
  }
  return 0;
}
