#pragma once
// One harness, two drivers. Each tests/fuzz/fuzz_<name>.cpp defines its body with
// IREPA_FUZZ_TARGET(name) { ... data, size ... }:
//  - built with clang's libFuzzer (the fuzz preset, IREPA_LIBFUZZER), the body is the
//    LLVMFuzzerTestOneInput of its own executable: coverage-guided fuzzing (scripts/fuzz.sh);
//  - otherwise it registers itself with irepa-fuzz-replay (replay_main.cpp), which any
//    compiler builds with ASan + UBSan: CI replays the committed corpora and mutates them for
//    a few seconds per harness.
// A body catches irepa::Error (the expected outcome of bad input); anything else that escapes
// (another exception, a sanitizer report, a crash) is a finding.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace irepa::fuzz {
using Body = void (*)(const std::uint8_t*, std::size_t);
inline std::map<std::string, Body>& registry() {
  static std::map<std::string, Body> r;
  return r;
}
struct Register {
  Register(const char* name, Body b) { registry()[name] = b; }
};
}  // namespace irepa::fuzz

#if defined(IREPA_LIBFUZZER)
#define IREPA_FUZZ_TARGET(name)                                                          \
  static void irepa_fuzz_##name(const std::uint8_t* data, std::size_t size);            \
  extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {   \
    irepa_fuzz_##name(data, size);                                                       \
    return 0;                                                                            \
  }                                                                                      \
  static void irepa_fuzz_##name(const std::uint8_t* data, std::size_t size)
#else
#define IREPA_FUZZ_TARGET(name)                                                          \
  static void irepa_fuzz_##name(const std::uint8_t* data, std::size_t size);            \
  static const ::irepa::fuzz::Register irepa_fuzz_register_##name(#name, irepa_fuzz_##name); \
  static void irepa_fuzz_##name(const std::uint8_t* data, std::size_t size)
#endif
