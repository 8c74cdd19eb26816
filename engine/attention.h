// Scaled dot-product attention as one engine op: a fused flash-style path (one tape node, O(T·d) memory) chosen
// automatically when the masks allow it, and the composite path (matmul, where, softmax, dropout, matmul).
// Implemented in engine/ops_attention.cpp; how mixers use it: docs/mixers.md.
#pragma once
#include "engine/tensor.h"

namespace mixgrad {

// q [B,H,T,d], k/v [B,H,Tk,d] (float32/float64 CPU, float32 CUDA). attn_mask: optional uint8 tensor broadcastable to
// [B,H,T,Tk], nonzero = may attend (PyTorch boolean-mask semantics), e.g. a key-padding mask viewed as [B,1,1,Tk].
// causal: key j visible to query i iff j <= i + (Tk - T). scale <= 0 means 1/sqrt(d). Fully masked rows give zero
// output and zero gradient (never NaN). dropout_p applies to the probabilities in training.
// Uses the calling thread's attention_backend() (default automatic).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask = Tensor(),
                                    bool causal = false, double dropout_p = 0.0, double scale = -1.0);

// Multi-head self-attention on a fused projection, the layout timm's Attention uses: qkv [B, T, 3·H·d] holds, per
// token, q in channels [0, H·d), k in [H·d, 2·H·d) and v in [2·H·d, 3·H·d), head h at offset h·d within each;
// returns [B, T, H·d] with channel h·d + e. The result (and its gradient) is exactly that of splitting qkv into
// q, k, v [B, H, T, d], calling scaled_dot_product_attention with the same arguments and permuting the output
// back — which is what runs wherever the fused CPU kernels cannot take the call; on the CPU fused path the kernels
// read q, k, v from qkv and write the output in [B, T, H·d] through their strides (no layout copies, one tape node),
// with the same dropout mask as the unpacked fused path. Uses the calling thread's attention_backend().
Tensor packed_qkv_attention(const Tensor& qkv, int64_t num_heads, const Tensor& attn_mask = Tensor(),
                            bool causal = false, double dropout_p = 0.0, double scale = -1.0);

// Key padding as per-sample lengths, the form the mixers use: key j of sample b is visible iff j < lengths[b], with
// lengths int32 [B] on the inputs' device (engine/sequence.h); undefined = every key visible. Nothing is read back
// to the host: the fused kernels take the lengths as they are (on a GPU they clamp a length to [0, Tk]; on the CPU
// a length outside [0, Tk] is an error), and the composite path builds its mask on the device (sequence_mask).
struct KeyPadding {
  Tensor lengths;
};

// scaled_dot_product_attention / packed_qkv_attention with key padding given as lengths instead of a mask: the same
// results as the mask forms with the prefix mask sequence_mask(lengths, Tk) viewed as [B, 1, 1, Tk].
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const KeyPadding& padding,
                                    bool causal = false, double dropout_p = 0.0, double scale = -1.0);
Tensor packed_qkv_attention(const Tensor& qkv, int64_t num_heads, const KeyPadding& padding, bool causal = false,
                            double dropout_p = 0.0, double scale = -1.0);

// Which implementation scaled_dot_product_attention runs.
//   automatic: fused when it can express the call, composite otherwise. Fused needs: float32 (float64 stays
//              composite because the kernels keep LSE in fp32, which limits a float64 backward to ~1e-7 relative
//              accuracy — too coarse for float64 gradient checks), no mask / causal / a key-padding mask of shape
//              [B or 1, 1, 1, Tk] (fewer leading dims allowed) whose nonzeros form a prefix of every row, non-empty
//              sizes, and on CUDA head dim d <= 128.
//   fused:     the fused kernels (float32 or float64 on the CPU); throws when the call cannot be expressed by them.
//   composite: always the composite path (the reference; its memory grows with T·Tk).
// The two paths draw dropout masks differently (both from the Philox generator, one stream per call): the fused
// mask is kernels::flash_dropout_keep(seed, stream, b, h, i, j), identical on CPU and CUDA.
enum class AttentionBackend { automatic, fused, composite };

// Same as above with an explicit backend (ignores the thread's setting).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                                    bool causal, double dropout_p, double scale, AttentionBackend backend);

// The calling thread's default backend (thread-local like grad mode; starts as automatic).
void set_attention_backend(AttentionBackend backend);
AttentionBackend attention_backend();
const char* attention_backend_name(AttentionBackend backend);  // "automatic", "fused", "composite"

// Sets the thread's backend for a scope and restores the previous one (tests, benchmarks).
class AttentionBackendGuard {
 public:
  explicit AttentionBackendGuard(AttentionBackend backend) : previous_(attention_backend()) {
    set_attention_backend(backend);
  }
  ~AttentionBackendGuard() { set_attention_backend(previous_); }
  AttentionBackendGuard(const AttentionBackendGuard&) = delete;
  AttentionBackendGuard& operator=(const AttentionBackendGuard&) = delete;

 private:
  AttentionBackend previous_;
};

}  // namespace mixgrad
