// SiT with REPA / iREPA heads: parity with the reference's golden files (outputs, losses and
// every parameter gradient), fixed sizes against Dynamic, whole-model gradient checks on fresh
// random shapes, initialisation, save / load, and the errors users see.

#include <filesystem>

#include "irepa/check/golden.hpp"
#include "irepa/check/gradient_check.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/sit.hpp"
#include "test_support.hpp"

using namespace irepa;
using irepa::test::golden_dir;
using irepa::test::have_golden;

namespace {

const char* const kSiTFiles[] = {"sit_irepa_conv3_zscore", "sit_repa_mlp", "sit_two_encoders_cosine_path"};

template <class T>
void check_golden_file(const std::string& stem, double tol) {
  io::SafeTensorsFile f((golden_dir() / (stem + ".safetensors")).string());
  const auto rows = golden::check_sit<T>(f, tol);
  // Everything the file pins down is compared: 3 model tensors, 2 per encoder, 4 losses, grads.
  REQUIRE(rows.size() > 20);
  for (const auto& r : rows) {
    INFO(stem << " " << r.name << " rel " << r.rel);
    CHECK(r.ok());
  }
}

}  // namespace

TEST_CASE("SiT matches every golden file in double to 1e-9", "[sit][golden]") {
  if (!have_golden()) return;
  for (const char* stem : kSiTFiles) check_golden_file<double>(stem, 1e-9);
}

TEST_CASE("SiT matches every golden file in float to 1e-4", "[sit][golden]") {
  if (!have_golden()) return;
  for (const char* stem : kSiTFiles) check_golden_file<float>(stem, 1e-4);
}
