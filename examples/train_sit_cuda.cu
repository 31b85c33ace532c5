// irepa-train --device cuda: see train_sit_cuda.hpp.

#include "train_sit_cuda.hpp"

#include <cstdio>

namespace irepa::examples {

namespace {
template <class Dataset>
void run(const CudaTrainJob& job, const Dataset& ds) {
  with_head(job.head, [&](auto head) {
    CudaContext ctx(job.device);
    ctx.set_matmul_precision(job.precision);
    ctx.set_fused_attention(job.fused_attention);
    SiT<Dynamic, DynamicPatch, decltype(head), float, Cuda> model(job.model, head);
    model.init(job.seed);
    std::printf("SiT %lldx%lld, %lld heads, patch %lld: %lld parameters on cuda:%d (matmul %s, %s attention); %lld samples of %s %s; %zu target encoder(s)\n",
                static_cast<long long>(model.depth), static_cast<long long>(model.hidden), static_cast<long long>(model.heads),
                static_cast<long long>(model.patch), static_cast<long long>(model.num_params()), job.device,
                std::string(to_string(job.precision)).c_str(), job.fused_attention ? "fused" : "materialized",
                static_cast<long long>(ds.size()), ds.kind().c_str(), ds.sample_shape().str().c_str(), job.model.z_dims.size());
    train_sit(ctx, job.options, model, ds, job.online, job.config);
  });
}
}  // namespace

void train_sit_cuda(const CudaTrainJob& job, const data::ImageDataset& ds) { run(job, ds); }
void train_sit_cuda(const CudaTrainJob& job, const data::ShardedDataset& ds) { run(job, ds); }

}  // namespace irepa::examples
