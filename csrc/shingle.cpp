#include "shingle.h"

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

void encode(uint32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
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

void normalize(std::string_view raw, ShingleKind kind, Normalized& out) {
  out.text.clear();
  out.word_begin.clear();
  out.word_end.clear();
  out.char_begin.clear();
  out.text.reserve(raw.size());
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  const size_t n = raw.size();
  bool in_word = false;
  for (size_t i = 0; i < n;) {
    unsigned char b = p[i];
    uint8_t cls;
    uint32_t cp;
    size_t len;
    if (b < 0x80) {
      cls = kAscii.cls[b];
      cp = static_cast<uint32_t>(kAscii.lower[b]);
      len = 1;
    } else {
      cp = decode(p + i, n - i, len);
      cls = classify(cp);
      cp = fold_case(cp);
    }
    i += len;
    if (cls == kWord) {
      if (!in_word) {
        if (!out.word_begin.empty()) out.text.push_back(' ');
        out.word_begin.push_back(static_cast<uint32_t>(out.text.size()));
        in_word = true;
      }
      encode(cp, out.text);
    } else if (cls == kSep && in_word) {
      out.word_end.push_back(static_cast<uint32_t>(out.text.size()));
      in_word = false;
    }
  }
  if (in_word) out.word_end.push_back(static_cast<uint32_t>(out.text.size()));
  if (kind == ShingleKind::Char) {
    const std::string& t = out.text;
    for (size_t i = 0; i < t.size(); ++i)
      if ((static_cast<unsigned char>(t[i]) & 0xC0) != 0x80) out.char_begin.push_back(static_cast<uint32_t>(i));
  }
}

}  // namespace fastsynth
