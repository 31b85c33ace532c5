#pragma once
// The contract between the trainer and an online evaluation (TrainerOptions::evaluate): what a
// run hands an evaluator at its evaluation steps. The trainer knows nothing of Inception or FID;
// metrics/online_fid.hpp is one evaluator.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "irepa/core/tensor.hpp"

namespace irepa {

struct EvalRequest {
  std::int64_t step = 0;  // the optimizer steps done
  int rank = 0, world = 1;
  // labels [n] (host) -> samples [n, C, H, W] in [-1, 1] of the first EMA's weights, drawn by the
  // objective's sampler with the run's grid settings (cfg, steps, interval) on the model's device,
  // decoded to pixels when the run has a grid decoder; the noise comes from seed alone.
  std::function<Tensor<double>(const Tensor<std::int64_t>& labels, std::uint64_t seed)> sample;
  // v = the sum of every rank's v, in place (a collective: every rank calls it, in the same order).
  std::function<void(std::vector<double>& v)> sum_over_ranks;
};

/// An evaluation: every rank is called with the same step; the scalars rank 0 returns are logged
/// at that step (log.jsonl and the run's sink).
using Evaluator = std::function<std::map<std::string, double>(const EvalRequest&)>;

}  // namespace irepa
