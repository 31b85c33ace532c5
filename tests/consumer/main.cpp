// Uses the umbrella header: a linear op, the gradient checker, a safetensors round trip, and a
// SiT-S/2 with the iREPA head written as the README shows it (one objective evaluation), and a
// TensorBoard event file (irepa::tensorboard, the compiled part).
#include <irepa/irepa.hpp>
#include <irepa/io/tfrecord.hpp>
#include <irepa/train/tensorboard.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>

int main() {
  irepa::CpuContext ctx(2);
  irepa::Philox rng(7);
  irepa::Tensor<double> x(irepa::Shape{3, 5}), w(irepa::Shape{4, 5}), b(irepa::Shape{4});
  rng.normal(x.view());
  rng.normal(w.view());
  rng.normal(b.view());
  irepa::Tensor<double> dx(x.shape()), dw(w.shape()), db(b.shape());
  auto r = irepa::check::gradient_check(
      [&] {
        irepa::Tensor<double> y(irepa::Shape{3, 4});
        irepa::ops::linear_forward<double>(ctx, x, w, b, y.view());
        return y;
      },
      [&](const std::vector<irepa::Tensor<double>>& g) {
        irepa::ops::linear_backward<double>(ctx, x, w, g[0], dx.view(), dw.view(), db.view());
      },
      {irepa::check::input("x", x.view(), dx.view()), irepa::check::param("w", w.view(), dw.view()),
       irepa::check::param("b", b.view(), db.view())});
  std::printf("%s", r.report().c_str());
  const auto path = (std::filesystem::temp_directory_path() / "irepa_consumer.safetensors").string();
  irepa::io::SafeTensorsWriter out;
  out.add("w", w);
  out.write(path);
  const bool same = irepa::io::SafeTensorsFile(path).load<double>("w")[7] == w[7];
  std::filesystem::remove(path);

  using Model = irepa::SiT<irepa::S, 2, irepa::iREPAHead<irepa::Conv3x3, irepa::SpatialNorm>>;
  irepa::SiTConfig cfg;
  cfg.input_size = 8;
  cfg.encoder_depth = 4;
  cfg.z_dims = {32};
  Model model(cfg);
  model.init(/*seed=*/0);
  irepa::SiTObjective obj{.path = irepa::PathType::Linear, .proj_coeff = 1.0};
  irepa::Tensor<float> lat(irepa::Shape{2, 4, 8, 8}), dino(irepa::Shape{2, 16, 32});
  irepa::Tensor<std::int64_t> labels(irepa::Shape{2});
  irepa::Philox data(3);
  data.normal(lat.view());
  data.normal(dino.view());
  data.randint(labels.view(), 0, 1000);
  irepa::Philox noise(1);
  const auto batch = irepa::upload_batch(ctx, irepa::HostBatch<float>{lat, labels, {dino}}, model.label_rows());
  const auto step = irepa::objective_step(ctx, model, obj, batch, noise).losses(ctx);
  const bool sit_ok = std::isfinite(step.total) && step.total > 0;
  std::printf("SiT-S/2 iREPA: %lld parameters, loss %.4f (denoising %.4f, alignment %.4f)\n",
              static_cast<long long>(model.num_params()), step.total, step.denoising, step.alignment);

  const auto tb_dir = std::filesystem::temp_directory_path() / "irepa_consumer_tb";
  std::filesystem::remove_all(tb_dir);
  std::string tb_path;
  {
    irepa::EventFileWriter tb(tb_dir.string());
    tb.scalars(1, {{"denoising_loss", step.denoising}});
    tb_path = tb.path();
  }
  const bool tb_ok = irepa::io::read_tfrecords(irepa::io::read_regular_file(tb_path, "consumer"), tb_path).size() == 2;
  std::filesystem::remove_all(tb_dir);
  std::printf("TensorBoard event file: %s\n", tb_ok ? "2 records" : "FAILED");

  const bool ok = r.ok() && same && sit_ok && tb_ok;
  std::printf("irepa %d.%d.%d consumer: %s\n", irepa::version_major, irepa::version_minor, irepa::version_patch, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
