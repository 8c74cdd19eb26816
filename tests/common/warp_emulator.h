// A CPU emulator of one CUDA thread block for the warp-level kernel bodies written against the "warp device"
// interface (kernels/flash_attention_tc.h): one std::thread per CUDA thread, warp-wide shuffles and
// mma.sync.m16n8k8 (TF32 in, fp32 accumulate) exchanged through per-warp slots between barriers, __syncthreads
// as a block-wide barrier, shared memory as one buffer that starts as NaN (CUDA's is uninitialised: a read of an
// element no thread wrote shows up as NaN in the results). It runs the same source the GPU runs,
// so index, masking and fragment-bookkeeping mistakes show on any machine; only the instruction semantics come
// from the PTX ISA (fragment layout in kernels/flash_attention_tc.h).
//
// Strict where hardware is lenient: an mma operand whose low 13 bits are not zero (not a TF32 value, which the
// hardware would silently truncate; NaN excepted) is counted, and tests require the count to be zero.
#pragma once
#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "kernels/flash_attention_tc.h"

namespace mixgrad::testing {

class BlockEmulator {
  struct Warp {  // the slots one warp's collectives exchange values through
    std::barrier<> bar{32};
    float value[32] = {};
    uint32_t a[32][4] = {};
    uint32_t b[32][2] = {};
  };

 public:
  // `threads`: a multiple of 32; `smem_bytes`: dynamic shared memory of the block.
  BlockEmulator(int threads, size_t smem_bytes)
      : threads_(threads),
        smem_((smem_bytes + sizeof(float) - 1) / sizeof(float), std::numeric_limits<float>::quiet_NaN()),
        block_bar_(threads) {
    for (int w = 0; w < threads / 32; ++w) warps_.push_back(std::make_unique<Warp>());
  }

  // The per-thread handle a kernel body receives.
  class Dev {
   public:
    int tid() const { return tid_; }
    float* smem() const { return em_->smem_.data(); }
    void sync() const { em_->block_bar_.arrive_and_wait(); }
    float shfl_xor(float v, int lane_mask) const {
      Warp& w = warp();
      w.value[lane()] = v;
      w.bar.arrive_and_wait();
      const float r = w.value[lane() ^ lane_mask];
      w.bar.arrive_and_wait();  // nobody overwrites a slot before every lane has read
      return r;
    }
    static float round_tf32(float x) {
      return std::bit_cast<float>(kernels::flash_tc::tf32_round_bits(std::bit_cast<uint32_t>(x)));
    }
    static uint32_t bits(float x) { return std::bit_cast<uint32_t>(x); }
    static float from_bits(uint32_t x) { return std::bit_cast<float>(x); }
    static float exp2(float x) { return std::exp2(x); }
    static float log2(float x) { return std::log2(x); }
    // d += A·B for the warp's 16×8×8 product; every lane passes its own fragments (layout in
    // kernels/flash_attention_tc.h) and receives its own four accumulator elements.
    void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) const {
      Warp& w = warp();
      const int ln = lane();
      for (int i = 0; i < 4; ++i) w.a[ln][i] = a[i];
      for (int i = 0; i < 2; ++i) w.b[ln][i] = b[i];
      w.bar.arrive_and_wait();
      const int g = ln >> 2, t = ln & 3;
      for (int c = 0; c < 4; ++c) {
        const int row = g + (c >= 2 ? 8 : 0), col = 2 * t + (c & 1);
        float acc = d[c];
        for (int kk = 0; kk < 8; ++kk) {
          const uint32_t av = w.a[(row & 7) * 4 + (kk & 3)][(row >= 8 ? 1 : 0) + (kk >= 4 ? 2 : 0)];
          const uint32_t bv = w.b[col * 4 + (kk & 3)][kk >= 4 ? 1 : 0];
          if (!tf32_value(av) || !tf32_value(bv)) em_->non_tf32_operands_.fetch_add(1);
          // TF32 × TF32 products are exact in fp32 (11 + 11 significant bits); sums are fp32.
          acc += std::bit_cast<float>(av) * std::bit_cast<float>(bv);
        }
        d[c] = acc;
      }
      w.bar.arrive_and_wait();
    }

   private:
    friend class BlockEmulator;
    // A TF32 value (low 13 bits zero) or a NaN (cvt.rna turns every NaN into the canonical 0x7fffffff).
    static bool tf32_value(uint32_t x) {
      return (x & 0x1fffu) == 0 || ((x & 0x7f800000u) == 0x7f800000u && (x & 0x007fffffu) != 0);
    }
    Dev(BlockEmulator* em, int tid) : em_(em), tid_(tid) {}
    int lane() const { return tid_ & 31; }
    Warp& warp() const { return *em_->warps_[static_cast<size_t>(tid_ >> 5)]; }
    BlockEmulator* em_;
    int tid_;
  };

  // Runs body(dev) on every thread of the block and returns when all have finished. Shared memory keeps its
  // contents between runs (tests use one emulator per CTA).
  template <class Body>
  void run(Body&& body) {
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(threads_));
    for (int tid = 0; tid < threads_; ++tid)
      pool.emplace_back([this, tid, &body] {
        Dev dev(this, tid);
        body(dev);
      });
    for (std::thread& th : pool) th.join();
  }

  // mma operands seen that were not TF32 values (low 13 bits set).
  int64_t non_tf32_operands() const { return non_tf32_operands_.load(); }

 private:
  int threads_;
  std::vector<float> smem_;
  std::barrier<> block_bar_;
  std::vector<std::unique_ptr<Warp>> warps_;
  std::atomic<int64_t> non_tf32_operands_{0};
};

}  // namespace mixgrad::testing
