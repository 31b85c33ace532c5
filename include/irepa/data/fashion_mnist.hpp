#pragma once
// Fashion-MNIST from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist): 60,000
// training and 10,000 test images of 28x28 grey pixels, 10 classes.

#include <filesystem>
#include <string>

#include "irepa/data/idx.hpp"
#include "irepa/data/shards.hpp"

namespace irepa::data {

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
inline constexpr const char* kFashionMnistClasses[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                         "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

struct FashionMnist {
  Tensor<std::uint8_t> images;  // [N, 28, 28], 0 = background
  Tensor<std::int64_t> labels;  // [N], 0..9

  std::int64_t size() const { return labels.numel(); }

  /// split "train" or "test" (the files' t10k).
  static FashionMnist load(const std::string& dir = kFashionMnistDir, const std::string& split = "train") {
    IREPA_CHECK(split == "train" || split == "test", "FashionMnist: split '{}' is not known; expected train or test", split);
    const std::string stem = split == "train" ? "train" : "t10k";
    const auto img = (std::filesystem::path(dir) / (stem + "-images-idx3-ubyte.gz")).string();
    const auto lab = (std::filesystem::path(dir) / (stem + "-labels-idx1-ubyte.gz")).string();
    IREPA_CHECK(std::filesystem::exists(img) && std::filesystem::exists(lab),
                "FashionMnist: '{}' and '{}' not found (install Debian's dataset-fashion-mnist)", img, lab);
    FashionMnist d;
    d.images = read_idx_u8(img);
    const Tensor<std::uint8_t> l = read_idx_u8(lab);
    IREPA_CHECK(d.images.rank() == 3 && d.images.size(1) == 28 && d.images.size(2) == 28,
                "FashionMnist: '{}' holds {}, expected [N, 28, 28]", img, d.images.shape().str());
    IREPA_CHECK(l.rank() == 1 && l.size(0) == d.images.size(0), "FashionMnist: {} labels in '{}' for {} images in '{}'",
                l.rank() == 1 ? l.size(0) : -1, lab, d.images.size(0), img);
    d.labels = Tensor<std::int64_t>(Shape{l.size(0)});
    for (std::int64_t i = 0; i < l.numel(); ++i) {
      IREPA_CHECK(l[i] < 10, "FashionMnist: label {} of image {} in '{}' is not a class (0..9)", l[i], i, lab);
      d.labels[i] = l[i];
    }
    return d;
  }
};

/// Images held in memory with the ShardedDataset interface (kind "images", no target features):
/// Fashion-MNIST as [N, 1, 28, 28].
class ImageDataset {
 public:
  ImageDataset(Tensor<std::uint8_t> images, Tensor<std::int64_t> labels) : images_(std::move(images)), labels_(std::move(labels)) {
    IREPA_CHECK(images_.rank() == 4 && labels_.rank() == 1 && labels_.size(0) == images_.size(0),
                "ImageDataset: images {} and labels {} do not match ([N, C, H, W] and [N])", images_.shape().str(),
                labels_.shape().str());
    sample_ = Shape{images_.size(1), images_.size(2), images_.size(3)};
  }
  static ImageDataset fashion_mnist(const std::string& dir = kFashionMnistDir, const std::string& split = "train") {
    FashionMnist d = FashionMnist::load(dir, split);
    return ImageDataset(Tensor<std::uint8_t>::copy_of(d.images.cview().reshape(Shape{d.size(), 1, 28, 28})), std::move(d.labels));
  }
  std::int64_t size() const { return labels_.numel(); }
  std::string kind() const { return "images"; }
  const Shape& sample_shape() const { return sample_; }
  std::vector<std::string> encoders() const { return {}; }
  Shape feature_shape(const std::string& e) const { fail("ImageDataset: no target features (asked for '{}')", e); }

  template <class T>
  ShardBatch<T> get(const std::vector<std::int64_t>& idx) const {
    const auto B = static_cast<std::int64_t>(idx.size());
    const std::int64_t n = sample_.numel();
    ShardBatch<T> b{Tensor<T>(Shape{B, sample_[0], sample_[1], sample_[2]}), Tensor<std::int64_t>(Shape{B}), {}, {}};
    for (std::int64_t i = 0; i < B; ++i) {
      const std::int64_t g = idx[static_cast<std::size_t>(i)];
      IREPA_CHECK(g >= 0 && g < size(), "ImageDataset: sample {} is outside the {} samples", g, size());
      for (std::int64_t k = 0; k < n; ++k) b.x[i * n + k] = static_cast<T>(images_[g * n + k]);
      b.y[i] = labels_[g];
    }
    return b;
  }

 private:
  Tensor<std::uint8_t> images_;
  Tensor<std::int64_t> labels_;
  Shape sample_;
};

}  // namespace irepa::data
