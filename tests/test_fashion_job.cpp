// irepa-fashion (the README's default job) end to end at a toy size: every promised file appears,
// report.md carries the scores, --compare writes one row per method, and bad flags are refused.

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "irepa/io/png.hpp"
#include "test_support.hpp"
#include "tool_test_support.hpp"

namespace fs = std::filesystem;

namespace {
int run(const std::string& args, const fs::path& log) { return irepa::test::run_tool(IREPA_FASHION_TOOL, args, log); }
using irepa::test::slurp;
}  // namespace

TEST_CASE("irepa-fashion writes samples, curves, log, checkpoint and report, and --compare adds the table", "[fashion][tool]") {
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) {
    WARN("dataset-fashion-mnist is not installed (scripts/setup.sh installs it); SKIPPING");
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("irepa_fashion_" + std::to_string(irepa::test::rng().seed()));
  const std::string tiny = " --steps 12 --log-every 6 --depth 1 --encoder-depth 1 --hidden-size 32 --batch-size 8 --eval-per-class 3 --sample-steps 3"
                           " --threads 2 --seed " + std::to_string(irepa::test::rng().seed() % 1000);
  REQUIRE(run("--output-dir " + (dir / "one").string() + tiny, dir.string() + "_a.log") == 0);
  const std::string out = slurp(dir.string() + "_a.log");
  INFO(out);
  CHECK(out.find("step 6/12") != std::string::npos);  // the progress line
  CHECK(out.find("img/s") != std::string::npos);
  for (const char* f : {"samples.png", "loss_curves.png", "log.jsonl", "report.md", "args.json", "checkpoints/0000012.safetensors"})
    CHECK(fs::exists(dir / "one" / f));
  const auto grid = irepa::io::read_png((dir / "one" / "samples.png").string()).pixels;
  CHECK(grid.size(0) == 10 * 56 + 11 * 2);  // one row per class, 3 columns (the samples per class), 2x
  CHECK(grid.size(1) == 3 * 56 + 4 * 2);
  const std::string report = slurp(dir / "one" / "report.md");
  CHECK(report.find("iREPA") != std::string::npos);
  CHECK(report.find("class accuracy of 30 samples") != std::string::npos);
  CHECK(report.find("FD-HOG") != std::string::npos);
  CHECK(report.find("hog-x-g7_d128") != std::string::npos);

  REQUIRE(run("--compare --output-dir " + (dir / "cmp").string() + tiny, dir.string() + "_b.log") == 0);
  const std::string table = slurp(dir / "cmp" / "compare.md");
  INFO(table);
  for (const char* m : {"| no alignment |", "| REPA (MLP projector) |", "| iREPA (conv 3x3 + spatial z-score) |"})
    CHECK(table.find(m) != std::string::npos);
  CHECK(fs::exists(dir / "cmp" / "compare_losses.png"));
  for (const char* m : {"none", "repa", "irepa"}) CHECK(fs::exists(dir / "cmp" / m / "samples.png"));

  CHECK(run("--alignment dino --output-dir " + (dir / "bad").string() + tiny, dir.string() + "_c.log") != 0);
  CHECK(slurp(dir.string() + "_c.log").find("--alignment 'dino' is not known; expected irepa, repa or none") != std::string::npos);
  fs::remove_all(dir);
  for (const char* s : {"_a.log", "_b.log", "_c.log"}) fs::remove(dir.string() + s);
}
