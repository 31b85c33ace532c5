// irepa-train-jit end to end: a run resumed from its middle checkpoint ends bit-identical to the
// run that went straight through (flips, label drop, both EMAs, optimizer, RNG), with the
// shipped configs/jit_irepa.yaml; a small iREPA JiT with the online HOG target learns
// Fashion-MNIST in 200 steps; unknown keys and bad values are refused.

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <vector>
#include <fstream>

#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "generate_job.hpp"
#include "irepa/io/npz.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/io/tfrecord.hpp"
#include "test_support.hpp"
#include "tool_test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

using test::slurp;

namespace {
int run(const std::string& args, const fs::path& log) { return test::run_tool(IREPA_TRAIN_JIT_TOOL, args, log); }
}  // namespace

TEST_CASE("irepa-train-jit: resume is bit-identical through the command line, with the shipped iREPA config", "[train][jit][tool]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_train_jit_cli_" + std::to_string(test::rng().seed()));
  for (int s = 0; s < 2; ++s)  // 2 shards of 10 RGB images [3, 16, 16] and labels
    test::write_rgb_shard(dir / "shards" / ("part" + std::to_string(s) + ".safetensors"), 10, 16, 5);
  const std::string common = "--data_path " + (dir / "shards").string() + " --output_dir " + (dir / "out").string() +
                             " --config " + IREPA_SOURCE_DIR + "/configs/jit_irepa.yaml" +
                             " --model custom --depth 3 --hidden_size 32 --num_heads 2 --patch_size 4 --bottleneck_dim 6"
                             " --in_context_len 2 --in_context_start 1 --class_num 5 --encoder_depth 2 --enc_type hog-x-g4_d32"
                             " --batch_size 4 --checkpointing_steps 6 --log_freq 4 --threads 2 --lr 1e-3 --warmup_epochs 0.5"
                             " --ema_decay1 0.9 --ema_decay2 0.8 --seed 5 --sample_grid_freq 12 --sample_grid_per_class 2"
                             " --num_sampling_steps 3 --cfg 1.5";
  REQUIRE(run(common + " --exp_name straight --max_train_steps 12", dir / "a.log") == 0);
  fs::create_directories(dir / "out" / "resumed" / "checkpoints");
  fs::copy_file(dir / "out" / "straight" / "checkpoints" / "0000006.safetensors",
                dir / "out" / "resumed" / "checkpoints" / "0000006.safetensors");
  REQUIRE(run(common + " --exp_name resumed --max_train_steps 12 --resume_step 6", dir / "b.log") == 0);

  io::SafeTensorsFile a((dir / "out" / "straight" / "checkpoints" / "0000012.safetensors").string());
  io::SafeTensorsFile b((dir / "out" / "resumed" / "checkpoints" / "0000012.safetensors").string());
  REQUIRE(a.names() == b.names());
  std::size_t emas = 0;
  for (const auto& k : a.names()) {
    INFO(k);
    CHECK(test::rel_error(a.load<double>(k), b.load<double>(k)) == 0.0);
    emas += k.starts_with("ema.") ? 1 : 0;
  }
  CHECK(emas > 0);
  CHECK(a.contains("model.in_context_posemb"));
  CHECK(a.contains("model.projectors.0.projection_layer.weight"));  // conv projector from the YAML file
  // The sample grid from the first EMA: identical too, and a real image of 5 rows of 2.
  const std::string grid = slurp(dir / "out" / "straight" / "samples" / "0000012.png");
  CHECK(grid.size() > 100);
  CHECK(grid == slurp(dir / "out" / "resumed" / "samples" / "0000012.png"));
  // Warm-up over half an epoch (an epoch is 5 steps: 3 warm-up steps), per iteration from 0, then constant.
  const std::string log = slurp(dir / "out" / "straight" / "log.jsonl");
  CHECK(log.find("\"lr\":0") != std::string::npos);
  CHECK(log.find("\"lr\":0.001") != std::string::npos);
  const std::string args = slurp(dir / "out" / "straight" / "args.json");
  CHECK(args.find("\"spnorm_method\": \"zscore\"") != std::string::npos);  // from the YAML file
  CHECK(args.find("\"max_train_steps\": \"12\"") != std::string::npos);
  // --report_to all (the default) writes TensorBoard event files beside log.jsonl; the same
  // trainer writes them as irepa-train's (decoded record by record in test_train_cli).
  std::size_t events = 0;
  for (const auto& e : fs::directory_iterator(dir / "out" / "straight")) {
    if (!e.path().filename().string().starts_with("events.out.tfevents.")) continue;
    ++events;
    const auto recs = io::read_tfrecords(slurp(e.path()), e.path().string());
    CHECK(recs.size() >= 12 + 2);  // version, settings, one per logged step (and the grid)
  }
  CHECK(events == 1);

  // Errors name what is wrong.
  {
    std::ofstream y(dir / "bad.yaml");
    y << "enable_repa: true\nblrr: 0.1\n";
  }
  CHECK(run("--config " + (dir / "bad.yaml").string() + " --data_path " + (dir / "shards").string(), dir / "c.log") != 0);
  CHECK(slurp(dir / "c.log").find("'blrr', which is not a flag") != std::string::npos);
  CHECK(run(common + " --exp_name x --sampling_method ddim", dir / "d.log") != 0);
  CHECK(slurp(dir / "d.log").find("'ddim' is not known") != std::string::npos);
  CHECK(run("--data_path " + (dir / "shards").string() + " --output_dir " + (dir / "out").string() + " --model JiT-B/8",
            dir / "e.log") != 0);
  CHECK(slurp(dir / "e.log").find("patch size must be 16 or 32") != std::string::npos);
  CHECK(run(common + " --exp_name x --device tpu", dir / "f.log") != 0);
  CHECK(slurp(dir / "f.log").find("--device 'tpu' is not known; expected cpu, cuda or cuda:N") != std::string::npos);
  CHECK(run(common + " --exp_name x --matmul_precision bf16", dir / "g.log") != 0);  // on the CPU
  CHECK(slurp(dir / "g.log").find("--matmul-precision bf16 runs on a GPU only") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "out" / "x"));

  // The reference's jit/configs/{irepa,repa}.yaml key for key, and its other flags: accepted (the
  // command line wins over the file); the ones not built are refused with the reason.
  const std::string bare = "--data_path " + (dir / "shards").string() + " --output_dir " + (dir / "out").string() +
                           " --model custom --depth 3 --hidden_size 32 --num_heads 2 --patch_size 4 --bottleneck_dim 6"
                           " --in_context_len 2 --in_context_start 1 --class_num 5 --encoder_depth 2 --enc_type hog-x-g4_d32"
                           " --batch_size 4 --log_freq 4 --threads 2 --max_train_steps 1 --projector_dim 16";
  {
    std::ofstream y(dir / "ref_irepa.yaml");
    y << "# iREPA configuration (improved)\n\nprojection_layer_type: conv\nproj_coeff: \"0.5\"\nspnorm_method: zscore\nenable_repa: true\n";
    std::ofstream r(dir / "ref_repa.yaml");
    r << "# REPA configuration (original)\n\nprojection_layer_type: mlp\nproj_coeff: \"0.5\"\nspnorm_method: none\nenable_repa: true\n";
  }
  for (const char* cfg : {"ref_irepa", "ref_repa"}) {
    const int st = run(bare + " --config " + (dir / (std::string(cfg) + ".yaml")).string() + " --exp_name " + cfg +
                           " --num_workers 2 --pin_mem --no_pin_mem --cls_token_weight 0.1 --zscore_proj_skip_std --report_to none"
                           " --world_size 1 --local_rank 0 --dist_url env:// --save_last_freq 1 --num_images 8 --eval_freq 1 --gen_bsz 4",
                       dir / (std::string(cfg) + ".log"));
    INFO(cfg << ": " << slurp(dir / (std::string(cfg) + ".log")));
    REQUIRE(st == 0);
    const std::string run_args = slurp(dir / "out" / cfg / "args.json");
    CHECK(run_args.find("\"enable_repa\": \"true\"") != std::string::npos);
    CHECK(run_args.find(std::string("\"spnorm_method\": \"") + (cfg == std::string("ref_irepa") ? "zscore" : "none")) != std::string::npos);
  }
  for (const auto& [flag, want] : std::vector<std::pair<std::string, std::string>>{
           {" --online_eval", "the reference has statistics for 256 and 512 pixels only (these images are 16)"},
           {" --attn_dropout 0.1", "dropout is not implemented"},
           {" --start_epoch 3", "--resume_step N continues"},
           {" --proj_coeff 0.5,0.5", "--projection_loss_type 'cosine' 1 loss types"}}) {
    INFO(flag);
    CHECK(WEXITSTATUS(run(bare + " --exp_name refused" + flag, dir / "r.log")) == 1);  // refused: status 1, not a crash
    CHECK(slurp(dir / "r.log").find(want) != std::string::npos);
  }

  // --device cuda: trains on a GPU when there is one; otherwise a clear error and no checkpoint.
  const int gpu = run(common + " --exp_name gpu --device cuda --max_train_steps 2", dir / "h.log");
  INFO(slurp(dir / "h.log"));
  if (gpu == 0) {
    CHECK(fs::exists(dir / "out" / "gpu" / "checkpoints" / "0000002.safetensors"));
  } else {
    const std::string h = slurp(dir / "h.log");
    // A build without CUDA says so; a CUDA error names its cudaError code.
    CHECK((h.find("needs a build with CUDA") != std::string::npos || h.find("cudaError") != std::string::npos));
    CHECK_FALSE(fs::exists(dir / "out" / "gpu" / "checkpoints" / "0000002.safetensors"));
  }
  fs::remove_all(dir);
}

TEST_CASE("irepa-train-jit --online_eval logs FID and IS, and --evaluate_gen scores a checkpoint to the same bits",
          "[train][jit][tool][online]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_train_jit_eval_" + std::to_string(test::rng().seed()));
  test::write_rgb_shard(dir / "shards" / "part0.safetensors", 20, 16, 5);
  test::write_fid_stats(dir / "stats.npz");
  // 20 images at 4 per step: an epoch is 5 steps, so --eval_freq 1 evaluates after steps 5 and 6 (the last).
  const std::string common = "--data_path " + (dir / "shards").string() + " --output_dir " + (dir / "out").string() +
                             " --model custom --depth 2 --hidden_size 32 --num_heads 2 --patch_size 4 --bottleneck_dim 6"
                             " --in_context_len 2 --in_context_start 1 --class_num 5 --batch_size 4 --checkpointing_steps 3"
                             " --log_freq 2 --threads 2 --lr 1e-3 --ema_decay1 0.9 --seed 3 --num_sampling_steps 2 --cfg 1.5"
                             " --gen_bsz 8 --eval_freq 1 --inception random:5";
  const std::string scored = common + " --num_images 20 --fid_stats " + (dir / "stats.npz").string();  // 2 images per IS split
  REQUIRE(run(scored + " --exp_name a --max_train_steps 6 --online_eval", dir / "a.log") == 0);
  auto scores = [&](const std::string& exp) {
    std::vector<std::pair<std::int64_t, std::pair<double, double>>> out;
    std::ifstream log(dir / "out" / exp / "log.jsonl");
    for (std::string l; std::getline(log, l);) {
      const auto j = nlohmann::json::parse(l);
      if (j.contains("fid_cfg1.5_res16")) out.push_back({j["step"].get<std::int64_t>(), {j["fid_cfg1.5_res16"], j["is_cfg1.5_res16"]}});
      else CHECK_FALSE(j.contains("is_cfg1.5_res16"));
    }
    return out;
  };
  const auto a = scores("a");
  INFO(slurp(dir / "a.log"));
  REQUIRE(a.size() == 2);
  CHECK(a[0].first == 5);
  CHECK(a[1].first == 6);
  for (const auto& [step, v] : a) {
    CHECK(std::isfinite(v.first));
    CHECK(v.first > 0);
    CHECK(v.second >= 1.0 - 1e-12);  // exp(mean KL) >= 1; near 1 with random weights (near-uniform softmax)
  }
  CHECK(a[0].second.first != a[1].second.first);  // another step: other weights and noise
  CHECK(slurp(dir / "a.log").find("FID: ") != std::string::npos);

  // --evaluate_gen: the checkpoint of step 6 scored again (its EMA, the same noise): the same bits,
  // and nothing trained or written besides the log.
  REQUIRE(run(scored + " --exp_name a --max_train_steps 6 --resume_step 6 --evaluate_gen", dir / "b.log") == 0);
  const auto b = scores("a");
  REQUIRE(b.size() == 3);
  CHECK(b[2].first == 6);
  CHECK(b[2].second.first == a[1].second.first);
  CHECK(b[2].second.second == a[1].second.second);
  CHECK_FALSE(fs::exists(dir / "out" / "a" / "checkpoints" / "0000007.safetensors"));

  // irepa-generate on the JiT checkpoint: class-balanced labels, the JiT sampler and rounded uint8,
  // as the engine's evaluate draws them; batch 0 rebuilt here from the checkpoint's EMA.
  REQUIRE(test::run_tool(IREPA_GENERATE_TOOL, "--ckpt " + (dir / "out" / "a" / "checkpoints" / "0000006.safetensors").string() +
                                                  " --num-fid-samples 20 --per-proc-batch-size 8 --num-steps 2 --heun --cfg-scale 1.5 --threads 2"
                                                  " --sample-dir " + (dir / "gen").string(),
                         dir / "gen.log") == 0);
  INFO(slurp(dir / "gen.log"));
  CHECK(slurp(dir / "gen.log").find("of JiT depth 2 width 32 patch 4, 16x16") != std::string::npos);
  fs::path npz;
  for (const auto& e : fs::directory_iterator(dir / "gen"))
    if (e.path().extension() == ".npz") npz = e.path();
  REQUIRE_FALSE(npz.empty());
  const io::NpzFile zf(npz.string());
  const io::NpyArray arr = zf.array("arr_0");
  REQUIRE(arr.shape == Shape({20, 16, 16, 3}));
  {
    JiTConfig c;
    c.depth = 2, c.hidden_size = 32, c.num_heads = 2, c.patch_size = 4, c.bottleneck_dim = 6, c.in_context_len = 2, c.in_context_start = 1;
    c.num_classes = 5, c.input_size = 16, c.z_dims.clear();
    examples::GenJiT<> m(c, REPAHead{});
    io::LoadParamsOptions lo;
    io::load_params(io::SafeTensorsFile((dir / "out" / "a" / "checkpoints" / "0000006.safetensors").string()), m.params(), "ema.", lo);
    Tensor<std::int64_t> y(Shape{8});
    for (std::int64_t i = 0; i < 8; ++i) y[i] = i / 4;  // 20 images of 5 classes: 4 each
    examples::GenerateSpec spec;
    spec.jit_sampler = JiTSamplerOptions{.num_steps = 2, .heun = true, .cfg_scale = 1.5, .interval_min = 0, .interval_max = 1, .t_eps = 0.05};
    const CpuContext ctx(2);
    const Tensor<std::uint8_t> want = examples::generate_batch(ctx, m, nullptr, spec, y, mix64(std::uint64_t{0} << 32 ^ 0));
    const Tensor<std::uint8_t> got = arr.load_rows<std::uint8_t>(0, 8);
    REQUIRE(got.shape() == want.shape());
    std::int64_t same = 0;
    for (std::int64_t i = 0; i < want.numel(); ++i) same += got[i] == want[i];
    CHECK(same == want.numel());
  }
  CHECK(test::run_tool(IREPA_GENERATE_TOOL, "--ckpt " + (dir / "out" / "a" / "checkpoints" / "0000006.safetensors").string() +
                                                " --num-fid-samples 21 --sample-dir " + (dir / "gen").string(),
                       dir / "gen2.log") != 0);
  CHECK(slurp(dir / "gen2.log").find("--num-fid-samples 21 is not a multiple of its 5 classes") != std::string::npos);

  // Refused: no weights, classes that do not divide the images, --evaluate_gen without a step.
  CHECK(test::run_tool("env -u IREPA_INCEPTION " + std::string(IREPA_TRAIN_JIT_TOOL),
                       "--data_path " + (dir / "shards").string() + " --output_dir " + (dir / "out").string() +
                           " --exp_name x --class_num 5 --max_train_steps 1 --online_eval --fid_stats " + (dir / "stats.npz").string(),
                       dir / "d.log") != 0);
  CHECK(slurp(dir / "d.log").find("online evaluation needs the FID Inception weights") != std::string::npos);
  CHECK(run(common + " --exp_name y --max_train_steps 1 --online_eval --num_images 11 --fid_stats " + (dir / "stats.npz").string(), dir / "e.log") != 0);
  CHECK(slurp(dir / "e.log").find("the same number of images in every class") != std::string::npos);
  CHECK(run(scored + " --exp_name z --max_train_steps 1 --evaluate_gen", dir / "f.log") != 0);
  CHECK(slurp(dir / "f.log").find("--evaluate_gen scores a checkpoint: give its step with --resume_step") != std::string::npos);
  CHECK(run(common + " --exp_name z --max_train_steps 1 --online_eval --fid_stats " + (dir / "shards" / "part0.safetensors").string(),
            dir / "g.log") != 0);
  CHECK(slurp(dir / "g.log").find("part0.safetensors") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "out" / "x" / "checkpoints"));
  fs::remove_all(dir);
}

TEST_CASE("irepa-generate samples the reference's JiT checkpoint (main_jit.py's .pth) as its converted safetensors, bit for bit",
          "[generate][jit][tool][reference]") {
  // tests/data/torch/jit_reference.pth: {model, optimizer, epoch, args, model_ema1, model_ema2} with
  // the Denoiser's "net." names; jit_reference_ema.safetensors: the same tensors under this
  // library's names (scripts/make_torch_fixtures.py).
  const fs::path data = fs::path(IREPA_SOURCE_DIR) / "tests" / "data" / "torch";
  const fs::path dir = fs::temp_directory_path() / ("irepa_generate_jit_ref_" + std::to_string(test::rng().seed()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::int64_t seed = static_cast<std::int64_t>(test::rng().seed() % 100000);
  INFO("global seed " << seed);
  const auto generate = [&](const std::string& ckpt, int ema, const std::string& tag) {
    const int rc = test::run_tool(IREPA_GENERATE_TOOL, "--ckpt " + (data / ckpt).string() + " --ema " + std::to_string(ema) +
                                                           " --num-heads 2 --num-fid-samples 10 --per-proc-batch-size 4 --num-steps 3 --heun"
                                                           " --cfg-scale 2.0 --guidance-low 0.1 --threads 2 --global-seed " + std::to_string(seed) +
                                                           " --sample-dir " + (dir / tag).string(),
                                  dir / (tag + ".log"));
    INFO(slurp(dir / (tag + ".log")));
    REQUIRE(rc == 0);
    CHECK(slurp(dir / (tag + ".log")).find("of JiT depth 2 width 16 patch 4, 16x16") != std::string::npos);
    fs::path npz;
    for (const auto& e : fs::directory_iterator(dir / tag))
      if (e.path().extension() == ".npz") npz = e.path();
    REQUIRE_FALSE(npz.empty());
    const io::NpyArray arr = io::NpzFile(npz.string()).array("arr_0");
    REQUIRE(arr.shape == Shape({10, 16, 16, 3}));
    return arr.load_rows<std::uint8_t>(0, 10);
  };
  const auto same = [](const Tensor<std::uint8_t>& a, const Tensor<std::uint8_t>& b) {
    std::int64_t n = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) n += a[i] == b[i];
    return n;
  };
  const Tensor<std::uint8_t> ref0 = generate("jit_reference.pth", 0, "ref0"), ours0 = generate("jit_reference_ema.safetensors", 0, "ours0");
  const Tensor<std::uint8_t> ref1 = generate("jit_reference.pth", 1, "ref1"), ours1 = generate("jit_reference_ema.safetensors", 1, "ours1");
  CHECK(same(ref0, ours0) == ref0.numel());  // model_ema1 is this library's ema.
  CHECK(same(ref1, ours1) == ref1.numel());  // model_ema2 is ema1.
  CHECK(same(ref0, ref1) < ref0.numel() / 2);  // the two EMAs differ, and --ema picks between them
  std::int64_t lo = 255, hi = 0;
  for (std::int64_t i = 0; i < ref0.numel(); ++i) lo = std::min<std::int64_t>(lo, ref0[i]), hi = std::max<std::int64_t>(hi, ref0[i]);
  CHECK(hi - lo > 50);  // images, not a constant

  // The reference keeps two EMAs: a third is refused with what there is.
  CHECK(test::run_tool(IREPA_GENERATE_TOOL, "--ckpt " + (data / "jit_reference.pth").string() +
                                                " --ema 2 --num-heads 2 --num-fid-samples 10 --sample-dir " + (dir / "bad").string(),
                       dir / "bad.log") != 0);
  CHECK(slurp(dir / "bad.log").find("--ema 0 reads its model_ema1, --ema 1 its model_ema2") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("irepa-train-jit: a small iREPA JiT with the online HOG target learns Fashion-MNIST in 200 steps", "[train][jit][tool][fashion]") {
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) {
    WARN("dataset-fashion-mnist is not installed (scripts/setup.sh installs it); SKIPPING");
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("irepa_train_jit_fm_" + std::to_string(test::rng().seed()));
  REQUIRE(run("--dataset fashion-mnist --model custom --depth 3 --hidden_size 64 --num_heads 2 --patch_size 4 --bottleneck_dim 16"
              " --in_context_len 4 --in_context_start 1 --class_num 10 --enable_repa --enc_type hog-x-g7_d32 --encoder_depth 2"
              " --projection_layer_type conv --spnorm_method zscore --batch_size 32 --max_train_steps 200 --log_freq 50"
              " --lr 1e-3 --warmup_epochs 0.02 --checkpointing_steps 1000 --threads 2 --seed " +
                  std::to_string(test::rng().seed() % 1000) + " --output_dir " + (dir / "out").string() + " --exp_name fm",
              dir.string() + ".log") == 0);
  const auto loss = test::jsonl_values(dir / "out" / "fm" / "log.jsonl", "denoising_loss");
  const auto proj = test::jsonl_values(dir / "out" / "fm" / "log.jsonl", "proj_loss");
  REQUIRE(loss.size() == 200);
  auto mean = [](const std::vector<double>& v, std::size_t a) { return test::window_mean(v, a, 20); };
  INFO("mean v-loss, steps 1-20: " << mean(loss, 0) << ", steps 181-200: " << mean(loss, 180));
  CHECK(mean(loss, 180) < 0.6 * mean(loss, 0));
  INFO("mean alignment loss, steps 1-20: " << mean(proj, 0) << ", steps 181-200: " << mean(proj, 180));
  CHECK(mean(proj, 180) < mean(proj, 0) - 0.1);
  fs::remove_all(dir);
  fs::remove(dir.string() + ".log");
}
