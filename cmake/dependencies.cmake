# Debian-packaged dependencies. OpenBLAS is looked up under the openblas-pthread suffixes too, where Debian
# (and the GPU machine's unpacked packages) keep it.
find_package(fmt REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 QUIET CONFIG)
find_package(ZLIB REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(Threads REQUIRED)

list(APPEND CMAKE_MODULE_PATH ${CMAKE_CURRENT_LIST_DIR})
find_package(MixgradOpenBLAS REQUIRED)  # cmake/FindMixgradOpenBLAS.cmake: the imported target mixgrad::openblas
message(STATUS "mixgrad: OpenBLAS ${MIXGRAD_OPENBLAS_LIBRARY} (cblas.h in ${MIXGRAD_CBLAS_INCLUDE_DIR})")

find_path(MIXGRAD_STB_INCLUDE_DIR stb_image_write.h PATH_SUFFIXES stb)
if(NOT MIXGRAD_STB_INCLUDE_DIR)
  message(FATAL_ERROR "stb not found. Run scripts/install-deps (Debian: libstb-dev).")
endif()
if(NOT TARGET CLI11::CLI11)
  find_path(MIXGRAD_CLI11_INCLUDE_DIR CLI/CLI.hpp)
  if(NOT MIXGRAD_CLI11_INCLUDE_DIR)
    message(FATAL_ERROR "CLI11 not found. Run scripts/install-deps (Debian: libcli11-dev).")
  endif()
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${MIXGRAD_CLI11_INCLUDE_DIR})
endif()
find_path(MIXGRAD_CATCH2_INCLUDE_DIR catch2/catch.hpp)
