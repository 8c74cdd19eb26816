# Sanitizer and fuzzing builds (README "Testing").
#   -DMIXGRAD_SANITIZE=address,undefined   any list -fsanitize= accepts; every C++ target is compiled and linked with
#                                          it, UBSan findings abort (-fno-sanitize-recover) so a test fails on them.
#                                          CPU only: configure with -DMIXGRAD_CUDA=OFF (scripts/test-sanitize does).
#   -DMIXGRAD_FUZZ=ON                      libFuzzer targets under tests/fuzz/ (clang only; other compilers: a warning
#                                          and no targets). Combine with MIXGRAD_SANITIZE=address,undefined.
set(MIXGRAD_SANITIZE "" CACHE STRING "Sanitizers for every C++ target, e.g. address,undefined (empty = none)")
option(MIXGRAD_FUZZ "Build the libFuzzer targets under tests/fuzz (clang only)" OFF)

if(MIXGRAD_SANITIZE)
  if(MIXGRAD_WITH_CUDA)
    message(FATAL_ERROR "MIXGRAD_SANITIZE=${MIXGRAD_SANITIZE} builds the CPU code only; configure with "
                        "-DMIXGRAD_CUDA=OFF (scripts/test-sanitize does)")
  endif()
  set(_mixgrad_san -fsanitize=${MIXGRAD_SANITIZE} -fno-omit-frame-pointer)
  if(MIXGRAD_SANITIZE MATCHES "undefined")
    list(APPEND _mixgrad_san -fno-sanitize-recover=undefined)
  endif()
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${_mixgrad_san}>")
  add_link_options(-fsanitize=${MIXGRAD_SANITIZE})
  message(STATUS "mixgrad: sanitizers ${MIXGRAD_SANITIZE}")
endif()

if(MIXGRAD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(WARNING "MIXGRAD_FUZZ needs clang (libFuzzer); the compiler is ${CMAKE_CXX_COMPILER_ID}: no fuzz targets")
    set(MIXGRAD_FUZZ OFF)
  else()
    # Coverage instrumentation for the libraries; the fuzz executables link libFuzzer's main.
    add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link>")
  endif()
endif()
