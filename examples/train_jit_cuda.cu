// irepa-train-jit --device cuda: see train_jit_cuda.hpp.

#include "train_jit_cuda.hpp"

#include <cstdio>
#include <string>

namespace irepa::examples {

namespace {
template <class Dataset>
void run(const CudaJiTJob& job, const Dataset& ds) {
  with_head(job.head, [&](auto head) {
    CudaContext ctx(job.device);
    ctx.set_matmul_precision(job.precision);
    ctx.set_fused_attention(job.fused_attention);
    JiT<Dynamic, DynamicPatch, decltype(head), float, Cuda> model(job.model, head);
    model.init(job.seed);
    std::printf("JiT %lldx%lld, %lld heads, patch %lld, bottleneck %lld, %lld in-context tokens from block %lld: %lld parameters "
                "on cuda:%d (matmul %s, %s attention); %lld images %s; %zu target encoder(s); lr %.3g\n",
                static_cast<long long>(model.depth), static_cast<long long>(model.hidden), static_cast<long long>(model.heads),
                static_cast<long long>(model.patch), static_cast<long long>(model.bottleneck), static_cast<long long>(model.ctx_len),
                static_cast<long long>(model.ctx_start), static_cast<long long>(model.num_params()), job.device,
                std::string(to_string(job.precision)).c_str(), job.fused_attention ? "fused" : "materialized",
                static_cast<long long>(ds.size()), ds.sample_shape().str().c_str(), job.model.z_dims.size(), job.options.base_lr());
    train_jit(ctx, job.options, model, ds, job.online, job.config);
  });
}
}  // namespace

void train_jit_cuda(const CudaJiTJob& job, const data::ImageDataset& ds) { run(job, ds); }
void train_jit_cuda(const CudaJiTJob& job, const data::ShardedDataset& ds) { run(job, ds); }

}  // namespace irepa::examples
