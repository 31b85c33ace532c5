#pragma once
// Rank 0 hands a few bytes (NCCL's unique id) to every other rank over TCP, at
// MASTER_ADDR:port: what a torchrun job without MPI uses to set up NCCL. Rank 0 listens and
// answers each peer that connects; the others connect, retrying until rank 0 is up. Both sides
// give up with an error after a deadline, never hang.

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "irepa/core/error.hpp"

namespace irepa {

namespace detail {
class Socket {
 public:
  explicit Socket(int fd = -1) : fd_(fd) {}
  Socket(Socket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Socket& operator=(Socket&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }

 private:
  int fd_;
};

using Clock = std::chrono::steady_clock;
inline int ms_left(Clock::time_point deadline) {
  return static_cast<int>(std::max<long long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
}
/// Waits until fd is ready for `events` or the deadline passes.
inline void wait_fd(int fd, short events, Clock::time_point deadline, const std::string& what) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int rc = ::poll(&p, 1, ms_left(deadline));
    if (rc > 0) return;
    if (rc == 0) fail("rendezvous: {} timed out", what);
    if (errno != EINTR) fail("rendezvous: {}: {}", what, std::strerror(errno));
  }
}
inline void send_all(int fd, const char* p, std::size_t n, Clock::time_point deadline) {
  while (n > 0) {
    wait_fd(fd, POLLOUT, deadline, "sending to a peer");
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    IREPA_CHECK(k > 0, "rendezvous: send failed: {}", std::strerror(errno));
    p += k, n -= static_cast<std::size_t>(k);
  }
}
inline void recv_all(int fd, char* p, std::size_t n, Clock::time_point deadline) {
  while (n > 0) {
    wait_fd(fd, POLLIN, deadline, "waiting for rank 0's bytes");
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    IREPA_CHECK(k > 0, "rendezvous: rank 0 closed the connection with {} bytes still to come", n);
    p += k, n -= static_cast<std::size_t>(k);
  }
}
}  // namespace detail

/// Rank 0 sends `bytes` to every rank of `world`; every rank returns them. addr / port: rank 0's
/// host and a free TCP port there.
inline std::vector<char> tcp_rendezvous(int rank, int world, const std::string& addr, int port, std::vector<char> bytes,
                                        double timeout_seconds) {
  using namespace detail;
  IREPA_CHECK(port > 0 && port < 65536, "rendezvous: port {} is not a TCP port", port);
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_seconds));
  const std::uint64_t n = bytes.size();
  if (rank == 0) {
    Socket srv(::socket(AF_INET, SOCK_STREAM, 0));
    IREPA_CHECK(srv.fd() >= 0, "rendezvous: socket: {}", std::strerror(errno));
    const int one = 1;
    ::setsockopt(srv.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    IREPA_CHECK(::bind(srv.fd(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "rendezvous: rank 0 cannot listen on port {}: {}", port,
                std::strerror(errno));
    IREPA_CHECK(::listen(srv.fd(), world) == 0, "rendezvous: listen: {}", std::strerror(errno));
    for (int served = 1; served < world; ++served) {
      wait_fd(srv.fd(), POLLIN, deadline, fmt::format("rank 0 waiting for {} of {} peers on port {}", world - served, world - 1, port));
      Socket c(::accept(srv.fd(), nullptr, nullptr));
      IREPA_CHECK(c.fd() >= 0, "rendezvous: accept: {}", std::strerror(errno));
      send_all(c.fd(), reinterpret_cast<const char*>(&n), sizeof n, deadline);
      send_all(c.fd(), bytes.data(), bytes.size(), deadline);
    }
    return bytes;
  }
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int g = ::getaddrinfo(addr.c_str(), std::to_string(port).c_str(), &hints, &res);
  IREPA_CHECK(g == 0 && res, "rendezvous: cannot resolve '{}': {}", addr, ::gai_strerror(g));
  const sockaddr_in target = *reinterpret_cast<sockaddr_in*>(res->ai_addr);
  ::freeaddrinfo(res);
  for (;;) {  // rank 0 may not listen yet
    Socket s(::socket(AF_INET, SOCK_STREAM, 0));
    IREPA_CHECK(s.fd() >= 0, "rendezvous: socket: {}", std::strerror(errno));
    if (::connect(s.fd(), reinterpret_cast<const sockaddr*>(&target), sizeof target) == 0) {
      std::uint64_t m = 0;
      recv_all(s.fd(), reinterpret_cast<char*>(&m), sizeof m, deadline);
      IREPA_CHECK(m < (1u << 20), "rendezvous: rank 0 announces {} bytes (not an irepa rendezvous on {}:{}?)", m, addr, port);
      std::vector<char> out(m);
      recv_all(s.fd(), out.data(), out.size(), deadline);
      return out;
    }
    IREPA_CHECK(ms_left(deadline) > 0, "rendezvous: rank {} could not reach rank 0 at {}:{} within {} s: {}", rank, addr, port,
                timeout_seconds, std::strerror(errno));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace irepa
