// Native decode step (see decode.h). Every op but the projections and attention is a short
// loop over hidden-size vectors (576 floats for SmolLM2-135M) and runs on the calling thread:
// waking pool workers would cost more than the work. Projections split their output rows over
// the pool (quant_matvec.cpp); attention splits (row, head) pairs when there is enough of it.
#include "decode.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "hsum.h"
#include "parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fastsynth {
namespace {

// Attention work (multiply-adds) below which it stays on the calling thread (parallel.h: a
// wake-up costs about what 128K multiply-adds take).
constexpr size_t kMinAttentionWork = size_t{1} << 17;

void rms_norm(const float* x, const float* w, size_t n, float eps, float* out) {
  double ss = 0.0;
  for (size_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float rstd = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
  for (size_t i = 0; i < n; ++i) out[i] = (x[i] * rstd) * w[i];
}

// Rotate-half RoPE of n_vec head vectors (head_dim each, contiguous) by cos/sin of one position.
void rope(float* v, size_t n_vec, size_t hd, const float* cos, const float* sin) {
  const size_t half = hd / 2;
  for (size_t h = 0; h < n_vec; ++h, v += hd)
    for (size_t j = 0; j < half; ++j) {
      const float x1 = v[j], x2 = v[j + half];
      v[j] = x1 * cos[j] + x2 * (-sin[j]);
      v[j + half] = x2 * cos[j] + x1 * sin[j];
    }
}

struct Scratch {
  std::vector<float> x, xn, qkv, att, gu, act, tmp, cos, sin;
  std::vector<int8_t> q8;
  std::vector<float> q8d, q8s;
};

void project(const QuantMatrix& w, const float* x, size_t batch, float* y, int threads,
             DecodeMode mode, bool simd, Scratch& s) {
  if (mode == DecodeMode::Float32) {
    quant_matmul(w.blocks, w.fmt, w.out, w.in, x, batch, y, threads, simd);
    return;
  }
  const size_t nblk = w.in / kQuantBlock;
  s.q8.resize(batch * w.in);
  s.q8d.resize(batch * nblk);
  s.q8s.resize(batch * nblk);
  quantize_q8(x, batch, w.in, s.q8.data(), s.q8d.data(), s.q8s.data());
  quant_matmul_q8(w.blocks, w.fmt, w.out, w.in, Q8Activations{s.q8.data(), s.q8d.data(), s.q8s.data()},
                  batch, y, threads, simd);
}

#if defined(__x86_64__) || defined(__i386__)
// e^x for 8 floats: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two parts so n ln2 is exact
// enough), e^r from Cephes' degree-6 polynomial for expf, times 2^n built in the exponent bits.
// Within 2 ulp of the correctly rounded value over [-87, 88] (tests/test_decode_native.py
// checks it against float64); inputs are clamped to [-87.3, 88.3], so e^x of a very negative
// x is ~1e-38 rather than 0 — callers that need an exact 0 (masked softmax slots) set it.
__attribute__((target("avx2,fma"))) inline __m256 exp256(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

__attribute__((target("avx2,fma"))) void store_exp256(const float* x, float* out) {
  _mm256_storeu_ps(out, exp256(_mm256_loadu_ps(x)));
}

// a * silu(g) = g / (1 + e^-g) * u for n values (n a multiple of 8).
__attribute__((target("avx2,fma"))) void swiglu_avx2(const float* g, const float* u, size_t n, float* a) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (size_t i = 0; i < n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv));
    _mm256_storeu_ps(a + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
  }
}

// The vector pieces of attend() below (head_dim a multiple of 8). Scores are dot products of 8
// lane-wise partial sums added at the end (the order torch's own vectorised kernels use, not the
// scalar loop's). At batch 16 over a ~70-slot cache the scalar loops were about a third of a
// decode step (docs/serving.md "Decode speed").
__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, size_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  size_t j = 0;
  for (; j + 16 <= n; j += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), acc1);
  }
  for (; j < n; j += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc0);
  return hsum256(_mm256_add_ps(acc0, acc1));
}

// scores[s] = e^(scores[s] - mx), exactly 0 where scores[s] is -inf (a masked slot).
__attribute__((target("avx2,fma"))) void exp_scores_avx2(float* scores, size_t n, float mx) {
  const __m256 vmx = _mm256_set1_ps(mx), ninf = _mm256_set1_ps(-INFINITY);
  size_t s = 0;
  for (; s + 8 <= n; s += 8) {
    const __m256 sc = _mm256_loadu_ps(scores + s);
    const __m256 visible = _mm256_cmp_ps(sc, ninf, _CMP_NEQ_OQ);
    _mm256_storeu_ps(scores + s, _mm256_and_ps(exp256(_mm256_sub_ps(sc, vmx)), visible));
  }
  for (; s < n; ++s) scores[s] = scores[s] == -INFINITY ? 0.0f : std::exp(scores[s] - mx);
}

// out += p * v (n a multiple of 8)
__attribute__((target("avx2,fma"))) void axpy_avx2(float p, const float* v, float* out, size_t n) {
  const __m256 pv = _mm256_set1_ps(p);
  for (size_t j = 0; j < n; j += 8)
    _mm256_storeu_ps(out + j, _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + j), _mm256_loadu_ps(out + j)));
}
#endif

// out (hd) = softmax(q . k_s / sqrt(hd) over visible slots s <= length) @ v_s for one
// (row, query head); k/v point at slot 0 of this row's KV head, slot stride `stride` floats.
// Vec: the AVX2 pieces above; otherwise plain loops in the order of fastsynth.model.llama's ops.
// The softmax total is summed in float64 on both.
template <bool Vec>
void attend(const float* q, const float* k, const float* v, size_t stride, size_t hd, size_t n_slots,
            const uint8_t* mask, float scale, float* scores, float* out) {
  float mx = -INFINITY;
  for (size_t s = 0; s < n_slots; ++s) {
    if (mask != nullptr && !mask[s]) {
      scores[s] = -INFINITY;
      continue;
    }
    const float* ks = k + s * stride;
    float dot = 0.0f;
#if defined(__x86_64__) || defined(__i386__)
    if constexpr (Vec) dot = dot_avx2(q, ks, hd);
    else
#endif
      for (size_t j = 0; j < hd; ++j) dot += q[j] * ks[j];
    scores[s] = dot * scale;
    mx = std::max(mx, scores[s]);
  }
  std::fill(out, out + hd, 0.0f);
  if (mx == -INFINITY) return;  // no visible key: 0, as attention.py defines it
#if defined(__x86_64__) || defined(__i386__)
  if constexpr (Vec) exp_scores_avx2(scores, n_slots, mx);
  else
#endif
    for (size_t s = 0; s < n_slots; ++s) scores[s] = scores[s] == -INFINITY ? 0.0f : std::exp(scores[s] - mx);
  double total = 0.0;
  for (size_t s = 0; s < n_slots; ++s) total += scores[s];
  const float inv = static_cast<float>(1.0 / total);
  for (size_t s = 0; s < n_slots; ++s) {
    if (scores[s] == 0.0f) continue;
    const float p = scores[s] * inv;
    const float* vs = v + s * stride;
#if defined(__x86_64__) || defined(__i386__)
    if constexpr (Vec) {
      axpy_avx2(p, vs, out, hd);
      continue;
    }
#endif
    for (size_t j = 0; j < hd; ++j) out[j] += p * vs[j];
  }
}

}  // namespace

void exp_vector(const float* x, size_t n, float* out) {
  size_t i = 0;
#if defined(__x86_64__) || defined(__i386__)
  if (quant_simd_available()) {
    for (; i + 8 <= n; i += 8) store_exp256(x + i, out + i);
  }
#endif
  for (; i < n; ++i) out[i] = std::exp(x[i]);
}

void decode_step(const DecoderModel& m, const int64_t* tokens, const int64_t* positions,
                 size_t batch, float* const* k_cache, float* const* v_cache, size_t capacity,
                 size_t length, const uint8_t* key_mask, size_t mask_stride, float* logits,
                 int threads, DecodeMode mode, bool simd) {
  if (batch == 0) return;
  if (length >= capacity)
    throw std::invalid_argument("length " + std::to_string(length) + " leaves no free cache slot (capacity " +
                                std::to_string(capacity) + ")");
  for (size_t b = 0; b < batch; ++b)
    if (tokens[b] < 0 || static_cast<size_t>(tokens[b]) >= m.vocab)
      throw std::invalid_argument("tokens: id " + std::to_string(tokens[b]) + " at row " + std::to_string(b) +
                                  " is outside [0, " + std::to_string(m.vocab) + ")");
  const size_t H = m.hidden, hd = m.head_dim, half = hd / 2;
  const size_t q_out = m.n_heads * hd, kv_out = m.n_kv * hd, qkv_out = q_out + 2 * kv_out;
  const size_t group = m.n_heads / m.n_kv, n_slots = length + 1, slot_stride = m.n_kv * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  thread_local Scratch scratch;
  Scratch& s = scratch;  // a reference: the attention lambda below runs on other threads too
  s.x.resize(batch * H);
  s.xn.resize(batch * H);
  s.tmp.resize(batch * H);
  s.qkv.resize(batch * qkv_out);
  s.att.resize(batch * q_out);
  s.gu.resize(batch * 2 * m.ffn);
  s.act.resize(batch * m.ffn);
  s.cos.resize(batch * half);
  s.sin.resize(batch * half);
  for (size_t b = 0; b < batch; ++b) {
    std::memcpy(&s.x[b * H], m.embed + static_cast<size_t>(tokens[b]) * H, H * sizeof(float));
    const float pos = static_cast<float>(positions[b]);  // float32 angles, as rope.py
    for (size_t j = 0; j < half; ++j) {
      const float a = pos * m.inv_freq[j];
      s.cos[b * half + j] = std::cos(a);
      s.sin[b * half + j] = std::sin(a);
    }
  }
  bool vector_attention = false;
#if defined(__x86_64__) || defined(__i386__)
  vector_attention = simd && hd % 8 == 0 && quant_simd_available();
  const bool vector_swiglu = simd && m.ffn % 8 == 0 && quant_simd_available();
#endif
  const size_t att_work = batch * m.n_heads * n_slots * hd * 2;
  const int att_threads = att_work < kMinAttentionWork ? 1 : threads;

  for (size_t l = 0; l < m.layers.size(); ++l) {
    const DecoderLayer& L = m.layers[l];
    for (size_t b = 0; b < batch; ++b) rms_norm(&s.x[b * H], L.attn_norm, H, m.eps, &s.xn[b * H]);
    project(L.wqkv, s.xn.data(), batch, s.qkv.data(), threads, mode, simd, s);
    for (size_t b = 0; b < batch; ++b) {
      float* qkv = &s.qkv[b * qkv_out];
      rope(qkv, m.n_heads + m.n_kv, hd, &s.cos[b * half], &s.sin[b * half]);  // q and k heads
      const size_t slot = (b * capacity + length) * slot_stride;
      std::memcpy(k_cache[l] + slot, qkv + q_out, kv_out * sizeof(float));
      std::memcpy(v_cache[l] + slot, qkv + q_out + kv_out, kv_out * sizeof(float));
    }
    parallel_for(batch * m.n_heads, att_threads, 1, [&](int, size_t i0, size_t i1) {
      thread_local std::vector<float> scores;
      scores.resize(n_slots);
      for (size_t i = i0; i < i1; ++i) {
        const size_t b = i / m.n_heads, h = i % m.n_heads, kvh = h / group;
        const size_t base = b * capacity * slot_stride + kvh * hd;
        (vector_attention ? attend<true> : attend<false>)(
            &s.qkv[b * qkv_out + h * hd], k_cache[l] + base, v_cache[l] + base, slot_stride, hd, n_slots,
            key_mask ? key_mask + b * mask_stride : nullptr, scale, scores.data(), &s.att[b * q_out + h * hd]);
      }
    });
    project(L.wo, s.att.data(), batch, s.tmp.data(), threads, mode, simd, s);
    for (size_t i = 0; i < batch * H; ++i) s.x[i] = s.x[i] + s.tmp[i];
    for (size_t b = 0; b < batch; ++b) rms_norm(&s.x[b * H], L.mlp_norm, H, m.eps, &s.xn[b * H]);
    project(L.w_gate_up, s.xn.data(), batch, s.gu.data(), threads, mode, simd, s);
    for (size_t b = 0; b < batch; ++b) {
      const float* g = &s.gu[b * 2 * m.ffn];
      const float* u = g + m.ffn;
      float* a = &s.act[b * m.ffn];
#if defined(__x86_64__) || defined(__i386__)
      if (vector_swiglu) {
        swiglu_avx2(g, u, m.ffn, a);
        continue;
      }
#endif
      for (size_t i = 0; i < m.ffn; ++i) a[i] = (g[i] / (1.0f + std::exp(-g[i]))) * u[i];
    }
    project(L.w_down, s.act.data(), batch, s.tmp.data(), threads, mode, simd, s);
    for (size_t i = 0; i < batch * H; ++i) s.x[i] = s.x[i] + s.tmp[i];
  }
  for (size_t b = 0; b < batch; ++b) rms_norm(&s.x[b * H], m.final_norm, H, m.eps, &s.xn[b * H]);
  project(m.head, s.xn.data(), batch, logits, threads, mode, simd, s);
}

}  // namespace fastsynth
