#pragma once
// AnyDataset: any dataset of the trainer's interface (size, kind, sample_shape, encoders,
// feature_shape, get<T>; optionally image_shape / has_images) behind one type. The tools hand
// the trainer an AnyDataset, so the training stack is compiled once per model family and device
// whatever the data (shards, Fashion-MNIST, an ImageFolder, images paired with latents) instead
// of once per dataset type. Batches are made in float or double.

#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "irepa/data/shards.hpp"

namespace irepa::data {

class AnyDataset {
 public:
  /// Takes the dataset by value (a dataset that refers to others, such as PairedDataset, must
  /// not outlive them).
  template <class Dataset>
    requires(!std::is_same_v<std::decay_t<Dataset>, AnyDataset>)
  explicit AnyDataset(Dataset ds) : impl_(std::make_shared<Model<Dataset>>(std::move(ds))) {}

  std::int64_t size() const { return impl_->size(); }
  std::string kind() const { return impl_->kind(); }
  const Shape& sample_shape() const { return impl_->sample_shape(); }
  std::vector<std::string> encoders() const { return impl_->encoders(); }
  Shape feature_shape(const std::string& e) const { return impl_->feature_shape(e); }
  /// The images' shape beside latents ([C, H, W]), or an empty shape when there are none.
  const Shape& image_shape() const { return impl_->image_shape(); }
  bool has_images() const { return impl_->has_images(); }

  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  ShardBatch<T> get(const std::vector<std::int64_t>& idx) const {
    if constexpr (std::is_same_v<T, float>)
      return impl_->get_float(idx);
    else
      return impl_->get_double(idx);
  }

 private:
  struct Concept {
    virtual ~Concept() = default;
    virtual std::int64_t size() const = 0;
    virtual std::string kind() const = 0;
    virtual const Shape& sample_shape() const = 0;
    virtual std::vector<std::string> encoders() const = 0;
    virtual Shape feature_shape(const std::string& e) const = 0;
    virtual const Shape& image_shape() const = 0;
    virtual bool has_images() const = 0;
    virtual ShardBatch<float> get_float(const std::vector<std::int64_t>& idx) const = 0;
    virtual ShardBatch<double> get_double(const std::vector<std::int64_t>& idx) const = 0;
  };
  template <class Dataset>
  struct Model final : Concept {
    Dataset ds;
    Shape images;  // [C, H, W] of the images beside latents, or empty
    explicit Model(Dataset d) : ds(std::move(d)) {
      if constexpr (requires { ds.image_shape(); })
        if (ds.kind() != "images") images = ds.image_shape();
    }
    std::int64_t size() const override { return ds.size(); }
    std::string kind() const override { return ds.kind(); }
    const Shape& sample_shape() const override { return ds.sample_shape(); }
    std::vector<std::string> encoders() const override { return ds.encoders(); }
    Shape feature_shape(const std::string& e) const override { return ds.feature_shape(e); }
    const Shape& image_shape() const override { return images; }
    bool has_images() const override {
      if constexpr (requires { ds.has_images(); })
        return ds.has_images();
      else
        return ds.kind() == "images";
    }
    ShardBatch<float> get_float(const std::vector<std::int64_t>& idx) const override { return ds.template get<float>(idx); }
    ShardBatch<double> get_double(const std::vector<std::int64_t>& idx) const override { return ds.template get<double>(idx); }
  };
  std::shared_ptr<const Concept> impl_;
};

}  // namespace irepa::data
