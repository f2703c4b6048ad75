// Small-batch products with GGML-block weights (see quant_matvec.h). Two paths with the same
// arithmetic: each weight is formed as float32 d*q exactly as the GGUF dequantiser does, and
// Q4_1's "+ m" is applied once per block through sum_i (d*q_i + m)*x_i = sum_i (d*q_i)*x_i +
// m*sum_i x_i, with the block sums of x computed once per call. Only the summation order
// differs between the paths.
#include "quant_matvec.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "hsum.h"
#include "parallel.h"

namespace fastsynth {
namespace {

constexpr size_t kQ41Bytes = 4 + kQuantBlock / 2;  // fp16 d, fp16 m, 16 nibble bytes
constexpr size_t kQ80Bytes = 2 + kQuantBlock;      // fp16 d, 32 int8
// Output rows a thread claims at a time: small enough to balance a 576-row product over two
// threads (36 chunks), large enough that the atomic counter is touched rarely.
constexpr size_t kRowChunk = 16;
// Multiply-adds below which a call stays on the calling thread: waking a pool worker costs
// ~10-20 us (parallel.h), about what 128K multiply-adds take on one core, so every
// projection of a SmolLM2 decode step (331K multiply-adds and up at batch 1) is split.
constexpr size_t kMinWorkPerThread = size_t{1} << 17;

// Runs rows(p, r0, r1) over chunks of p's output rows on up to `threads` threads, one thread per
// kMinWorkPerThread of `work` (multiply-adds, or their equivalent in time).
template <class P>
void split_rows(const P& p, size_t work, int threads, void (*rows)(const P&, size_t, size_t)) {
  const int by_work = static_cast<int>(std::min<size_t>(work / kMinWorkPerThread + 1, 1024));
  threads = std::min(resolve_threads(threads, p.out), by_work);
  parallel_for(p.out, threads, kRowChunk, [&](int, size_t r0, size_t r1) { rows(p, r0, r1); });
}

// IEEE binary16 -> binary32, exact for every input (subnormals, infinities, NaN).
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: mant * 2^-24
      float f = std::ldexp(static_cast<float>(mant), -24);
      std::memcpy(&bits, &f, 4);
      bits |= sign;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

inline uint16_t load_u16(const uint8_t* p) {  // GGUF is little-endian, as is every x86 host
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

struct Problem {
  const uint8_t* blocks;
  QuantFormat fmt;
  size_t out, in, nblk, batch;
  const float* x;
  const float* xsum;  // (batch, nblk) block sums of x; Q4_1 only
  float* y;
  bool wide = false;  // batched tiles use AVX-512 (quant_matmul sets it where the CPU has it)
};

// ---- portable scalar path -----------------------------------------------------------------
void rows_scalar(const Problem& p, size_t r0, size_t r1) {
  const size_t bb = quant_block_bytes(p.fmt);
  float w[kQuantBlock];
  for (size_t o = r0; o < r1; ++o) {
    const uint8_t* row = p.blocks + o * p.nblk * bb;
    for (size_t b = 0; b < p.batch; ++b) {
      const float* xb = p.x + b * p.in;
      float acc = 0.0f;
      for (size_t j = 0; j < p.nblk; ++j) {
        const uint8_t* blk = row + j * bb;
        const float d = half_to_float(load_u16(blk));
        float m = 0.0f;
        if (p.fmt == QuantFormat::Q4_1) {
          m = half_to_float(load_u16(blk + 2));
          for (size_t k = 0; k < kQuantBlock / 2; ++k) {
            w[k] = d * static_cast<float>(blk[4 + k] & 0x0f);
            w[k + kQuantBlock / 2] = d * static_cast<float>(blk[4 + k] >> 4);
          }
        } else {
          for (size_t k = 0; k < kQuantBlock; ++k)
            w[k] = d * static_cast<float>(static_cast<int8_t>(blk[2 + k]));
        }
        float s = 0.0f;
        for (size_t k = 0; k < kQuantBlock; ++k) s += w[k] * xb[j * kQuantBlock + k];
        if (p.fmt == QuantFormat::Q4_1) s += m * p.xsum[b * p.nblk + j];
        acc += s;
      }
      p.y[b * p.out + o] = acc;
    }
  }
}

// ---- AVX2 + FMA + F16C path -----------------------------------------------------------------
#if defined(__x86_64__) || defined(__i386__)
#define FASTSYNTH_QUANT_SIMD 1

// Rows [r0, r1) for batch rows [b0, b0 + NB). Each block is unpacked once into four 8-lane
// float vectors of its quants q and used for all NB activation rows: t = sum_c q_c * x_c, then
// acc += d * t. (d*q is exact in float32 -- an 11-bit fp16 significand times a 4- or 8-bit
// integer -- so scaling the block's partial sum by d uses the dequantised weights exactly, up to
// summation order.) Two accumulators per row, alternating by block, hide the FMA latency.
template <int NB, bool Q41>
__attribute__((target("avx2,fma,f16c"))) void rows_avx2(const Problem& p, size_t b0, size_t r0,
                                                          size_t r1) {
  const size_t bb = Q41 ? kQ41Bytes : kQ80Bytes;
  const __m128i low4 = _mm_set1_epi8(0x0f);
  for (size_t o = r0; o < r1; ++o) {
    const uint8_t* row = p.blocks + o * p.nblk * bb;
    __m256 acc[NB][2];
    float macc[NB];
    for (int k = 0; k < NB; ++k) {
      macc[k] = 0.0f;
      acc[k][0] = acc[k][1] = _mm256_setzero_ps();
    }
    for (size_t j = 0; j < p.nblk; ++j) {
      const uint8_t* blk = row + j * bb;
      __m256 w[4];
      __m256 d;
      if (Q41) {
        uint32_t dm_bits;
        std::memcpy(&dm_bits, blk, 4);
        const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dm_bits)));  // d, m, 0, 0
        d = _mm256_broadcastss_ps(dm);
        const float m = _mm_cvtss_f32(_mm_movehdup_ps(dm));
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 4));
        const __m128i lo = _mm_and_si128(raw, low4);                     // elements 0..15
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low4);  // elements 16..31
        w[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
        w[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
        w[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
        w[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
        for (int k = 0; k < NB; ++k) macc[k] += m * p.xsum[(b0 + k) * p.nblk + j];
      } else {
        d = _mm256_set1_ps(_cvtsh_ss(load_u16(blk)));
        const uint8_t* q = blk + 2;
        for (int c = 0; c < 4; ++c)
          w[c] = _mm256_cvtepi32_ps(
              _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * c))));
      }
      for (int k = 0; k < NB; ++k) {
        const float* xb = p.x + (b0 + k) * p.in + j * kQuantBlock;
        __m256 t = _mm256_mul_ps(w[0], _mm256_loadu_ps(xb));
        t = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xb + 8), t);
        t = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xb + 16), t);
        t = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xb + 24), t);
        acc[k][j & 1] = _mm256_fmadd_ps(d, t, acc[k][j & 1]);
      }
    }
    for (int k = 0; k < NB; ++k)
      p.y[(b0 + k) * p.out + o] = hsum256(_mm256_add_ps(acc[k][0], acc[k][1])) + macc[k];
  }
}

template <bool Q41>
void tile_avx2(const Problem& p, size_t b0, size_t nb, size_t r0, size_t r1) {
  switch (nb) {
    case 1: rows_avx2<1, Q41>(p, b0, r0, r1); break;
    case 2: rows_avx2<2, Q41>(p, b0, r0, r1); break;
    case 3: rows_avx2<3, Q41>(p, b0, r0, r1); break;
    default: rows_avx2<4, Q41>(p, b0, r0, r1); break;
  }
}

// Larger batches: each group of kOut output rows is dequantised once into float32 (w = d*q + m,
// one rounding, exactly the GGUF dequantiser's value), then multiplied with the activation rows
// kAct at a time from registers: per 8-lane chunk, kOut weight loads and kAct activation loads
// feed kOut*kAct independent FMA chains, so the FMA units, not the loads, set the pace.
constexpr size_t kOut = 4, kAct = 3;

template <bool Q41>
__attribute__((target("avx2,fma,f16c"))) void dequant_row(const Problem& p, size_t o, float* w) {
  const size_t bb = Q41 ? kQ41Bytes : kQ80Bytes;
  const uint8_t* row = p.blocks + o * p.nblk * bb;
  const __m128i low4 = _mm_set1_epi8(0x0f);
  for (size_t j = 0; j < p.nblk; ++j, w += kQuantBlock) {
    const uint8_t* blk = row + j * bb;
    if (Q41) {
      uint32_t dm_bits;
      std::memcpy(&dm_bits, blk, 4);
      const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dm_bits)));
      const __m256 d = _mm256_broadcastss_ps(dm), m = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 4));
      const __m128i lo = _mm_and_si128(raw, low4), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low4);
      const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
      for (int c = 0; c < 4; ++c)
        _mm256_storeu_ps(w + 8 * c, _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[c])), m));
    } else {
      const __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(blk)));
      for (int c = 0; c < 4; ++c)
        _mm256_storeu_ps(w + 8 * c, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 2 + 8 * c))))));
    }
  }
}

// y[b, o0 + r] for r < NO output rows (weights w, NO rows of p.in floats) and b in [b0, b0 + NA).
template <int NO, int NA>
__attribute__((target("avx2,fma"))) void dot_tile(const Problem& p, const float* w, size_t o0, size_t b0) {
  __m256 acc[NO][NA];
  for (int r = 0; r < NO; ++r)
    for (int a = 0; a < NA; ++a) acc[r][a] = _mm256_setzero_ps();
  for (size_t i = 0; i < p.in; i += 8) {
    __m256 x[NA];
    for (int a = 0; a < NA; ++a) x[a] = _mm256_loadu_ps(p.x + (b0 + a) * p.in + i);
    for (int r = 0; r < NO; ++r) {
      const __m256 wr = _mm256_loadu_ps(w + r * p.in + i);
      for (int a = 0; a < NA; ++a) acc[r][a] = _mm256_fmadd_ps(wr, x[a], acc[r][a]);
    }
  }
  for (int r = 0; r < NO; ++r)
    for (int a = 0; a < NA; ++a) p.y[(b0 + a) * p.out + o0 + r] = hsum256(acc[r][a]);
}

// The same tile with 16-lane AVX-512 vectors where the CPU has them: twice the multiply-adds per
// instruction, and 32 registers hold a 4x4 tile (16 accumulators), so a 16-row batch is four
// tiles with no remainder. Measured on a 2-core Xeon (AVX-512F): docs/serving.md "Decode speed".
template <int NO, int NA>
__attribute__((target("avx512f"))) void dot_tile512(const Problem& p, const float* w, size_t o0, size_t b0) {
  __m512 acc[NO][NA];
  for (int r = 0; r < NO; ++r)
    for (int a = 0; a < NA; ++a) acc[r][a] = _mm512_setzero_ps();
  for (size_t i = 0; i < p.in; i += 16) {  // p.in is a multiple of 32
    __m512 x[NA];
    for (int a = 0; a < NA; ++a) x[a] = _mm512_loadu_ps(p.x + (b0 + a) * p.in + i);
    for (int r = 0; r < NO; ++r) {
      const __m512 wr = _mm512_loadu_ps(w + r * p.in + i);
      for (int a = 0; a < NA; ++a) acc[r][a] = _mm512_fmadd_ps(wr, x[a], acc[r][a]);
    }
  }
  for (int r = 0; r < NO; ++r)
    for (int a = 0; a < NA; ++a) p.y[(b0 + a) * p.out + o0 + r] = _mm512_reduce_add_ps(acc[r][a]);
}

bool avx512_available() {
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0 && __builtin_cpu_supports("avx512bw") != 0;
  }();
  return ok;
}

std::atomic<bool> g_avx512_allowed{true};

constexpr size_t kAct512 = 4;

template <int NO>
void dot_rows(const Problem& p, const float* w, size_t o0) {
  size_t b0 = 0;
  if (p.wide) {
    for (; b0 + kAct512 <= p.batch; b0 += kAct512) dot_tile512<NO, kAct512>(p, w, o0, b0);
    switch (p.batch - b0) {
      case 3: dot_tile512<NO, 3>(p, w, o0, b0); break;
      case 2: dot_tile512<NO, 2>(p, w, o0, b0); break;
      case 1: dot_tile512<NO, 1>(p, w, o0, b0); break;
      default: break;
    }
    return;
  }
  for (; b0 + kAct <= p.batch; b0 += kAct) dot_tile<NO, kAct>(p, w, o0, b0);
  switch (p.batch - b0) {
    case 2: dot_tile<NO, 2>(p, w, o0, b0); break;
    case 1: dot_tile<NO, 1>(p, w, o0, b0); break;
    default: break;
  }
}

// dequant_row with 16-lane vectors: the same float32 values (one fmadd(d, q, m) rounding or one
// d*q product per weight), half the instructions.
template <bool Q41>
__attribute__((target("avx512f,avx512bw,f16c"))) void dequant_row512(const Problem& p, size_t o, float* w) {
  const size_t bb = Q41 ? kQ41Bytes : kQ80Bytes;
  const uint8_t* row = p.blocks + o * p.nblk * bb;
  const __m128i low4 = _mm_set1_epi8(0x0f);
  for (size_t j = 0; j < p.nblk; ++j, w += kQuantBlock) {
    const uint8_t* blk = row + j * bb;
    if (Q41) {
      uint32_t dm_bits;
      std::memcpy(&dm_bits, blk, 4);
      const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dm_bits)));
      const __m512 d = _mm512_broadcastss_ps(dm), m = _mm512_broadcastss_ps(_mm_movehdup_ps(dm));
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 4));
      const __m128i lo = _mm_and_si128(raw, low4), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low4);
      _mm512_storeu_ps(w, _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)), m));
      _mm512_storeu_ps(w + 16, _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)), m));
    } else {
      const __m512 d = _mm512_set1_ps(_cvtsh_ss(load_u16(blk)));
      for (int c = 0; c < 2; ++c)
        _mm512_storeu_ps(w + 16 * c, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                                           _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2 + 16 * c))))));
    }
  }
}

void rows_dequant(const Problem& p, size_t r0, size_t r1) {
  thread_local std::vector<float> w;
  if (w.size() < kOut * p.in) w.resize(kOut * p.in);
  for (size_t o = r0; o < r1; o += kOut) {
    const size_t no = std::min(kOut, r1 - o);
    for (size_t r = 0; r < no; ++r) {
      float* wr = w.data() + r * p.in;
      if (p.wide) {
        if (p.fmt == QuantFormat::Q4_1) dequant_row512<true>(p, o + r, wr);
        else dequant_row512<false>(p, o + r, wr);
      } else if (p.fmt == QuantFormat::Q4_1) {
        dequant_row<true>(p, o + r, wr);
      } else {
        dequant_row<false>(p, o + r, wr);
      }
    }
    switch (no) {
      case 4: dot_rows<4>(p, w.data(), o); break;
      case 3: dot_rows<3>(p, w.data(), o); break;
      case 2: dot_rows<2>(p, w.data(), o); break;
      default: dot_rows<1>(p, w.data(), o); break;
    }
  }
}

// Batches of at least this many rows take the dequantise-then-multiply path.
constexpr size_t kDequantMinBatch = 5;

void rows_simd(const Problem& p, size_t r0, size_t r1) {
  if (p.batch >= kDequantMinBatch) {
    rows_dequant(p, r0, r1);
    return;
  }
  constexpr size_t kTile = 4;  // activation rows sharing one unpacked block
  for (size_t b0 = 0; b0 < p.batch; b0 += kTile) {
    const size_t nb = std::min(kTile, p.batch - b0);
    if (p.fmt == QuantFormat::Q4_1) tile_avx2<true>(p, b0, nb, r0, r1);
    else tile_avx2<false>(p, b0, nb, r0, r1);
  }
}
#endif

}  // namespace

size_t quant_block_bytes(QuantFormat fmt) {
  return fmt == QuantFormat::Q4_1 ? kQ41Bytes : kQ80Bytes;
}

bool quant_avx512_available() {
#ifdef FASTSYNTH_QUANT_SIMD
  return avx512_available();
#else
  return false;
#endif
}

bool quant_allow_avx512(bool allowed) {
#ifdef FASTSYNTH_QUANT_SIMD
  return g_avx512_allowed.exchange(allowed);
#else
  (void)allowed;
  return false;
#endif
}

bool quant_simd_available() {
#ifdef FASTSYNTH_QUANT_SIMD
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  }();
  return ok;
#else
  return false;
#endif
}

void quant_matmul(const uint8_t* blocks, QuantFormat fmt, size_t out_features, size_t in_features,
                  const float* x, size_t batch, float* y, int threads, bool simd) {
  if (in_features == 0 || in_features % kQuantBlock != 0)
    throw std::invalid_argument("in_features must be a positive multiple of 32, got " +
                                std::to_string(in_features));
  if (out_features == 0 || batch == 0) return;
  Problem p{blocks, fmt, out_features, in_features, in_features / kQuantBlock, batch, x, nullptr, y};
  std::vector<float> xsum;
  if (fmt == QuantFormat::Q4_1) {
    xsum.resize(batch * p.nblk);
    for (size_t b = 0; b < batch; ++b)
      for (size_t j = 0; j < p.nblk; ++j) {
        const float* xb = x + b * in_features + j * kQuantBlock;
        float s = 0.0f;
        for (size_t k = 0; k < kQuantBlock; ++k) s += xb[k];
        xsum[b * p.nblk + j] = s;
      }
    p.xsum = xsum.data();
  }
  const bool use_simd = simd && quant_simd_available();
  void (*rows)(const Problem&, size_t, size_t) = rows_scalar;
#ifdef FASTSYNTH_QUANT_SIMD
  p.wide = use_simd && avx512_available() && g_avx512_allowed.load(std::memory_order_relaxed);
  if (use_simd) rows = rows_simd;
#endif
  split_rows(p, out_features * in_features * batch, threads, rows);
}


// ---- 8-bit activations ----------------------------------------------------------------------
void quantize_q8(const float* x, size_t batch, size_t in_features, int8_t* q, float* d, float* s) {
  const size_t nblk = in_features / kQuantBlock;
  for (size_t b = 0; b < batch; ++b)
    for (size_t j = 0; j < nblk; ++j) {
      const float* xb = x + b * in_features + j * kQuantBlock;
      int8_t* qb = q + b * in_features + j * kQuantBlock;
      float amax = 0.0f;
      for (size_t k = 0; k < kQuantBlock; ++k) amax = std::max(amax, std::fabs(xb[k]));
      const float dj = amax / 127.0f, inv = dj != 0.0f ? 1.0f / dj : 0.0f;
      int sum = 0;
      for (size_t k = 0; k < kQuantBlock; ++k) {
        const int v = static_cast<int>(std::nearbyint(xb[k] * inv));
        qb[k] = static_cast<int8_t>(std::max(-127, std::min(127, v)));
        sum += qb[k];
      }
      d[b * nblk + j] = dj;
      s[b * nblk + j] = dj * static_cast<float>(sum);
    }
}

namespace {

struct ProblemQ8 {
  const uint8_t* blocks;
  QuantFormat fmt;
  size_t out, in, nblk, batch;
  Q8Activations x;
  float* y;
};

void rows_q8_scalar(const ProblemQ8& p, size_t r0, size_t r1) {
  const size_t bb = quant_block_bytes(p.fmt);
  for (size_t o = r0; o < r1; ++o) {
    const uint8_t* row = p.blocks + o * p.nblk * bb;
    for (size_t b = 0; b < p.batch; ++b) {
      const int8_t* xq = p.x.q + b * p.in;
      float acc = 0.0f;
      for (size_t j = 0; j < p.nblk; ++j) {
        const uint8_t* blk = row + j * bb;
        const float dw = half_to_float(load_u16(blk));
        const int8_t* xb = xq + j * kQuantBlock;
        int isum = 0;
        if (p.fmt == QuantFormat::Q4_1) {
          for (size_t k = 0; k < kQuantBlock / 2; ++k)
            isum += (blk[4 + k] & 0x0f) * xb[k] + (blk[4 + k] >> 4) * xb[k + kQuantBlock / 2];
          acc += dw * p.x.d[b * p.nblk + j] * static_cast<float>(isum) +
                 half_to_float(load_u16(blk + 2)) * p.x.s[b * p.nblk + j];
        } else {
          for (size_t k = 0; k < kQuantBlock; ++k) isum += static_cast<int8_t>(blk[2 + k]) * xb[k];
          acc += dw * p.x.d[b * p.nblk + j] * static_cast<float>(isum);
        }
      }
      p.y[b * p.out + o] = acc;
    }
  }
}

#ifdef FASTSYNTH_QUANT_SIMD
// Integer block dot products, as llama.cpp's Q4_1 x Q8_1 / Q8_0 x Q8_0 AVX2 paths compute them:
// maddubs multiplies unsigned weight bytes by signed activation bytes and adds pairs into int16
// (|sum| <= 2*15*127 for Q4_1; for Q8_0 the weight's sign is moved onto the activation so the
// unsigned operand is |w| <= 127: |sum| <= 2*127*127 < 32768, no saturation), madd with ones
// adds pairs into int32 -- exact. Each block's 8 int32 partial sums are scaled by d_w * d_x in
// float. One weight block is unpacked once for NB activation rows.
template <int NB, bool Q41>
__attribute__((target("avx2,fma,f16c"))) void rows_q8_avx2(const ProblemQ8& p, size_t b0,
                                                             size_t r0, size_t r1) {
  const size_t bb = Q41 ? kQ41Bytes : kQ80Bytes;
  const __m128i low4 = _mm_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  for (size_t o = r0; o < r1; ++o) {
    const uint8_t* row = p.blocks + o * p.nblk * bb;
    __m256 acc[NB];
    float macc[NB];
    for (int k = 0; k < NB; ++k) {
      acc[k] = _mm256_setzero_ps();
      macc[k] = 0.0f;
    }
    for (size_t j = 0; j < p.nblk; ++j) {
      const uint8_t* blk = row + j * bb;
      __m256i w;
      float dw, m = 0.0f;
      if (Q41) {
        uint32_t dm_bits;
        std::memcpy(&dm_bits, blk, 4);
        const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dm_bits)));
        dw = _mm_cvtss_f32(dm);
        m = _mm_cvtss_f32(_mm_movehdup_ps(dm));
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 4));
        w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), low4), _mm_and_si128(raw, low4));
      } else {
        dw = _cvtsh_ss(load_u16(blk));
        w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      }
      const __m256i aw = Q41 ? w : _mm256_sign_epi8(w, w);
      for (int k = 0; k < NB; ++k) {
        const size_t b = b0 + k;
        __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.x.q + b * p.in + j * kQuantBlock));
        if (!Q41) xv = _mm256_sign_epi8(xv, w);
        const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xv), ones);
        acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * p.x.d[b * p.nblk + j]), _mm256_cvtepi32_ps(s32), acc[k]);
        if (Q41) macc[k] += m * p.x.s[b * p.nblk + j];
      }
    }
    for (int k = 0; k < NB; ++k) p.y[(b0 + k) * p.out + o] = hsum256(acc[k]) + macc[k];
  }
}

template <bool Q41>
void tile_q8_avx2(const ProblemQ8& p, size_t b0, size_t nb, size_t r0, size_t r1) {
  switch (nb) {
    case 1: rows_q8_avx2<1, Q41>(p, b0, r0, r1); break;
    case 2: rows_q8_avx2<2, Q41>(p, b0, r0, r1); break;
    case 3: rows_q8_avx2<3, Q41>(p, b0, r0, r1); break;
    default: rows_q8_avx2<4, Q41>(p, b0, r0, r1); break;
  }
}

void rows_q8_simd(const ProblemQ8& p, size_t r0, size_t r1) {
  constexpr size_t kTile = 4;
  for (size_t b0 = 0; b0 < p.batch; b0 += kTile) {
    const size_t nb = std::min(kTile, p.batch - b0);
    if (p.fmt == QuantFormat::Q4_1) tile_q8_avx2<true>(p, b0, nb, r0, r1);
    else tile_q8_avx2<false>(p, b0, nb, r0, r1);
  }
}
#endif

}  // namespace

void quant_matmul_q8(const uint8_t* blocks, QuantFormat fmt, size_t out_features,
                     size_t in_features, const Q8Activations& xq, size_t batch, float* y,
                     int threads, bool simd) {
  if (in_features == 0 || in_features % kQuantBlock != 0)
    throw std::invalid_argument("in_features must be a positive multiple of 32, got " +
                                std::to_string(in_features));
  if (out_features == 0 || batch == 0) return;
  ProblemQ8 p{blocks, fmt, out_features, in_features, in_features / kQuantBlock, batch, xq, y};
  const bool use_simd = simd && quant_simd_available();
  void (*rows)(const ProblemQ8&, size_t, size_t) = rows_q8_scalar;
#ifdef FASTSYNTH_QUANT_SIMD
  if (use_simd) rows = rows_q8_simd;
#endif
  // integer products run ~4x faster than the float path: split later
  split_rows(p, out_features * in_features * batch / 4, threads, rows);
}

}  // namespace fastsynth
