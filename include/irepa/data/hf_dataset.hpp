#pragma once
// The reference's data folders as Hugging Face datasets' save_to_disk writes them, read directly:
//   data/imagenet-latents-images/            image {bytes, path} (encoded PNG / JPEG), label
//   data/imagenet-latents-sdvae-ft-mse-f8d4/ data: each image's posterior [8, h, w] (mean | std)
// each with the train split at the top and val/ below: Arrow IPC stream files listed in
// state.json (_data_files, in order), dataset_info.json beside them.
//  - HfArrowFolder: the folder's files (io::ArrowStreamFile each), one schema, rows in order.
//  - HfImageDataset: kind "images"; decodes each image (io::decode_rgb) on a thread pool; the
//    stored images are used as they are (the reference's HFImgLatentDataset does not crop), so
//    they must all have one size; with a resolution, ADM's center_crop_arr is applied instead.
//  - HfLatentDataset: kind "posteriors"; the data column's nested lists as [2E, h, w], every
//    row the same shape; labels when the folder has a label column, else -1 (the images' labels
//    are used when paired: data::PairedDataset).
// The reference's pair: PairedDataset(HfImageDataset(images dir), HfLatentDataset(latents dir)).

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "irepa/data/image_folder.hpp"
#include "irepa/io/arrow_ipc.hpp"
#include "irepa/io/files.hpp"
#include "irepa/io/json.hpp"

namespace irepa::data {

class HfArrowFolder {
 public:
  explicit HfArrowFolder(const std::string& dir) : dir_(dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    IREPA_CHECK(fs::is_directory(dir, ec), "hf dataset: '{}' is not a folder (a datasets save_to_disk folder)", dir);
    std::vector<std::string> names;
    const fs::path state = fs::path(dir) / "state.json";
    if (fs::exists(state)) {
      try {
        const auto j = io::parse_json(io::read_regular_file(state.string(), "hf dataset"), state.string());
        for (const auto& f : j.at("_data_files")) names.push_back(f.at("filename").get<std::string>());
      } catch (const std::exception& e) {
        fail("hf dataset: '{}' is not a datasets state.json with _data_files [{{filename}}]: {}", state.string(), e.what());
      }
      for (const auto& n : names)
        IREPA_CHECK(!n.empty() && n.find('/') == std::string::npos && n != "." && n != "..",
                    "hf dataset: '{}' lists the data file '{}', expected a file name in its folder", state.string(), n);
    } else {
      for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file() && e.path().extension() == ".arrow") names.push_back(e.path().filename().string());
      std::sort(names.begin(), names.end());
    }
    IREPA_CHECK(!names.empty(), "hf dataset: '{}' has no .arrow data files (state.json's _data_files, or data-*.arrow)", dir);
    for (const auto& n : names) {
      files_.emplace_back((fs::path(dir) / n).string());
      const auto& f = files_.back();
      if (files_.size() > 1) {
        const auto& a = files_.front().fields();
        const auto& b = f.fields();
        bool same = a.size() == b.size();
        for (std::size_t i = 0; same && i < a.size(); ++i) same = a[i].name == b[i].name && a[i].type_name() == b[i].type_name();
        IREPA_CHECK(same, "hf dataset: '{}' has other columns than '{}'", f.path(), files_.front().path());
      }
      starts_.push_back(rows_);
      rows_ += f.rows();
    }
  }

  const std::string& dir() const { return dir_; }
  std::int64_t size() const { return rows_; }
  const std::vector<io::ArrowStreamFile>& files() const { return files_; }
  const std::vector<io::ArrowField>& fields() const { return files_.front().fields(); }
  /// The column called name (an error naming the columns there when missing), or -1 when optional.
  int column(std::string_view name, bool required = true) const {
    const int c = files_.front().find_column(name);
    if (c < 0 && required) {
      std::string have;
      for (const auto& f : fields()) have += (have.empty() ? "" : ", ") + f.name + ": " + f.type_name();
      fail("hf dataset: '{}' has no column '{}' (it has {})", dir_, name, have);
    }
    return c;
  }

  struct Cell {
    const io::ArrowArray* array;
    std::int64_t index;      // in the array
    const std::string* file;
    std::int64_t file_row;   // in the file
  };
  /// Column c of row r.
  Cell cell(int c, std::int64_t r) const {
    IREPA_CHECK(r >= 0 && r < rows_, "hf dataset: '{}': row {} is outside its {} rows", dir_, r, rows_);
    const auto f = static_cast<std::size_t>(std::upper_bound(starts_.begin(), starts_.end(), r) - starts_.begin() - 1);
    const auto [batch, i] = files_[f].locate(r - starts_[f]);
    return {&batch->columns[static_cast<std::size_t>(c)], i, &files_[f].path(), r - starts_[f]};
  }
  std::string where(const Cell& c) const { return fmt::format("'{}' row {}", *c.file, c.file_row); }

 private:
  std::string dir_;
  std::vector<io::ArrowStreamFile> files_;
  std::vector<std::int64_t> starts_;
  std::int64_t rows_ = 0;
};

namespace detail {
/// An integer label cell (no nulls).
inline std::int64_t hf_label(const HfArrowFolder& f, const HfArrowFolder::Cell& c) {
  IREPA_CHECK(c.array->field->type == io::ArrowType::Int, "hf dataset: {}: the label column is {}, expected integers", f.where(c),
              c.array->field->type_name());
  IREPA_CHECK(!c.array->is_null(c.index), "hf dataset: {}: the label is null", f.where(c));
  return io::arrow_int(*c.array, c.index);
}
}  // namespace detail

class HfImageDataset {
 public:
  /// resolution 0: the stored images as they are (all one size); > 0: ADM's center crop to it.
  explicit HfImageDataset(const std::string& dir, std::int64_t resolution = 0, int threads = 0)
      : folder_(dir), resolution_(resolution), threads_(threads), image_(folder_.column("image")), label_(folder_.column("label")) {
    IREPA_CHECK(folder_.size() > 0, "hf dataset: '{}' has no rows", dir);
    const auto& t = folder_.fields()[static_cast<std::size_t>(image_)];
    const bool st = t.type == io::ArrowType::Struct && !t.children.empty();
    bytes_child_ = -1;
    if (st)
      for (std::size_t i = 0; i < t.children.size(); ++i)
        if (t.children[i].name == "bytes") bytes_child_ = static_cast<int>(i);
    const auto is_binary = [](const io::ArrowField& f) { return f.type == io::ArrowType::Binary || f.type == io::ArrowType::LargeBinary; };
    IREPA_CHECK((st && bytes_child_ >= 0 && is_binary(t.children[static_cast<std::size_t>(bytes_child_)])) || is_binary(t),
                "hf dataset: '{}' column 'image' is {}, expected datasets' Image (struct<bytes: binary, path: string>) or binary", dir,
                t.type_name());
    const Tensor<std::uint8_t> first = decode(0);
    sample_ = Shape{3, first.size(0), first.size(1)};
  }

  std::int64_t size() const { return folder_.size(); }
  std::string kind() const { return "images"; }
  const Shape& sample_shape() const { return sample_; }
  std::vector<std::string> encoders() const { return {}; }
  Shape feature_shape(const std::string& e) const { fail("hf dataset: no target features (asked for '{}')", e); }
  bool has_images() const { return true; }
  std::int64_t label(std::int64_t i) const { return detail::hf_label(folder_, folder_.cell(label_, i)); }

  /// Row i's image as RGB [H, W, 3] (cropped when a resolution was given).
  Tensor<std::uint8_t> decode(std::int64_t i) const {
    const auto c = folder_.cell(image_, i);
    const io::ArrowArray* bytes = c.array;
    IREPA_CHECK(!c.array->is_null(c.index), "hf dataset: {}: the image is null", folder_.where(c));
    if (bytes_child_ >= 0) bytes = &c.array->children[static_cast<std::size_t>(bytes_child_)];
    IREPA_CHECK(!bytes->is_null(c.index), "hf dataset: {}: the image has no bytes (images stored by path are not read)", folder_.where(c));
    Tensor<std::uint8_t> rgb = io::decode_rgb(io::arrow_bytes(*bytes, c.index), folder_.where(c));
    if (resolution_ > 0) return io::center_crop_arr(rgb.cview(), resolution_);
    if (sample_.rank() == 3)
      IREPA_CHECK(rgb.size(0) == sample_[1] && rgb.size(1) == sample_[2],
                  "hf dataset: {}: the image is {}x{}, the first one {}x{} (give a resolution to crop them all)", folder_.where(c),
                  rgb.size(1), rgb.size(0), sample_[2], sample_[1]);
    return rgb;
  }

  template <class T>
  ShardBatch<T> get(const std::vector<std::int64_t>& idx) const {
    const auto B = static_cast<std::int64_t>(idx.size());
    const std::int64_t P = sample_[1] * sample_[2];
    ShardBatch<T> b{Tensor<T>(Shape{B, 3, sample_[1], sample_[2]}), Tensor<std::int64_t>(Shape{B}), {}, {}};
    parallel_items(B, threads_, [&](std::int64_t i) {
      const Tensor<std::uint8_t> rgb = decode(idx[static_cast<std::size_t>(i)]);
      for (std::int64_t p = 0; p < P; ++p)
        for (std::int64_t ch = 0; ch < 3; ++ch) b.x[(i * 3 + ch) * P + p] = static_cast<T>(rgb[p * 3 + ch]);
    });
    for (std::int64_t i = 0; i < B; ++i) b.y[i] = label(idx[static_cast<std::size_t>(i)]);
    return b;
  }

 private:
  HfArrowFolder folder_;
  std::int64_t resolution_;
  int threads_;
  int image_, label_, bytes_child_ = -1;
  Shape sample_;
};

class HfLatentDataset {
 public:
  explicit HfLatentDataset(const std::string& dir, std::string column = "data")
      : folder_(dir), data_(folder_.column(column)), label_(folder_.column("label", false)) {
    IREPA_CHECK(folder_.size() > 0, "hf dataset: '{}' has no rows", dir);
    std::vector<std::int64_t> shape;
    const auto c = folder_.cell(data_, 0);
    (void)io::arrow_float_tensor(*c.array, c.index, shape, "hf dataset: " + folder_.where(c));
    IREPA_CHECK(shape.size() == 3 && shape[0] % 2 == 0 && shape[0] > 0 && shape[1] > 0 && shape[2] > 0,
                "hf dataset: '{}' column '{}' holds latents of shape [{}], expected VAE posteriors [2E, h, w] (mean | std; [8, h/8, w/8] "
                "for the SD-VAE)",
                dir, column, fmt::join(shape, ", "));
    sample_ = Shape{shape[0], shape[1], shape[2]};
  }

  std::int64_t size() const { return folder_.size(); }
  std::string kind() const { return "posteriors"; }
  const Shape& sample_shape() const { return sample_; }
  std::vector<std::string> encoders() const { return {}; }
  Shape feature_shape(const std::string& e) const { fail("hf dataset: no target features (asked for '{}')", e); }
  bool has_labels() const { return label_ >= 0; }

  template <class T>
  ShardBatch<T> get(const std::vector<std::int64_t>& idx) const {
    const auto B = static_cast<std::int64_t>(idx.size());
    const std::int64_t n = sample_.numel();
    ShardBatch<T> b{Tensor<T>(Shape{B, sample_[0], sample_[1], sample_[2]}), Tensor<std::int64_t>(Shape{B}), {}, {}};
    std::vector<std::int64_t> shape;
    for (std::int64_t i = 0; i < B; ++i) {
      const auto c = folder_.cell(data_, idx[static_cast<std::size_t>(i)]);
      IREPA_CHECK(!c.array->is_null(c.index), "hf dataset: {}: the latent is null", folder_.where(c));
      const std::vector<float> v = io::arrow_float_tensor(*c.array, c.index, shape, "hf dataset: " + folder_.where(c));
      IREPA_CHECK(shape.size() == 3 && shape[0] == sample_[0] && shape[1] == sample_[1] && shape[2] == sample_[2],
                  "hf dataset: {}: the latent has shape [{}], the first one {}", folder_.where(c), fmt::join(shape, ", "), sample_.str());
      for (std::int64_t k = 0; k < n; ++k) b.x[i * n + k] = static_cast<T>(v[static_cast<std::size_t>(k)]);
      b.y[i] = label_ >= 0 ? detail::hf_label(folder_, folder_.cell(label_, idx[static_cast<std::size_t>(i)])) : -1;
    }
    return b;
  }

 private:
  HfArrowFolder folder_;
  int data_, label_;
  Shape sample_;
};

}  // namespace irepa::data
