#pragma once
// Execution contexts, one per device. Ops take the context of their device as the first
// argument; the backend is chosen once, when the user creates the context.
//  - CpuContext: an Eigen thread pool and ThreadPoolDevice (thread count settable).
//  - CudaContext: device, stream, cuBLAS and cuBLASLt handles bound to that stream, and the
//    GEMM workspace; errors of CUDA and cuBLAS calls become irepa::Error naming the call.

#include <algorithm>
#include <cstdint>
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

class CpuContext {
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
  void set_threads(int n) {
    if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    device_.reset();
    pool_ = std::make_unique<Eigen::ThreadPool>(n);
    device_ = std::make_unique<Eigen::ThreadPoolDevice>(pool_.get(), n);
    threads_ = n;
  }
  int threads() const { return threads_; }
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

class CudaContext {
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
    if (cublaslt_) cublasLtDestroy(cublaslt_);
    if (cublas_) cublasDestroy(cublas_);
    Cuda::deallocate(workspace_);
    if (stream_) cudaStreamDestroy(stream_);
#endif
  }

  int device() const { return device_; }
  static constexpr std::string_view name() { return "cuda"; }
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
#else
  void synchronize() const {}
#endif

 private:
  int device_ = 0;
#if defined(IREPA_WITH_CUDA)
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t cublaslt_ = nullptr;
  void* workspace_ = nullptr;
#endif
};

/// The execution context of device D: ContextOf<Cpu> = CpuContext, ContextOf<Cuda> = CudaContext.
/// Layers templated on a device take `const ContextOf<D>&`.
template <class D>
using ContextOf = std::conditional_t<std::is_same_v<D, Cuda>, CudaContext, CpuContext>;

}  // namespace irepa
