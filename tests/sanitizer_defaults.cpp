// Built into the sanitized test executables that CI runs (test_parsers_asan, irepa-fuzz-replay),
// so that a plain ctest runs them with these options and no environment. Leak checking is off
// here: LeakSanitizer needs to stop the process's threads the way a debugger does, which some CI
// containers forbid. The asan preset (ASAN_OPTIONS=detect_leaks=1, which wins over these
// defaults, and tests/lsan.supp) checks leaks over the whole suite.
extern "C" const char* __asan_default_options() { return "detect_leaks=0:abort_on_error=1"; }
extern "C" const char* __ubsan_default_options() { return "print_stacktrace=1"; }
