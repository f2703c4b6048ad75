// Horizontal sum of an 8-lane float vector, shared by the GGUF-block products
// (quant_matvec.cpp) and the decode step's attention (decode.cpp). Target "avx" only (the
// instructions it uses), so callers compiled for AVX2/FMA/F16C can inline it.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

namespace fastsynth {

__attribute__((target("avx"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace fastsynth
#endif
