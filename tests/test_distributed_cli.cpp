// irepa-train and irepa-train-jit as data-parallel jobs under `mpirun --oversubscribe -np 2` on
// Fashion-MNIST: the 2-process run matches the 1-process one at the same global batch (float,
// so up to the order of the sums), checkpoints move between world sizes, a resumed 2-process run
// is bit-identical, and a killed rank ends the job without hurting the last checkpoint; the
// shard-writing tools (irepa-extract-features, irepa-encode) split their shards over the ranks.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "irepa/io/safetensors.hpp"
#include "irepa/models/sd_vae.hpp"
#include "irepa/io/npy.hpp"
#include "irepa/io/npz.hpp"
#include "sit_checkpoint_fixture.hpp"
#include "test_support.hpp"
#include "tool_test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {
const std::string kMpirun = std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ") + IREPA_MPIEXEC + " --oversubscribe";

bool have_data() {
  if (fs::exists("/usr/share/datasets/fashion-mnist")) return true;
  WARN("dataset-fashion-mnist is not installed (scripts/setup.sh installs it); SKIPPING");
  return false;
}

std::string sit_args(const fs::path& out, const std::string& name, std::int64_t steps, std::int64_t seed, int every = 10) {
  return "--dataset fashion-mnist --model custom --depth 2 --hidden-size 64 --num-heads 4 --patch-size 4 --num-classes 10"
         " --batch-size 32 --log-every 10 --learning-rate 1e-3 --checkpointing-steps " + std::to_string(every) + " --max-train-steps " +
         std::to_string(steps) + " --enc-type hog-x-g7_d32 --encoder-depth 1 --projection-layer-type conv --spnorm-method zscore --seed " +
         std::to_string(seed) + " --output-dir " + out.string() + " --exp-name " + name;
}
int run_ranks(int n, const std::string& tool, const std::string& args, const fs::path& log) {
  return test::run_tool(kMpirun + " -np " + std::to_string(n) + " " + tool, args, log);
}
std::vector<std::string> lines(const fs::path& p) {
  std::ifstream f(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(f, l);) out.push_back(l);
  return out;
}
double rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

/// Every logged scalar of two runs agrees to `tol` relative, step by step.
void check_close(const fs::path& a, const fs::path& b, double tol, std::size_t steps) {
  const auto la = lines(a), lb = lines(b);
  REQUIRE(la.size() == steps);
  REQUIRE(lb.size() == steps);
  double worst = 0;
  for (std::size_t i = 0; i < steps; ++i) {
    const auto ja = nlohmann::json::parse(la[i]), jb = nlohmann::json::parse(lb[i]);
    REQUIRE(ja.at("step") == jb.at("step"));
    for (const char* k : {"loss", "denoising_loss", "proj_loss", "grad_norm", "lr"}) {
      const double x = ja.at(k).get<double>(), y = jb.at(k).get<double>();
      INFO("step " << ja.at("step") << " " << k << ": " << x << " vs " << y);
      CHECK(rel(x, y) <= tol);
      worst = std::max(worst, rel(x, y));
    }
  }
  WARN(a.parent_path().filename().string() << " vs " << b.parent_path().filename().string() << ": worst relative difference " << worst);
}
}  // namespace

TEST_CASE("irepa-train on 2 processes: the 1-process losses at the same global batch, checkpoints load at either size, resume is bit-identical",
          "[train][tool][mpi]") {
  if (!have_data()) return;
  const std::int64_t seed = static_cast<std::int64_t>(test::rng().seed() % 1000);
  const fs::path dir = fs::temp_directory_path() / ("irepa_dp_cli_" + std::to_string(test::rng().seed()));
  const fs::path out = dir / "out";
  fs::create_directories(dir);
  REQUIRE(test::run_tool(IREPA_TRAIN_TOOL, sit_args(out, "one", 20, seed) + " --threads 1", dir / "one.log") == 0);
  REQUIRE(run_ranks(2, IREPA_TRAIN_TOOL, sit_args(out, "two", 20, seed), dir / "two.log") == 0);
  const std::string two_log = test::slurp(dir / "two.log");
  CHECK_THAT(two_log, Catch::Contains("data parallel: MPI") && Catch::Contains("global batch 32 = 2 x 16"));
  // Float: the ranks' gradients are summed in another order than the one process's, and 20
  // AdamW steps carry that difference on; 1e-5 is the bound (seen: about 1e-8).
  check_close(out / "two" / "log.jsonl", out / "one" / "log.jsonl", 1e-5, 20);

  // The 2-process checkpoint at step 10 continues on 1 process, and the 1-process one on 2.
  for (const auto& [from, to, n] : {std::tuple{"two", "two_on_one", 1}, std::tuple{"one", "one_on_two", 2}}) {
    fs::create_directories(out / to / "checkpoints");
    fs::copy_file(out / from / "checkpoints" / "0000010.safetensors", out / to / "checkpoints" / "0000010.safetensors");
    const std::string args = sit_args(out, to, 20, seed) + " --resume-step 10";
    const fs::path log = dir / (std::string(to) + ".log");
    REQUIRE((n == 1 ? test::run_tool(IREPA_TRAIN_TOOL, args + " --threads 1", log) : run_ranks(n, IREPA_TRAIN_TOOL, args, log)) == 0);
    CHECK_THAT(test::slurp(log), Catch::Contains("resumed from"));
    const auto resumed = lines(out / to / "log.jsonl"), straight = lines(out / from / "log.jsonl");
    REQUIRE(resumed.size() == 10);
    for (std::size_t i = 0; i < 10; ++i) {
      const auto a = nlohmann::json::parse(resumed[i]), b = nlohmann::json::parse(straight[i + 10]);
      CHECK(a.at("step") == b.at("step"));
      CHECK(rel(a.at("loss").get<double>(), b.at("loss").get<double>()) <= 1e-5);
    }
  }

  // A resumed 2-process run is the uninterrupted one, bit for bit: log lines and final tensors.
  fs::create_directories(out / "two_resumed" / "checkpoints");
  fs::copy_file(out / "two" / "checkpoints" / "0000010.safetensors", out / "two_resumed" / "checkpoints" / "0000010.safetensors");
  REQUIRE(run_ranks(2, IREPA_TRAIN_TOOL, sit_args(out, "two_resumed", 20, seed) + " --resume-step 10", dir / "two_resumed.log") == 0);
  const auto straight = lines(out / "two" / "log.jsonl"), resumed = lines(out / "two_resumed" / "log.jsonl");
  REQUIRE(resumed.size() == 10);
  for (std::size_t i = 0; i < 10; ++i) CHECK(resumed[i] == straight[i + 10]);
  const io::SafeTensorsFile a((out / "two" / "checkpoints" / "0000020.safetensors").string());
  const io::SafeTensorsFile b((out / "two_resumed" / "checkpoints" / "0000020.safetensors").string());
  REQUIRE(a.names() == b.names());
  for (const auto& name : a.names()) {
    const auto x = a.load<float>(name), y = b.load<float>(name);
    INFO(name);
    CHECK(std::memcmp(x.data(), y.data(), sizeof(float) * static_cast<std::size_t>(x.numel())) == 0);
  }
  fs::remove_all(dir);
}

TEST_CASE("irepa-train-jit: --batch_size is per process, so 2 x 8 is the 1-process run at 16 (lr = blr x 16 / 256)", "[train][tool][mpi]") {
  if (!have_data()) return;
  const fs::path dir = fs::temp_directory_path() / ("irepa_dp_jit_" + std::to_string(test::rng().seed()));
  auto args = [&](const std::string& name, int batch) {
    return "--dataset fashion-mnist --model custom --depth 2 --hidden_size 64 --num_heads 4 --patch_size 4 --bottleneck_dim 16"
           " --class_num 10 --in_context_len 0 --max_train_steps 12 --log_freq 4 --checkpointing_steps 100 --blr 5e-4"
           " --enable_repa --enc_type hog-x-g7_d32 --encoder_depth 1 --seed 7 --batch_size " +
           std::to_string(batch) + " --output_dir " + (dir / "out").string() + " --exp_name " + name;
  };
  fs::create_directories(dir);
  REQUIRE(test::run_tool(IREPA_TRAIN_JIT_TOOL, args("one", 16) + " --threads 1", dir / "one.log") == 0);
  REQUIRE(run_ranks(2, IREPA_TRAIN_JIT_TOOL, args("two", 8), dir / "two.log") == 0);
  CHECK_THAT(test::slurp(dir / "two.log"), Catch::Contains("batch 8 x 2 processes") && Catch::Contains("global batch 16 = 2 x 8"));
  check_close(dir / "out" / "two" / "log.jsonl", dir / "out" / "one" / "log.jsonl", 1e-5, 12);
  fs::remove_all(dir);
}

TEST_CASE("irepa-train-jit --evaluate_gen on 2 processes: the 1-process FID and IS (each rank its rounds, the sums added)", "[train][tool][mpi][online]") {
  if (!have_data()) return;
  const fs::path dir = fs::temp_directory_path() / ("irepa_dp_eval_" + std::to_string(test::rng().seed()));
  fs::create_directories(dir);
  test::write_fid_stats(dir / "stats.npz");
  // Grey 28x28 samples (the channel repeated), 20 class-balanced images in rounds of 3 per process.
  const std::string args = "--dataset fashion-mnist --model custom --depth 2 --hidden_size 32 --num_heads 2 --patch_size 4 --bottleneck_dim 8"
                           " --class_num 10 --in_context_len 0 --max_train_steps 2 --log_freq 1 --checkpointing_steps 2 --blr 5e-4 --seed 4"
                           " --batch_size 8 --num_sampling_steps 2 --cfg 2.0 --num_images 20 --gen_bsz 3 --inception random:9"
                           " --output_dir " + (dir / "out").string() + " --exp_name e --fid_stats " + (dir / "stats.npz").string();
  REQUIRE(test::run_tool(IREPA_TRAIN_JIT_TOOL, args + " --threads 2", dir / "train.log") == 0);
  REQUIRE(test::run_tool(IREPA_TRAIN_JIT_TOOL, args + " --threads 2 --resume_step 2 --evaluate_gen", dir / "one.log") == 0);
  REQUIRE(run_ranks(2, IREPA_TRAIN_JIT_TOOL, args + " --threads 1 --resume_step 2 --evaluate_gen", dir / "two.log") == 0);
  std::vector<std::pair<double, double>> scores;
  for (const auto& l : lines(dir / "out" / "e" / "log.jsonl")) {
    const auto j = nlohmann::json::parse(l);
    if (j.contains("fid_cfg2.0_res28")) scores.emplace_back(j["fid_cfg2.0_res28"].get<double>(), j["is_cfg2.0_res28"].get<double>());
  }
  INFO(test::slurp(dir / "two.log"));
  REQUIRE(scores.size() == 2);
  CHECK(std::isfinite(scores[0].first));
  CHECK(rel(scores[1].first, scores[0].first) <= 1e-9);
  CHECK(rel(scores[1].second, scores[0].second) <= 1e-12);
  fs::remove_all(dir);
}

namespace {
/// The pid of the process whose environment has OMPI_COMM_WORLD_RANK=<rank> and whose command
/// line mentions `marker`, or -1.
pid_t find_rank(int rank, const std::string& marker) {
  const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string cmd = test::slurp(e.path() / "cmdline"), env = test::slurp(e.path() / "environ");
    if (cmd.find(marker) == std::string::npos) continue;
    for (std::size_t p = 0; p < env.size();) {
      const std::size_t q = env.find('\0', p);
      if (env.compare(p, q - p, want) == 0) return static_cast<pid_t>(std::stol(name));
      if (q == std::string::npos) break;
      p = q + 1;
    }
  }
  return -1;
}
}  // namespace

TEST_CASE("irepa-train on 2 processes: a killed rank ends the job (non-zero, no hang) and the last checkpoint resumes", "[train][tool][mpi]") {
  if (!have_data()) return;
  const std::int64_t seed = static_cast<std::int64_t>(test::rng().seed() % 1000);
  const fs::path dir = fs::temp_directory_path() / ("irepa_dp_kill_" + std::to_string(test::rng().seed()));
  const fs::path out = dir / "out";
  fs::create_directories(dir);
  const std::string cmd = kMpirun + " -np 2 " + IREPA_TRAIN_TOOL + " " + sit_args(out, "victim", 400, seed, 5) + " > " + (dir / "victim.log").string() + " 2>&1";
  const pid_t job = fork();
  REQUIRE(job >= 0);
  if (job == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  struct Reaper {  // a failed REQUIRE below must not leave the job running
    pid_t pid;
    bool reaped = false;
    ~Reaper() {
      if (!reaped) ::kill(pid, SIGKILL), ::waitpid(pid, nullptr, 0);
    }
  } reaper{job};
  const fs::path ckpt = out / "victim" / "checkpoints";
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(ckpt / "0000010.safetensors") && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE(fs::exists(ckpt / "0000010.safetensors"));
  const pid_t victim = find_rank(1, out.string());
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  int status = 0;
  pid_t done = 0;
  const auto t1 = std::chrono::steady_clock::now();
  while ((done = ::waitpid(job, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() - t1 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE(done == job);
  reaper.reaped = true;  // the job ended by itself within a minute of the kill
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  WARN("the job ended " << took << " s after rank 1 was killed");
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) != 0));
  INFO(test::slurp(dir / "victim.log"));
  CHECK(find_rank(0, out.string()) < 0);  // rank 0 is gone too
  // Nothing half-written is left, and the newest checkpoint resumes.
  std::int64_t newest = 0;
  for (const auto& e : fs::directory_iterator(ckpt)) {
    INFO(e.path());
    CHECK(e.path().extension() == ".safetensors");
    newest = std::max<std::int64_t>(newest, std::stoll(e.path().stem().string()));
  }
  REQUIRE(newest >= 10);
  CHECK(test::run_tool(IREPA_TRAIN_TOOL, sit_args(out, "victim", newest + 2, seed) + " --threads 1 --resume-step " + std::to_string(newest),
                       dir / "resume.log") == 0);
  CHECK_THAT(test::slurp(dir / "resume.log"), Catch::Contains("resumed from"));
  fs::remove_all(dir);
}

TEST_CASE("irepa-extract-features on 2 processes writes the 1-process shards file for file", "[train][tool][mpi]") {
  if (!have_data()) return;
  const fs::path dir = fs::temp_directory_path() / ("irepa_dp_extract_" + std::to_string(test::rng().seed()));
  fs::create_directories(dir);
  const std::string args = "--dataset fashion-mnist --split test --enc-type hog-x-g7_d32 --limit 700 --shard-size 200 --batch-size 64";
  REQUIRE(test::run_tool(IREPA_EXTRACT_TOOL, args + " --output-dir " + (dir / "one").string(), dir / "one.log") == 0);
  REQUIRE(run_ranks(2, IREPA_EXTRACT_TOOL, args + " --output-dir " + (dir / "two").string(), dir / "two.log") == 0);
  const std::string log = test::slurp(dir / "two.log");
  CHECK_THAT(log, Catch::Contains("rank 0: wrote") && Catch::Contains("rank 1: wrote"));
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir / "one")) {
    ++files;
    INFO(e.path().filename());
    REQUIRE(fs::exists(dir / "two" / e.path().filename()));
    CHECK(test::slurp(e.path()) == test::slurp(dir / "two" / e.path().filename()));
  }
  CHECK(files == 4);
  CHECK(std::distance(fs::directory_iterator(dir / "two"), fs::directory_iterator{}) == 4);
  fs::remove_all(dir);
}

TEST_CASE("irepa-encode on 2 processes writes the 1-process posterior shards file for file, and marks the folder finished", "[latent][tool][mpi]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_dp_encode_" + std::to_string(test::rng().seed()));
  fs::create_directories(dir / "img");
  {  // 10 random 32 px images and a small random VAE (four levels, f = 8)
    test::write_rgb_shard(dir / "img" / "part.safetensors", 10, 32, 5);
    SdVaeConfig c;
    c.ch = 8, c.ch_mult = {1, 2, 2, 2}, c.num_res_blocks = 1, c.groups = 4, c.attn_resolutions = {};
    SdVae<float> vae(c);
    vae.init_random(test::rng().seed(), 0.1f);
    save_sd_vae(vae, (dir / "vae.safetensors").string());
  }
  const std::string args = "encode --source " + (dir / "img").string() + " --vae " + (dir / "vae.safetensors").string() +
                           " --batch-size 2 --shard-size 3 --threads 1 --dest ";
  REQUIRE(test::run_tool(IREPA_ENCODE_TOOL, args + (dir / "one").string(), dir / "one.log") == 0);
  REQUIRE(run_ranks(2, IREPA_ENCODE_TOOL, args + (dir / "two").string(), dir / "two.log") == 0);
  const std::string log = test::slurp(dir / "two.log");
  CHECK_THAT(log, Catch::Contains("rank 0: wrote") && Catch::Contains("rank 1: wrote") && Catch::Contains("finished, 10 images in 4 shards"));
  for (int p = 0; p < 4; ++p) {
    const std::string name = "part-0000" + std::to_string(p) + ".safetensors";
    INFO(name);
    REQUIRE(fs::exists(dir / "two" / name));
    CHECK(test::slurp(dir / "one" / name) == test::slurp(dir / "two" / name));
  }
  CHECK(nlohmann::json::parse(std::ifstream(dir / "two" / "encode.json")).at("finished").get<bool>());
  fs::remove_all(dir);
}

TEST_CASE("irepa-generate on 2 processes: each rank its seed and batches, the npz in the reference's interleaved order", "[adm][tool][mpi]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_dp_generate_" + std::to_string(test::rng().seed()));
  fs::create_directories(dir);
  test::write_sit_checkpoint(dir / "0000007.safetensors");
  // 13 samples of 2 x 4 per iteration: 16 made, the first 13 kept.
  const std::string args = "--ckpt " + (dir / "0000007.safetensors").string() +
                           " --num-fid-samples 13 --per-proc-batch-size 4 --num-steps 3 --threads 1 --sample-dir ";
  REQUIRE(run_ranks(2, IREPA_GENERATE_TOOL, args + (dir / "two").string(), dir / "two.log") == 0);
  INFO(test::slurp(dir / "two.log"));
  REQUIRE(test::run_tool(IREPA_GENERATE_TOOL, args + (dir / "one").string(), dir / "one.log") == 0);
  const std::string name = "0000007-size-16-cfg-1.5-seed-0-ode-steps-3";
  const io::NpzFile npz((dir / "two" / (name + ".npz")).string());
  const auto arr = npz.array("arr_0");
  REQUIRE(arr.shape == Shape({13, 16, 16, 3}));
  const std::int64_t row = 16 * 16 * 3;
  for (std::int64_t k = 0; k < 13; ++k) {  // index = iteration x 8 + i x 2 + rank
    const std::int64_t it = k / 8, i = (k % 8) / 2, r = (k % 8) % 2;
    const io::NpyFile b((dir / "two" / name / fmt::format("batch-r{:03d}-i{:06d}.npy", r, it)).string());
    INFO("sample " << k);
    CHECK(std::memcmp(arr.data.data() + k * row, b.data() + i * row, static_cast<std::size_t>(row)) == 0);
  }
  // Rank 0 of 2 seeds with 0 x 2 + 0, as the single process does: its batches are the same.
  CHECK(test::slurp(dir / "two" / name / "batch-r000-i000000.npy") == test::slurp(dir / "one" / name / "batch-r000-i000000.npy"));
  CHECK(test::slurp(dir / "two" / name / "batch-r001-i000000.npy") != test::slurp(dir / "one" / name / "batch-r000-i000001.npy"));
  fs::remove_all(dir);
}
