#pragma once
// Library version (CMake reads it from here, so the two cannot disagree).

#define IREPA_VERSION_MAJOR 0
#define IREPA_VERSION_MINOR 1
#define IREPA_VERSION_PATCH 0

namespace irepa {
inline constexpr int version_major = IREPA_VERSION_MAJOR;
inline constexpr int version_minor = IREPA_VERSION_MINOR;
inline constexpr int version_patch = IREPA_VERSION_PATCH;
}  // namespace irepa
