#pragma once
// A read-only memory mapping of a whole regular file (RAII, move-only), shared by the file
// readers; or a borrowed span of memory in its place, so that every reader can also read bytes
// it is handed (the fuzzers, an archive's member).

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "irepa/core/error.hpp"
#include "irepa/io/files.hpp"

namespace irepa::io {

class MappedFile {
 public:
  MappedFile() = default;
  /// `what` names the reader in error messages ("safetensors", "npy").
  /// Only regular files are mapped (a FIFO, a folder or a device is an Error, never a wait).
  MappedFile(const std::string& path, const char* what) {
    const RegularFile f = open_regular(path, what);
    fd_ = f.fd;
    size_ = f.size;
    if (size_ > 0) {
      void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (m == MAP_FAILED) {
        const int err = errno;
        release();
        fail("{}: cannot map '{}': {}", what, path, std::strerror(err));
      }
      data_ = static_cast<const std::byte*>(m);
    }
  }
  /// Borrows bytes that the caller keeps alive (nothing is mapped or freed).
  static MappedFile borrow(const std::byte* data, std::size_t size) {
    MappedFile m;
    m.data_ = data;
    m.size_ = size;
    m.borrowed_ = true;
    return m;
  }
  MappedFile(MappedFile&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)),
        borrowed_(std::exchange(o.borrowed_, false)) {}
  MappedFile& operator=(MappedFile&& o) noexcept {
    if (this != &o) {
      release();
      fd_ = std::exchange(o.fd_, -1);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      borrowed_ = std::exchange(o.borrowed_, false);
    }
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() { release(); }

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  void release() noexcept {
    if (data_ && !borrowed_) ::munmap(const_cast<std::byte*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
    data_ = nullptr;
    fd_ = -1;
  }
  int fd_ = -1;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool borrowed_ = false;
};

}  // namespace irepa::io
