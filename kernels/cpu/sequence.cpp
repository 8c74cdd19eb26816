// Sequence masks and length shifts on the CPU.
#include "kernels/cpu/sequence.h"

namespace mixgrad::kernels::cpu {

template <class T>
void sequence_mask(T* mask, const int32_t* lengths, int64_t B, int64_t N) {
  for (int64_t b = 0; b < B; ++b) {
    T* row = mask + b * N;
    const int64_t n = lengths[b];
    for (int64_t j = 0; j < N; ++j) row[j] = j < n ? T(1) : T(0);
  }
}

void add_to_lengths(int32_t* out, const int32_t* lengths, int64_t B, int32_t delta) {
  for (int64_t b = 0; b < B; ++b) out[b] = lengths[b] + delta;
}

template void sequence_mask<uint8_t>(uint8_t*, const int32_t*, int64_t, int64_t);
template void sequence_mask<float>(float*, const int32_t*, int64_t, int64_t);
template void sequence_mask<double>(double*, const int32_t*, int64_t, int64_t);

}  // namespace mixgrad::kernels::cpu
