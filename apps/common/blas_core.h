// OpenBLAS picks its kernels for the CPU when the library loads (DYNAMIC_ARCH builds, as Debian's). OpenBLAS 0.3.21
// (Debian 12) does not know newer CPUs — e.g. Intel family 6 model 207 — and falls back to its Prescott (SSE3)
// kernels: on such a machine a 1024^3 sgemm ran at 35 GFLOP/s against 180 with the SkylakeX kernels the CPU can run.
// Since the choice is made before main(), an app fixes it by re-executing itself once with OPENBLAS_CORETYPE set.
#pragma once

namespace mixgrad::app {

// When OPENBLAS_CORETYPE is unset, OpenBLAS chose "Prescott" and the CPU has AVX2 and FMA, re-executes this program
// (/proc/self/exe, same arguments and environment) with OPENBLAS_CORETYPE=SkylakeX (AVX-512 F/BW/DQ/VL present) or
// Haswell, after one line on stderr saying so. Returns when there is nothing to do, when MIXGRAD_BLAS_CORE=keep, or
// when the re-execution fails (the program then runs with OpenBLAS's choice). Call first thing in main().
void ensure_fast_blas_kernels(char** argv);

}  // namespace mixgrad::app
