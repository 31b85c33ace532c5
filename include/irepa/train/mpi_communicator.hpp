#pragma once
// The communicator between CPU processes: MPI (Debian's Open MPI; link irepa::mpi). Collectives
// are MPI's non-blocking ones, polled against a deadline, so that a dead or stuck peer gives an
// error naming this rank instead of a hang; every MPI call's error code is checked.
//
//   irepa::MpiSession mpi(&argc, &argv);          // once per process, before any communicator
//   irepa::MpiCommunicator comm;                   // MPI_COMM_WORLD (duplicated)
//   comm.all_reduce_sum(ctx, grads);               // in place, on host memory

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <string>
#include <thread>
#include <vector>

#include "irepa/train/communicator.hpp"

namespace irepa {

namespace detail {
inline void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail("MPI: {} failed: {}", what, std::string(text, static_cast<std::size_t>(len)));
}
inline MPI_Datatype mpi_type(CollectiveType t) {
  switch (t) {
    case CollectiveType::f32: return MPI_FLOAT;
    case CollectiveType::f64: return MPI_DOUBLE;
    case CollectiveType::i64: return MPI_INT64_T;
  }
  return MPI_BYTE;
}
inline std::size_t type_size(CollectiveType t) { return t == CollectiveType::f32 ? 4 : 8; }
}  // namespace detail

/// MPI for this process: initialised (threads: the main one calls MPI) when constructed unless
/// already, finalised when destroyed by whoever initialised it.
class MpiSession {
 public:
  MpiSession(int* argc = nullptr, char*** argv = nullptr) {
    int done = 0;
    MPI_Initialized(&done);
    if (done) return;
    int provided = 0;
    detail::mpi_check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owner_ = true;
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  ~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owner_ && !finalized) MPI_Finalize();
  }

 private:
  bool owner_ = false;
};

/// Every process of MPI_COMM_WORLD, on the CPU.
class MpiCommunicator final : public Communicator<Cpu> {
 public:
  explicit MpiCommunicator(double timeout_seconds = collective_timeout_seconds()) : timeout_(timeout_seconds) {
    int done = 0;
    MPI_Initialized(&done);
    IREPA_CHECK(done, "MpiCommunicator: MPI is not initialised (construct an MpiSession first)");
    detail::mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &world_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string describe() const override {
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    std::string s(v, static_cast<std::size_t>(len));
    s = s.substr(0, s.find_first_of(",\n"));
    return fmt::format("MPI ({}), {} processes", s, world_);
  }
  double timeout() const { return timeout_; }

  void wait_all(const Context&) override { wait("all-reduce"); }

  std::vector<std::int64_t> all_gather(const Context&, std::int64_t value) override {
    std::vector<std::int64_t> out(static_cast<std::size_t>(world_));
    MPI_Request r;
    detail::mpi_check(MPI_Iallgather(&value, 1, MPI_INT64_T, out.data(), 1, MPI_INT64_T, comm_, &r), "MPI_Iallgather");
    reqs_.push_back(r);
    wait("all-gather");
    return out;
  }
  void synchronize(const Context&) override { wait("collective"); }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(comm_, code);
    std::_Exit(code);
  }

 protected:
  void start_sum(const Context&, void* data, std::int64_t n, CollectiveType type) override {
    for_chunks(data, n, type, [&](void* p, int count) {
      MPI_Request r;
      detail::mpi_check(MPI_Iallreduce(MPI_IN_PLACE, p, count, detail::mpi_type(type), MPI_SUM, comm_, &r), "MPI_Iallreduce");
      reqs_.push_back(r);
    });
    progress();
  }
  void broadcast_raw(const Context&, void* data, std::int64_t n, CollectiveType type, int root) override {
    IREPA_CHECK(root >= 0 && root < world_, "MPI broadcast: root {} of {} processes", root, world_);
    for_chunks(data, n, type, [&](void* p, int count) {
      MPI_Request r;
      detail::mpi_check(MPI_Ibcast(p, count, detail::mpi_type(type), root, comm_, &r), "MPI_Ibcast");
      reqs_.push_back(r);
    });
    wait("broadcast");
  }

 private:
  /// MPI counts are int: a long buffer goes as several collectives.
  template <class F>
  static void for_chunks(void* data, std::int64_t n, CollectiveType type, F&& f) {
    constexpr std::int64_t kMax = std::int64_t{1} << 30;
    auto* p = static_cast<char*>(data);
    for (std::int64_t off = 0; off < n; off += kMax)
      f(p + static_cast<std::size_t>(off) * detail::type_size(type), static_cast<int>(std::min(kMax, n - off)));
  }
  /// Lets MPI move started collectives along (Open MPI progresses them inside MPI calls).
  void progress() {
    if (reqs_.empty()) return;
    int flag = 0;
    detail::mpi_check(MPI_Testall(static_cast<int>(reqs_.size()), reqs_.data(), &flag, MPI_STATUSES_IGNORE), "MPI_Testall");
    if (flag) reqs_.clear();
  }
  void wait(const char* what) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_);
    auto pause = std::chrono::microseconds(2);
    while (!reqs_.empty()) {
      progress();
      if (reqs_.empty()) break;
      if (std::chrono::steady_clock::now() > deadline)
        fail("rank {} of {}: an MPI {} did not finish within {} s: a peer process has died or stopped "
             "(IREPA_COLLECTIVE_TIMEOUT sets the limit)",
             rank_, world_, what, timeout_);
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(500));
    }
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, world_ = 1;
  double timeout_;
  std::vector<MPI_Request> reqs_;
};

}  // namespace irepa
