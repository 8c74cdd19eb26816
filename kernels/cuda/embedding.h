// Embedding lookup and its deterministic gradient on CUDA (float table [num_embeddings, dim], int64 indices); the
// CPU reference is kernels/cpu/embedding.h. Out-of-range indices are never read through: they are skipped (the
// forward writes a zero row for them) and *bad_index is set to 1 (a device int the caller zeroes and checks after
// its next sync; may be null).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mixgrad::kernels::cuda {

// y[p, :] = weight[index[p], :].
void embedding_forward(float* y, const float* weight, const int64_t* index, int64_t n_index, int64_t num_embeddings,
                       int64_t dim, int* bad_index, cudaStream_t stream);

// Scratch bytes embedding_backward needs: the (row, position) pairs twice (keys and positions are 32-bit when
// num_embeddings < 2^32 - 1 and n_index < 2^31, else 64-bit) plus CUB's radix-sort temporary storage, each part
// 256-byte aligned. Queries CUB (host only, no sync); 0 when n_index == 0.
size_t embedding_backward_workspace_bytes(int64_t n_index, int64_t num_embeddings);

// dweight[e, :] = sum over p with index[p] == e of dy[p, :], added in increasing p (bit-identical to the CPU
// kernel for float); dweight is fully written (zero rows for unused entries). The (index, position) pairs are
// stably radix-sorted (cub::DeviceRadixSort::SortPairs) in the workspace, then one block per row of dweight finds
// its segment of the sorted pairs by binary search and sums the dy rows in position order. workspace:
// embedding_backward_workspace_bytes(n_index, num_embeddings) bytes, 256-byte aligned (as cudaMallocAsync gives).
void embedding_backward(float* dweight, const float* dy, const int64_t* index, int64_t n_index, int64_t num_embeddings,
                        int64_t dim, void* workspace, int* bad_index, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
