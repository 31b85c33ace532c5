#pragma once
// The communicator between GPUs: NCCL (in CUDA 13 at /usr/local/cuda; link irepa::nccl). One
// process per GPU; the device is the local rank. The NCCL id goes from rank 0 to the others over
// MPI in an mpirun job, or over TCP at MASTER_ADDR:MASTER_PORT (+1 when torchrun's agent holds
// that port) in a torchrun job.
//
// Sums run on a stream of their own: each waits for an event recorded on the compute stream
// when its bucket's gradients are done, so they overlap the rest of the backward; wait_all makes
// the compute stream wait for the last of them (the host does not wait). The communicator is
// non-blocking (NCCL's config.blocking = 0): synchronize() polls the stream and NCCL's async
// error against a deadline and aborts the communicator on a dead peer instead of hanging.

#include <nccl.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "irepa/core/context.hpp"
#include "irepa/train/communicator.hpp"
#include "irepa/train/tcp_rendezvous.hpp"
#if defined(IREPA_WITH_MPI)
#include "irepa/train/mpi_communicator.hpp"
#endif

namespace irepa {

namespace detail {
inline ncclDataType_t nccl_type(CollectiveType t) {
  switch (t) {
    case CollectiveType::f32: return ncclFloat32;
    case CollectiveType::f64: return ncclFloat64;
    case CollectiveType::i64: return ncclInt64;
  }
  return ncclInt8;
}
}  // namespace detail

class NcclCommunicator final : public Communicator<Cuda> {
 public:
  /// Joins the job described by `l` on ctx's GPU (which should be the local rank's).
  NcclCommunicator(const CudaContext& ctx, const LaunchInfo& l, double timeout_seconds = collective_timeout_seconds())
      : rank_(l.rank), world_(l.world), timeout_(timeout_seconds) {
    ncclUniqueId id;
    if (rank_ == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    share_id(l, id);
    CudaContext::check(cudaSetDevice(ctx.device()), "cudaSetDevice");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    check(ncclCommInitRankConfig(&comm_, world_, id, rank_, &config), "ncclCommInitRankConfig", /*in_progress_ok=*/true);
    settle("ncclCommInitRankConfig");
    CudaContext::check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate (NCCL)");
    CudaContext::check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate (NCCL)");
    CudaContext::check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate (NCCL)");
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;
  ~NcclCommunicator() override {
    if (comm_) {
      if (healthy_) {
        ncclCommFinalize(comm_);
        settle_quietly();
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
    }
    if (ready_) cudaEventDestroy(ready_);
    if (done_) cudaEventDestroy(done_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string describe() const override {
    int v = 0;
    ncclGetVersion(&v);
    return fmt::format("NCCL {}.{}.{}, {} processes", v / 10000, (v / 100) % 100, v % 100, world_);
  }

  void wait_all(const Context& ctx) override {
    if (!pending_) return;
    CudaContext::check(cudaEventRecord(done_, stream_), "cudaEventRecord (NCCL done)");
    CudaContext::check(cudaStreamWaitEvent(ctx.stream(), done_, 0), "cudaStreamWaitEvent (NCCL done)");
    pending_ = false;
  }
  std::vector<std::int64_t> all_gather(const Context& ctx, std::int64_t value) override {
    Tensor<std::int64_t, Cuda> buf(Shape{world_});
    std::int64_t* mine = buf.data() + rank_;
    CudaContext::check(cudaMemcpyAsync(mine, &value, sizeof value, cudaMemcpyHostToDevice, ctx.stream()), "all_gather: upload");
    follow(ctx);
    check(ncclAllGather(mine, buf.data(), 1, ncclInt64, comm_, stream_), "ncclAllGather", true);
    settle("ncclAllGather");
    wait_all(ctx);
    synchronize(ctx);
    std::vector<std::int64_t> out(static_cast<std::size_t>(world_));
    CudaContext::check(cudaMemcpy(out.data(), buf.data(), sizeof(std::int64_t) * out.size(), cudaMemcpyDeviceToHost), "all_gather: download");
    return out;
  }
  /// Waits (polling, with the deadline) until the compute stream and the NCCL stream are idle.
  void synchronize(const Context& ctx) override {
    wait_all(ctx);
    CudaContext::check(cudaEventRecord(done_, ctx.stream()), "cudaEventRecord (synchronize)");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_);
    for (;;) {
      const cudaError_t q = cudaEventQuery(done_);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) CudaContext::check(q, "cudaEventQuery (synchronize)");
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        healthy_ = false;
        ncclCommAbort(comm_), comm_ = nullptr;
        fail("rank {} of {}: NCCL failed: {} ({})", rank_, world_, ncclGetErrorString(async), ncclGetLastError(nullptr));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        healthy_ = false;
        ncclCommAbort(comm_), comm_ = nullptr;
        fail("rank {} of {}: NCCL collectives did not finish within {} s: a peer process has died or stopped "
             "(IREPA_COLLECTIVE_TIMEOUT sets the limit)",
             rank_, world_, timeout_);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  [[noreturn]] void abort(int code) override {
    if (comm_) ncclCommAbort(comm_), comm_ = nullptr;
#if defined(IREPA_WITH_MPI)
    int up = 0;
    MPI_Initialized(&up);
    if (up) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    std::_Exit(code);
  }

 protected:
  void start_sum(const Context& ctx, void* data, std::int64_t n, CollectiveType type) override {
    follow(ctx);
    check(ncclAllReduce(data, data, static_cast<std::size_t>(n), detail::nccl_type(type), ncclSum, comm_, stream_), "ncclAllReduce", true);
    settle("ncclAllReduce");
    pending_ = true;
  }
  void broadcast_raw(const Context& ctx, void* data, std::int64_t n, CollectiveType type, int root) override {
    follow(ctx);
    check(ncclBroadcast(data, data, static_cast<std::size_t>(n), detail::nccl_type(type), root, comm_, stream_), "ncclBroadcast", true);
    settle("ncclBroadcast");
    pending_ = true;
    wait_all(ctx);
  }

 private:
  /// The NCCL stream waits for what the compute stream has queued so far.
  void follow(const Context& ctx) {
    CudaContext::check(cudaEventRecord(ready_, ctx.stream()), "cudaEventRecord (NCCL ready)");
    CudaContext::check(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent (NCCL ready)");
  }
  void check(ncclResult_t r, const char* what, bool in_progress_ok = false) {
    if (r == ncclSuccess || (in_progress_ok && r == ncclInProgress)) return;
    healthy_ = false;
    fail("rank {} of {}: {} failed: {} ({})", rank_, world_, what, ncclGetErrorString(r), ncclGetLastError(comm_));
  }
  /// A non-blocking communicator's call returns before NCCL has taken it in: wait for that.
  void settle(const char* what) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_);
    for (;;) {
      ncclResult_t s = ncclSuccess;
      check(ncclCommGetAsyncError(comm_, &s), "ncclCommGetAsyncError");
      if (s == ncclSuccess) return;
      if (s != ncclInProgress) check(s, what);
      if (std::chrono::steady_clock::now() > deadline)
        fail("rank {} of {}: {} did not complete within {} s (are all {} processes up?)", rank_, world_, what, timeout_, world_);
      std::this_thread::yield();
    }
  }
  void settle_quietly() {
    ncclResult_t s = ncclInProgress;
    for (int i = 0; i < 100000 && s == ncclInProgress; ++i) ncclCommGetAsyncError(comm_, &s);
  }
  void share_id(const LaunchInfo& l, ncclUniqueId& id) {
    if (world_ == 1) return;
#if defined(IREPA_WITH_MPI)
    int up = 0;
    MPI_Initialized(&up);
    if (l.launcher == "mpirun" && up) {
      detail::mpi_check(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast (NCCL id)");
      return;
    }
#endif
    IREPA_CHECK(l.launcher == "torchrun", "NCCL: {} processes from {}, but this build has no MPI to share NCCL's id; use torchrun's variables",
                world_, l.launcher);
    // torchrun's agent may hold MASTER_PORT for its own store; then the next port is ours.
    const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    const int port = l.master_port + (agent && std::string(agent) == "True" ? 1 : 0);
    std::vector<char> bytes(sizeof id);
    std::memcpy(bytes.data(), &id, sizeof id);
    bytes = tcp_rendezvous(rank_, world_, l.master_addr, port, std::move(bytes), timeout_);
    IREPA_CHECK(bytes.size() == sizeof id, "NCCL: the rendezvous gave {} bytes, expected an id of {}", bytes.size(), sizeof id);
    std::memcpy(&id, bytes.data(), sizeof id);
  }

  int rank_, world_;
  double timeout_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  bool pending_ = false, healthy_ = true;
};

/// The communicator of a job on a GPU: one process, or NCCL between the processes.
inline std::unique_ptr<Communicator<Cuda>> make_communicator(const CudaContext& ctx, const LaunchInfo& l) {
  if (!l.distributed()) return std::make_unique<SingleProcess<Cuda>>();
  return std::make_unique<NcclCommunicator>(ctx, l);
}

}  // namespace irepa
