#pragma once
// A process's place in a data-parallel job and its communicator, for programs: read the
// launcher's variables once, start MPI when the job is an mpirun one, make the communicator of
// the model's device (CPU: MPI; CUDA: NCCL, in train/nccl_communicator.cuh), and stop the whole
// job when this rank fails.
//
//   irepa::DistributedJob job(&argc, &argv);            // first thing in main
//   auto comm = irepa::make_communicator(ctx, job.launch());
//   irepa::train(ctx, options, model, obj, ds, online, config, *comm);
//   ... catch (const std::exception& e) { job.stop("tool", e); }  // names the rank, ends every process

#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "irepa/train/communicator.hpp"
#if defined(IREPA_WITH_MPI)
#include "irepa/train/mpi_communicator.hpp"
#endif

namespace irepa {

/// Whether this build can talk MPI (irepa::mpi linked).
inline constexpr bool kHaveMpi =
#if defined(IREPA_WITH_MPI)
    true;
#else
    false;
#endif

/// This process's job: its LaunchInfo, and MPI started for an mpirun job (and stopped at the end).
class DistributedJob {
 public:
  DistributedJob(int* argc = nullptr, char*** argv = nullptr) : launch_(LaunchInfo::from_env()) {
#if defined(IREPA_WITH_MPI)
    if (launch_.launcher == "mpirun") mpi_.emplace(argc, argv);
#else
    (void)argc, (void)argv;
    IREPA_CHECK(launch_.launcher != "mpirun" || !launch_.distributed(),
                "launched by mpirun with {} processes, but this build has no MPI (configure with Debian's libopenmpi-dev)", launch_.world);
#endif
  }
  const LaunchInfo& launch() const { return launch_; }
  int rank() const { return launch_.rank; }
  bool distributed() const { return launch_.distributed(); }
  /// CPU threads for this process: `asked`, or (0) the machine's cores shared among the ranks on it.
  int threads(int asked) const {
    if (asked > 0 || !distributed()) return asked;
    const int cores = static_cast<int>(std::thread::hardware_concurrency());
    return std::max(1, cores / launch_.local_world);
  }

  /// Prints "<prog>: rank R of W: <what>" and ends the job: every process of an MPI job (the
  /// others are blocked in a collective), else this one with status 1 (torchrun then stops
  /// the rest).
  [[noreturn]] void stop(const char* prog, const std::exception& e) const {
    if (distributed())
      std::fprintf(stderr, "%s: rank %d of %d: %s\n", prog, launch_.rank, launch_.world, e.what());
    else
      std::fprintf(stderr, "%s: %s\n", prog, e.what());
    std::fflush(stderr);
#if defined(IREPA_WITH_MPI)
    if (mpi_ && distributed()) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
    std::_Exit(1);
  }

 private:
  LaunchInfo launch_;
#if defined(IREPA_WITH_MPI)
  std::optional<MpiSession> mpi_;
#endif
};

/// The communicator of a job on the CPU: one process, or MPI between the processes of mpirun.
inline std::unique_ptr<Communicator<Cpu>> make_communicator(const CpuContext&, const LaunchInfo& l) {
  if (!l.distributed()) return std::make_unique<SingleProcess<Cpu>>();
  IREPA_CHECK(l.launcher == "mpirun",
              "a CPU job of {} processes from {}'s variables: CPU processes talk over MPI; launch them with mpirun -np {}", l.world,
              l.launcher, l.world);
#if defined(IREPA_WITH_MPI)
  auto c = std::make_unique<MpiCommunicator>();
  IREPA_CHECK(c->world() == l.world && c->rank() == l.rank, "MPI reports rank {} of {}, the launcher's variables rank {} of {}", c->rank(),
              c->world(), l.rank, l.world);
  return c;
#else
  fail("a CPU job of {} processes needs a build with MPI (Debian's libopenmpi-dev)", l.world);
#endif
}

}  // namespace irepa
