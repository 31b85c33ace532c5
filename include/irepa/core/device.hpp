#pragma once
// Device tags. A tag names where a tensor's memory lives; the execution context of the same
// device (core/context.hpp) runs ops on it. Backends are chosen once, by tag, at the top.

#include <cstddef>
#include <cstdlib>
#include <new>
#include <string_view>

#include "irepa/core/error.hpp"

#if defined(IREPA_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace irepa {

struct Cpu {
  static constexpr std::string_view name = "cpu";
  static constexpr bool host_accessible = true;
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    // 64-byte alignment: full cache lines and AVX-512 loads.
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) fail("Cpu::allocate: out of memory allocating {} bytes", bytes);
    return p;
  }
  static void deallocate(void* p) noexcept { std::free(p); }
};

struct Cuda {
  static constexpr std::string_view name = "cuda";
  static constexpr bool host_accessible = false;
  static void* allocate(std::size_t bytes) {
#if defined(IREPA_WITH_CUDA)
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) fail("cudaMalloc({} bytes): {}", bytes, cudaGetErrorString(e));
    return p;
#else
    (void)bytes;
    fail("Cuda::allocate: this translation unit was built without CUDA "
         "(configure with IREPA_ENABLE_CUDA=ON and link irepa::cuda)");
#endif
  }
  static void deallocate(void* p) noexcept {
#if defined(IREPA_WITH_CUDA)
    if (p) cudaFree(p);
#else
    (void)p;
#endif
  }
};

}  // namespace irepa
