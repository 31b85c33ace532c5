#pragma once
// A dataset stored as safetensors shards (every *.safetensors of a folder, in name order), each
// holding n samples:
//   latents [n, ...] (float) or images [n, ...] (uint8)   -- one of the two, same in every shard
//   labels  [n] (integer)
//   features.<encoder> [n, T, D] (optional; precomputed target features, same set in every shard)
// Shards stay memory-mapped; get(indices) gathers a batch, converting to T. Every shard is
// checked when the dataset opens, and a mismatch names the shard and the tensor.

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "irepa/io/safetensors.hpp"

namespace irepa::data {

template <class T>
struct ShardBatch {
  Tensor<T> x;                                // [B, ...] latents or images (images keep 0..255)
  Tensor<std::int64_t> y;                     // [B]
  std::map<std::string, Tensor<T>> features;  // encoder -> [B, T, D]
};

class ShardedDataset {
 public:
  explicit ShardedDataset(const std::string& dir) {
    namespace fs = std::filesystem;
    IREPA_CHECK(fs::is_directory(dir), "ShardedDataset: '{}' is not a folder of safetensors shards", dir);
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    IREPA_CHECK(!files.empty(), "ShardedDataset: no *.safetensors shards in '{}'", dir);
    for (const auto& path : files) add_shard(path);
  }

  std::int64_t size() const { return total_; }
  const std::string& kind() const { return kind_; }  // "latents" or "images"
  const Shape& sample_shape() const { return sample_; }
  std::vector<std::string> encoders() const {
    std::vector<std::string> out;
    for (const auto& [k, s] : feature_shapes_) out.push_back(k);
    return out;
  }
  const Shape& feature_shape(const std::string& encoder) const {
    auto it = feature_shapes_.find(encoder);
    IREPA_CHECK(it != feature_shapes_.end(), "ShardedDataset: no features for encoder '{}' ({} encoders stored)", encoder,
                feature_shapes_.size());
    return it->second;
  }

  template <class T>
  ShardBatch<T> get(const std::vector<std::int64_t>& idx) const {
    const auto B = static_cast<std::int64_t>(idx.size());
    ShardBatch<T> b;
    b.x = Tensor<T>(with_batch(sample_, B));
    b.y = Tensor<std::int64_t>(Shape{B});
    for (const auto& [k, s] : feature_shapes_) b.features.emplace(k, Tensor<T>(with_batch(s, B)));
    for (std::int64_t i = 0; i < B; ++i) {
      const std::int64_t g = idx[static_cast<std::size_t>(i)];
      IREPA_CHECK(g >= 0 && g < total_, "ShardedDataset: sample {} is outside the {} samples", g, total_);
      const auto it = std::upper_bound(starts_.begin(), starts_.end(), g) - 1;
      const auto& sh = shards_[static_cast<std::size_t>(it - starts_.begin())];
      const std::int64_t r = g - *it;
      copy_row<T>(sh, kind_, sample_.numel(), r, b.x.data() + i * sample_.numel());
      b.y[i] = static_cast<std::int64_t>(io::detail::load_as_int(sh.info("labels").dtype, sh.bytes("labels").data() +
                                                                                            r * dtype_size(sh.info("labels").dtype)));
      for (auto& [k, t] : b.features) {
        const std::int64_t n = feature_shapes_.at(k).numel();
        copy_row<T>(sh, "features." + k, n, r, t.data() + i * n);
      }
    }
    return b;
  }

 private:
  static Shape with_batch(const Shape& s, std::int64_t B) {
    std::vector<std::int64_t> d{B};
    for (int i = 0; i < s.rank(); ++i) d.push_back(s[i]);
    return Shape(d);
  }
  static Shape without_batch(const Shape& s) {
    std::vector<std::int64_t> d;
    for (int i = 1; i < s.rank(); ++i) d.push_back(s[i]);
    return Shape(d);
  }
  template <class T>
  static void copy_row(const io::SafeTensorsFile& f, const std::string& name, std::int64_t n, std::int64_t r, T* out) {
    const auto& info = f.info(name);
    const std::size_t es = dtype_size(info.dtype);
    const std::byte* p = f.bytes(name).data() + static_cast<std::size_t>(r * n) * es;
    for (std::int64_t k = 0; k < n; ++k, p += es)
      out[k] = io::detail::is_float(info.dtype) ? static_cast<T>(io::detail::load_as_double(info.dtype, p))
                                                : static_cast<T>(io::detail::load_as_int(info.dtype, p));
  }

  void add_shard(const std::string& path) {
    io::SafeTensorsFile f(path);
    const bool lat = f.contains("latents"), img = f.contains("images");
    IREPA_CHECK(lat != img, "ShardedDataset: shard '{}' must hold exactly one of 'latents' and 'images' (it holds {})", path,
                lat ? "both" : "neither");
    const std::string kind = lat ? "latents" : "images";
    IREPA_CHECK(f.contains("labels"), "ShardedDataset: shard '{}' has no 'labels'", path);
    const Shape& xs = f.info(kind).shape;
    IREPA_CHECK(xs.rank() >= 2, "ShardedDataset: shard '{}' '{}' has shape {}, expected [n, ...]", path, kind, xs.str());
    const std::int64_t n = xs[0];
    IREPA_CHECK(f.info("labels").shape == Shape{n} && !io::detail::is_float(f.info("labels").dtype),
                "ShardedDataset: shard '{}' labels are {} {}, expected integer [{}]", path, dtype_name(f.info("labels").dtype),
                f.info("labels").shape.str(), n);
    std::map<std::string, Shape> feats;
    for (const auto& name : f.names()) {
      if (name == kind || name == "labels") continue;
      IREPA_CHECK(name.rfind("features.", 0) == 0 && name.size() > 9,
                  "ShardedDataset: shard '{}' holds '{}', expected only {}, labels and features.<encoder>", path, name, kind);
      const Shape& s = f.info(name).shape;
      IREPA_CHECK(s.rank() == 3 && s[0] == n, "ShardedDataset: shard '{}' '{}' has shape {}, expected [{}, T, D]", path, name,
                  s.str(), n);
      feats.emplace(name.substr(9), without_batch(s));
    }
    if (shards_.empty()) {
      kind_ = kind;
      sample_ = without_batch(xs);
      feature_shapes_ = feats;
    } else {
      IREPA_CHECK(kind == kind_ && without_batch(xs) == sample_,
                  "ShardedDataset: shard '{}' holds {} of sample shape {}, the first shard {} of {}", path, kind,
                  without_batch(xs).str(), kind_, sample_.str());
      IREPA_CHECK(feats == feature_shapes_, "ShardedDataset: shard '{}' holds other target features than the first shard", path);
    }
    starts_.push_back(total_);
    total_ += n;
    shards_.push_back(std::move(f));
  }

  std::vector<io::SafeTensorsFile> shards_;
  std::vector<std::int64_t> starts_;
  std::int64_t total_ = 0;
  std::string kind_;
  Shape sample_;
  std::map<std::string, Shape> feature_shapes_;
};

}  // namespace irepa::data
