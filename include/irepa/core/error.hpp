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
template <class... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace irepa

/// Checks a condition on user input (never compiled out, unlike assert).
#define IREPA_CHECK(cond, ...)          \
  do {                                  \
    if (!(cond)) ::irepa::fail(__VA_ARGS__); \
  } while (0)
