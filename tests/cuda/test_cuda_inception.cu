// The FID Inception-v3 on the GPU: the ops it adds (rectangular and strided convs, window pools,
// channel concatenation and slicing, TF1 resizing) against the CPU double path on fresh random
// inputs, the whole network with random weights in double (<= 1e-12) and float with FP32
// products (<= 1e-5; what irepa-eval runs) against the CPU double forward, then the golden file
// on the GPU when a folder given on the command line (or ../shared/golden) has it.
//
//   test_cuda_inception [golden-folder...]

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "cuda_test_support.hpp"
#include "golden/inception.hpp"
#include "inception_reference.hpp"
#include "irepa/models/inception_v3.hpp"
#include "irepa/ops/cuda/tensor_ops.cuh"
#include "vae_reference.hpp"

using namespace irepa;

namespace {

using cuda_test::rng, cuda_test::randn, cuda_test::up, cuda_test::rel;

template <class T>
void check_ops(const CudaContext& ctx, double tol, const char* label) {
  struct Case {
    std::int64_t kh, kw;
    ops::Conv2dSpec s;
  };
  for (const Case& c : {Case{1, 7, {1, 0, 0, 3, 3}}, Case{7, 1, {1, 3, 3, 0, 0}}, Case{3, 3, {2, 0, 0, 0, 0}}, Case{3, 1, {1, 1, 1, 0, 0}}}) {
    const auto x = randn(Shape{2, 17, 13, 9}), w = randn(Shape{6, 9, c.kh, c.kw}, 0.2), b = randn(Shape{6});
    const auto want = vae_ref::conv2d(x, w, b, c.s);
    Tensor<T, Cuda> y(want.shape());
    ops::conv2d_forward<T>(ctx, up<T>(ctx, x).cview(), up<T>(ctx, w).cview(), up<T>(ctx, b).cview(), c.s, y.view());
    const double e = rel<T>(ctx, y.cview(), want);
    IREPA_CUDA_EXPECT(e <= tol, "conv2d_forward %s (%lldx%lld, stride %lld): relative error %.3g", label, (long long)c.kh, (long long)c.kw,
                      (long long)c.s.stride, e);
  }
  const auto x = randn(Shape{2, 9, 8, 5});
  for (const auto mode : {ops::PoolMode::Max, ops::PoolMode::AvgInImage})
    for (const ops::Pool2dSpec s : {ops::Pool2dSpec{3, 1, 1, mode}, ops::Pool2dSpec{3, 2, 0, mode}, ops::Pool2dSpec{8, 1, 0, mode}}) {
      const auto want = inception_ref::pool2d(x, s);
      Tensor<T, Cuda> y(want.shape());
      ops::pool2d_forward<T>(ctx, up<T>(ctx, x).cview(), s, y.view());
      IREPA_CUDA_EXPECT(rel<T>(ctx, y.cview(), want) <= tol, "pool2d_forward %s (kernel %lld, stride %lld, %s)", label, (long long)s.kernel,
                        (long long)s.stride, mode == ops::PoolMode::Max ? "max" : "average");
    }
  const auto a = randn(Shape{2, 3, 4, 2}), b = randn(Shape{2, 3, 4, 5});
  Tensor<T, Cuda> cat(Shape{2, 3, 4, 7}), back(Shape{2, 3, 4, 5});
  ops::copy_channels<T>(ctx, up<T>(ctx, a).cview(), 0, cat.view());
  ops::copy_channels<T>(ctx, up<T>(ctx, b).cview(), 2, cat.view());
  ops::slice_channels<T>(ctx, cat.cview(), 2, back.view());
  IREPA_CUDA_EXPECT(rel<T>(ctx, back.cview(), b) <= tol, "copy_channels / slice_channels %s", label);
  const auto img = randn(Shape{2, 3, 21, 16}, 50.0);
  const auto want = inception_ref::resize_tf1(img, 299, 299);
  const auto got = ops::interpolate<T>(ctx, up<T>(ctx, img).cview(), 299, 299, ops::ResizeMode::BilinearTf1);
  IREPA_CUDA_EXPECT(rel<T>(ctx, got.cview(), want) <= tol, "interpolate TF1 bilinear %s", label);
}

void check_model(CudaContext& ctx) {
  const auto path = (std::filesystem::temp_directory_path() / ("irepa_cuda_inception_" + std::to_string(::getpid()) + ".safetensors")).string();
  {
    InceptionV3<double> host;
    host.init_random(rng().seed() ^ 0x1ce);
    io::SafeTensorsWriter w;
    host.params().for_each([&](std::string_view n, TensorView<double> v, TensorView<double>) { w.add<double>(n, v); });
    w.write(path);
  }
  Tensor<double> images(Shape{3, 64, 48, 3});
  rng().uniform(images.view(), 0.0, 256.0);
  for (std::int64_t i = 0; i < images.numel(); ++i) images[i] = std::floor(images[i]);
  Tensor<double> p3, sp, lg;
  inception_ref::forward(path, images, p3, sp, lg);
  const io::SafeTensorsFile f(path);
  auto run = [&]<class T>(T*, double tol, const char* what) {
    ctx.set_matmul_precision(MatmulPrecision::fp32);
    InceptionV3<T, Cuda> m;
    m.load(f);
    const auto out = m.forward(ctx, up<T>(ctx, images).cview());
    const double e1 = rel<T>(ctx, out.pool3.cview(), p3), e2 = rel<T>(ctx, out.spatial.cview(), sp), e3 = rel<T>(ctx, out.logits.cview(), lg);
    IREPA_CUDA_EXPECT(e1 <= tol && e2 <= tol && e3 <= tol, "Inception in %s: pool3 %.3g, spatial %.3g, logits %.3g (tolerance %.0e)", what, e1,
                      e2, e3, tol);
    std::printf("Inception-v3 on the GPU in %-6s pool3 %.2g, spatial %.2g, logits %.2g against the CPU in double\n", what, e1, e2, e3);
  };
  run(static_cast<double*>(nullptr), 1e-12, "double");
  run(static_cast<float*>(nullptr), 1e-5, "float");
  std::filesystem::remove(path);
}

}  // namespace

int main(int argc, char** argv) {
  if (!cuda_test::have_device()) return 1;
  std::vector<std::filesystem::path> dirs;
  for (int i = 1; i < argc; ++i) dirs.emplace_back(argv[i]);
  if (dirs.empty()) dirs = {IREPA_GOLDEN_DIR};
  try {
    CudaContext ctx;
    check_ops<double>(ctx, 1e-13, "double");
    check_ops<float>(ctx, 1e-5, "float");
    check_model(ctx);
    bool golden = false;
    for (const auto& d : dirs) {
      const auto p = d / "inception_fid_random.safetensors";
      if (!std::filesystem::exists(p)) continue;
      const io::SafeTensorsFile f(p.string());
      for (const auto& [tol, is_double] : {std::pair{1e-9, true}, std::pair{1e-4, false}}) {
        const auto rows = is_double ? golden::check_inception_fid<double>(f, tol, ctx) : golden::check_inception_fid<float>(f, tol, ctx);
        for (const auto& r : rows)
          IREPA_CUDA_EXPECT(r.ok(), "golden inception (%s): %s %.3g (tolerance %.0e)", is_double ? "double" : "float", r.name.c_str(), r.rel,
                            r.tol);
        std::printf("golden inception_fid_random on the GPU in %s: %zu tensors compared\n", is_double ? "double" : "float", rows.size());
      }
      golden = true;
      break;
    }
    if (!golden) std::printf("inception_fid_random.safetensors not in the folders given: the golden file is checked on the CPU only\n");
  } catch (const std::exception& e) {
    std::printf("FAILED with an exception: %s\n", e.what());
    return 1;
  }
  return cuda_test::finish("cuda_inception");
}
