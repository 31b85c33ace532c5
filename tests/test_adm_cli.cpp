// irepa-generate and irepa-eval end to end through the programs: a small SiT checkpoint ->
// samples as an ADM .npz (numpy's layout; the reference's bookkeeping of batches, ranks and the
// cut to N) -> the evaluator's table against an npz of "real" images, with random Inception
// weights (so the numbers are a consistency check, not an FID). A killed and resumed generation
// gives the same npz bytes as an uninterrupted one; evaluating twice gives the same bits; bad
// batches are clear errors.
//
// [.long] (ctest label long, not in CI): the default job's checkpoint, 1,000 samples, and the
// evaluator against 1,000 real Fashion-MNIST test images.

#include <sys/wait.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "irepa/data/fashion_mnist.hpp"
#include "irepa/io/npz.hpp"
#include "irepa/models/sd_vae.hpp"
#include "sit_checkpoint_fixture.hpp"
#include "test_support.hpp"
#include "tool_test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

int generate_tool(const std::string& args, const fs::path& log) { return test::run_tool(IREPA_GENERATE_TOOL, args, log); }
int eval_tool(const std::string& args, const fs::path& log) { return test::run_tool(IREPA_EVAL_TOOL, args, log); }
int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

std::vector<char> bytes_of(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

void write_images_npz(const fs::path& p, const Tensor<std::uint8_t>& images) {
  io::NpzWriter w(p.string(), true);
  w.add<std::uint8_t>("arr_0", images.cview());
  w.finish();
}

}  // namespace

TEST_CASE("irepa-generate -> npz -> irepa-eval: resumable, deterministic, bad batches refused", "[adm][tool]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_adm_cli_" + std::to_string(test::rng().seed()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path ck = dir / "0000100.safetensors";
  test::write_sit_checkpoint(ck);
  const auto gen_args = [&](int batch) {
    return "--ckpt " + ck.string() + " --num-fid-samples 30 --per-proc-batch-size " + std::to_string(batch) +
           " --num-steps 4 --mode sde --cfg-scale 1.5 --threads 2 --sample-dir ";
  };
  const std::string gen = gen_args(8);
  REQUIRE(generate_tool(gen + (dir / "a").string() + " --save-png", dir / "a.log") == 0);
  INFO(test::slurp(dir / "a.log"));
  const fs::path name = "0000100-size-16-cfg-1.5-seed-0-sde-steps-4";
  const fs::path npz_a = dir / "a" / (name.string() + ".npz");
  REQUIRE(fs::exists(npz_a));
  const io::NpzFile a(npz_a.string());
  const auto arr = a.array("arr_0");
  CHECK(arr.descr == "|u1");
  CHECK(arr.shape == Shape({30, 16, 16, 3}));
  CHECK(fs::exists(dir / "a" / name / "000029.png"));
  CHECK_FALSE(fs::exists(dir / "a" / name / "000030.png"));  // 32 made, the npz and PNGs keep 30
  const auto man = nlohmann::json::parse(std::ifstream(dir / "a" / name / "generate.json"));
  CHECK(man.at("finished") == true);
  // Samples differ from one another (a working sampler, not a constant image).
  const auto px = arr.load<float>();
  double diff = 0;
  for (std::int64_t i = 0; i < 768; ++i) diff += std::abs(px[i] - px[768 * 5 + i]);
  CHECK(diff > 100);

  // Killed after two batches, then continued: the same npz, byte for byte.
  CHECK(exit_code(generate_tool(gen + (dir / "b").string() + " --stop-after-batches 2", dir / "b1.log")) == 3);
  CHECK_FALSE(fs::exists(dir / "b" / (name.string() + ".npz")));
  REQUIRE(generate_tool(gen + (dir / "b").string(), dir / "b2.log") == 0);
  CHECK(test::slurp(dir / "b2.log").find("continuing (16 already there)") != std::string::npos);
  CHECK(bytes_of(npz_a) == bytes_of(dir / "b" / (name.string() + ".npz")));
  // A finished folder is left alone; other settings in the same folder are refused.
  REQUIRE(generate_tool(gen + (dir / "b").string(), dir / "b3.log") == 0);
  CHECK(test::slurp(dir / "b3.log").find("is complete") != std::string::npos);
  CHECK(exit_code(generate_tool(gen_args(4) + (dir / "b").string(), dir / "b4.log")) == 1);
  CHECK(test::slurp(dir / "b4.log").find("was started with per_proc_batch_size = 8") != std::string::npos);
  // A non-empty folder that no irepa-generate made is refused, and what is in it stays.
  fs::create_directories(dir / "d" / name);
  std::ofstream(dir / "d" / name / "mine.txt") << "someone's file";
  CHECK(exit_code(generate_tool(gen + (dir / "d").string(), dir / "d.log")) == 1);
  CHECK(test::slurp(dir / "d.log").find("is not an irepa-generate folder") != std::string::npos);
  CHECK(test::slurp(dir / "d" / name / "mine.txt") == "someone's file");
  CHECK_FALSE(fs::exists(dir / "d" / name / "generate.json"));
  // Another seed gives other samples.
  REQUIRE(generate_tool(gen + (dir / "c").string() + " --global-seed 1", dir / "c.log") == 0);
  CHECK(bytes_of(npz_a) != bytes_of(dir / "c" / "0000100-size-16-cfg-1.5-seed-1-sde-steps-4.npz"));

  // The evaluator: twice on the same batches -> the same bits.
  Tensor<std::int64_t> r(Shape{24, 16, 16, 3});
  test::rng().randint(r.view(), 0, 256);
  Tensor<std::uint8_t> real(r.shape());
  for (std::int64_t i = 0; i < r.numel(); ++i) real[i] = static_cast<std::uint8_t>(r[i]);
  write_images_npz(dir / "ref.npz", real);
  const std::string ev = (dir / "ref.npz").string() + " " + npz_a.string() + " --inception random:7 --split-size 10 --batch-size 9 --json ";
  REQUIRE(eval_tool(ev + (dir / "e1.json").string(), dir / "e1.log") == 0);
  INFO(test::slurp(dir / "e1.log"));
  REQUIRE(eval_tool(ev + (dir / "e2.json").string() + " --save-stats " + (dir / "sample_stats.npz").string(), dir / "e2.log") == 0);
  const auto j1 = nlohmann::json::parse(std::ifstream(dir / "e1.json")), j2 = nlohmann::json::parse(std::ifstream(dir / "e2.json"));
  for (const char* k : {"inception_score", "fid", "sfid", "precision", "recall"}) {
    INFO(k);
    CHECK(j1.at(k).get<double>() == j2.at(k).get<double>());
  }
  CHECK(j1.at("fid").get<double>() > 0);
  CHECK(j1.at("inception_score_splits").size() == 3);
  CHECK(j1.at("random_weights") == true);
  const std::string table = test::slurp(dir / "e1.log");
  for (const char* line : {"Inception Score: ", "FID: ", "sFID: ", "Precision: ", "Recall: ", "random Inception weights"})
    CHECK(table.find(line) != std::string::npos);
  // The reference batch's stored statistics are used for FID when present.
  {
    io::NpzWriter w((dir / "ref_stats.npz").string());
    w.add<std::uint8_t>("arr_0", real.cview());
    Tensor<float> mu(Shape{2048});
    Tensor<double> sigma(Shape{2048, 2048});
    mu.fill(0.5f), sigma.fill(0.0);
    for (std::int64_t i = 0; i < 2048; ++i) sigma[i * 2049] = 1.0;
    w.add<float>("mu", mu.cview());
    w.add<double>("sigma", sigma.cview());
    w.finish();
  }
  REQUIRE(eval_tool((dir / "ref_stats.npz").string() + " " + npz_a.string() + " --inception random:7 --split-size 10 --batch-size 9 --json " +
                        (dir / "e3.json").string(),
                    dir / "e3.log") == 0);
  const auto j3 = nlohmann::json::parse(std::ifstream(dir / "e3.json"));
  CHECK(j3.at("ref").at("stored_stats") == true);
  CHECK(j3.at("ref").at("stored_spatial_stats") == false);
  CHECK(j3.at("fid").get<double>() != j1.at("fid").get<double>());
  CHECK(j3.at("sfid").get<double>() == j1.at("sfid").get<double>());
  CHECK(j3.at("precision").get<double>() == j1.at("precision").get<double>());

  // A statistics-only reference (what --save-stats wrote: the samples' own statistics): FID and
  // sFID ~0, no precision / recall.
  REQUIRE(eval_tool((dir / "sample_stats.npz").string() + " " + npz_a.string() + " --inception random:7 --split-size 10 --batch-size 9 --json " +
                        (dir / "e4.json").string(),
                    dir / "e4.log") == 0);
  const auto j4 = nlohmann::json::parse(std::ifstream(dir / "e4.json"));
  CHECK(std::abs(j4.at("fid").get<double>()) < 1e-3);
  CHECK(std::abs(j4.at("sfid").get<double>()) < 1e-3);
  CHECK(j4.at("precision").is_null());
  CHECK(j4.at("inception_score").get<double>() == j1.at("inception_score").get<double>());  // same batches, same bits
  CHECK(test::slurp(dir / "e4.log").find("Precision: n/a") != std::string::npos);

  // Bad batches: float images, wrong rank, statistics of another dimension, a truncated file.
  const auto fails_with = [&](const std::string& ref, const std::string& what, const char* tag) {
    const fs::path log = dir / (std::string(tag) + ".log");
    CHECK(exit_code(eval_tool(ref + " " + npz_a.string() + " --inception random:7", log)) == 1);
    INFO(test::slurp(log));
    CHECK(test::slurp(log).find(what) != std::string::npos);
  };
  {
    io::NpzWriter w((dir / "float.npz").string());
    w.add<float>("arr_0", test::randn<float>(Shape{4, 8, 8, 3}).cview());
    w.finish();
  }
  fails_with((dir / "float.npz").string(), "expected uint8 images [N, H, W, 3]", "float");
  {
    io::NpzWriter w((dir / "rank3.npz").string());
    w.add<std::uint8_t>("arr_0", Tensor<std::uint8_t>(Shape{4, 8, 8}).cview());
    w.finish();
  }
  fails_with((dir / "rank3.npz").string(), "has dtype '|u1' and shape [4, 8, 8]", "rank3");
  {
    io::NpzWriter w((dir / "dim.npz").string());
    w.add<std::uint8_t>("arr_0", real.cview());
    w.add<float>("mu", test::randn<float>(Shape{8}).cview());
    w.add<double>("sigma", test::randn<double>(Shape{8, 8}).cview());
    w.finish();
  }
  fails_with((dir / "dim.npz").string(), "the features have dimension 2048", "dim");
  auto bytes = bytes_of(dir / "ref.npz");
  bytes.resize(bytes.size() / 2);
  {
    std::ofstream f(dir / "cut.npz", std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  fails_with((dir / "cut.npz").string(), "end-of-central-directory", "cut");
  fs::remove_all(dir);
}

TEST_CASE("irepa-generate --ckpt takes the reference's train.py .pt as it is: the same samples as its converted safetensors", "[adm][tool][torch]") {
  // tests/data/torch/sit_reference.pt: a tiny SiT (depth 2, width 16, patch 2, 4 latent channels,
  // 8x8) saved as the reference's train.py saves it; sit_reference_ema.safetensors: its tensors
  // written by hand. Decoded through a small random SD-VAE with the reference's stats file.
  const fs::path data = fs::path(IREPA_TEST_DATA_DIR) / "torch";
  const fs::path dir = fs::temp_directory_path() / ("irepa_generate_pt_" + std::to_string(test::rng().seed()));
  fs::remove_all(dir);
  fs::create_directories(dir / "pt");
  fs::create_directories(dir / "st");
  SdVaeConfig vc;
  vc.ch = 8, vc.ch_mult = {1, 2, 2, 2}, vc.num_res_blocks = 1, vc.groups = 4, vc.attn_resolutions = {};
  SdVae<float> vae(vc);
  vae.init_random(test::rng().seed(), 0.1f);
  save_sd_vae(vae, (dir / "vae.safetensors").string());
  // The same stem for both, so that both runs name their npz alike.
  fs::copy_file(data / "sit_reference.pt", dir / "pt" / "0000003.pt");
  fs::copy_file(data / "sit_reference_ema.safetensors", dir / "st" / "0000003.safetensors");
  const std::string common = " --model custom --num-heads 2 --vae " + (dir / "vae.safetensors").string() + " --latents-stats " +
                             (data / "latents_stats.pt").string() + " --num-fid-samples 6 --per-proc-batch-size 4 --num-steps 3 --mode sde"
                             " --cfg-scale 1.5 --threads 2 --global-seed " + std::to_string(test::rng().seed() % 1000);
  for (const char* k : {"pt", "st"}) {
    const fs::path ck = dir / k / (std::string("0000003") + (std::string(k) == "pt" ? ".pt" : ".safetensors"));
    const int rc = generate_tool("--ckpt " + ck.string() + common + " --sample-dir " + (dir / k / "out").string(), dir / (std::string(k) + ".log"));
    INFO(test::slurp(dir / (std::string(k) + ".log")));
    REQUIRE(rc == 0);
  }
  std::vector<fs::path> npz;
  for (const char* k : {"pt", "st"})
    for (const auto& e : fs::directory_iterator(dir / k / "out"))
      if (e.path().extension() == ".npz") npz.push_back(e.path());
  REQUIRE(npz.size() == 2);
  CHECK(npz[0].filename() == npz[1].filename());
  const io::NpzFile a(npz[0].string()), b(npz[1].string());
  const auto x = a.array("arr_0"), y = b.array("arr_0");
  CHECK(x.shape == Shape({6, 64, 64, 3}));
  REQUIRE(x.data.size() == y.data.size());
  CHECK(std::memcmp(x.data.data(), y.data.data(), x.data.size()) == 0);
  // Not a constant image: the model and the decoder did something.
  std::int64_t distinct = 0;
  for (std::size_t i = 1; i < x.data.size(); ++i) distinct += x.data[i] != x.data[i - 1];
  CHECK(distinct > 1000);
  // The checkpoint's own args name SiT-B/2, which its tensors are not: refused, naming both.
  CHECK(generate_tool("--ckpt " + (dir / "pt" / "0000003.pt").string() + " --vae " + (dir / "vae.safetensors").string() +
                          " --num-fid-samples 2 --per-proc-batch-size 2 --num-steps 2 --sample-dir " + (dir / "bad").string(),
                      dir / "bad.log") != 0);
  CHECK(test::slurp(dir / "bad.log").find("model 'SiT-B/2' is depth 12 width 768 patch 2, the checkpoint depth 2 width 16") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("the default job's checkpoint: 1,000 samples against 1,000 real test images", "[.long][adm][tool]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_adm_long_" + std::to_string(test::rng().seed()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  REQUIRE(test::run_tool(IREPA_FASHION_TOOL, "--output-dir " + (dir / "run").string(), dir / "fashion.log") == 0);
  const fs::path ck = dir / "run" / "checkpoints" / "0001400.safetensors";
  REQUIRE(fs::exists(ck));
  REQUIRE(generate_tool("--ckpt " + ck.string() + " --num-fid-samples 1000 --per-proc-batch-size 50 --num-steps 30 --mode ode --cfg-scale 2.0 " +
                            "--sample-dir " + (dir / "samples").string(),
                        dir / "gen.log") == 0);
  const auto test_set = data::FashionMnist::load(data::kFashionMnistDir, "test");
  Tensor<std::uint8_t> real(Shape{1000, 28, 28, 3});
  for (std::int64_t i = 0; i < 1000 * 28 * 28; ++i) real[3 * i] = real[3 * i + 1] = real[3 * i + 2] = test_set.images[i];
  write_images_npz(dir / "real.npz", real);
  const fs::path npz = dir / "samples" / "0001400-size-28-cfg-2-seed-0-ode-steps-30.npz";
  REQUIRE(eval_tool((dir / "real.npz").string() + " " + npz.string() + " --inception random:1 --json " + (dir / "e.json").string(),
                    dir / "eval.log") == 0);
  const auto j = nlohmann::json::parse(std::ifstream(dir / "e.json"));
  WARN("random-weight Inception, 1000 samples vs 1000 test images: FID " << j.at("fid") << ", sFID " << j.at("sfid") << ", IS "
                                                                            << j.at("inception_score") << ", precision " << j.at("precision")
                                                                            << ", recall " << j.at("recall"));
  CHECK(j.at("precision").get<double>() > 0.2);
  CHECK(j.at("recall").get<double>() > 0.2);
}
