#pragma once
// Opening input files safely: only regular files are read (a FIFO would block the open or the
// read forever, a folder or a device is never what was meant), and whole-file reads are bounded.

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "irepa/core/error.hpp"

namespace irepa::io {

namespace detail {
inline const char* file_kind(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "a special file";
}
}  // namespace detail

/// A read-only descriptor of the regular file at path, and its size. Opened without blocking
/// (a FIFO with no writer would otherwise hang the open), then checked with fstat; `what`
/// names the reader in errors.
struct RegularFile {
  int fd = -1;
  std::size_t size = 0;
};
inline RegularFile open_regular(const std::string& path, std::string_view what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("{}: cannot open '{}': {}", what, path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("{}: cannot stat '{}': {}", what, path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: '{}' is {}, not a regular file", what, path, detail::file_kind(st.st_mode));
  }
  // Regular files ignore O_NONBLOCK; clear it anyway so that later reads are plain.
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return {fd, static_cast<std::size_t>(st.st_size)};
}

/// The whole regular file at path, refused above max_bytes (a config or a manifest is small).
inline std::string read_regular_file(const std::string& path, std::string_view what, std::size_t max_bytes = std::size_t{64} << 20) {
  const RegularFile f = open_regular(path, what);
  if (f.size > max_bytes) {
    ::close(f.fd);
    fail("{}: '{}' has {} bytes, more than the {} read for it", what, path, f.size, max_bytes);
  }
  std::string out(f.size, '\0');
  std::size_t got = 0;
  while (got < f.size) {
    const ssize_t n = ::read(f.fd, out.data() + got, f.size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : 0;
      ::close(f.fd);
      fail("{}: reading '{}' stopped at byte {} of {}{}{}", what, path, got, f.size, err ? ": " : "", err ? std::strerror(err) : "");
    }
    got += static_cast<std::size_t>(n);
  }
  ::close(f.fd);
  return out;
}

/// A file written whole or not at all: bytes go to `<path>.tmp.<pid>` in the same folder, which
/// commit() flushes, syncs and renames over path. A write that fails (a full disk, a file-size
/// limit) is an Error naming the file, and the temporary is removed, as it is when the object
/// is destroyed uncommitted; the file at path is never half-written. A process killed mid-write
/// leaves only the temporary, which the run-folder tools clean at their next start.
class AtomicFile {
 public:
  AtomicFile(std::string path, std::string_view what)
      : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())), what_(what) {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) fail("{}: cannot create '{}': {}", what_, tmp_, std::strerror(errno));
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (f_) {
      std::fclose(f_);
      std::remove(tmp_.c_str());
    }
  }
  std::FILE* handle() const { return f_; }
  const std::string& temp_path() const { return tmp_; }
  void write(const void* p, std::size_t n) {
    if (n == 0) return;
    if (std::fwrite(p, 1, n, f_) != n) abandon("writing");
  }
  void write(std::string_view s) { write(s.data(), s.size()); }
  /// Flushes, syncs and renames into place.
  void commit() {
    if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0) abandon("flushing");
    std::FILE* f = f_;
    f_ = nullptr;
    if (std::fclose(f) != 0) {
      const int err = errno;
      std::remove(tmp_.c_str());
      fail("{}: closing '{}' failed: {}", what_, tmp_, std::strerror(err));
    }
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      const int err = errno;
      std::remove(tmp_.c_str());
      fail("{}: cannot rename '{}' to '{}': {}", what_, tmp_, path_, std::strerror(err));
    }
  }

 private:
  [[noreturn]] void abandon(const char* doing) {
    const int err = errno;
    std::fclose(f_);
    f_ = nullptr;
    std::remove(tmp_.c_str());
    fail("{}: {} '{}' failed: {} (the previous '{}', if any, is unchanged)", what_, doing, tmp_, std::strerror(err), path_);
  }
  std::string path_, tmp_, what_;
  std::FILE* f_ = nullptr;
};

/// bytes written to path through an AtomicFile.
inline void write_file_atomic(const std::string& path, std::string_view bytes, std::string_view what) {
  AtomicFile f(path, what);
  f.write(bytes);
  f.commit();
}

}  // namespace irepa::io
