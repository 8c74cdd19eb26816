// lra: train / eval / predict / info / generate on the Long Range Arena tasks (logic in apps/lra/ so that the tests
// drive it directly).
#include "apps/common/blas_core.h"
#include "apps/lra/lra_app.h"

int main(int argc, char** argv) {
  mixgrad::app::ensure_fast_blas_kernels(argv);
  return mixgrad::app::lra::lra_main(argc, argv);
}
