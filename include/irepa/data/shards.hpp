#pragma once
// A dataset stored as safetensors shards (every *.safetensors of a folder, in name order), each
// holding n samples:
//   latents [n, ...] (float, used as they are), posteriors [n, 2E, h, w] (float: the VAE's
//   mean | std, from which the trainer draws each step's latents), or images [n, C, H, W]
//   (uint8)   -- one of the three, the same in every shard (the dataset's kind)
//   images  [n, C, H, W] (uint8; optional beside posteriors: the images they encode, for online
//           target encoders, as the reference's paired image + latent dataset)
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
  Tensor<T> x;                                // [B, ...] latents, posteriors or images (images keep 0..255)
  Tensor<std::int64_t> y;                     // [B]
  std::map<std::string, Tensor<T>> features;  // encoder -> [B, T, D]
  Tensor<T> images;                           // [B, C, H, W] 0..255 beside posteriors (paired data), else empty
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
  const std::string& kind() const { return kind_; }  // "latents", "posteriors" or "images"
  const Shape& sample_shape() const { return sample_; }
  /// The images beside the posteriors ([C, H, W]), or an empty shape when there are none.
  const Shape& image_shape() const { return image_; }
  bool has_images() const { return kind_ == "images" || image_.rank() > 0; }
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
    if (image_.rank() > 0) b.images = Tensor<T>(with_batch(image_, B));
    for (std::int64_t i = 0; i < B; ++i) {
      const std::int64_t g = idx[static_cast<std::size_t>(i)];
      IREPA_CHECK(g >= 0 && g < total_, "ShardedDataset: sample {} is outside the {} samples", g, total_);
      const auto it = std::upper_bound(starts_.begin(), starts_.end(), g) - 1;
      const auto& sh = shards_[static_cast<std::size_t>(it - starts_.begin())];
      const std::int64_t r = g - *it;
      copy_row<T>(sh, kind_, sample_.numel(), r, b.x.data() + i * sample_.numel());
      if (image_.rank() > 0) copy_row<T>(sh, "images", image_.numel(), r, b.images.data() + i * image_.numel());
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
    std::vector<std::string> kinds;
    for (const char* k : {"latents", "posteriors"})
      if (f.contains(k)) kinds.emplace_back(k);
    if (kinds.empty() && f.contains("images")) kinds.emplace_back("images");
    IREPA_CHECK(kinds.size() == 1, "ShardedDataset: shard '{}' must hold exactly one of 'latents', 'posteriors' and 'images' (it holds {})",
                path, kinds.empty() ? std::string("none") : kinds[0] + " and " + kinds.back());
    const std::string kind = kinds[0];
    const bool paired = kind == "posteriors" && f.contains("images");
    IREPA_CHECK(kind != "latents" || !f.contains("images"),
                "ShardedDataset: shard '{}' holds both 'latents' and 'images'; images go beside 'posteriors' (mean | std)", path);
    IREPA_CHECK(f.contains("labels"), "ShardedDataset: shard '{}' has no 'labels'", path);
    const Shape& xs = f.info(kind).shape;
    IREPA_CHECK(xs.rank() >= 2, "ShardedDataset: shard '{}' '{}' has shape {}, expected [n, ...]", path, kind, xs.str());
    IREPA_CHECK(kind == "images" || io::detail::is_float(f.info(kind).dtype), "ShardedDataset: shard '{}' '{}' are {}, expected floats",
                path, kind, dtype_name(f.info(kind).dtype));
    const std::int64_t n = xs[0];
    IREPA_CHECK(kind != "posteriors" || (xs.rank() == 4 && xs[1] % 2 == 0 && xs[1] > 0),
                "ShardedDataset: shard '{}' posteriors have shape {}, expected [n, 2E, h, w] (mean | std)", path, xs.str());
    Shape image;
    if (paired) {
      const Shape& is = f.info("images").shape;
      IREPA_CHECK(is.rank() == 4 && is[0] == n && f.info("images").dtype == DType::U8,
                  "ShardedDataset: shard '{}' images are {} {}, expected uint8 [{}, C, H, W] (one per posterior)", path,
                  dtype_name(f.info("images").dtype), is.str(), n);
      IREPA_CHECK(is[2] % xs[2] == 0 && is[3] % xs[3] == 0 && is[2] / xs[2] == is[3] / xs[3],
                  "ShardedDataset: shard '{}' images {} and posteriors {}: the images' side is not one multiple of the latents'", path,
                  is.str(), xs.str());
      image = without_batch(is);
    }
    IREPA_CHECK(f.info("labels").shape == Shape{n} && !io::detail::is_float(f.info("labels").dtype),
                "ShardedDataset: shard '{}' labels are {} {}, expected integer [{}]", path, dtype_name(f.info("labels").dtype),
                f.info("labels").shape.str(), n);
    std::map<std::string, Shape> feats;
    for (const auto& name : f.names()) {
      if (name == kind || name == "labels" || (paired && name == "images")) continue;
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
      image_ = image;
    } else {
      IREPA_CHECK(kind == kind_ && without_batch(xs) == sample_,
                  "ShardedDataset: shard '{}' holds {} of sample shape {}, the first shard {} of {}", path, kind,
                  without_batch(xs).str(), kind_, sample_.str());
      IREPA_CHECK(feats == feature_shapes_, "ShardedDataset: shard '{}' holds other target features than the first shard", path);
      IREPA_CHECK(image == image_, "ShardedDataset: shard '{}' holds images {} beside its posteriors, the first shard {}", path,
                  image.rank() ? image.str() : std::string("none"), image_.rank() ? image_.str() : std::string("none"));
    }
    starts_.push_back(total_);
    total_ += n;
    shards_.push_back(std::move(f));
  }

  std::vector<io::SafeTensorsFile> shards_;
  std::vector<std::int64_t> starts_;
  std::int64_t total_ = 0;
  std::string kind_;
  Shape sample_, image_;
  std::map<std::string, Shape> feature_shapes_;
};

}  // namespace irepa::data
