// Must NOT compile: a projector without a layer<T> template is rejected at the Projector
// concept (tests/CMakeLists.txt checks that the compiler's message names it).
#include <irepa/models/sit.hpp>

struct NotAProjector {
  int width = 3;
};

int main() {
  irepa::SiTConfig cfg;
  irepa::SiT<irepa::B, 2, irepa::iREPAHead<NotAProjector, irepa::SpatialNorm>> model(cfg);
  return static_cast<int>(model.depth);
}
