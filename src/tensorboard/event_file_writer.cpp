// irepa::EventFileWriter (include/irepa/train/tensorboard.hpp): Event messages encoded by
// libprotobuf-lite from event.proto, framed as TFRecords, each written whole with write(2).

#include "irepa/train/tensorboard.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <limits>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include "event.pb.h"
#include "irepa/core/error.hpp"
#include "irepa/io/tfrecord.hpp"

namespace irepa {

namespace pb = irepa::tensorboard;

struct EventFileWriter::Impl {
  std::string path;
  int fd = -1;
  std::int64_t records = 0;

  ~Impl() {
    if (fd >= 0) ::close(fd);
  }

  static double now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }

  void write(const pb::Event& e) {
    std::string data;
    IREPA_CHECK(e.SerializeToString(&data), "tensorboard: encoding an event for '{}' failed", path);
    const std::string rec = io::tfrecord_frame(data);
    std::size_t done = 0;
    while (done < rec.size()) {
      const ssize_t n = ::write(fd, rec.data() + done, rec.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        fail("tensorboard: writing '{}' failed: {} (the records before this one are intact)", path,
             n < 0 ? std::strerror(errno) : "nothing written");
      done += static_cast<std::size_t>(n);
    }
    ++records;
  }

  pb::Event event(std::int64_t step) const {
    pb::Event e;
    e.set_wall_time(now());
    e.set_step(step);
    return e;
  }
};

EventFileWriter::EventFileWriter(const std::string& dir) : impl_(std::make_unique<Impl>()) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  IREPA_CHECK(!ec, "tensorboard: cannot create the folder '{}': {}", dir, ec.message());
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  const auto t = static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
  static std::atomic<int> counter{0};
  for (int tries = 0;; ++tries) {
    impl_->path = (std::filesystem::path(dir) / fmt::format("events.out.tfevents.{}.{}.{}.{}", t, host, ::getpid(), counter++)).string();
    impl_->fd = ::open(impl_->path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (impl_->fd >= 0) break;
    IREPA_CHECK(errno == EEXIST && tries < 1000, "tensorboard: cannot create '{}': {}", impl_->path, std::strerror(errno));
  }
  pb::Event e = impl_->event(0);
  e.set_file_version("brain.Event:2");
  impl_->write(e);
}

EventFileWriter::~EventFileWriter() = default;

void EventFileWriter::scalars(std::int64_t step, const std::map<std::string, double>& values) {
  if (values.empty()) return;
  pb::Event e = impl_->event(step);
  for (const auto& [tag, v] : values) {
    pb::Summary::Value* val = e.mutable_summary()->add_value();
    val->set_tag(tag);
    val->set_simple_value(static_cast<float>(v));  // TensorBoard's scalars are float
  }
  impl_->write(e);
}

void EventFileWriter::image(std::int64_t step, const std::string& tag, const std::string& png, std::int64_t height, std::int64_t width,
                            int channels) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int32_t>::max();
  IREPA_CHECK(height > 0 && width > 0 && height <= kMax && width <= kMax && (channels == 1 || channels == 3),
              "tensorboard: image '{}' is {}x{} with {} channels, expected a positive size and 1 or 3 channels", tag, width, height,
              channels);
  pb::Event e = impl_->event(step);
  pb::Summary::Value* val = e.mutable_summary()->add_value();
  val->set_tag(tag);
  pb::Summary::Image* img = val->mutable_image();
  img->set_height(static_cast<std::int32_t>(height));
  img->set_width(static_cast<std::int32_t>(width));
  img->set_colorspace(channels);
  img->set_encoded_image_string(png);
  impl_->write(e);
}

void EventFileWriter::text(std::int64_t step, const std::string& tag, const std::string& markdown) {
  pb::Event e = impl_->event(step);
  pb::Summary::Value* val = e.mutable_summary()->add_value();
  val->set_tag(tag);
  val->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");  // its content (version 0) is empty
  pb::TensorProto* t = val->mutable_tensor();
  t->set_dtype(pb::DT_STRING);
  t->mutable_tensor_shape()->add_dim()->set_size(1);
  t->add_string_val(markdown);
  impl_->write(e);
}

void EventFileWriter::flush() {
  if (::fdatasync(impl_->fd) != 0 && errno != EINVAL && errno != EROFS)
    fail("tensorboard: syncing '{}' failed: {}", impl_->path, std::strerror(errno));
}

const std::string& EventFileWriter::path() const { return impl_->path; }
std::int64_t EventFileWriter::records() const { return impl_->records; }

}  // namespace irepa
