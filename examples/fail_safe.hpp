#pragma once
// Every tool's last line of defence: an exception that escapes main (or any thread: a prefetch
// worker, an MPI progress thread) is printed as one line naming the program and ends it with
// status 1, instead of std::terminate's abort and core dump. Each main still catches
// std::exception itself and reports it in its own words; this catches what nobody expected.

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include <unistd.h>

namespace irepa::examples {

[[noreturn]] inline void report_uncaught() {
  const char* prog = program_invocation_short_name;
  try {
    if (const std::exception_ptr e = std::current_exception()) std::rethrow_exception(e);
    std::fprintf(stderr, "%s: stopped (std::terminate without an exception)\n", prog);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", prog, e.what());
  } catch (...) {
    std::fprintf(stderr, "%s: stopped by an exception of unknown type\n", prog);
  }
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(1);
}

/// Installed before main by any tool that includes this header.
inline const std::terminate_handler kFailSafe = std::set_terminate(report_uncaught);

}  // namespace irepa::examples
