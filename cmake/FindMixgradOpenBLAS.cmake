# OpenBLAS (cblas.h + libopenblas) as the imported target mixgrad::openblas. Looked up under the openblas-pthread
# suffixes too, where Debian (and the GPU machine's unpacked packages) keep it. Used by mixgrad's own build and, as
# find_dependency(MixgradOpenBLAS), by the installed mixgradConfig.cmake; MIXGRAD_OPENBLAS_HINTS (folders) is searched
# first (the installed config passes the folders the package was built against).
find_path(MIXGRAD_CBLAS_INCLUDE_DIR cblas.h
  HINTS ${MIXGRAD_OPENBLAS_HINTS}
  PATH_SUFFIXES x86_64-linux-gnu/openblas-pthread openblas-pthread openblas x86_64-linux-gnu)
find_library(MIXGRAD_OPENBLAS_LIBRARY NAMES openblas
  HINTS ${MIXGRAD_OPENBLAS_HINTS}
  PATH_SUFFIXES x86_64-linux-gnu/openblas-pthread openblas-pthread lib/x86_64-linux-gnu/openblas-pthread)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(MixgradOpenBLAS
  REQUIRED_VARS MIXGRAD_OPENBLAS_LIBRARY MIXGRAD_CBLAS_INCLUDE_DIR
  REASON_FAILURE_MESSAGE "OpenBLAS not found (cblas.h: ${MIXGRAD_CBLAS_INCLUDE_DIR}, libopenblas: ${MIXGRAD_OPENBLAS_LIBRARY}). Debian: libopenblas-dev (mixgrad's scripts/install-deps installs it).")

if(MixgradOpenBLAS_FOUND AND NOT TARGET mixgrad::openblas)
  add_library(mixgrad::openblas INTERFACE IMPORTED)
  target_include_directories(mixgrad::openblas INTERFACE ${MIXGRAD_CBLAS_INCLUDE_DIR})
  target_link_libraries(mixgrad::openblas INTERFACE ${MIXGRAD_OPENBLAS_LIBRARY})
endif()
