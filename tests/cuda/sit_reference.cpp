// CPU reference of the whole-model CUDA test (see sit_reference.hpp).

#include "sit_reference.hpp"

#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/data/shards.hpp"
#include "irepa/train/recipes.hpp"

namespace sit_ref {

namespace {
template <class T>
irepa::Tensor<T> cast(irepa::ConstView<float> x) {
  irepa::Tensor<T> y(x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) y[i] = static_cast<T>(x.data()[i]);
  return y;
}
template <class T>
irepa::Tensor<double> widen(irepa::ConstView<T> x) {
  irepa::Tensor<double> y(x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) y[i] = static_cast<double>(x.data()[i]);
  return y;
}

template <class T>
Result run_in(const Case& c) {
  using namespace irepa;
  CpuContext ctx;
  SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, T> m(c.cfg);
  IREPA_CHECK(m.params().numel() == c.params.numel(), "sit_ref: {} parameter values for a model of {}", c.params.numel(),
              m.params().numel());
  m.params().values().copy_from(cast<T>(c.params).cview());
  m.params().zero_grad();
  const Tensor<T> x = cast<T>(c.x), t = cast<T>(c.t), noise = cast<T>(c.noise), z = cast<T>(c.z);
  const auto batch = upload_batch(ctx, HostBatch<T>{x, c.y, {z.cview()}}, m.label_rows());
  const auto st = objective_step(ctx, m, SiTObjective{}, batch, t.cview(), noise.cview());
  const StepLosses l = st.losses(ctx);
  Result r{l.total, l.denoising, l.alignment, widen<T>(st.cache.output()), widen<T>(st.cache.projected(0)),
           widen<T>(m.params().grads()), {}, {}};
  for (const auto& e : m.params().entries()) {
    r.offsets.push_back(e.offset);
    r.names.push_back(e.name);
  }
  return r;
}
}  // namespace

Result run(const Case& c, bool in_double) { return in_double ? run_in<double>(c) : run_in<float>(c); }

}  // namespace sit_ref

#include "irepa/train/optim.hpp"

namespace sit_ref {
void adamw_step(const irepa::SiTConfig& cfg, irepa::Tensor<float>& params, const irepa::Tensor<float>& grads,
                irepa::Tensor<float>& ema, double clip) {
  using namespace irepa;
  CpuContext ctx;
  SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, float> m(cfg);
  m.params().values().copy_from(params.cview());
  m.params().grads().copy_from(grads.cview());
  AdamW<float> opt(m.params(), AdamWOptions{.lr = 1e-4, .weight_decay = 0.01, .decay = decay_weights_only});
  Ema<float> e(m.params(), 0.9999);
  e.values().copy_from(ema.cview());
  opt.step(ctx, m.params(), 1e-4, clip, {&e}, 1);
  params.view().copy_from(m.params().values());
  ema.view().copy_from(e.values());
}
}  // namespace sit_ref

#include <filesystem>

namespace sit_ref {
void write_shards(const std::string& dir, std::uint64_t seed) {
  using namespace irepa;
  std::filesystem::create_directories(dir);
  Philox rng(seed, 11);
  for (int s = 0; s < 2; ++s) {
    Tensor<std::int64_t> px(Shape{12 * 64}), labels(Shape{12});
    rng.randint(px.view(), 0, 256);
    rng.randint(labels.view(), 0, 10);
    Tensor<std::uint8_t> img(Shape{12, 1, 8, 8});
    for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(px[i]);
    Tensor<float> hog(Shape{12, 16, 12});
    rng.normal(hog.view());
    io::SafeTensorsWriter w;
    w.add("images", img);
    w.add("labels", labels);
    w.add("features.hog", hog);
    w.write(dir + "/part" + std::to_string(s) + ".safetensors");
  }
}

irepa::SiTConfig train_model_config() {
  irepa::SiTConfig c;
  c.input_size = 8, c.in_channels = 1, c.num_classes = 10, c.encoder_depth = 1, c.z_dims = {12}, c.kernel_size = 3;
  c.depth = 2, c.hidden_size = 32, c.num_heads = 2, c.patch_size = 2;
  return c;
}

irepa::TrainerOptions train_options(const std::string& run_dir) {
  irepa::TrainerOptions o;
  o.run_dir = run_dir, o.batch_size = 5, o.max_train_steps = 20, o.seed = 3, o.checkpointing_steps = 10, o.log_every = 10;
  o.schedule.lr = 1e-3, o.ema_decays = {0.9}, o.quiet = true;
  o.sampling_steps = 10, o.samples_per_class = 2, o.grid.steps = 4;  // a grid at steps 10 and 20
  return o;
}

std::vector<double> train_losses_cpu(const std::string& shards, const std::string& run_dir) {
  using namespace irepa;
  CpuContext ctx(2);
  data::ShardedDataset ds(shards);
  SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, float> m(train_model_config());
  m.init(3);
  const auto r = train(ctx, train_options(run_dir), m, train_objective(), ds, {}, nlohmann::json::object());
  std::vector<double> losses;
  for (const auto& h : r.history) losses.push_back(h.total);
  return losses;
}
}  // namespace sit_ref

namespace sit_ref {
irepa::JiTConfig jit_train_model_config() {
  irepa::JiTConfig c;
  c.input_size = 8, c.in_channels = 1, c.num_classes = 10, c.encoder_depth = 2, c.z_dims = {12}, c.kernel_size = 3;
  c.depth = 3, c.hidden_size = 32, c.num_heads = 2, c.patch_size = 2, c.bottleneck_dim = 8;
  c.in_context_len = 3, c.in_context_start = 1;
  return c;
}

irepa::TrainerOptions jit_train_options(const std::string& run_dir) {
  irepa::TrainerOptions o;
  o.run_dir = run_dir, o.batch_size = 5, o.max_train_steps = 20, o.seed = 3, o.checkpointing_steps = 10, o.log_every = 10;
  o.quiet = true;
  irepa::apply_jit_recipe(o, irepa::JiTRecipe{.lr = 1e-3, .warmup_epochs = 1, .hflip = false}, 24);  // the shards hold stored features
  o.sampling_steps = 10, o.classes_in_grid = 4, o.samples_per_class = 2, o.grid = {.steps = 3, .heun = true};
  return o;
}

std::vector<double> jit_train_losses_cpu(const std::string& shards, const std::string& run_dir) {
  using namespace irepa;
  CpuContext ctx(2);
  data::ShardedDataset ds(shards);
  JiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, float> m(jit_train_model_config());
  m.init(3);
  const auto r = train(ctx, jit_train_options(run_dir), m, jit_train_objective(), ds, {}, nlohmann::json::object());
  std::vector<double> losses;
  for (const auto& h : r.history) losses.push_back(h.total);
  return losses;
}
}  // namespace sit_ref

namespace sit_ref {
irepa::data::ImageDataset online_images(std::uint64_t seed) {
  using namespace irepa;
  Philox rng(seed, 21);
  Tensor<std::uint8_t> img(Shape{12, 3, 32, 32});
  Tensor<std::int64_t> px(Shape{img.numel()}), labels(Shape{12});
  rng.randint(px.view(), 0, 256);
  rng.randint(labels.view(), 0, 10);
  for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(px[i]);
  return data::ImageDataset(std::move(img), std::move(labels));
}

irepa::TargetEncoder online_vit(std::uint64_t seed) {
  using namespace irepa;
  VitConfig vc;
  vc.embed_dim = 24, vc.depth = 2, vc.heads = 2, vc.patch = 14, vc.registers = 2;
  auto enc = std::make_shared<VitEncoder<float>>(vc);
  enc->init_random(seed, 0.05f);
  return vit_target_encoder("tiny-vit", std::move(enc));
}

irepa::SiTConfig online_model_config() {
  irepa::SiTConfig c;
  c.input_size = 32, c.in_channels = 3, c.num_classes = 10, c.encoder_depth = 1, c.z_dims = {24};
  c.depth = 2, c.hidden_size = 32, c.num_heads = 2, c.patch_size = 2;
  return c;
}

irepa::TrainerOptions online_options(const std::string& run_dir) {
  irepa::TrainerOptions o;
  o.run_dir = run_dir, o.batch_size = 4, o.max_train_steps = 6, o.seed = 3, o.checkpointing_steps = 100, o.log_every = 3;
  o.schedule.lr = 1e-3, o.ema_decays = {0.9}, o.quiet = true;
  return o;
}

std::vector<double> online_losses_cpu(const irepa::data::ImageDataset& ds, const std::vector<irepa::TargetEncoder>& online,
                                      const std::string& run_dir) {
  using namespace irepa;
  CpuContext ctx(2);
  SiT<Dynamic, DynamicPatch, REPAHead, float> m(online_model_config());
  m.init(3);
  const auto r = train(ctx, online_options(run_dir), m, SiTObjective{.proj_coeff = 1.0}, ds, online, nlohmann::json::object());
  std::vector<double> losses;
  for (const auto& h : r.history) losses.push_back(h.total);
  return losses;
}
}  // namespace sit_ref
