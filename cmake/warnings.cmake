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
if(MIXGRAD_NATIVE)
  target_compile_options(mixgrad_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
