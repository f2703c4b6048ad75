// Matrix products with weights kept in GGML block formats (as stored in GGUF files), for the
// small-batch decode steps of a CPU LLM: y[b, o] = sum_i W[o, i] * x[b, i].
//
// A decode step at batch 1 is memory-bound: it reads every weight once per token. Reading the
// quantised blocks (Q4_1: 20 bytes per 32 weights, Q8_0: 34) instead of float32 (128 bytes)
// cuts those bytes ~4-6x. Activations stay float32: each weight used is exactly the value the
// GGUF dequantiser produces (d*q (+ m)), so results equal a float64 product of the dequantised
// weights up to float32 accumulation error. Batches of 5 or more rows (batched decoding) first
// dequantise a few weight rows to float32 and reuse them across all activation rows from
// registers, which makes the kernel compute-bound rather than unpack-bound.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastsynth {

enum class QuantFormat {
  Q4_1,  // 32 weights per block: fp16 d, fp16 m, 16 bytes of nibbles; w = d*q + m, q in 0..15.
         // Byte j holds element j in its low nibble and element j+16 in its high nibble.
  Q8_0,  // 32 weights per block: fp16 d, 32 int8 q; w = d*q.
};

constexpr size_t kQuantBlock = 32;  // weights per block, both formats

// Bytes of one block of `fmt`.
size_t quant_block_bytes(QuantFormat fmt);

// True when the AVX2+FMA+F16C path is compiled in and this CPU supports it.
bool quant_simd_available();

// True when the CPU has AVX-512F: batches of 5+ rows then multiply in 16-lane tiles.
bool quant_avx512_available();
// Allows (default) or forbids the AVX-512 tiles process-wide, for tests and A/B benchmarks that
// need the AVX2 path on an AVX-512 machine; returns the previous setting.
bool quant_allow_avx512(bool allowed);

// y (batch, out_features) = x (batch, in_features) @ W.T, W (out_features, in_features) given as
// `blocks`: out_features rows of in_features/32 blocks each, row-major, as in a GGUF tensor.
// Throws std::invalid_argument when in_features is not a multiple of 32. `simd=false` forces
// the portable scalar path. `threads` <= 0 means every hardware thread. x and y must not alias.
void quant_matmul(const uint8_t* blocks, QuantFormat fmt, size_t out_features, size_t in_features,
                  const float* x, size_t batch, float* y, int threads, bool simd = true);

// ---- 8-bit activations (opt-in fast mode; docs/serving.md "Decode speed") -----------------
// Activations quantised per 32-block the way llama.cpp's Q8_1 does: d = max|x| / 127,
// q = round(x / d) in [-127, 127], and s = d * sum(q) (Q4_1's "+ m" term). The block dot
// products are then exact integer sums (AVX2 maddubs/madd), scaled once per block by d_w * d_x.
// This is NOT the float32 product: each activation carries a relative rounding error of up to
// 1/254 of its block's largest magnitude, so results differ from quant_matmul's.
struct Q8Activations {
  const int8_t* q;   // (batch, in_features)
  const float* d;    // (batch, in_features / 32) block scales
  const float* s;    // (batch, in_features / 32) d * sum(q) per block
};

// Quantise x (batch, in_features) into q / d / s (caller-owned, sizes as in Q8Activations).
void quantize_q8(const float* x, size_t batch, size_t in_features, int8_t* q, float* d, float* s);

// y (batch, out_features) = dequant(W) @ dequant(xq).T with integer block dot products.
// Same argument conventions as quant_matmul.
void quant_matmul_q8(const uint8_t* blocks, QuantFormat fmt, size_t out_features,
                     size_t in_features, const Q8Activations& xq, size_t batch, float* y,
                     int threads, bool simd = true);

}  // namespace fastsynth
