#pragma once
// Device tags. A tag names where a tensor's memory lives; the execution context of the same
// device (core/context.hpp) runs ops on it. Backends are chosen once, by tag, at the top.

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

#include "irepa/core/error.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#if defined(IREPA_WITH_CUDA)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <vector>
#endif

namespace irepa {

namespace detail {
/// Bytes the CPU allocator has handed out and not yet taken back, and the peak since the last
/// reset: activation memory is countable on the CPU as on a GPU (benchmarks read it).
struct CpuMemoryCounter {
  std::atomic<std::size_t> in_use{0}, peak{0};
  static CpuMemoryCounter& instance() {
    static CpuMemoryCounter c;
    return c;
  }
  void add(std::size_t bytes) {
    const std::size_t now = in_use.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    std::size_t p = peak.load(std::memory_order_relaxed);
    while (now > p && !peak.compare_exchange_weak(p, now, std::memory_order_relaxed)) {
    }
  }
  void remove(std::size_t bytes) { in_use.fetch_sub(bytes, std::memory_order_relaxed); }
};

/// glibc's defaults cost a training step its speed: blocks above the mmap threshold (128 KiB
/// at start, raised only after such a block is freed) come from a fresh mmap, and when more
/// than the trim threshold is free at the heap's top it is handed back (brk), so a step's
/// 1-30 MiB activations, freed at its end, are faulted in again page by page the next step.
/// How often that happened depended on the order of earlier frees: a change elsewhere in the
/// Fashion-MNIST job made it run 25% slower, with 4,000 brk calls and 16x the page faults in
/// 40 s. Fixed thresholds (blocks up to 32 MiB, glibc's own adaptive ceiling, from the heap;
/// up to 1 GiB of free heap kept) make it the same for every program. Done before the first tensor.
inline void tune_host_malloc() {
#if defined(__GLIBC__)
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)done;
#endif
}
}  // namespace detail

/// What an allocator holds: bytes in use now and the most in use since the last reset_peak.
struct MemoryStats {
  std::size_t in_use = 0, peak_in_use = 0;
};

struct Cpu {
  static constexpr std::string_view name = "cpu";
  static constexpr bool host_accessible = true;
  // Each block starts with a 64-byte header holding its size (so that deallocate can count it);
  // the caller's pointer follows it, still 64-byte aligned (full cache lines, AVX-512 loads).
  static constexpr std::size_t kHeader = 64;
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    detail::tune_host_malloc();
    const std::size_t total = kHeader + (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, total);
    if (!p) fail("Cpu::allocate: out of memory allocating {} bytes", bytes);
    std::memcpy(p, &bytes, sizeof(bytes));
    detail::CpuMemoryCounter::instance().add(bytes);
    return static_cast<char*>(p) + kHeader;
  }
  static void deallocate(void* p) noexcept {
    if (!p) return;
    char* block = static_cast<char*>(p) - kHeader;
    std::size_t bytes = 0;
    std::memcpy(&bytes, block, sizeof(bytes));
    detail::CpuMemoryCounter::instance().remove(bytes);
    std::free(block);
  }
  /// Bytes handed out by allocate (tensors, arenas, caches) and the peak since reset_peak().
  static MemoryStats memory_stats() {
    auto& c = detail::CpuMemoryCounter::instance();
    return {c.in_use.load(std::memory_order_relaxed), c.peak.load(std::memory_order_relaxed)};
  }
  static void reset_peak() {
    auto& c = detail::CpuMemoryCounter::instance();
    c.peak.store(c.in_use.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  // Synchronous transfers for set-up code that has no context (constructors, loading); ops
  // use their context's stream instead.
  static void zero_sync(void* p, std::size_t bytes) {
    if (bytes) std::memset(p, 0, bytes);
  }
  static void upload_sync(void* dst, const void* host, std::size_t bytes) {
    if (bytes) std::memcpy(dst, host, bytes);
  }
  static void download_sync(void* host, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(host, src, bytes);
  }
  static void copy_sync(void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
};

#if defined(IREPA_WITH_CUDA)
namespace detail {

/// The device memory cache behind Cuda::allocate. cudaMalloc / cudaFree synchronise the device,
/// so freed blocks are kept by size class and handed out again. A block freed on the host may
/// still be read by kernels in flight; reusing it is safe because every irepa op runs on its
/// context's single stream, in order (the rule PyTorch's caching allocator has too). Sizes are
/// rounded up to 512 bytes below 1 MiB and to 2 MiB above, so near sizes share blocks.
class CudaMemoryCache {
 public:
  struct Stats {
    std::size_t in_use = 0, cached = 0, peak_in_use = 0;
  };
  static CudaMemoryCache& instance() {
    static CudaMemoryCache* c = new CudaMemoryCache;  // never destroyed: tensors in statics free into it at exit
    return *c;
  }
  static std::size_t rounded(std::size_t bytes) {
    const std::size_t q = bytes < (std::size_t{1} << 20) ? 512 : (std::size_t{2} << 20);
    return (bytes + q - 1) / q * q;
  }
  void* allocate(std::size_t bytes) {
    const std::size_t size = rounded(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* p = nullptr;
    if (auto it = free_.find(size); it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      stats_.cached -= size;
    } else {
      cudaError_t e = cudaMalloc(&p, size);
      if (e == cudaErrorMemoryAllocation) {  // give the cache back to the driver and try once more
        (void)cudaGetLastError();
        release_locked();
        e = cudaMalloc(&p, size);
      }
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        fail("cudaMalloc({} bytes): {} ({} bytes in use, {} cached)", size, cudaGetErrorString(e), stats_.in_use, stats_.cached);
      }
    }
    sizes_[p] = size;
    stats_.in_use += size;
    stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
    return p;
  }
  void deallocate(void* p) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    free_[it->second].push_back(p);
    stats_.in_use -= it->second;
    stats_.cached += it->second;
    sizes_.erase(it);
  }
  /// Frees every cached block (cudaFree).
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_locked();
  }
  Stats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_in_use = stats_.in_use;
  }

 private:
  void release_locked() {
    for (auto& [size, blocks] : free_)
      for (void* b : blocks) cudaFree(b);
    free_.clear();
    stats_.cached = 0;
  }
  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::unordered_map<void*, std::size_t> sizes_;
  Stats stats_;
};

}  // namespace detail
#endif

struct Cuda {
  static constexpr std::string_view name = "cuda";
  static constexpr bool host_accessible = false;
  static void* allocate(std::size_t bytes) {
#if defined(IREPA_WITH_CUDA)
    if (bytes == 0) return nullptr;
    return detail::CudaMemoryCache::instance().allocate(bytes);
#else
    (void)bytes;
    fail("Cuda::allocate: this translation unit was built without CUDA "
         "(configure with IREPA_ENABLE_CUDA=ON and link irepa::cuda)");
#endif
  }
  static void deallocate(void* p) noexcept {
#if defined(IREPA_WITH_CUDA)
    if (p) detail::CudaMemoryCache::instance().deallocate(p);
#else
    (void)p;
#endif
  }
  /// Bytes of device memory in use through allocate (not the cached blocks) and the peak since reset_peak().
  static MemoryStats memory_stats() {
#if defined(IREPA_WITH_CUDA)
    const auto s = detail::CudaMemoryCache::instance().stats();
    return {s.in_use, s.peak_in_use};
#else
    return {};
#endif
  }
  static void reset_peak() {
#if defined(IREPA_WITH_CUDA)
    detail::CudaMemoryCache::instance().reset_peak();
#endif
  }
  // Synchronous, device-wide (cudaDeviceSynchronize before and after): for set-up code without
  // a context, so that no stream touches the memory while the transfer is in flight.
#if defined(IREPA_WITH_CUDA)
  static void zero_sync(void* p, std::size_t bytes) {
    sync_call(bytes, "cudaMemset", [&] { return cudaMemset(p, 0, bytes); });
  }
  static void upload_sync(void* dst, const void* host, std::size_t bytes) {
    sync_call(bytes, "cudaMemcpy (host to device)", [&] { return cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice); });
  }
  static void download_sync(void* host, const void* src, std::size_t bytes) {
    sync_call(bytes, "cudaMemcpy (device to host)", [&] { return cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost); });
  }
  static void copy_sync(void* dst, const void* src, std::size_t bytes) {
    sync_call(bytes, "cudaMemcpy (device to device)", [&] { return cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice); });
  }

 private:
  // The legacy stream does not wait for non-blocking streams, and cudaMemcpy from pageable
  // memory may return before the DMA lands: synchronise the device before and after.
  template <class F>
  static void sync_call(std::size_t bytes, std::string_view what, F&& f) {
    if (bytes == 0) return;
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = f();
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) fail("{} ({} bytes): {}", what, bytes, cudaGetErrorString(e));
  }
#else
  static void zero_sync(void*, std::size_t bytes) { no_cuda(bytes); }
  static void upload_sync(void*, const void*, std::size_t bytes) { no_cuda(bytes); }
  static void download_sync(void*, const void*, std::size_t bytes) { no_cuda(bytes); }
  static void copy_sync(void*, const void*, std::size_t bytes) { no_cuda(bytes); }

 private:
  static void no_cuda(std::size_t bytes) {
    if (bytes) fail("Cuda: a {}-byte transfer in a translation unit built without CUDA", bytes);
  }
#endif
};

}  // namespace irepa
