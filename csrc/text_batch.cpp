#include "text_batch.h"

#include <cstring>
#include <stdexcept>

#include "utf8.h"

#if defined(__x86_64__)
#include <emmintrin.h>  // SSE2: part of x86-64
#endif

namespace fastsynth {
namespace {

// Code units [i, n) of one kind, ASCII runs 16 bytes of input at a time (SSE2).
template <class Unit>
char* encode(const Unit* u, size_t n, char* w, size_t index) {
  size_t i = 0;
  while (i < n) {
#if defined(__x86_64__)
    constexpr size_t kStep = 16 / sizeof(Unit);
    for (; i + kStep <= n; i += kStep) {
      __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u + i));
      if constexpr (sizeof(Unit) == 1) {
        if (_mm_movemask_epi8(v)) break;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(w), v);
        w += 16;
      } else if constexpr (sizeof(Unit) == 2) {
        if (_mm_movemask_epi8(_mm_cmpeq_epi16(_mm_and_si128(v, _mm_set1_epi16(static_cast<short>(0xFF80))),
                                              _mm_setzero_si128())) != 0xFFFF)
          break;
        _mm_storel_epi64(reinterpret_cast<__m128i*>(w), _mm_packus_epi16(v, v));
        w += 8;
      } else {
        if (_mm_movemask_epi8(_mm_cmpeq_epi32(_mm_and_si128(v, _mm_set1_epi32(~0x7F)), _mm_setzero_si128())) !=
            0xFFFF)
          break;
        v = _mm_packs_epi32(v, v);
        v = _mm_packus_epi16(v, v);
        const int four = _mm_cvtsi128_si32(v);
        std::memcpy(w, &four, 4);
        w += 4;
      }
    }
#endif
    // Up to one SIMD step of code units one at a time (or all of them without SIMD).
    const size_t stop = (n - i > 16) ? i + 16 : n;
    for (; i < stop; ++i) {
      const uint32_t c = u[i];
      if (c >= 0xD800 && c <= 0xDFFF)
        throw std::invalid_argument("texts[" + std::to_string(index) +
                                    "] cannot be encoded as UTF-8 (it holds a lone surrogate)");
      w = append_utf8(w, c);
    }
  }
  return w;
}

}  // namespace

std::string_view TextBatch::encode_utf8(const WideText& t, size_t index, std::string& buf) {
  // At most 2 bytes per Latin-1 unit, 3 per UCS-2 unit, 4 per UCS-4 unit; +16 so the
  // SIMD stores may run past the end.
  const size_t cap = t.length * (t.kind == 1 ? 2 : t.kind == 2 ? 3 : 4) + 16;
  if (buf.size() < cap) buf.resize(cap);
  char* w = buf.data();
  char* end = t.kind == 1   ? encode(static_cast<const uint8_t*>(t.data), t.length, w, index)
              : t.kind == 2 ? encode(static_cast<const uint16_t*>(t.data), t.length, w, index)
                            : encode(static_cast<const uint32_t*>(t.data), t.length, w, index);
  return std::string_view(buf.data(), static_cast<size_t>(end - w));
}

}  // namespace fastsynth
