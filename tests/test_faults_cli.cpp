// Faults injected into irepa-train as a user (or the machine) would cause them: kill -9 during
// checkpoint writes, in a loop, then a resume that ends bit-identical to a run never killed; a
// write that fails for a file-size limit (EFBIG); a fresh run into a used folder; two trainers
// in one folder; a NaN learning rate; a grid of zero samples; absurd threads and batches; a
// FIFO as the config file; a dataset tool into a used folder. Each ends with a clear message and
// a non-zero status, never a signal, and nothing of an earlier run lost.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "irepa/io/safetensors.hpp"
#include "irepa/train/checkpoint.hpp"
#include "test_support.hpp"
#include "tool_test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

/// The status a shell reports: the exit code, or 128 + the signal that ended the process.
int status_of(int raw) { return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw); }

int run(const std::string& args, const fs::path& log) { return status_of(test::run_tool(IREPA_TRAIN_TOOL, args, log)); }

std::int64_t draw(std::int64_t lo, std::int64_t hi) {
  Tensor<std::int64_t> t(Shape{1});
  test::rng().randint(t.view(), lo, hi);
  return t[0];
}

std::string common(const fs::path& dir) {
  return "--data-dir " + (dir / "shards").string() + " --output-dir " + (dir / "out").string() +
         " --model custom --depth 2 --hidden-size 32 --num-heads 2 --patch-size 2 --num-classes 10 --encoder-depth 1"
         " --projection-layer-type conv --spnorm-method zscore --batch-size 4 --log-every 1 --threads 1 --learning-rate 1e-3"
         " --ema-decay 0.9 --seed 5";
}

/// The newest checkpoint's step in a run folder (0: none).
std::int64_t latest(const fs::path& run) {
  std::int64_t best = 0;
  if (!fs::exists(run / "checkpoints")) return 0;
  for (const auto& e : fs::directory_iterator(run / "checkpoints"))
    if (e.path().extension() == ".safetensors") best = std::max<std::int64_t>(best, std::stoll(e.path().stem().string()));
  return best;
}

std::vector<fs::path> temporaries(const fs::path& run) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(run))
    if (e.path().filename().string().find(".tmp") != std::string::npos) out.push_back(e.path());
  return out;
}

/// Starts `tool args` (exec'd, so the pid is the tool's), output to log.
pid_t spawn(const std::string& args, const fs::path& log) {
  const std::string cmd = std::string("exec ") + IREPA_TRAIN_TOOL + " " + args + " > " + log.string() + " 2>&1";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

void require_same_checkpoint(const fs::path& a, const fs::path& b) {
  const io::SafeTensorsFile x(a.string()), y(b.string());
  REQUIRE(x.names() == y.names());
  for (const auto& n : x.names()) {
    INFO(n);
    const auto p = x.bytes(n), q = y.bytes(n);
    REQUIRE(p.size() == q.size());
    CHECK(std::memcmp(p.data(), q.data(), p.size()) == 0);
  }
  CHECK(x.metadata("rng") == y.metadata("rng"));
  CHECK(x.metadata("optimizer_steps") == y.metadata("optimizer_steps"));
}

}  // namespace

TEST_CASE("kill -9 during checkpoint writes, in a loop: the last complete checkpoint resumes bit-identically, no temporaries stay", "[faults][tool]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_faults_kill_" + std::to_string(test::rng().seed()));
  test::write_tiny_shards(dir / "shards");
  const std::int64_t steps = 60;
  const std::string base = common(dir) + " --max-train-steps " + std::to_string(steps);
  REQUIRE(run(base + " --checkpointing-steps 1 --exp-name straight", dir / "straight.log") == 0);
  for (const auto& e : fs::directory_iterator(dir / "out" / "straight" / "checkpoints"))
    if (e.path().stem().string() != "0000060") fs::remove(e.path());
  const fs::path run_dir = dir / "out" / "killed";
  int kills = 0, starts = 0, torn = 0;  // torn: kills that left a temporary (inside a write)
  for (int round = 0; round < 40 && latest(run_dir) < steps - 5; ++round) {
    const std::int64_t at = latest(run_dir);
    const std::string resume = at > 0 ? " --resume-step " + std::to_string(at) : " --overwrite";
    const pid_t pid = spawn(base + " --checkpointing-steps 1 --exp-name killed" + resume, dir / ("round" + std::to_string(round) + ".log"));
    ++starts;
    // Let it write a few checkpoints (1 to 4 past where it started), then kill it a random few
    // milliseconds later: mostly in a step or inside a checkpoint write.
    const std::int64_t target = at + draw(1, 5);
    for (int i = 0; i < 20000 && latest(run_dir) < target && ::waitpid(pid, nullptr, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    std::this_thread::sleep_for(std::chrono::microseconds(draw(0, 8000)));
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == 0) {
      ::kill(pid, SIGKILL);
      ++kills;
      ::waitpid(pid, &st, 0);
    }
    if (!fs::exists(run_dir / "checkpoints")) continue;  // killed before it made its folder
    torn += !temporaries(run_dir).empty();
    // Whatever the moment of the kill: every checkpoint under its final name is whole. All
    // but the newest are then removed (the disk stays small).
    const std::int64_t newest = latest(run_dir);
    for (const auto& e : fs::directory_iterator(run_dir / "checkpoints")) {
      if (e.path().extension() != ".safetensors") continue;
      INFO(e.path());
      const io::SafeTensorsFile f(e.path().string());
      CHECK(read_checkpoint_meta(f).step == std::stoll(e.path().stem().string()));
    }
    for (const auto& e : fs::directory_iterator(run_dir / "checkpoints"))
      if (e.path().extension() == ".safetensors" && std::stoll(e.path().stem().string()) < newest) fs::remove(e.path());
  }
  WARN(starts << " starts, " << kills << " kills (" << torn << " inside a write), last checkpoint " << latest(run_dir));
  CHECK(kills >= 3);
  const std::int64_t at = latest(run_dir);
  REQUIRE(at > 0);
  REQUIRE(run(base + " --checkpointing-steps 1 --exp-name killed --resume-step " + std::to_string(at), dir / "final.log") == 0);
  INFO(test::slurp(dir / "final.log"));
  require_same_checkpoint(dir / "out" / "straight" / "checkpoints" / "0000060.safetensors", run_dir / "checkpoints" / "0000060.safetensors");
  CHECK(temporaries(run_dir).empty());
  fs::remove_all(dir);
}

TEST_CASE("a checkpoint write that fails (file-size limit, EFBIG): a clear error, the previous checkpoint intact, no temporary", "[faults][tool]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_faults_efbig_" + std::to_string(test::rng().seed()));
  test::write_tiny_shards(dir / "shards");
  const std::string base = common(dir) + " --checkpointing-steps 2 --exp-name r";
  REQUIRE(run(base + " --max-train-steps 2", dir / "a.log") == 0);
  const fs::path ck = dir / "out" / "r" / "checkpoints" / "0000002.safetensors";
  const std::string before = test::slurp(ck);
  REQUIRE(before.size() > 64 * 1024);
  // SIGXFSZ ignored, so that the write returns EFBIG as a full disk returns ENOSPC; 32 KiB lets
  // the log and args.json through and stops the checkpoint.
  const std::string cmd = "trap '' XFSZ; ulimit -f 32; exec " + std::string(IREPA_TRAIN_TOOL) + " " + base +
                          " --max-train-steps 4 --resume-step 2 > " + (dir / "b.log").string() + " 2>&1";
  const int st = status_of(std::system(("bash -c \"" + cmd + "\"").c_str()));
  const std::string log = test::slurp(dir / "b.log");
  INFO(log);
  CHECK(st == 1);
  CHECK(log.find("File too large") != std::string::npos);
  CHECK(log.find("0000004.safetensors") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "out" / "r" / "checkpoints" / "0000004.safetensors"));
  CHECK(test::slurp(ck) == before);
  CHECK(temporaries(dir / "out" / "r").empty());
  // And the run goes on from it once the limit is gone.
  REQUIRE(run(base + " --max-train-steps 4 --resume-step 2", dir / "c.log") == 0);
  CHECK(fs::exists(dir / "out" / "r" / "checkpoints" / "0000004.safetensors"));
  fs::remove_all(dir);
}

TEST_CASE("run folders from the command line: a used folder is refused, two trainers cannot share one, --overwrite starts again", "[faults][tool]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_faults_folder_" + std::to_string(test::rng().seed()));
  test::write_tiny_shards(dir / "shards");
  const std::string base = common(dir) + " --checkpointing-steps 2 --exp-name r";
  REQUIRE(run(base + " --max-train-steps 2", dir / "a.log") == 0);
  const std::string ck = test::slurp(dir / "out" / "r" / "checkpoints" / "0000002.safetensors"), log = test::slurp(dir / "out" / "r" / "log.jsonl");
  CHECK(run(base + " --max-train-steps 2 --cfg-prob 0.2", dir / "b.log") == 1);
  CHECK(test::slurp(dir / "b.log").find("already holds a run") != std::string::npos);
  CHECK(test::slurp(dir / "out" / "r" / "checkpoints" / "0000002.safetensors") == ck);
  CHECK(test::slurp(dir / "out" / "r" / "log.jsonl") == log);
  // A second trainer while the first holds the folder.
  const pid_t first = spawn(common(dir) + " --exp-name busy --max-train-steps 100000 --checkpointing-steps 100000", dir / "busy.log");
  for (int i = 0; i < 600 && !(fs::exists(dir / "out" / "busy" / "log.jsonl") && fs::file_size(dir / "out" / "busy" / "log.jsonl") > 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(run(common(dir) + " --exp-name busy --max-train-steps 2 --overwrite", dir / "c.log") == 1);
  const std::string c = test::slurp(dir / "c.log");
  INFO(c);
  CHECK(c.find("is in use by process " + std::to_string(first)) != std::string::npos);
  ::kill(first, SIGKILL);
  ::waitpid(first, nullptr, 0);
  // --overwrite: the earlier run's files go, the new run's come.
  REQUIRE(run(base + " --max-train-steps 4 --cfg-prob 0.2 --overwrite", dir / "d.log") == 0);
  CHECK(test::slurp(dir / "out" / "r" / "checkpoints" / "0000002.safetensors") != ck);
  std::ifstream l(dir / "out" / "r" / "log.jsonl");
  int lines = 0;
  for (std::string s; std::getline(l, s);) ++lines;
  CHECK(lines == 4);
  fs::remove_all(dir);
}

TEST_CASE("bad numbers and requests from the command line: refused with the value and limit, status 1, nothing written", "[faults][tool]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_faults_numbers_" + std::to_string(test::rng().seed()));
  test::write_tiny_shards(dir / "shards");
  const std::string base = common(dir) + " --checkpointing-steps 1 --max-train-steps 1";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --learning-rate nan", "learning rate is nan"},
      {" --adam-beta2 inf", "beta2 is inf"},
      {" --adam-epsilon -1", "epsilon is -1"},
      {" --cfg-prob nan", "label-drop"},
      {" --max-grad-norm nan", "max_grad_norm is nan"},
      {" --ema-decay 1.5", "EMA decay is 1.5"},
      {" --proj-coeff nan", "--proj-coeff entry 'nan' is not a non-negative number"},
      {" --zscore-alpha inf", "zscore alpha is inf"},
      {" --samples-per-class 0 --sampling-steps 1", "sample grids"},
      {" --threads 100000", "100000 threads"},
      {" --batch-size 1000000000", "batch size is 1000000000"},
  };
  int k = 0;
  for (const auto& [flag, want] : cases) {
    const std::string name = "n" + std::to_string(k++);
    const fs::path log = dir / (name + ".log");
    const auto t0 = std::chrono::steady_clock::now();
    std::string args = base;  // the case's flag replaces the default one (CLI11 refuses a flag given twice)
    const std::string key = flag.substr(0, flag.find(' ', 1) + 1);
    if (const auto at = args.find(key); at != std::string::npos) args.erase(at, args.find(' ', at + key.size()) - at);
    const int st = run(args + " --exp-name " + name + flag, log);
    INFO(flag << ": " << test::slurp(log));
    CHECK(st == 1);
    CHECK(test::slurp(log).find(want) != std::string::npos);
    CHECK_FALSE(fs::exists(dir / "out" / name / "checkpoints" / "0000001.safetensors"));
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60));
  }
  // A FIFO as the config file: refused at once (reading it would wait for a writer forever).
  REQUIRE(::mkfifo((dir / "config.fifo").c_str(), 0600) == 0);
  CHECK(run(base + " --exp-name fifo --config " + (dir / "config.fifo").string(), dir / "fifo.log") == 2);
  CHECK(test::slurp(dir / "fifo.log").find("is a FIFO, not a regular file") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("irepa-extract-features refuses an output folder that already holds files", "[faults][tool]") {
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) {
    WARN("dataset-fashion-mnist is not installed (scripts/setup.sh installs it); SKIPPING");
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("irepa_faults_extract_" + std::to_string(test::rng().seed()));
  fs::create_directories(dir / "features");
  { std::ofstream(dir / "features" / "part-00007.safetensors") << "stale"; }
  const std::string args = "--dataset fashion-mnist --split test --limit 40 --shard-size 40 --enc-type hog-x-g7_d32 --output-dir " +
                           (dir / "features").string() + " --threads 1";
  CHECK(status_of(test::run_tool(IREPA_EXTRACT_TOOL, args, dir / "x.log")) == 1);
  CHECK(test::slurp(dir / "x.log").find("is not an empty folder") != std::string::npos);
  CHECK(test::slurp(dir / "features" / "part-00007.safetensors") == "stale");
  fs::remove(dir / "features" / "part-00007.safetensors");
  CHECK(status_of(test::run_tool(IREPA_EXTRACT_TOOL, args, dir / "y.log")) == 0);
  CHECK(fs::exists(dir / "features" / "part-00000.safetensors"));

  // As rank 0 of 2 (Open MPI's variables, no mpirun: the processes do not talk): the other
  // rank's shards and temporaries may already be there, since it does not wait; a stale shard
  // of this rank's, or any other file, is refused.
  const fs::path two = dir / "two";
  const std::string rank0 = "OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 " + std::string(IREPA_EXTRACT_TOOL);
  const std::string args2 = "--dataset fashion-mnist --split test --limit 60 --shard-size 20 --enc-type hog-x-g7_d32 --threads 1 --output-dir " +
                            two.string();  // parts 0 and 2 are rank 0's, part 1 rank 1's
  auto attempt = [&](const std::vector<std::string>& present, const fs::path& log) {
    fs::remove_all(two);
    fs::create_directories(two);
    for (const auto& f : present) std::ofstream(two / f) << "x";
    return status_of(test::run_tool(rank0, args2, log));
  };
  CHECK(attempt({"part-00001.safetensors", "part-00001.safetensors.tmp.4242"}, dir / "r0.log") == 0);
  CHECK(fs::exists(two / "part-00000.safetensors"));
  CHECK(fs::exists(two / "part-00002.safetensors"));
  CHECK(test::slurp(two / "part-00001.safetensors") == "x");  // the other rank's: untouched
  CHECK(attempt({"part-00002.safetensors"}, dir / "r1.log") == 1);  // this rank's own: stale
  CHECK(test::slurp(dir / "r1.log").find("('part-00002.safetensors')") != std::string::npos);
  CHECK(attempt({"part-00003.safetensors"}, dir / "r2.log") == 1);  // past the job's 3 parts
  CHECK(attempt({"part-1.safetensors"}, dir / "r3.log") == 1);      // not a shard's name
  CHECK(attempt({"notes.txt"}, dir / "r4.log") == 1);
  fs::remove_all(dir);
}
