#pragma once
// Execution contexts, one per device. Ops take the context of their device as the first
// argument; the backend is chosen once, when the user creates the context.
//  - CpuContext: an Eigen thread pool and ThreadPoolDevice (thread count settable).
//  - CudaContext: device, stream, cuBLAS and cuBLASLt handles bound to that stream, the GEMM
//    workspace, the matmul precision and pinned staging buffers for host transfers; errors of
//    CUDA and cuBLAS calls become irepa::Error naming the call.

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <memory>
#include <string_view>
#include <thread>
#include <type_traits>

#include "irepa/core/device.hpp"
#include "irepa/core/eigen.hpp"
#include "irepa/core/error.hpp"

#if defined(IREPA_WITH_CUDA)
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#endif

namespace irepa {

/// Host <-> device traffic through a context (to_device / to_host): how many copies and bytes
/// each way since the last reset. On a GPU a training step should move only its batch up and,
/// at log steps, the logged scalars down; the tests hold the step to that. The CPU context
/// counts its to_device / to_host copies the same way, so the same rule is checked without a GPU.
struct TransferStats {
  std::int64_t uploads = 0, downloads = 0;
  std::int64_t upload_bytes = 0, download_bytes = 0;
};

namespace detail {
class TransferCounter {
 public:
  /// Counts and bytes since the last reset_transfers().
  TransferStats transfers() const { return stats_; }
  void reset_transfers() const { stats_ = {}; }
  void count_upload(std::size_t bytes) const {
    ++stats_.uploads;
    stats_.upload_bytes += static_cast<std::int64_t>(bytes);
  }
  void count_download(std::size_t bytes) const {
    ++stats_.downloads;
    stats_.download_bytes += static_cast<std::int64_t>(bytes);
  }

 private:
  mutable TransferStats stats_;
};
}  // namespace detail

class CpuContext : public detail::TransferCounter {
 public:
  using device_type = Cpu;

  /// threads <= 0: one per hardware thread.
  explicit CpuContext(int threads = 0) {
    warn_if_slow_build();
    set_threads(threads);
  }
  CpuContext(const CpuContext&) = delete;
  CpuContext& operator=(const CpuContext&) = delete;

  /// Rebuilds the pool with n threads (n <= 0: one per hardware thread).
  /// More than max_threads() is refused: a pool of 100,000 threads is a typo, not a setting.
  void set_threads(int n) {
    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    IREPA_CHECK(n <= max_threads(), "CpuContext: {} threads asked for; the limit is {} (8 x the {} hardware threads, at least 64)", n,
                max_threads(), hw);
    if (n <= 0) n = hw;
    device_.reset();
    pool_ = std::make_unique<Eigen::ThreadPool>(n);
    device_ = std::make_unique<Eigen::ThreadPoolDevice>(pool_.get(), n);
    threads_ = n;
  }
  int threads() const { return threads_; }
  static int max_threads() { return std::max(64, 8 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))); }
  const Eigen::ThreadPoolDevice& device() const { return *device_; }
  static constexpr std::string_view name() { return "cpu"; }
  void synchronize() const {}

  /// Runs f(begin, end) over [0, n) in blocks; cost_per_item is a rough flop count per item
  /// that Eigen uses to pick the block size (cheap items are not split across threads).
  template <class F>
  void parallel_for(std::int64_t n, double cost_per_item, F&& f) const {
    if (n <= 0) return;
    if (threads_ == 1 || static_cast<double>(n) * cost_per_item < 20000.0) {
      f(std::int64_t{0}, n);
      return;
    }
    device_->parallelFor(static_cast<Eigen::Index>(n), Eigen::TensorOpCost(8, 8, cost_per_item),
                         [&f](Eigen::Index b, Eigen::Index e) { f(static_cast<std::int64_t>(b), static_cast<std::int64_t>(e)); });
  }

 private:
  /// Never degrade silently: a build without AVX2/FMA on a CPU that has them says so, once.
  static void warn_if_slow_build() {
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(__AVX2__) && (defined(__GNUC__) || defined(__clang__))
    static const bool once = [] {
      if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        std::fprintf(stderr,
                     "irepa: this program was compiled without AVX2/FMA, which this CPU has: CPU matrix products run "
                     "about 4x slower. Compile with -march=native (or -march=x86-64-v3).\n");
      return true;
    }();
    (void)once;
#endif
  }

  std::unique_ptr<Eigen::ThreadPool> pool_;
  std::unique_ptr<Eigen::ThreadPoolDevice> device_;
  int threads_ = 1;
};

/// How float matrix products run on the GPU (CudaContext::set_matmul_precision):
///  - fp32: FP32 math, no TF32 (the parity path, the default);
///  - tf32: inputs rounded to TF32 on the tensor cores, FP32 accumulation;
///  - bf16: inputs rounded to bf16 on the tensor cores, FP32 accumulation, float storage of
///    activations, weights and gradients (autocast's arithmetic for the products; the
///    elementwise ops and reductions stay in float).
/// Double products are always FP64.
enum class MatmulPrecision { fp32, tf32, bf16 };

inline std::string_view to_string(MatmulPrecision p) {
  switch (p) {
    case MatmulPrecision::tf32: return "tf32";
    case MatmulPrecision::bf16: return "bf16";
    default: return "fp32";
  }
}

/// "fp32", "tf32" or "bf16"; anything else is an Error naming the three.
inline MatmulPrecision parse_matmul_precision(std::string_view s) {
  if (s == "fp32") return MatmulPrecision::fp32;
  if (s == "tf32") return MatmulPrecision::tf32;
  if (s == "bf16") return MatmulPrecision::bf16;
  fail("matmul precision '{}' is not known; expected fp32, tf32 or bf16", s);
}

class CudaContext : public detail::TransferCounter {
 public:
  using device_type = Cuda;
  static constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;  // cuBLAS(Lt) split-K and friends

  explicit CudaContext(int device = 0) : device_(device) {
#if defined(IREPA_WITH_CUDA)
    check(cudaSetDevice(device), "cudaSetDevice");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check_cublas(cublasCreate(&cublas_), "cublasCreate");
    check_cublas(cublasSetStream(cublas_, stream_), "cublasSetStream");
    check_cublas(cublasLtCreate(&cublaslt_), "cublasLtCreate");
    workspace_ = Cuda::allocate(kWorkspaceBytes);
    check_cublas(cublasSetWorkspace(cublas_, workspace_, kWorkspaceBytes), "cublasSetWorkspace");
    // fp32 GEMMs stay fp32 (no TF32) unless a caller asks: the float path is the parity path.
    check_cublas(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
#else
    fail("CudaContext: irepa was built without CUDA (configure with IREPA_ENABLE_CUDA=ON; "
         "CUDA code is compiled by nvcc and linked with irepa::cuda)");
#endif
  }
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;
  ~CudaContext() {
#if defined(IREPA_WITH_CUDA)
    if (stream_) cudaStreamSynchronize(stream_);
    for (auto& b : staging_) {
      if (b.host) cudaFreeHost(b.host);
      if (b.done) cudaEventDestroy(b.done);
    }
    if (cublaslt_) cublasLtDestroy(cublaslt_);
    if (cublas_) cublasDestroy(cublas_);
    Cuda::deallocate(workspace_);
    if (stream_) cudaStreamDestroy(stream_);
#endif
  }

  int device() const { return device_; }
  static constexpr std::string_view name() { return "cuda"; }
  /// Applies to every float product issued through this context from now on.
  void set_matmul_precision(MatmulPrecision p) { precision_ = p; }
  MatmulPrecision matmul_precision() const { return precision_; }
  /// Attention through the fused kernels (ops/cuda/flash_attention.cuh: no [B, H, T, T]
  /// probabilities in memory; float, head dim <= 128) instead of cuBLAS products around a
  /// softmax kernel. A cache records which path made it, so backward follows its forward.
  void set_fused_attention(bool on) { fused_attention_ = on; }
  bool fused_attention() const { return fused_attention_; }
#if defined(IREPA_WITH_CUDA)
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  cublasLtHandle_t cublaslt() const { return cublaslt_; }
  void* workspace() const { return workspace_; }
  void synchronize() const { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }
  static void check(cudaError_t e, std::string_view call) {
    if (e != cudaSuccess) fail("{}: {} ({})", call, cudaGetErrorString(e), cudaGetErrorName(e));
  }
  static void check_cublas(cublasStatus_t s, std::string_view call) {
    if (s != CUBLAS_STATUS_SUCCESS) fail("{}: {} (cuBLAS status {})", call, cublasGetStatusString(s), static_cast<int>(s));
  }
  /// After a kernel launch: a bad configuration is reported here, with the kernel's name.
  static void check_launch(std::string_view kernel) { check(cudaGetLastError(), kernel); }

  /// Host -> device through pinned staging memory (two buffers used in turn): the host data is
  /// copied into a page-locked buffer and the DMA queued on the stream, so the call returns
  /// before the transfer lands and `host` may be reused at once. A buffer is reused only after
  /// its previous transfer finished (its event).
  void upload(void* dst, const void* host, std::size_t bytes) const {
    if (bytes == 0) return;
    count_upload(bytes);
    Staging& b = staging_[next_staging_];
    next_staging_ = (next_staging_ + 1) % staging_.size();
    if (b.done) check(cudaEventSynchronize(b.done), "upload: cudaEventSynchronize (staging buffer)");
    reserve(b, bytes);
    std::memcpy(b.host, host, bytes);
    check(cudaMemcpyAsync(dst, b.host, bytes, cudaMemcpyHostToDevice, stream_), "upload: cudaMemcpyAsync");
    check(cudaEventRecord(b.done, stream_), "upload: cudaEventRecord");
  }
  /// Device -> host through pinned staging memory; waits for the stream (every op before it).
  void download(void* host, const void* src, std::size_t bytes) const {
    if (bytes == 0) return;
    count_download(bytes);
    Staging& b = staging_[next_staging_];
    next_staging_ = (next_staging_ + 1) % staging_.size();
    if (b.done) check(cudaEventSynchronize(b.done), "download: cudaEventSynchronize (staging buffer)");
    reserve(b, bytes);
    check(cudaMemcpyAsync(b.host, src, bytes, cudaMemcpyDeviceToHost, stream_), "download: cudaMemcpyAsync");
    check(cudaEventRecord(b.done, stream_), "download: cudaEventRecord");
    synchronize();
    std::memcpy(host, b.host, bytes);
  }
#else
  void synchronize() const {}
#endif

 private:
  int device_ = 0;
  MatmulPrecision precision_ = MatmulPrecision::fp32;
  bool fused_attention_ = false;
#if defined(IREPA_WITH_CUDA)
  struct Staging {
    void* host = nullptr;  // page-locked (cudaHostAlloc)
    std::size_t capacity = 0;
    cudaEvent_t done = nullptr;  // recorded after the buffer's last transfer
  };
  /// Grows b to at least `bytes` (rounded up to 1 MiB; its last transfer has finished).
  static void reserve(Staging& b, std::size_t bytes) {
    if (!b.done) check(cudaEventCreateWithFlags(&b.done, cudaEventDisableTiming), "cudaEventCreate (staging)");
    if (bytes <= b.capacity) return;
    if (b.host) check(cudaFreeHost(b.host), "cudaFreeHost (staging)");
    b.host = nullptr, b.capacity = 0;
    const std::size_t cap = (bytes + (std::size_t{1} << 20) - 1) & ~((std::size_t{1} << 20) - 1);
    check(cudaHostAlloc(&b.host, cap, cudaHostAllocDefault), "cudaHostAlloc (pinned staging buffer)");
    b.capacity = cap;
  }
  mutable std::array<Staging, 2> staging_{};
  mutable std::size_t next_staging_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t cublaslt_ = nullptr;
  void* workspace_ = nullptr;
#endif
};

namespace detail {
/// The CPU context for a run's host-side work (online target encoders, data): the model's own
/// context when the model is on the CPU, else a new one kept in `own`.
inline const CpuContext& host_context(const CpuContext& ctx, std::unique_ptr<CpuContext>&) { return ctx; }
inline const CpuContext& host_context(const CudaContext&, std::unique_ptr<CpuContext>& own) {
  own = std::make_unique<CpuContext>();
  return *own;
}
}  // namespace detail

/// The execution context of device D: ContextOf<Cpu> = CpuContext, ContextOf<Cuda> = CudaContext.
/// Layers templated on a device take `const ContextOf<D>&`.
template <class D>
using ContextOf = std::conditional_t<std::is_same_v<D, Cuda>, CudaContext, CpuContext>;

}  // namespace irepa
