// Device-side validity checks whose result is read at the next read-back instead of at the call.
//
// A CUDA kernel that validates its input (a class index in range, an embedding index in range) raises an int32 flag
// on the device. Reading that flag right after the launch would make the host wait for the GPU at every call, so the
// op registers the flag here and returns; the flags are read, and the first raised one is thrown as an Error with
// the op's message, by the next synchronising read-back (Tensor::to(kCPU), to_vector(), item()) or
// synchronize_and_check(). PyTorch reports its device-side asserts the same way: at the next synchronisation.
#pragma once
#include <string>

#include "engine/tensor.h"

namespace mixgrad {

namespace detail {
// `flag` is a device int32 [1] (0 = fine) written by kernels queued on its device's stream; `message` is the error to
// throw if it is nonzero. On the CPU nothing is deferred: CPU kernels throw at the call. Past a bound on pending
// flags (a loop that never reads anything back) the pending flags are checked at once.
void defer_check(const Tensor& flag, std::string message);
// Reads every pending flag (waiting for their streams), forgets them, and throws the first raised one's message.
void run_deferred_checks();
}  // namespace detail

// Waits for the device's stream, then runs the pending device-side checks (their errors are thrown here).
void synchronize_and_check(Device d);

}  // namespace mixgrad
