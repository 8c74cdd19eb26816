// Entry point of the CUDA tests: exits with 77 (CTest's skip code) when no device is usable, unless
// MIXGRAD_REQUIRE_CUDA=1 makes that a failure. Listing tests never needs a device.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/device.h"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing = listing || std::string(argv[i]).rfind("--list", 0) == 0;
  if (!listing && !mixgrad::cuda_is_available()) {
    const char* req = std::getenv("MIXGRAD_REQUIRE_CUDA");
    if (req && std::string(req) == "1") {
      std::fprintf(stderr, "MIXGRAD_REQUIRE_CUDA=1 but no CUDA device is usable: %s\n",
                   mixgrad::cuda_unavailable_reason().c_str());
      return 1;
    }
    std::fprintf(stderr, "skipped: no CUDA device is usable (%s)\n", mixgrad::cuda_unavailable_reason().c_str());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
