# Warning flags for every mixgrad target; errors when MIXGRAD_WERROR is ON (CI builds).
add_library(mixgrad_warnings INTERFACE)
target_compile_options(mixgrad_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wno-unknown-pragmas>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra --expt-relaxed-constexpr>)
if(MIXGRAD_WERROR)
  target_compile_options(mixgrad_warnings INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-Werror>
    "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Werror;SHELL:-Werror all-warnings>")
endif()
# Value-preserving floating-point flags: no code here reads FP exception flags or errno, and without them GCC
# will not if-convert float selects (so loops such as kernels/cpu/vec_math.h's exp and erf stay scalar) nor
# inline sqrt. Unlike -ffast-math they change no result.
target_compile_options(mixgrad_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-fno-trapping-math -fno-math-errno>)
if(MIXGRAD_NATIVE)
  # AVX-512 stays off: GCC 12.2 with -march=native on an AMD EPYC (Zen 4) development machine vectorised a plain
  # "store int as uint8 into a buffer" loop into wrong code (a test's mask came out all ones) at -O2 and -O3;
  # AVX2 + FMA code from the same compiler was correct, and the kernels gain little from 512-bit vectors.
  include(CheckCXXCompilerFlag)
  check_cxx_compiler_flag("-march=native -mno-avx512f" MIXGRAD_HAS_MARCH_NATIVE_NO_AVX512)
  check_cxx_compiler_flag(-march=native MIXGRAD_HAS_MARCH_NATIVE)
  if(MIXGRAD_HAS_MARCH_NATIVE_NO_AVX512)
    target_compile_options(mixgrad_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native -mno-avx512f>)
  elseif(MIXGRAD_HAS_MARCH_NATIVE)
    target_compile_options(mixgrad_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
  else()
    message(STATUS "mixgrad: the compiler does not accept -march=native; building for the generic CPU")
  endif()
endif()
