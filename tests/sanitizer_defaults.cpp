// Built into the sanitized test executables (test_parsers_asan, irepa-fuzz-replay): their
// options and leak suppressions come with them, so a plain ctest (no environment) runs them
// as the asan preset would. The suppressions are tests/lsan.supp's: third-party libraries only.
extern "C" const char* __asan_default_options() { return "detect_leaks=1:abort_on_error=1"; }
extern "C" const char* __ubsan_default_options() { return "print_stacktrace=1"; }
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libfontconfig.so\nleak:libcairo.so\nleak:libpango\nleak:libglib\nleak:libgobject\nleak:libpixman\nleak:libfreetype.so\n"
         "leak:libltdl.so\n";
}
