// The OpenBLAS kernel check and the one-time re-execution.
#include "apps/common/blas_core.h"

#include <cblas.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace mixgrad::app {

void ensure_fast_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user's choice (or the re-executed process)
  if (const char* keep = std::getenv("MIXGRAD_BLAS_CORE"); keep && std::strcmp(keep, "keep") == 0) return;
  const char* core = openblas_get_corename();
  if (core == nullptr || std::strcmp(core, "Prescott") != 0) return;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;  // Prescott is right for it
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const char* better = avx512 ? "SkylakeX" : "Haswell";
  std::fprintf(stderr,
               "mixgrad: OpenBLAS does not know this CPU and chose its Prescott (SSE3) kernels; restarting with "
               "OPENBLAS_CORETYPE=%s (set OPENBLAS_CORETYPE yourself, or MIXGRAD_BLAS_CORE=keep, to choose)\n",
               better);
  std::fflush(stderr);
  if (setenv("OPENBLAS_CORETYPE", better, 1) != 0) return;
  execv("/proc/self/exe", argv);
  unsetenv("OPENBLAS_CORETYPE");  // exec failed: carry on with OpenBLAS's choice
}

}  // namespace mixgrad::app
