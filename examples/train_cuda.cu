// The GPU half of irepa-train and irepa-train-jit (--device cuda), compiled once by nvcc and
// linked into both tools (see train_job.hpp).

#if defined(IREPA_WITH_NCCL)
#include <irepa/train/nccl_communicator.cuh>
#else
#include <irepa/train/communicator.hpp>
namespace irepa {
/// Without NCCL: one GPU process only.
inline std::unique_ptr<Communicator<Cuda>> make_communicator(const CudaContext&, const LaunchInfo& l) {
  IREPA_CHECK(!l.distributed(), "a GPU job of {} processes needs NCCL (this build found none next to CUDA)", l.world);
  return std::make_unique<SingleProcess<Cuda>>();
}
}  // namespace irepa
#endif

#include "train_job.hpp"

namespace irepa::examples {

template <class Family, class Config, class Objective, class Dataset>
void train_on_cuda(const TrainJob& job, const HeadChoice& choice, const Config& cfg, const Objective& obj, const Dataset& ds) {
  run_with_head<Family, CudaContext>(job, choice, cfg, obj, ds);
}

#define IREPA_TRAIN_ON_CUDA(Family, Config, Objective, Dataset) \
  template void train_on_cuda<Family>(const TrainJob&, const HeadChoice&, const Config&, const Objective&, const Dataset&);
// One dataset type (any data behind AnyDataset): the training stack is compiled once per family.
IREPA_TRAIN_ON_CUDA(SiTFamily, SiTConfig, SiTObjective, data::AnyDataset)
IREPA_TRAIN_ON_CUDA(JiTFamily, JiTConfig, JiTObjective, data::AnyDataset)
#undef IREPA_TRAIN_ON_CUDA

}  // namespace irepa::examples
