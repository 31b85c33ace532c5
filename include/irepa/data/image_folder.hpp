#pragma once
// Image datasets the reference reads:
//  - ImageFolder: root/<class>/**/<image>, as torchvision's ImageFolder lists it: classes are the
//    sorted sub-folder names (label = rank), files walked recursively (links followed) in sorted
//    folder-then-name order, kept when their lower-case extension is an image one. Each image is
//    decoded to RGB (io::decode_rgb: JPEG, PNG) and cropped with ADM's center_crop_arr to
//    resolution x resolution, channels-first uint8 values [3, R, R] as the trainer takes images.
//    A batch is decoded on `threads` threads; the trainer's loader prefetches batches.
//  - PairedDataset: images and latents of the same samples by index (the reference's
//    HFImgLatentDataset / ImageFolderLatentDataset): the latents' kind and samples, the images
//    beside them for online target encoders. The counts must match, the images' side must be a
//    whole multiple of the latents' (the VAE's factor), and so must the labels (latents without
//    labels, -1, take the images').
// Problems are found when the dataset opens, before training: no class folder, an empty class,
// an image format that is not read (.webp, .bmp, ...), different counts.

#include <algorithm>
#include <exception>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "irepa/data/shards.hpp"
#include "irepa/io/image_decode.hpp"
#include "irepa/io/pil_resize.hpp"

namespace irepa::data {

/// f(i) for i in [0, n) on up to `threads` threads (0: the hardware's); the first exception is rethrown.
template <class F>
void parallel_items(std::int64_t n, int threads, F&& f) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int t = static_cast<int>(std::min<std::int64_t>(n, threads > 0 ? threads : hw));
  if (t <= 1) {
    for (std::int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  std::exception_ptr err;
  std::mutex mu;
  std::vector<std::thread> pool;
  for (int w = 0; w < t; ++w)
    pool.emplace_back([&, w] {
      for (std::int64_t i = w; i < n; i += t) {
        try {
          f(i);
        } catch (...) {
          std::lock_guard<std::mutex> lock(mu);
          if (!err) err = std::current_exception();
          return;
        }
      }
    });
  for (auto& th : pool) th.join();
  if (err) std::rethrow_exception(err);
}

class ImageFolder {
 public:
  /// Lower-case extensions torchvision's ImageFolder takes; of these, JPEG and PNG are decoded.
  static bool is_image_extension(std::string ext) {
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (const char* e : {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"})
      if (ext == e) return true;
    return false;
  }
  static bool is_decoded_extension(std::string ext) {
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
  }

  ImageFolder(const std::string& root, std::int64_t resolution, int threads = 0) : root_(root), resolution_(resolution), threads_(threads) {
    namespace fs = std::filesystem;
    IREPA_CHECK(resolution > 0, "ImageFolder: resolution {} must be positive", resolution);
    std::error_code ec;
    IREPA_CHECK(fs::is_directory(root, ec), "ImageFolder: '{}' is not a folder of class folders", root);
    for (const auto& e : fs::directory_iterator(root))
      if (e.is_directory()) classes_.push_back(e.path().filename().string());
    std::sort(classes_.begin(), classes_.end());
    IREPA_CHECK(!classes_.empty(), "ImageFolder: '{}' has no class folder (expected root/<class>/<image>)", root);
    for (std::size_t c = 0; c < classes_.size(); ++c) {
      std::vector<std::pair<std::string, std::string>> files;  // (folder, name): torchvision's sorted(os.walk) order
      const fs::path dir = fs::path(root) / classes_[c];
      for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink); it != fs::recursive_directory_iterator();
           ++it) {
        IREPA_CHECK(it.depth() < 64, "ImageFolder: '{}' is nested more than 64 folders deep (a link loop?)", it->path().string());
        if (!it->is_regular_file() || !is_image_extension(it->path().extension().string())) continue;
        IREPA_CHECK(is_decoded_extension(it->path().extension().string()),
                    "ImageFolder: '{}' is a {} image; only JPEG and PNG images are read (convert it, or move it out of the folder)",
                    it->path().string(), it->path().extension().string());
        files.emplace_back(it->path().parent_path().string(), it->path().filename().string());
      }
      IREPA_CHECK(!files.empty(), "ImageFolder: class folder '{}' holds no image (.jpg, .jpeg, .png)", dir.string());
      std::sort(files.begin(), files.end());
      for (const auto& [folder, name] : files) {
        paths_.push_back((fs::path(folder) / name).string());
        labels_.push_back(static_cast<std::int64_t>(c));
      }
    }
    sample_ = Shape{3, resolution, resolution};
  }

  std::int64_t size() const { return static_cast<std::int64_t>(paths_.size()); }
  std::string kind() const { return "images"; }
  const Shape& sample_shape() const { return sample_; }
  std::vector<std::string> encoders() const { return {}; }
  Shape feature_shape(const std::string& e) const { fail("ImageFolder: no target features (asked for '{}')", e); }
  bool has_images() const { return true; }
  const std::vector<std::string>& classes() const { return classes_; }
  const std::vector<std::string>& paths() const { return paths_; }
  std::int64_t label(std::int64_t i) const { return labels_.at(static_cast<std::size_t>(i)); }
  const std::string& root() const { return root_; }

  /// Image i decoded, cropped, channels-first: [3, R, R] uint8.
  Tensor<std::uint8_t> image(std::int64_t i) const {
    IREPA_CHECK(i >= 0 && i < size(), "ImageFolder: image {} is outside the {} images", i, size());
    const std::string& path = paths_[static_cast<std::size_t>(i)];
    const Tensor<std::uint8_t> rgb = io::center_crop_arr(io::read_image_rgb(path).cview(), resolution_);
    Tensor<std::uint8_t> out(sample_);
    const std::int64_t P = resolution_ * resolution_;
    for (std::int64_t p = 0; p < P; ++p)
      for (std::int64_t c = 0; c < 3; ++c) out[c * P + p] = rgb[p * 3 + c];
    return out;
  }

  template <class T>
  ShardBatch<T> get(const std::vector<std::int64_t>& idx) const {
    const auto B = static_cast<std::int64_t>(idx.size());
    const std::int64_t n = sample_.numel();
    ShardBatch<T> b{Tensor<T>(Shape{B, 3, resolution_, resolution_}), Tensor<std::int64_t>(Shape{B}), {}, {}};
    parallel_items(B, threads_, [&](std::int64_t i) {
      const Tensor<std::uint8_t> img = image(idx[static_cast<std::size_t>(i)]);
      for (std::int64_t k = 0; k < n; ++k) b.x[i * n + k] = static_cast<T>(img[k]);
    });
    for (std::int64_t i = 0; i < B; ++i) b.y[i] = label(idx[static_cast<std::size_t>(i)]);
    return b;
  }

 private:
  std::string root_;
  std::int64_t resolution_;
  int threads_;
  std::vector<std::string> classes_, paths_;
  std::vector<std::int64_t> labels_;
  Shape sample_;
};

/// Latents (posteriors or ready latents) with their images, by index.
template <class Images, class Latents>
class PairedDataset {
 public:
  PairedDataset(const Images& images, const Latents& latents) : images_(images), latents_(latents) {
    IREPA_CHECK(images.kind() == "images", "PairedDataset: the image side holds {}, expected images", images.kind());
    IREPA_CHECK(latents.kind() != "images", "PairedDataset: the latent side holds images, expected latents or posteriors");
    IREPA_CHECK(images.size() == latents.size(), "PairedDataset: {} images and {} latents; they must be the same samples, in order",
                images.size(), latents.size());
    IREPA_CHECK(latents.encoders().empty(), "PairedDataset: the latents carry stored features ({}); pair them with images only for online targets",
                latents.encoders().size());
    // The latents of an image: [E or 2E, h, w] with the image's side a whole multiple of h (f = 8 for the SD-VAE).
    const Shape& l = latents.sample_shape();
    const Shape& i = images.sample_shape();
    IREPA_CHECK(l.rank() == 3 && i.rank() == 3 && l[1] > 0 && l[2] > 0 && i[1] % l[1] == 0 && i[2] % l[2] == 0 && i[1] / l[1] == i[2] / l[2],
                "PairedDataset: latents {} for images {}: the images' sides are not one whole multiple of the latents' (the VAE's "
                "factor; [8, H/8, W/8] for the SD-VAE)",
                l.str(), i.str());
  }
  std::int64_t size() const { return latents_.size(); }
  std::string kind() const { return latents_.kind(); }
  const Shape& sample_shape() const { return latents_.sample_shape(); }
  const Shape& image_shape() const { return images_.sample_shape(); }
  bool has_images() const { return true; }
  std::vector<std::string> encoders() const { return {}; }
  Shape feature_shape(const std::string& e) const { fail("PairedDataset: no stored target features (asked for '{}')", e); }

  template <class T>
  ShardBatch<T> get(const std::vector<std::int64_t>& idx) const {
    ShardBatch<T> b = latents_.template get<T>(idx);
    ShardBatch<T> im = images_.template get<T>(idx);
    for (std::size_t i = 0; i < idx.size(); ++i) {
      const auto k = static_cast<std::int64_t>(i);
      if (b.y[k] < 0) {  // latents without labels (the reference's latent folders): the image's
        b.y[k] = im.y[k];
        continue;
      }
      IREPA_CHECK(b.y[k] == im.y[k], "PairedDataset: sample {} has label {} with its latents and {} with its image: not the same samples",
                  idx[i], b.y[k], im.y[k]);
    }
    b.images = std::move(im.x);
    return b;
  }

 private:
  const Images& images_;
  const Latents& latents_;
};

}  // namespace irepa::data
