// The single-process parts of data-parallel training: the sharded generator and loader (what
// makes W ranks see the one-process batch), the launcher's variables, gradient buckets, the
// models' finished-gradient reports, and the TCP rendezvous. tests/test_mpi.cpp runs the
// collectives and the trainer across processes.

#include <cstdlib>
#include <set>
#include <thread>

#include "irepa/align/head.hpp"
#include "irepa/data/fashion_mnist.hpp"
#include "irepa/data/loader.hpp"
#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/models/jit.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/train/distributed.hpp"
#include "irepa/train/tcp_rendezvous.hpp"
#include "irepa/train/trainer.hpp"
#include "model_test_support.hpp"
#include "test_support.hpp"

using namespace irepa;

namespace {
/// Rows r, r + W, ... of a [W b, m] tensor.
template <class T>
Tensor<T> rows_of_rank(const Tensor<T>& all, std::int64_t r, std::int64_t W) {
  const std::int64_t b = all.size(0) / W, m = all.numel() / all.size(0);
  Shape s = all.shape();
  s[0] = b;
  Tensor<T> out(s);
  for (std::int64_t k = 0; k < b; ++k)
    for (std::int64_t j = 0; j < m; ++j) out[k * m + j] = all[(W * k + r) * m + j];
  return out;
}
template <class T>
bool equal(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.numel() != b.numel()) return false;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    if (!(a[i] == b[i])) return false;
  return true;
}
}  // namespace

TEMPLATE_TEST_CASE("Philox::shard: rank r's fill of [b, ...] is rows r, r + W, ... of the one-process fill [W b, ...]", "[distributed][rng]",
                   float, double) {
  using T = TestType;
  const std::uint64_t seed = test::rng().seed();
  for (std::int64_t W : {2, 3, 4}) {
    for (const Shape& local : {Shape{5}, Shape{3, 7}, Shape{2, 1, 3, 3}}) {
      Shape global = local;
      global[0] *= W;
      Philox one(seed, 9);
      one.set_position(17);
      Tensor<T> u(global), n(global);
      Tensor<std::int64_t> k(global);
      one.uniform(u.view());
      one.normal(n.view(), T(1), T(2));
      one.randint(k.view(), -3, 1000);
      for (std::int64_t r = 0; r < W; ++r) {
        INFO("world " << W << ", rank " << r << ", local shape " << local.str());
        Philox part(seed, 9);
        part.set_position(17);
        part.shard(r, W);
        Tensor<T> pu(local), pn(local);
        Tensor<std::int64_t> pk(local);
        part.uniform(pu.view());
        part.normal(pn.view(), T(1), T(2));
        part.randint(pk.view(), -3, 1000);
        CHECK(equal(pu, rows_of_rank(u, r, W)));
        CHECK(equal(pn, rows_of_rank(n, r, W)));
        CHECK(equal(pk, rows_of_rank(k, r, W)));
        CHECK(part.position() == one.position());  // every rank moves past the whole fill
      }
    }
  }
  Philox p(seed);
  REQUIRE_IREPA_ERROR(p.shard(2, 2), "rank 2 of 2");
}

TEST_CASE("epoch_loader on W ranks: the ranks' batches interleave into the one-process batch, across epochs", "[distributed][data]") {
  const std::int64_t N = 23, B = 6;
  Tensor<std::uint8_t> img(Shape{N, 1, 2, 2});
  Tensor<std::int64_t> labels(Shape{N});
  for (std::int64_t i = 0; i < N; ++i) labels[i] = i;  // a sample's label is its index
  for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(i % 251);
  const data::ImageDataset ds(std::move(img), std::move(labels));
  const auto seed = static_cast<std::int64_t>(test::rng().seed() % 100000);
  auto one = data::epoch_loader<float>(ds, B, seed, 2);
  std::vector<std::unique_ptr<std::remove_reference_t<decltype(*one)>>> parts;
  for (std::int64_t r = 0; r < 3; ++r) parts.push_back(data::epoch_loader<float>(ds, B, seed, 2, r, 3));
  for (int step = 0; step < 10; ++step) {  // 60 samples: past two epoch ends
    const auto whole = one->next();
    for (std::int64_t r = 0; r < 3; ++r) {
      const auto part = parts[static_cast<std::size_t>(r)]->next();
      REQUIRE(part.y.numel() == 2);
      for (std::int64_t k = 0; k < 2; ++k) CHECK(part.y[k] == whole.y[3 * k + r]);
    }
  }
  REQUIRE_IREPA_ERROR(data::epoch_loader<float>(ds, 7, seed, 0, 0, 2), "global batch of 7", "2 processes");
}

namespace {
struct EnvGuard {
  std::vector<std::string> names;
  void set(const std::string& k, const std::string& v) {
    names.push_back(k);
    ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~EnvGuard() {
    for (const auto& k : names) ::unsetenv(k.c_str());
  }
};
}  // namespace

TEST_CASE("LaunchInfo reads Open MPI's and torchrun's variables, and refuses bad ones", "[distributed][launch]") {
  for (const char* k : {"OMPI_COMM_WORLD_RANK", "WORLD_SIZE"}) REQUIRE(std::getenv(k) == nullptr);  // the test's own process
  CHECK(LaunchInfo::from_env().world == 1);
  CHECK(LaunchInfo::from_env().launcher == "single");
  {
    EnvGuard e;
    e.set("OMPI_COMM_WORLD_RANK", "3"), e.set("OMPI_COMM_WORLD_SIZE", "8"), e.set("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        e.set("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
    const LaunchInfo l = LaunchInfo::from_env();
    CHECK(l.launcher == "mpirun");
    CHECK((l.rank == 3 && l.world == 8 && l.local_rank == 1 && l.local_world == 4));
  }
  {
    EnvGuard e;
    e.set("RANK", "1"), e.set("WORLD_SIZE", "2"), e.set("LOCAL_RANK", "1"), e.set("MASTER_ADDR", "10.0.0.7"), e.set("MASTER_PORT", "29511");
    const LaunchInfo l = LaunchInfo::from_env();
    CHECK(l.launcher == "torchrun");
    CHECK((l.rank == 1 && l.world == 2 && l.local_rank == 1 && l.local_world == 2));
    CHECK((l.master_addr == "10.0.0.7" && l.master_port == 29511));
    // A CPU job of torchrun processes has no MPI between them: refused with the way out.
    REQUIRE_IREPA_ERROR(make_communicator(CpuContext(1), l), "CPU processes talk over MPI", "mpirun -np 2");
  }
  {
    EnvGuard e;
    e.set("RANK", "2"), e.set("WORLD_SIZE", "2");
    REQUIRE_IREPA_ERROR(LaunchInfo::from_env(), "rank 2 of a world of 2");
  }
  {
    EnvGuard e;
    e.set("WORLD_SIZE", "two");
    REQUIRE_IREPA_ERROR(LaunchInfo::from_env(), "WORLD_SIZE='two'");
  }
  {
    EnvGuard e;
    e.set("WORLD_SIZE", "2");
    REQUIRE_IREPA_ERROR(LaunchInfo::from_env(), "RANK is not set");
  }
  {
    EnvGuard e;
    e.set("IREPA_COLLECTIVE_TIMEOUT", "-1");
    REQUIRE_IREPA_ERROR(collective_timeout_seconds(), "IREPA_COLLECTIVE_TIMEOUT='-1'");
  }
}

namespace {
/// A communicator of `world` ranks that records what it is asked and sums nothing.
class RecordingComm final : public Communicator<Cpu> {
 public:
  explicit RecordingComm(int world) : world_(world) {}
  int rank() const override { return 0; }
  int world() const override { return world_; }
  std::string describe() const override { return "recording"; }
  void wait_all(const Context&) override { waits.push_back(started.size()); }
  std::vector<std::int64_t> all_gather(const Context&, std::int64_t v) override { return std::vector<std::int64_t>(world_, v); }
  void synchronize(const Context&) override {}
  [[noreturn]] void abort(int code) override { std::exit(code); }
  std::vector<std::pair<const void*, std::int64_t>> started;
  std::vector<std::size_t> waits;
  int broadcasts = 0;

 protected:
  void start_sum(const Context&, void* p, std::int64_t n, CollectiveType) override { started.push_back({p, n}); }
  void broadcast_raw(const Context&, void*, std::int64_t, CollectiveType, int) override { ++broadcasts; }

 private:
  int world_;
};
}  // namespace

TEST_CASE("GradientBuckets: a bucket starts once every element is reported, finish starts the rest in bucket order", "[distributed][buckets]") {
  CpuContext ctx(1);
  RecordingComm comm(2);
  Tensor<float> g(Shape{250});
  GradientBuckets<float, Cpu> buckets(comm, g.view(), 100);  // [150, 250), [50, 150), [0, 50)
  REQUIRE(buckets.size() == 3);
  const GradReady hook = buckets.hook(ctx);
  hook(200, 250);
  CHECK(comm.started.empty());
  hook(140, 200);  // completes [150, 250)
  REQUIRE(comm.started.size() == 1);
  CHECK(comm.started[0] == std::pair<const void*, std::int64_t>{g.data() + 150, 100});
  hook(60, 140);
  CHECK(comm.started.size() == 1);
  buckets.finish(ctx);
  REQUIRE(comm.started.size() == 3);
  CHECK(comm.started[1] == std::pair<const void*, std::int64_t>{g.data() + 50, 100});
  CHECK(comm.started[2] == std::pair<const void*, std::int64_t>{g.data(), 50});
  CHECK(comm.waits == std::vector<std::size_t>{3});
  CHECK(buckets.last_started_early() == 1);
  REQUIRE_IREPA_ERROR(hook(240, 260), "outside an arena of 250");
  // One process: no hook at all (the plain backward).
  RecordingComm alone(1);
  GradientBuckets<float, Cpu> none(alone, g.view(), 100);
  CHECK(!none.hook(ctx));
}

namespace {
/// Runs a backward with a GradReady that snapshots each reported range; checks the ranges are
/// disjoint, cover `expected` elements, and held their final values when reported.
template <class M>
void check_reports(const M& m, const CpuContext& ctx, std::int64_t expected) {
  using T = typename M::scalar_type;
  auto in = test::random_batch(m, 3);
  fill(ctx, m.params().grads(), T(0));
  const auto cache = m.forward(ctx, in.x.cview(), in.t.cview(), in.y.cview(), true);
  const auto dout = test::randn<T>(cache.output().shape());
  std::vector<Tensor<T>> dz;
  std::vector<ConstView<T>> dzv;
  for (std::size_t j = 0; j < m.num_projectors(); ++j) {
    dz.push_back(test::randn<T>(cache.projected(j).shape()));
    dzv.push_back(dz.back().cview());
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
  std::vector<Tensor<T>> snaps;
  const TensorView<T> grads = m.params().grads();
  m.backward(ctx, cache, dout.cview(), std::span<const ConstView<T>>(dzv), [&](std::int64_t a, std::int64_t b) {
    ranges.push_back({a, b});
    snaps.push_back(Tensor<T>::copy_of(ConstView<T>(grads.slice(0, a, b - a))));
  });
  std::set<std::int64_t> seen;
  std::int64_t covered = 0;
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    const auto [a, b] = ranges[i];
    REQUIRE((0 <= a && a < b && b <= m.params().numel()));
    for (const auto& [c, d] : ranges)
      if (&c != &ranges[i].first) CHECK((d <= a || b <= c));
    covered += b - a;
    const Tensor<T> now = Tensor<T>::copy_of(ConstView<T>(grads.slice(0, a, b - a)));
    CHECK(equal(snaps[i], now));  // nothing wrote these gradients after they were reported
    double norm = 0;
    for (std::int64_t k = 0; k < now.numel(); ++k) norm += static_cast<double>(now[k]) * static_cast<double>(now[k]);
    CHECK(norm > 0);
  }
  CHECK(covered == expected);
}
}  // namespace

TEST_CASE("SiT and JiT backward report each block's, projector's and the final layer's gradients once, when final", "[distributed][models]") {
  CpuContext ctx(2);
  SiTConfig sc;
  sc.input_size = 8, sc.in_channels = 4, sc.num_classes = 10, sc.encoder_depth = 2, sc.z_dims = {12, 6};
  sc.depth = 3, sc.hidden_size = 32, sc.num_heads = 2, sc.patch_size = 2;
  SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, double> sit(sc);
  test::randomize(sit);
  std::int64_t stack = 0;
  for (const auto& e : sit.params().entries())
    if (e.name.starts_with("blocks.") || e.name.starts_with("projectors.") || e.name.starts_with("final_layer.")) stack += e.shape.numel();
  check_reports(sit, ctx, stack);

  JiTConfig jc;
  jc.input_size = 8, jc.in_channels = 3, jc.num_classes = 10, jc.encoder_depth = 2, jc.z_dims = {12}, jc.kernel_size = 3;
  jc.depth = 3, jc.hidden_size = 32, jc.num_heads = 2, jc.patch_size = 2, jc.bottleneck_dim = 8;
  jc.in_context_len = 3, jc.in_context_start = 1;
  JiT<Dynamic, DynamicPatch, REPAHead, double> jit(jc);
  test::randomize(jit);
  stack = 0;
  for (const auto& e : jit.params().entries())
    if (e.name.starts_with("blocks.") || e.name.starts_with("projectors.") || e.name.starts_with("final_layer.")) stack += e.shape.numel();
  check_reports(jit, ctx, stack);
}

TEST_CASE("the trainer refuses a global batch that does not split over its ranks, and broadcasts rank 0's weights", "[distributed][trainer]") {
  CpuContext ctx(1);
  SiTConfig c;
  c.input_size = 8, c.in_channels = 1, c.num_classes = 10, c.encoder_depth = 1, c.z_dims = {};
  c.depth = 1, c.hidden_size = 16, c.num_heads = 2, c.patch_size = 2;
  SiT<Dynamic, DynamicPatch, REPAHead, float> m(c);
  m.init(1);
  TrainerOptions o;
  o.run_dir = (std::filesystem::temp_directory_path() / ("irepa_dist_" + std::to_string(test::rng().seed()))).string();
  o.batch_size = 8, o.quiet = true;
  RecordingComm three(3);
  using Tr = Trainer<decltype(m), SiTObjective>;
  REQUIRE_IREPA_ERROR(Tr(ctx, o, m, SiTObjective{}, nlohmann::json{}, three), "global batch of 8", "3 processes");
  RecordingComm two(2);
  {
    Tr tr(ctx, o, m, SiTObjective{}, nlohmann::json{}, two);
    CHECK(two.broadcasts == 1);
    CHECK(tr.world() == 2);
    CHECK(tr.gradient_buckets() == 1);
  }
  std::filesystem::remove_all(o.run_dir);
}

TEST_CASE("tcp_rendezvous: rank 0 hands its bytes to every peer, and a missing rank 0 is a timeout, not a hang", "[distributed][rendezvous]") {
  // A port in the dynamic range, fresh per run (a clash is possible but would be an error, not a pass).
  const int port = 40000 + static_cast<int>(test::rng().seed() % 20000);
  std::vector<char> id(128);
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<char>((test::rng().seed() >> (i % 56)) + i);
  std::vector<std::vector<char>> got(3);
  std::vector<std::thread> peers;
  for (int r = 1; r < 3; ++r)
    peers.emplace_back([&, r] { got[static_cast<std::size_t>(r)] = tcp_rendezvous(r, 3, "127.0.0.1", port, {}, 20.0); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the peers retry until rank 0 listens
  got[0] = tcp_rendezvous(0, 3, "127.0.0.1", port, id, 20.0);
  for (auto& t : peers) t.join();
  for (const auto& g : got) CHECK(g == id);
  REQUIRE_IREPA_ERROR(tcp_rendezvous(1, 2, "127.0.0.1", port + 1, {}, 0.3), "could not reach rank 0 at 127.0.0.1", "within 0.3 s");
  REQUIRE_IREPA_ERROR(tcp_rendezvous(0, 2, "127.0.0.1", port + 2, id, 0.3), "rank 0 waiting for 1 of 1 peers", "timed out");
}
