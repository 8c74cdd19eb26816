# `cmake --install build --prefix P`: the layer libraries, their headers and a relocatable CMake package, so that
# another project can `find_package(mixgrad)` and `target_link_libraries(app mixgrad::nn)` (examples/custom_layer).
#
#   P/lib/libmixgrad_{kernels_cpu,kernels_cuda,engine,nn,models}.a
#   P/include/mixgrad/{kernels,engine,nn,models}/...h      the source tree's layout, unchanged
#   P/lib/cmake/mixgrad/mixgrad{Config,ConfigVersion,Targets}.cmake, FindMixgradOpenBLAS.cmake
#
# mixgrad's headers include each other by their path from the repository root ("engine/tensor.h"), so the imported
# targets put P/include/mixgrad on the include path (a user writes #include "engine/mixgrad.h" as in this tree) and
# P/include as well (#include <mixgrad/engine/mixgrad.h> works too). The apps' support library is not installed.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MIXGRAD_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/mixgrad)
set(MIXGRAD_EXPORTED_LIBRARIES kernels_cpu engine nn models)
if(MIXGRAD_WITH_CUDA)
  list(APPEND MIXGRAD_EXPORTED_LIBRARIES kernels_cuda)
endif()

foreach(lib ${MIXGRAD_EXPORTED_LIBRARIES})
  set_target_properties(mixgrad_${lib} PROPERTIES EXPORT_NAME ${lib})
  add_library(mixgrad::${lib} ALIAS mixgrad_${lib})
  list(APPEND MIXGRAD_EXPORTED_TARGETS mixgrad_${lib})
endforeach()

install(TARGETS ${MIXGRAD_EXPORTED_TARGETS} EXPORT mixgradTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mixgrad ${CMAKE_INSTALL_INCLUDEDIR})

# Every header of the installed layers (kernels/cuda only when the CUDA backend is built).
set(MIXGRAD_HEADER_DIRS engine nn models kernels)
foreach(dir ${MIXGRAD_HEADER_DIRS})
  set(exclude)
  if(dir STREQUAL "kernels" AND NOT MIXGRAD_WITH_CUDA)
    set(exclude PATTERN cuda EXCLUDE)
  endif()
  install(DIRECTORY ${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mixgrad/${dir}
    FILES_MATCHING PATTERN "*.h" PATTERN "*.cuh" ${exclude})
endforeach()

install(EXPORT mixgradTargets NAMESPACE mixgrad:: DESTINATION ${MIXGRAD_INSTALL_CMAKEDIR})

# What mixgradConfig.cmake finds again: the folders OpenBLAS and the CUDA toolkit were found in here are its first
# guesses on the user's machine.
get_filename_component(MIXGRAD_OPENBLAS_LIBRARY_DIR ${MIXGRAD_OPENBLAS_LIBRARY} DIRECTORY)
set(MIXGRAD_OPENBLAS_HINTS_AT_BUILD ${MIXGRAD_OPENBLAS_LIBRARY_DIR} ${MIXGRAD_CBLAS_INCLUDE_DIR})
set(MIXGRAD_CUDA_ROOT_AT_BUILD "")
if(MIXGRAD_WITH_CUDA)
  get_filename_component(MIXGRAD_CUDA_ROOT_AT_BUILD ${CUDAToolkit_BIN_DIR} DIRECTORY)
endif()
configure_package_config_file(cmake/mixgradConfig.cmake.in ${CMAKE_BINARY_DIR}/mixgradConfig.cmake
  INSTALL_DESTINATION ${MIXGRAD_INSTALL_CMAKEDIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/mixgradConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/mixgradConfig.cmake ${CMAKE_BINARY_DIR}/mixgradConfigVersion.cmake
  cmake/FindMixgradOpenBLAS.cmake DESTINATION ${MIXGRAD_INSTALL_CMAKEDIR})
