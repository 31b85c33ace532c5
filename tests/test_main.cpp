// The unit tests' main: Catch2's, with every test case tagged by its file ("[#test_sit]"), so
// that an executable built from several test files (irepa_add_test_group) lists and runs each
// file's cases under that file's name.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

int main(int argc, char* argv[]) {
  Catch::Session session;
  session.configData().filenamesAsTags = true;  // what -# asks for; the command line can only add to it
  return session.run(argc, argv);
}
