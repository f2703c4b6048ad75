// Text normalisation and shingle enumeration for MinHash (documented in
// fastsynth.dedup.minhash). Normalisation, applied to the UTF-8 input:
//   * letters are lower-cased by simple case folding for ASCII, Latin-1, Latin
//     Extended-A, Latin Extended Additional, Greek, Cyrillic (incl. Supplement),
//     Armenian and fullwidth Latin; other scripts pass through unchanged;
//   * punctuation (ASCII, Latin-1, General Punctuation, CJK and fullwidth
//     punctuation) and zero-width format characters are deleted (they join their
//     neighbours: "don't" -> "dont");
//   * whitespace and control characters separate words; runs collapse;
//   * bytes that are not valid UTF-8 become U+FFFD (a word character).
// The result is the words joined by single spaces, so a word n-gram is a contiguous
// slice of the normalised buffer and its bytes are exactly what gets hashed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fastsynth {

enum class ShingleKind : int { Word = 0, Char = 1 };

// The normalised text and where its words start and end (byte offsets into text).
// text is a reused buffer: only its first size bytes are the normalised text.
// Zero bytes kept after the normalised text, so hashing may load 8 bytes at a time.
constexpr size_t kPad = 16;

struct Normalized {
  std::string text;
  size_t size = 0;
  size_t n_words = 0;                 // word_begin/word_end are scratch: only the first
  std::vector<uint32_t> word_begin;   // n_words entries are meaningful
  std::vector<uint32_t> word_end;
  std::vector<uint32_t> char_begin;  // filled only for ShingleKind::Char
};

// Normalises raw UTF-8 into out (reusing its buffers). allow_simd=false forces the
// portable scalar loop (same output; used by tests to check the SIMD path).
void normalize(std::string_view raw, ShingleKind kind, Normalized& out, bool allow_simd = true);

// Calls fn(const char* p, size_t len) for each shingle of a normalised text:
// word n-grams (n words joined by one space) or character n-grams (n code points of
// the normalised text, spaces included). A text with at least one but fewer than n
// units yields one shingle holding all of it; an empty text yields none.
template <class Fn>
void for_each_shingle(const Normalized& t, ShingleKind kind, int n, Fn&& fn) {
  const char* base = t.text.data();
  if (kind == ShingleKind::Word) {
    const size_t w = t.n_words;
    if (w == 0) return;
    if (w <= static_cast<size_t>(n)) {
      fn(base, t.size);
      return;
    }
    for (size_t i = 0; i + n <= w; ++i)
      fn(base + t.word_begin[i], t.word_end[i + n - 1] - t.word_begin[i]);
  } else {
    const size_t c = t.char_begin.size();
    if (c == 0) return;
    if (c <= static_cast<size_t>(n)) {
      fn(base, t.size);
      return;
    }
    for (size_t i = 0; i + n <= c; ++i) {
      size_t end = (i + n < c) ? t.char_begin[i + n] : t.size;
      fn(base + t.char_begin[i], end - t.char_begin[i]);
    }
  }
}

// The simple case folding used by normalize (exposed for tests).
uint32_t fold_case(uint32_t cp);

}  // namespace fastsynth
