// vit: train / eval / predict / info for Vision Transformers with pluggable token mixers (logic in
// apps/common/vit_app.cpp so that the tests drive it directly).
#include "apps/common/blas_core.h"
#include "apps/vit/vit_app.h"

int main(int argc, char** argv) {
  mixgrad::app::ensure_fast_blas_kernels(argv);
  return mixgrad::app::vit_main(argc, argv);
}
