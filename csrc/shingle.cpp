#include "shingle.h"

#include <cstring>

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

// Decodes one code point at p (n bytes left); sets len. Invalid sequences (bad lead,
// bad continuation, overlong, surrogate, > U+10FFFF) decode as U+FFFD over one byte.
uint32_t decode(const unsigned char* p, size_t n, size_t& len) {
  unsigned char b0 = p[0];
  auto cont = [&](size_t i) { return i < n && (p[i] & 0xC0) == 0x80; };
  if (b0 >= 0xC2 && b0 <= 0xDF && cont(1)) {
    len = 2;
    return ((b0 & 0x1Fu) << 6) | (p[1] & 0x3Fu);
  }
  if (b0 >= 0xE0 && b0 <= 0xEF && cont(1) && cont(2)) {
    uint32_t c = ((b0 & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    if (c >= 0x800 && (c < 0xD800 || c > 0xDFFF)) {
      len = 3;
      return c;
    }
  }
  if (b0 >= 0xF0 && b0 <= 0xF4 && cont(1) && cont(2) && cont(3)) {
    uint32_t c = ((b0 & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
    if (c >= 0x10000 && c <= 0x10FFFF) {
      len = 4;
      return c;
    }
  }
  len = 1;
  return 0xFFFD;
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

// Slow path for one non-ASCII code point at p[i]: appends its folded UTF-8 form when
// it is a word character and updates the word state. Returns the bytes consumed.
static size_t normalize_non_ascii(const unsigned char* p, size_t left, char* dst, char*& w, bool& in_word,
                                  uint32_t* wb, size_t& nb, uint32_t* we, size_t& ne) {
  size_t len;
  uint32_t cp = decode(p, left, len);
  const uint8_t cls = classify(cp);
  if (cls == kWord) {
    if (!in_word) {
      if (nb) *w++ = ' ';
      wb[nb++] = static_cast<uint32_t>(w - dst);
      in_word = true;
    }
    cp = fold_case(cp);
    if (cp < 0x80) {  // U+017F folds to ASCII 's'
      *w++ = static_cast<char>(cp);
    } else if (cp < 0x800) {
      *w++ = static_cast<char>(0xC0 | (cp >> 6));
      *w++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *w++ = static_cast<char>(0xE0 | (cp >> 12));
      *w++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *w++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *w++ = static_cast<char>(0xF0 | (cp >> 18));
      *w++ = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *w++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *w++ = static_cast<char>(0x80 | (cp & 0x3F));
    }
  } else if (cls == kSep && in_word) {
    we[ne++] = static_cast<uint32_t>(w - dst);
    in_word = false;
  }
  return len;
}

void normalize(std::string_view raw, ShingleKind kind, Normalized& out) {
  const size_t n = raw.size();
  // Output never exceeds 3x the input: folding never lengthens a character's UTF-8
  // form, separators shrink to one space, and only an invalid byte grows (to U+FFFD).
  // kPad spare bytes let hashing read whole 8-byte words past the end.
  const size_t cap = 3 * n + 1 + kPad;
  if (out.text.size() < cap) out.text.resize(cap);
  // At most one word per two input bytes (a word and its separator), plus one.
  const size_t max_words = n / 2 + 2;
  if (out.word_begin.size() < max_words) {
    out.word_begin.resize(max_words);
    out.word_end.resize(max_words);
  }
  char* const dst = out.text.data();
  uint32_t* wb = out.word_begin.data();
  uint32_t* we = out.word_end.data();
  char* w = dst;
  size_t nb = 0, ne = 0;
  bool in_word = false;
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  size_t i = 0;
  while (i < n) {
    // Branch-free ASCII loop: word boundaries come every few bytes, so branching on
    // them mispredicts constantly; instead every step writes unconditionally and
    // advances the cursors by 0 or 1.
    while (i < n && p[i] < 0x80) {
      const unsigned char b = p[i++];
      const uint8_t cls = kAscii.cls[b];
      const size_t is_word = cls == kWord;
      const size_t start = is_word & !in_word;
      const size_t stop = (cls == kSep) & in_word;
      *w = ' ';
      w += start & (nb != 0);
      wb[nb] = static_cast<uint32_t>(w - dst);
      nb += start;
      we[ne] = static_cast<uint32_t>(w - dst);
      ne += stop;
      *w = kAscii.lower[b];
      w += is_word;
      in_word = is_word | (in_word & (cls == kDrop));
    }
    if (i < n) i += normalize_non_ascii(p + i, n - i, dst, w, in_word, wb, nb, we, ne);
  }
  if (in_word) we[ne++] = static_cast<uint32_t>(w - dst);
  out.size = static_cast<size_t>(w - dst);
  out.n_words = nb;
  std::memset(w, 0, kPad);
  if (kind == ShingleKind::Char) {
    out.char_begin.clear();
    for (size_t k = 0; k < out.size; ++k)
      if ((static_cast<unsigned char>(dst[k]) & 0xC0) != 0x80) out.char_begin.push_back(static_cast<uint32_t>(k));
  }
}

}  // namespace fastsynth
