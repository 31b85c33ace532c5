#pragma once
// What the CUDA test programs share (they run without Catch2, which nvcc does not build here):
// a failure count, EXPECT, the device check, and the closing line.

#include <cuda_runtime.h>

#include <cstdio>

namespace cuda_test {

inline int failures = 0, checks = 0;

/// A device to run on; prints why not (the program then fails: these tests are meant for a GPU).
inline bool have_device() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device\n");
    return false;
  }
  return true;
}

/// The last line: the name, ok or FAILED, and the counts; the exit status.
inline int finish(const char* name) {
  std::printf("%s: %s (%d checks, %d failures)\n", name, failures ? "FAILED" : "ok", checks, failures);
  return failures ? 1 : 0;
}

}  // namespace cuda_test

#define IREPA_CUDA_EXPECT(cond, ...)             \
  do {                                           \
    ++cuda_test::checks;                         \
    if (!(cond)) {                               \
      ++cuda_test::failures;                     \
      std::printf("FAILED %s: ", #cond);         \
      std::printf(__VA_ARGS__);                  \
      std::printf("\n");                         \
    }                                            \
  } while (0)
