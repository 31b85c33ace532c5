#pragma once
// Background prefetching of batches. A batch is a pure function of its index (the dataset, the
// epoch permutation and the step decide it), so the worker thread may run ahead by `depth`
// batches without changing what the training loop sees; an exception in the worker reaches the
// consumer at the batch that raised it.

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "irepa/data/sampler.hpp"

namespace irepa::data {

template <class Batch>
class PrefetchLoader {
 public:
  using Producer = std::function<Batch(std::int64_t index)>;

  /// Produces batches first, first + 1, ... on a background thread, at most depth ahead.
  PrefetchLoader(Producer produce, std::int64_t first = 0, std::size_t depth = 2)
      : produce_(std::move(produce)), next_produce_(first), next_take_(first), depth_(std::max<std::size_t>(depth, 1)) {
    worker_ = std::thread([this] { run(); });
  }
  PrefetchLoader(const PrefetchLoader&) = delete;
  PrefetchLoader& operator=(const PrefetchLoader&) = delete;
  ~PrefetchLoader() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  /// The next batch, in index order (waits for the worker when it is behind).
  Batch next() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !queue_.empty(); });
    Item item = std::move(queue_.front());
    queue_.pop_front();
    ++next_take_;
    lock.unlock();
    cv_.notify_all();
    if (item.error) std::rethrow_exception(item.error);
    return std::move(item.batch);
  }
  std::int64_t next_index() const { return next_take_; }

 private:
  struct Item {
    Batch batch{};
    std::exception_ptr error;
  };
  void run() {
    for (;;) {
      std::int64_t index;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || queue_.size() < depth_; });
        if (stop_) return;
        index = next_produce_++;
      }
      Item item;
      try {
        item.batch = produce_(index);
      } catch (...) {
        item.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(std::move(item));
      }
      cv_.notify_all();
    }
  }

  Producer produce_;
  std::int64_t next_produce_, next_take_;
  std::size_t depth_;
  std::deque<Item> queue_;
  bool stop_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread worker_;
};

/// The batches of a run: batch i (0-based) holds global samples i B .. i B + B - 1 in the order
/// of their epochs (a fresh permutation per (seed, epoch)), produced on a background thread from
/// batch `first` on, as Dataset::get<T> makes them. ds must outlive the loader.
/// On rank r of `world` processes the batch is this rank's share, B / world samples: global
/// samples i B + r, i B + r + world, ... (DistributedSampler's interleaving), so the ranks'
/// batches together are the one-process batch and each sample sits where Philox::shard puts
/// its draws.
template <class T, class Dataset>
auto epoch_loader(const Dataset& ds, std::int64_t B, std::int64_t seed, std::int64_t first, std::int64_t rank = 0,
                  std::int64_t world = 1) {
  IREPA_CHECK(world >= 1 && rank >= 0 && rank < world && B % world == 0,
              "epoch_loader: a global batch of {} does not split evenly over {} processes (rank {})", B, world, rank);
  using Batch = decltype(ds.template get<T>(std::vector<std::int64_t>{}));
  const std::int64_t N = ds.size();
  return std::make_unique<PrefetchLoader<Batch>>(
      [&ds, B, N, seed, rank, world](std::int64_t i) {
        std::vector<std::int64_t> idx;
        std::uint64_t cached_epoch = ~0ULL;
        std::vector<std::int64_t> perm;
        for (std::int64_t k = i * B + rank; k < (i + 1) * B; k += world) {
          const auto [epoch, off] = epoch_and_offset(k, N);
          if (epoch != cached_epoch) perm = epoch_permutation(N, static_cast<std::uint64_t>(seed), cached_epoch = epoch);
          idx.push_back(perm[static_cast<std::size_t>(off)]);
        }
        return ds.template get<T>(idx);
      },
      first);
}

}  // namespace irepa::data
