// ViT target encoders on the GPU (label "cuda"; needs a GPU): every encoder:dinov2 / dinov3 / pe
// golden file (../shared/golden: five; or the folders given on the command line, gpu-check.sh's
// bundle: three) built as
// VitEncoder<T, Cuda>, loaded through its host twin and run on the device: the preprocessed input
// and the patch tokens against the reference's float64 outputs (which the CPU double path
// matches to ~3e-15), in double (<= 1e-9), float (<= 1e-5) and float with bf16 products
// (<= 2e-2). Then every ViT family and variant without a golden file (tests/vit_variants.hpp:
// one random checkpoint under its released names), VGG16, SAM and SAM2 against the CPU double
// path, with the same tolerances (SAM2 also against its golden file, tests/data/golden); HOG
// (float, as the reference) against its golden file and against the CPU on random images
// (<= 1e-5); and VGG, SAM, SAM2 and HOG placed on the GPU as online targets.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../vit_variants.hpp"
#include "cpu_reference.hpp"
#include "cuda_test_support.hpp"
#include "golden/encoders.hpp"
#include "irepa/models/hog.hpp"
#include "irepa/models/sam2_encoder.hpp"
#include "irepa/models/sam_encoder.hpp"
#include "irepa/models/target_encoder.hpp"
#include "irepa/models/vgg_encoder.hpp"
#include "irepa/ops/cuda/tensor_ops.cuh"

using namespace irepa;

namespace {

bool is_vit_file(const io::SafeTensorsFile& f) {
  const auto m = f.metadata("model").value_or("");
  return m == "encoder:dinov2" || m == "encoder:dinov3" || m == "encoder:pe";
}

template <class T>
void run_file(const CudaContext& ctx, const std::string& name, const io::SafeTensorsFile& f, double tol, const char* label) {
  const auto rows = golden::check_vit_encoder<T>(f, tol, ctx);
  double worst = 0;
  for (const auto& r : rows) {
    IREPA_CUDA_EXPECT(r.ok(), "golden %s (%s): %s relative error %.3g (tolerance %.0e)", name.c_str(), label, r.name.c_str(), r.rel,
                      r.tol);
    worst = std::max(worst, r.rel);
  }
  IREPA_CUDA_EXPECT(rows.size() >= 2, "golden %s: only %zu rows compared", name.c_str(), rows.size());
  std::printf("golden %-40s on the GPU in %-12s %zu tensors, largest relative error %.2g\n", name.c_str(), label, rows.size(), worst);
}

/// ||a - b|| / ||b|| of a device result against a host reference.
template <class T>
double rel_to(const CudaContext& ctx, const Tensor<T, Cuda>& got, const Tensor<double>& want) {
  const Tensor<T> h = to_host(ctx, got.cview());
  double d = 0, n = 0;
  for (std::int64_t i = 0; i < want.numel(); ++i) {
    const double x = static_cast<double>(h[i]), y = want[i];
    d += (x - y) * (x - y), n += y * y;
  }
  return std::sqrt(d / std::max(n, 1e-300));
}

/// One encoder type on the GPU (double, float, float with bf16 products) against the CPU double
/// forward of the same checkpoint (cpu_reference.cpp: host code stays out of nvcc);
/// load(T, D) builds one and loads it.
template <template <class, class> class Enc, class Load>
void compare_on_gpu(CudaContext& ctx, const std::string& name, const Tensor<double>& images, const Tensor<double>& want,
                    const Load& load) {
  Tensor<float> imf(images.shape());
  for (std::int64_t i = 0; i < images.numel(); ++i) imf[i] = static_cast<float>(images[i]);  // 0..255 integers: exact
  const Tensor<double, Cuda> imd_dev = to_device(ctx, images.cview());
  const Tensor<float, Cuda> imf_dev = to_device(ctx, imf.cview());
  ctx.set_matmul_precision(MatmulPrecision::fp32);
  const double ed = rel_to(ctx, load(static_cast<Enc<double, Cuda>*>(nullptr)).encode(ctx, imd_dev.cview()), want);
  const double ef = rel_to(ctx, load(static_cast<Enc<float, Cuda>*>(nullptr)).encode(ctx, imf_dev.cview()), want);
  ctx.set_matmul_precision(MatmulPrecision::bf16);
  const double eb = rel_to(ctx, load(static_cast<Enc<float, Cuda>*>(nullptr)).encode(ctx, imf_dev.cview()), want);
  ctx.set_matmul_precision(MatmulPrecision::fp32);
  IREPA_CUDA_EXPECT(ed <= 1e-9, "%s: GPU double relative error %.3g (tolerance 1e-9)", name.c_str(), ed);
  IREPA_CUDA_EXPECT(ef <= 1e-5 && ef > 0, "%s: GPU float relative error %.3g (tolerance 1e-5)", name.c_str(), ef);
  IREPA_CUDA_EXPECT(eb <= 2e-2, "%s: GPU float+bf16 relative error %.3g (tolerance 2e-2)", name.c_str(), eb);
  std::printf("%-40s on the GPU: double %.2g, float %.2g, float+bf16 %.2g (relative to the CPU double path)\n", name.c_str(), ed, ef,
              eb);
}

/// 0..255 integer images [B, 3, R, R].
Tensor<double> random_images(std::int64_t B, std::int64_t R, std::uint64_t seed) {
  Tensor<double> im(Shape{B, 3, R, R});
  Philox(seed).uniform(im.view(), 0.0, 256.0);
  for (std::int64_t i = 0; i < im.numel(); ++i) im[i] = std::min(std::floor(im[i]), 255.0);
  return im;
}

void check_variants(CudaContext& ctx) {
  const Tensor<double> images = random_images(2, 256, 91);
  std::uint64_t seed = 500;
  for (const auto& v : test::small_vit_variants()) {
    const auto path = std::filesystem::temp_directory_path() / ("irepa_cuda_vitvar_" + std::to_string(seed) + ".safetensors");
    write_random_vit_checkpoint(v.config, path.string(), seed++, 0.3f);
    const io::SafeTensorsFile f(path.string());
    compare_on_gpu<VitEncoder>(ctx, v.name, images, cpu_ref::vit_encode(v.config, path.string(), images), [&](auto* tag) {
      std::remove_pointer_t<decltype(tag)> e(v.config);
      e.load(f);
      return e;
    });
    std::filesystem::remove(path);
  }
}

/// An encoder's parameters (host) written under their names to a temporary .safetensors.
template <class Enc>
std::filesystem::path write_params(const Enc& host, const std::string& stem) {
  io::SafeTensorsWriter wr;
  io::add_params(wr, host.params());
  const auto path = std::filesystem::temp_directory_path() / (stem + ".safetensors");
  wr.write(path.string());
  return path;
}

void check_vgg(CudaContext& ctx) {
  const VggConfig cfg = vgg_config_from_name("vgg-cnn-16", 64);
  auto host = std::make_shared<VggEncoder<float>>(cfg);
  Philox(17).normal(host->params().values(), 0.0f, 0.03f);
  const auto path = write_params(*host, "irepa_cuda_vgg");
  const io::SafeTensorsFile f(path.string());
  const Tensor<double> images = random_images(2, 64, 92);
  const Tensor<double> want = cpu_ref::vgg_encode(cfg, path.string(), images);
  compare_on_gpu<VggEncoder>(ctx, "vgg-cnn-16 (VGG16 pool4, 64 x 64)", images, want, [&](auto* tag) {
    std::remove_pointer_t<decltype(tag)> e(cfg);
    e.load(f);
    return e;
  });
  // As an online target of a GPU model, VGG is placed there (its twin built from the host model).
  const std::vector<TargetEncoder> online{TargetEncoder{"vgg-cnn-16", host->tokens(), host->dim(), {}, std::shared_ptr<const VggEncoder<float>>(host)}};
  const auto placed = place_encoders<Cuda>(online);
  const std::string where = describe_placement(placed);
  IREPA_CUDA_EXPECT(where == "vgg-cnn-16 on cuda", "VGG online target placed as '%s', expected 'vgg-cnn-16 on cuda'", where.c_str());
  IREPA_CUDA_EXPECT(!placed[0].on_host(), "VGG online target left on the host");
  std::filesystem::remove(path);
}

/// A placed online target must run on the GPU and say so in the log line.
template <class Enc>
void expect_placed_on_gpu(const std::string& name, const std::shared_ptr<const Enc>& host) {
  const std::vector<TargetEncoder> online{TargetEncoder{name, host->tokens(), host->dim(), {}, host}};
  const auto placed = place_encoders<Cuda>(online);
  const std::string where = describe_placement(placed), want = name + " on cuda";
  IREPA_CUDA_EXPECT(where == want && !placed[0].on_host(), "%s online target placed as '%s', expected '%s'", name.c_str(), where.c_str(),
                    want.c_str());
}

/// SAM: a small one with windows that need padding, a global block, relative positions and the
/// neck, random weights under HF's names, against the CPU double path; then placed on the GPU.
void check_sam(CudaContext& ctx) {
  SamConfig cfg;
  cfg.hidden = 32, cfg.heads = 2, cfg.depth = 3, cfg.patch = 8, cfg.image_size = 112, cfg.window = 4, cfg.out_channels = 16;
  cfg.global_attn = {1}, cfg.resolution = 64;  // a 14 x 14 grid in windows of 4 (padded to 16); tokens resized to 4 x 4
  auto host = std::make_shared<SamEncoder<float>>(cfg);
  Philox(18).normal(host->params().values(), 0.0f, 0.2f);
  const auto path = write_params(*host, "irepa_cuda_sam");
  const io::SafeTensorsFile f(path.string());
  const Tensor<double> images = random_images(2, 64, 94);
  compare_on_gpu<SamEncoder>(ctx, "sam (14 x 14 grid, windows of 4, 1 global)", images, cpu_ref::sam_encode(cfg, path.string(), images),
                             [&](auto* tag) {
                               std::remove_pointer_t<decltype(tag)> e(cfg);
                               e.load(f);
                               return e;
                             });
  expect_placed_on_gpu<SamEncoder<float>>("sam-vit-b", host);
  std::filesystem::remove(path);
}

/// SAM2's Hiera trunk: the golden file (q-pooled windows with padding, a global block) on the GPU,
/// and a random one against the CPU double path in every precision; then placed on the GPU.
void check_sam2(CudaContext& ctx, const std::filesystem::path& golden_path) {
  const io::SafeTensorsFile g(golden_path.string());
  ctx.set_matmul_precision(MatmulPrecision::fp32);
  for (const auto& [tol, rows, label] : {std::tuple{1e-9, golden::check_sam2_encoder<double>(g, 1e-9, ctx), "double"},
                                         std::tuple{1e-5, golden::check_sam2_encoder<float>(g, 1e-5, ctx), "float"}}) {
    for (const auto& r : rows)
      IREPA_CUDA_EXPECT(r.ok(), "golden encoder_sam2_tiny on the GPU (%s): %s relative error %.3g (tolerance %.0e)", label, r.name.c_str(),
                        r.rel, tol);
    std::printf("golden %-40s on the GPU in %-12s patch tokens relative error %.2g\n", "encoder_sam2_tiny.safetensors", label,
                rows.back().rel);
  }
  Sam2Config cfg;
  cfg.blocks = {1, 2, 2, 2}, cfg.dims = {8, 16, 24, 32}, cfg.heads = {1, 2, 3, 4}, cfg.windows = {4, 4, 6, 4}, cfg.global_attn = {4};
  cfg.resolution = 48;  // a 24 x 24 grid -> 12 -> 6 (global) -> 3, in windows padded at the last stage
  auto host = std::make_shared<Sam2Encoder<float>>(cfg);
  Philox(19).normal(host->params().values(), 0.0f, 0.2f);
  const auto path = write_params(*host, "irepa_cuda_sam2");
  const io::SafeTensorsFile f(path.string());
  host->load(f);  // prepares the position grid that placement copies
  const Tensor<double> images = random_images(2, 48, 95);
  compare_on_gpu<Sam2Encoder>(ctx, "sam2 (Hiera, 4 stages, 7 blocks)", images, cpu_ref::sam2_encode(cfg, path.string(), images),
                              [&](auto* tag) {
                                std::remove_pointer_t<decltype(tag)> e(cfg);
                                e.load(f);
                                return e;
                              });
  expect_placed_on_gpu<Sam2Encoder<float>>("sam2-vit-s", host);
  std::filesystem::remove(path);
}

void check_hog(CudaContext& ctx, const std::vector<std::filesystem::path>& dirs) {
  int files = 0;
  for (const auto& d : dirs) {
    const auto path = d / "encoder_hog_g8_d32.safetensors";
    if (!std::filesystem::exists(path)) continue;
    const auto rows = golden::check_hog(io::SafeTensorsFile(path.string()), 1e-5, ctx);
    for (const auto& r : rows)
      IREPA_CUDA_EXPECT(r.ok(), "golden encoder_hog_g8_d32 on the GPU: %s relative error %.3g (tolerance %.0e)", r.name.c_str(), r.rel,
                        r.tol);
    std::printf("golden %-40s on the GPU: patch tokens relative error %.2g\n", "encoder_hog_g8_d32.safetensors", rows.back().rel);
    ++files;
    break;
  }
  IREPA_CUDA_EXPECT(files == 1, "the HOG golden file encoder_hog_g8_d32.safetensors was not found in the folders given");
  // The reference's default on RGB, and the Fashion-MNIST job's on grey 28 x 28 images.
  for (const auto& [name, res, channels] : {std::tuple{"hog-x-g16_d128", 256, 3}, std::tuple{"hog-x-g7_d32", 28, 1}}) {
    Tensor<float> images(Shape{3, channels, res, res});
    Philox(93).uniform(images.view(), 0.0f, 256.0f);
    for (std::int64_t i = 0; i < images.numel(); ++i) images[i] = std::min(std::floor(images[i]), 255.0f);
    const Tensor<float> want = cpu_ref::hog_encode(name, res, images);
    const HogEncoder enc(name, res);
    const Tensor<float, Cuda> on_device = to_device(ctx, images.cview());
    const Tensor<float> got = to_host(ctx, enc.encode(ctx, on_device.cview()).cview());
    double d = 0, n = 0;
    for (std::int64_t i = 0; i < want.numel(); ++i) d += std::pow(double(got[i]) - double(want[i]), 2), n += std::pow(double(want[i]), 2);
    const double e = std::sqrt(d / n);
    IREPA_CUDA_EXPECT(e <= 1e-5, "%s on the GPU: relative error %.3g against the CPU (tolerance 1e-5)", name, e);
    std::printf("%-40s on the GPU: relative error %.2g against the CPU\n", name, e);
  }
  const auto hog = std::make_shared<const HogEncoder>("hog-x-g16_d128", 256);
  const std::vector<TargetEncoder> online{TargetEncoder{hog->name(), hog->tokens(), hog->dim(), {}, hog}};
  const std::string where = describe_placement(place_encoders<Cuda>(online));
  IREPA_CUDA_EXPECT(where == "hog-x-g16_d128 on cuda", "HOG online target placed as '%s', expected 'hog-x-g16_d128 on cuda'",
                    where.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (!cuda_test::have_device()) return 1;
  std::vector<std::filesystem::path> dirs;
  for (int i = 1; i < argc; ++i) dirs.emplace_back(argv[i]);
  if (dirs.empty()) dirs = {IREPA_GOLDEN_DIR};
  int files = 0;
  try {
    CudaContext ctx;
    for (const auto& d : dirs) {
      if (!std::filesystem::is_directory(d)) continue;
      for (const auto& e : std::filesystem::directory_iterator(d)) {
        const std::string name = e.path().filename().string();
        if (!name.starts_with("encoder_") || e.path().extension() != ".safetensors") continue;
        const io::SafeTensorsFile f(e.path().string());
        if (!is_vit_file(f)) continue;
        ctx.set_matmul_precision(MatmulPrecision::fp32);
        run_file<double>(ctx, name, f, 1e-9, "double");
        run_file<float>(ctx, name, f, 1e-5, "float");
        ctx.set_matmul_precision(MatmulPrecision::bf16);
        run_file<float>(ctx, name, f, 2e-2, "float+bf16");
        ++files;
      }
    }
    check_variants(ctx);
    check_vgg(ctx);
    check_sam(ctx);
    check_sam2(ctx, [&] {  // in the folders given (gpu-check's bundle), else the repository's tests/data/golden
      for (const auto& d : dirs)
        if (std::filesystem::exists(d / "encoder_sam2_tiny.safetensors")) return d / "encoder_sam2_tiny.safetensors";
      return std::filesystem::path(IREPA_TEST_DATA_DIR) / "golden" / "encoder_sam2_tiny.safetensors";
    }());
    check_hog(ctx, dirs);
  } catch (const std::exception& e) {
    std::printf("FAILED with an exception: %s\n", e.what());
    return 1;
  }
  IREPA_CUDA_EXPECT(files >= 3, "only %d ViT encoder golden files found (folders given or built in)", files);
  return cuda_test::finish("cuda_encoders");
}
