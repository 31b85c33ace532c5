#pragma once
// irepa::Error: the one exception type of the library. Messages name the operation, what was
// expected and what was found (shapes, dtypes, files, offsets).

#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace irepa {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// Throws irepa::Error with an fmt-formatted message.
#if defined(__CUDACC__)
// nvcc's front end cannot evaluate fmt's consteval format-string checks, so CUDA translation
// units format at run time (the same messages are checked at compile time in g++ builds).
template <class... Args>
[[noreturn]] inline void fail(std::string_view f, const Args&... args) {
  throw Error(fmt::vformat(f, fmt::make_format_args(args...)));
}
#else
template <class... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}
#endif

}  // namespace irepa

/// Checks a condition on user input (never compiled out, unlike assert).
#define IREPA_CHECK(cond, ...)          \
  do {                                  \
    if (!(cond)) ::irepa::fail(__VA_ARGS__); \
  } while (0)
