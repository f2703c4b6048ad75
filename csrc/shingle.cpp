#include "shingle.h"

#include <cstring>

#include "compact_table.h"
#include "utf8.h"

namespace fastsynth {
namespace {

enum : uint8_t { kWord = 0, kSep = 1, kDrop = 2 };

// ASCII classes: letters/digits/underscore are word characters, whitespace and
// controls separate, the rest of printable ASCII is punctuation (deleted).
struct AsciiTable {
  uint8_t cls[128];
  char lower[128];
  AsciiTable() {
    for (int c = 0; c < 128; ++c) {
      lower[c] = static_cast<char>((c >= 'A' && c <= 'Z') ? c + 32 : c);
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
        cls[c] = kWord;
      else if (c < 0x21 || c == 0x7F)
        cls[c] = kSep;
      else
        cls[c] = kDrop;
    }
  }
};
const AsciiTable kAscii;

uint8_t classify(uint32_t c) {
  // Whitespace (Unicode White_Space) and C1 controls separate words.
  if (c <= 0x9F) return kSep;  // only reached for c >= 0x80: C1 controls incl. U+0085
  if (c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
      c == 0x202F || c == 0x205F || c == 0x3000)
    return kSep;
  // Zero-width and format characters: deleted.
  if (c == 0xAD || (c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E) ||
      (c >= 0x2060 && c <= 0x2064) || c == 0xFEFF)
    return kDrop;
  // Latin-1 punctuation and symbols, keeping the letters/numbers among them
  // (ª ² ³ µ ¹ º ¼ ½ ¾).
  if (c >= 0xA1 && c <= 0xBF) {
    if (c == 0xAA || c == 0xB2 || c == 0xB3 || c == 0xB5 || c == 0xB9 || c == 0xBA || (c >= 0xBC && c <= 0xBE))
      return kWord;
    return kDrop;
  }
  if (c == 0xD7 || c == 0xF7) return kDrop;  // × ÷
  if (c == 0x37E || c == 0x387) return kDrop;  // Greek question mark, ano teleia
  if (c >= 0x55A && c <= 0x55F) return kDrop;  // Armenian punctuation
  if (c == 0x589 || c == 0x58A) return kDrop;
  if (c >= 0x2010 && c <= 0x2027) return kDrop;  // dashes, quotes, bullets, ellipsis
  if (c >= 0x2030 && c <= 0x205E) return kDrop;  // per mille, primes, guillemets, ...
  if ((c >= 0x3001 && c <= 0x3003) || (c >= 0x3008 && c <= 0x3011) || (c >= 0x3014 && c <= 0x301F) ||
      c == 0x30FB)
    return kDrop;  // CJK punctuation and brackets, katakana middle dot
  if ((c >= 0xFF01 && c <= 0xFF0F) || (c >= 0xFF1A && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF40) ||
      (c >= 0xFF5B && c <= 0xFF65))
    return kDrop;  // fullwidth ASCII punctuation, halfwidth CJK punctuation
  return kWord;
}

}  // namespace

uint32_t fold_case(uint32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (c < 0x100) {
    if (c == 0xB5) return 0x3BC;  // micro sign -> Greek mu
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    return c;
  }
  if (c < 0x180) {  // Latin Extended-A: alternating upper/lower pairs
    if (c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149) return c;  // no simple fold
    if (c == 0x178) return 0xFF;
    if (c == 0x17F) return 's';
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
    return (c & 1) ? c : c + 1;
  }
  if (c >= 0x370 && c < 0x400) {  // Greek
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c == 0x3C2) return 0x3C3;  // final sigma folds to sigma
    if (c >= 0x3D8 && c <= 0x3EF) return (c & 1) ? c : c + 1;
    return c;
  }
  if (c >= 0x400 && c < 0x530) {  // Cyrillic and Cyrillic Supplement
    if (c < 0x410) return c + 80;
    if (c < 0x430) return c + 32;
    if (c < 0x460) return c;
    if (c <= 0x481 || (c >= 0x48A && c <= 0x4BF) || c >= 0x4D0) return (c & 1) ? c : c + 1;
    if (c == 0x4C0) return 0x4CF;
    if (c >= 0x4C1 && c <= 0x4CE) return (c & 1) ? c + 1 : c;
    return c;
  }
  if (c >= 0x531 && c <= 0x556) return c + 48;  // Armenian
  if (c >= 0x1E00 && c <= 0x1EFF) {  // Latin Extended Additional
    if (c >= 0x1E96 && c <= 0x1E9F) return c == 0x1E9E ? 0xDF : c;
    return (c & 1) ? c : c + 1;
  }
  if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;  // fullwidth Latin
  return c;
}

// Layout written by the loops below: each word's bytes, then one space when a separator
// follows it; normalize() drops a final trailing space. word_begin/word_end index words.

// Slow path for one non-ASCII code point at p: appends its folded UTF-8 form when it
// is a word character and updates the word state. Returns the bytes consumed.
static size_t normalize_non_ascii(const unsigned char* p, size_t left, char*& w, bool& in_word) {
  size_t len;
  uint32_t cp = decode_utf8_at(p, left, len);
  const uint8_t cls = classify(cp);
  if (cls == kWord) {
    in_word = true;
    w = append_utf8(w, fold_case(cp));  // (U+017F folds to ASCII 's')
  } else if (cls == kSep && in_word) {
    *w++ = ' ';
    in_word = false;
  }
  return len;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define FS_HAVE_SIMD_NORMALIZE 1
#include <immintrin.h>

namespace {

// Eight ASCII bytes per step with SSSE3 (any x86-64-v2 CPU): classify, lower-case and
// turn separators into spaces; compact away the deleted punctuation (pshufb); then keep
// the word bytes and the first separator after each word, as a space (a second
// pshufb). Same output as the scalar loop. Returns the bytes consumed: it stops before any 8-byte
// chunk holding a non-ASCII byte, and leaves a tail shorter than 8 bytes.
__attribute__((target("ssse3,popcnt")))
size_t normalize_ascii_simd(const unsigned char* p, size_t n, char*& w_ref, bool& in_word_ref) {
  // Work on local copies: stores through char* may alias anything, so the compiler
  // would otherwise reload the referenced cursors after every store.
  char* w = w_ref;
  bool in_word = in_word_ref;
  size_t i = 0;
  const __m128i A1 = _mm_set1_epi8('A' - 1), Z1 = _mm_set1_epi8('Z' + 1);
  const __m128i a1 = _mm_set1_epi8('a' - 1), z1 = _mm_set1_epi8('z' + 1);
  const __m128i d1 = _mm_set1_epi8('0' - 1), d9 = _mm_set1_epi8('9' + 1);
  const __m128i und = _mm_set1_epi8('_'), ctl = _mm_set1_epi8(0x21), del = _mm_set1_epi8(0x7F);
  const __m128i bit5 = _mm_set1_epi8(0x20), space = _mm_set1_epi8(' ');
  while (i + 8 <= n) {
    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + i));
    if (_mm_movemask_epi8(v) & 0xFF) break;  // a non-ASCII byte: scalar path
    const __m128i up = _mm_and_si128(_mm_cmpgt_epi8(v, A1), _mm_cmplt_epi8(v, Z1));
    const __m128i lo = _mm_and_si128(_mm_cmpgt_epi8(v, a1), _mm_cmplt_epi8(v, z1));
    const __m128i dg = _mm_and_si128(_mm_cmpgt_epi8(v, d1), _mm_cmplt_epi8(v, d9));
    const __m128i word = _mm_or_si128(_mm_or_si128(up, lo), _mm_or_si128(dg, _mm_cmpeq_epi8(v, und)));
    const __m128i sep = _mm_or_si128(_mm_cmplt_epi8(v, ctl), _mm_cmpeq_epi8(v, del));
    const unsigned keep = static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(word, sep))) & 0xFFu;
    __m128i bytes = _mm_or_si128(v, _mm_and_si128(up, bit5));
    bytes = _mm_or_si128(_mm_and_si128(word, bytes), _mm_andnot_si128(word, space));
    const __m128i sh = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kCompact.idx[keep]));
    const __m128i c = _mm_shuffle_epi8(bytes, sh);
    const unsigned k = static_cast<unsigned>(__builtin_popcount(keep));
    const unsigned kmask = (1u << k) - 1u;
    const unsigned cw = static_cast<unsigned>(_mm_movemask_epi8(_mm_shuffle_epi8(word, sh))) & kmask;
    const unsigned prev = (cw << 1) | static_cast<unsigned>(in_word);
    const unsigned ends = ~cw & prev & kmask;
    const unsigned keep2 = cw | ends;
    const __m128i sh2 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kCompact.idx[keep2]));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(w), _mm_shuffle_epi8(c, sh2));
    w += __builtin_popcount(keep2);
    if (k) in_word = (cw >> (k - 1)) & 1u;
    i += 8;
  }
  w_ref = w;
  in_word_ref = in_word;
  return i;
}

// __builtin_cpu_init must run first: this initialiser may run before libgcc's own.
const bool kSimdNormalize = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("popcnt");
}();
}  // namespace
#endif

// Word offsets of a normalised text: words are separated by exactly one space and
// there is no leading or trailing space, so every space ends one word and begins the
// next. On x86-64, 16 bytes at a time (SSE2 is part of x86-64); at most 8 spaces fit.
static size_t find_words(const char* t, size_t size, uint32_t* wb, uint32_t* we) {
  if (size == 0) return 0;
  size_t k = 0;
  wb[0] = 0;
  size_t j0 = 0;
#ifdef FS_HAVE_SIMD_NORMALIZE
  const __m128i space = _mm_set1_epi8(' ');
  for (; j0 < size; j0 += 16) {  // reads up to 15 bytes past size: inside the padding
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t + j0));
    unsigned m = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, space)));
    if (size - j0 < 16) m &= (1u << (size - j0)) - 1u;
    for (int r = 0; r < 8; ++r) {  // branch-free: the space count varies per block
      const uint32_t j = static_cast<uint32_t>(j0) + static_cast<uint32_t>(__builtin_ctz(m | 0x10000u));
      we[k] = j;
      wb[k + 1] = j + 1;
      k += m != 0;
      m &= m - 1;
    }
  }
#else
  for (; j0 < size; ++j0)
    if (t[j0] == ' ') {
      we[k] = static_cast<uint32_t>(j0);
      wb[++k] = static_cast<uint32_t>(j0 + 1);
    }
#endif
  we[k] = static_cast<uint32_t>(size);
  return k + 1;
}

void normalize(std::string_view raw, ShingleKind kind, Normalized& out, bool allow_simd) {
  const size_t n = raw.size();
  // Output never exceeds 3x the input: folding never lengthens a character's UTF-8
  // form, a separator run shrinks to one space, and only an invalid byte grows (to
  // U+FFFD). kPad spare bytes let 8/16-byte stores and loads run past the end.
  const size_t cap = 3 * n + 1 + kPad;
  if (out.text.size() < cap) out.text.resize(cap);
  // At most one word per two input bytes (a word and its separator), plus one.
  const size_t max_words = n / 2 + 2;
  if (out.word_begin.size() < max_words) {
    out.word_begin.resize(max_words);
    out.word_end.resize(max_words);
  }
  char* const dst = out.text.data();
  char* w = dst;
  bool in_word = false;
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
#ifdef FS_HAVE_SIMD_NORMALIZE
  const bool simd = allow_simd && kSimdNormalize;
#endif
  size_t i = 0;
  while (i < n) {
#ifdef FS_HAVE_SIMD_NORMALIZE
    if (simd) i += normalize_ascii_simd(p + i, n - i, w, in_word);
#endif
    // Branch-free scalar ASCII loop (the SIMD tail, or everything without SIMD): word
    // boundaries come every few bytes, so branching on them would mispredict; every
    // step writes unconditionally and advances the cursor by 0 or 1.
    const size_t chunk_end = (n - i > 8) ? i + 8 : n;
    while (i < chunk_end && p[i] < 0x80) {
      const unsigned char b = p[i++];
      const uint8_t cls = kAscii.cls[b];
      const size_t is_word = cls == kWord;
      const size_t stop = (cls == kSep) & in_word;
      *w = is_word ? kAscii.lower[b] : ' ';
      w += is_word | stop;
      in_word = is_word | (in_word & (cls == kDrop));
    }
    if (i < n && p[i] >= 0x80) i += normalize_non_ascii(p + i, n - i, w, in_word);
  }
  size_t size = static_cast<size_t>(w - dst);
  if (size && dst[size - 1] == ' ') --size;  // the space after the last word
  out.size = size;
  std::memset(dst + size, 0, kPad);
  out.n_words = find_words(dst, size, out.word_begin.data(), out.word_end.data());
  if (kind == ShingleKind::Char) {
    out.char_begin.clear();
    for (size_t k = 0; k < out.size; ++k)
      if ((static_cast<unsigned char>(dst[k]) & 0xC0) != 0x80) out.char_begin.push_back(static_cast<uint32_t>(k));
  }
}

}  // namespace fastsynth
