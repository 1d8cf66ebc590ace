// Defaults for the libFuzzer builds, so that a bare `./netchan-fuzz-X` stops
// at the first undefined behaviour in netchan's code and skips the reports
// Debian's CAF headers are known to cause (cmake/ubsan.supp). The
// environment's UBSAN_OPTIONS still override these.

extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1:suppressions="
         NETCHAN_UBSAN_SUPPRESSIONS;
}
