// A whole Llama decode step in native code (CPU, float32 activations): for a batch of B
// sequences, one new token each, run every layer over a KV cache and return the next-token
// logits. Replaces the ~40 torch ops per layer of fastsynth.model.llama's forward (and their
// per-op dispatch, allocation and OpenMP wake-ups, which dominate a batch-1 step of a model
// this small: see docs/serving.md "Decode speed") by straight loops and the GGML-block
// products of quant_matvec.h.
//
// Arithmetic follows fastsynth.model.llama op for op (RMSNorm, rotate-half RoPE with float32
// angles, grouped-query attention with 1/sqrt(head_dim) scaling and a key mask, SwiGLU,
// residual adds), in float32 with float64 sums where a reduction is long (norms, softmax);
// results equal the torch path up to float32 rounding. Mode Int8 quantises every projection's
// input to 8 bits per 32-block (quant_matvec.h, quant_matmul_q8): faster, not exact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "quant_matvec.h"

namespace fastsynth {

struct QuantMatrix {
  const uint8_t* blocks = nullptr;  // (out, in/32 blocks), GGUF row order
  QuantFormat fmt = QuantFormat::Q4_1;
  size_t out = 0, in = 0;
};

struct DecoderLayer {
  const float* attn_norm = nullptr;  // (hidden,)
  QuantMatrix wqkv;                  // (n_heads*hd + 2*n_kv*hd, hidden): [q; k; v], rotate-half rows
  QuantMatrix wo;                    // (hidden, n_heads*hd)
  const float* mlp_norm = nullptr;   // (hidden,)
  QuantMatrix w_gate_up;             // (2*ffn, hidden): [gate; up]
  QuantMatrix w_down;                // (hidden, ffn)
};

struct DecoderModel {
  size_t hidden = 0, n_heads = 0, n_kv = 0, head_dim = 0, ffn = 0, vocab = 0;
  float eps = 1e-5f;
  const float* inv_freq = nullptr;    // (head_dim/2,) RoPE angular frequencies
  const float* embed = nullptr;       // (vocab, hidden) float32 token embeddings
  const float* final_norm = nullptr;  // (hidden,)
  QuantMatrix head;                   // (vocab, hidden)
  std::vector<DecoderLayer> layers;
};

enum class DecodeMode { Float32, Int8 };

// out[i] = e^x[i] as the decode step computes it (SwiGLU, softmax): 8 at a time with AVX2
// (within 2 ulp over [-87, 88]; inputs clamped to [-87.3, 88.3]), std::exp for the rest or
// without AVX2. Exposed for tests.
void exp_vector(const float* x, size_t n, float* out);

// One step. tokens/positions: (batch,). k_cache[l], v_cache[l]: float32 (batch, capacity,
// n_kv, head_dim), row-major; this step's keys/values are written at slot `length` and
// attention reads slots [0, length] where key_mask (batch, mask_stride) bytes are non-zero
// (nullptr: every slot). logits: (batch, vocab) output. Throws std::invalid_argument for a
// token id outside [0, vocab) or length >= capacity.
void decode_step(const DecoderModel& m, const int64_t* tokens, const int64_t* positions,
                 size_t batch, float* const* k_cache, float* const* v_cache, size_t capacity,
                 size_t length, const uint8_t* key_mask, size_t mask_stride, float* logits,
                 int threads, DecodeMode mode, bool simd = true);

}  // namespace fastsynth
