// ViT target encoders on the GPU (label "cuda"; needs a GPU): every encoder:dinov2 / dinov3 / pe
// golden file (../shared/golden: five; or the folders given on the command line, gpu-check.sh's
// bundle: three) built as
// VitEncoder<T, Cuda>, loaded through its host twin and run on the device: the preprocessed input
// and the patch tokens against the reference's float64 outputs (which the CPU double path
// matches to ~3e-15), in double (<= 1e-9), float (<= 1e-5) and float with bf16 products
// (<= 2e-2).

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "golden/encoders.hpp"
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
  } catch (const std::exception& e) {
    std::printf("FAILED with an exception: %s\n", e.what());
    return 1;
  }
  IREPA_CUDA_EXPECT(files >= 3, "only %d ViT encoder golden files found (folders given or built in)", files);
  return cuda_test::finish("cuda_encoders");
}
