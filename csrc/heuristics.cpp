#include "heuristics.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "hash64.h"
#include "parallel.h"
#include "utf8.h"

namespace fastsynth {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr size_t kChunk = 8;

// ---------------------------------------------------------------- UTF-8 decoding

// The text as code points (invalid UTF-8: U+FFFD per bad byte, see utf8.h).
void decode_utf8(std::string_view s, std::vector<uint32_t>& out) {
  out.clear();
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0, len = 0; i < n; i += len) {
    if (p[i] < 0x80) {  // the common case, without the call
      out.push_back(p[i]);
      len = 1;
      continue;
    }
    out.push_back(decode_utf8_at(p + i, n - i, len));
  }
}

// ------------------------------------------------------------ character classes

// Python's str.isspace(): the separators str.split() splits on.
inline bool is_space(uint32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// "Contains an alphabetic character" (Gopher's 80% rule). ASCII letters, and every code
// point from U+00C0 up except blocks of punctuation, symbols, digits-as-forms and emoji.
// A fast approximation of Unicode's Alphabetic property, identical in _reference.py.
inline bool is_alpha(uint32_t c) {
  if (c < 0x80) return ((c | 0x20u) >= 'a' && (c | 0x20u) <= 'z');
  if (c < 0xC0 || c == 0xD7 || c == 0xF7) return false;
  if (c >= 0x0300 && c <= 0x036F) return false;    // combining diacritics
  if (c >= 0x2000 && c <= 0x2BFF) return false;    // punctuation, symbols, arrows, shapes
  if (c >= 0x3000 && c <= 0x303F) return false;    // CJK symbols and punctuation
  if (c >= 0xE000 && c <= 0xF8FF) return false;    // private use
  if (c >= 0xFE10 && c <= 0xFE6F) return false;    // vertical and small forms
  if (c >= 0xFF00 && c <= 0xFF20) return false;    // fullwidth punctuation and digits
  if (c >= 0xFF3B && c <= 0xFF40) return false;
  if (c >= 0xFF5B && c <= 0xFF65) return false;
  if (c == 0xFFFD) return false;                   // replacement character
  if (c >= 0x1F000 && c <= 0x1FAFF) return false;  // emoji and pictographs
  return true;
}

inline bool is_terminal_punct(uint32_t c) {
  switch (c) {
    case '.': case '!': case '?': case '"': case '\'':
    case 0x201D: case 0x2019: case 0x2026: case 0x3002: case 0xFF01: case 0xFF1F:
      return true;
    default:
      return false;
  }
}

inline bool is_bullet(uint32_t c) {
  switch (c) {
    case '-': case '*': case 0x00B7: case 0x2013: case 0x2022: case 0x2023: case 0x2043:
    case 0x25A0: case 0x25A1: case 0x25AA: case 0x25AB: case 0x25BA: case 0x25CB:
    case 0x25CF: case 0x25E6: case 0x27A2: case 0x2713: case 0x2714:
      return true;
    default:
      return false;
  }
}

inline bool is_ascii_punct(uint32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

// Gopher's stop words; a document needs at least two of them.
bool is_stop_word(const uint32_t* w, size_t len) {
  while (len > 0 && is_ascii_punct(w[0])) { ++w; --len; }
  while (len > 0 && is_ascii_punct(w[len - 1])) --len;
  if (len < 2 || len > 4) return false;
  char buf[4];
  for (size_t i = 0; i < len; ++i) {
    uint32_t c = w[i];
    if (c >= 'A' && c <= 'Z') c += 32;
    if (c >= 0x80) return false;
    buf[i] = static_cast<char>(c);
  }
  std::string_view s(buf, len);
  return s == "the" || s == "be" || s == "to" || s == "of" || s == "and" || s == "that" ||
         s == "have" || s == "with";
}

// ------------------------------------------------------------------- hashing

using hashing::fmix64;
inline uint64_t combine(uint64_t h, uint64_t v) { return fmix64(h * 0x9E3779B97F4A7C15ull + v); }

inline uint64_t hash_span(const uint32_t* p, size_t n) {
  uint64_t h = 0x243F6A8885A308D3ull ^ n;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001B3ull;
  return fmix64(h);
}

// Open-addressing counter keyed by 64-bit hashes (key 0 is remapped to 1). Equal
// hashes are taken as equal strings: with 64-bit hashes a collision inside one
// document is ~n^2/2^65, far below anything these fractions can show.
class HashCounter {
 public:
  void reset(size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2) cap <<= 1;
    if (keys_.size() < cap || keys_.size() > cap * 8) {
      keys_.assign(cap, 0);
      counts_.assign(cap, 0);
    } else {
      std::fill(keys_.begin(), keys_.end(), 0);
    }
    mask_ = keys_.size() - 1;
  }
  // Adds one occurrence and returns the new count.
  uint32_t add(uint64_t key) {
    size_t i = slot(key);
    if (keys_[i] == 0) {
      keys_[i] = norm(key);
      counts_[i] = 0;
    }
    return ++counts_[i];
  }
  uint32_t count(uint64_t key) const {
    size_t i = slot(key);
    return keys_[i] == 0 ? 0 : counts_[i];
  }

 private:
  static uint64_t norm(uint64_t k) { return k == 0 ? 1 : k; }
  size_t slot(uint64_t key) const {
    uint64_t k = norm(key);
    size_t i = static_cast<size_t>(fmix64(k)) & mask_;
    while (keys_[i] != 0 && keys_[i] != k) i = (i + 1) & mask_;
    return i;
  }
  std::vector<uint64_t> keys_;
  std::vector<uint32_t> counts_;
  size_t mask_ = 0;
};

// ------------------------------------------------------------------ one document

struct Workspace {
  std::vector<uint32_t> cps;
  std::vector<uint64_t> word_hash;
  std::vector<uint64_t> char_prefix;  // char_prefix[i] = characters in words [0, i)
  std::vector<uint64_t> gram;         // n-gram hashes starting at each word
  std::vector<uint8_t> repeats;       // the n-gram at each word occurs more than once
  HashCounter counter;
  HashCounter lines;
  HashCounter paras;
};

struct Row {
  double v[kNumHeuristics];
};

inline double ratio(double num, double den) { return den > 0 ? num / den : kNaN; }

// Characters covered by the occurrences of n-grams that satisfy pred(start index),
// each character counted once even where occurrences overlap.
template <class Pred>
uint64_t covered_chars(const Workspace& ws, size_t n_grams, size_t n, Pred pred) {
  uint64_t covered = 0;
  size_t cover_end = 0;  // words [.., cover_end) already counted
  for (size_t i = 0; i < n_grams; ++i) {
    if (!pred(i)) continue;
    size_t from = std::max(i, cover_end), to = i + n;
    if (to > from) covered += ws.char_prefix[to] - ws.char_prefix[from];
    cover_end = std::max(cover_end, to);
  }
  return covered;
}

void score_document(std::string_view text, Workspace& ws, Row& row) {
  decode_utf8(text, ws.cps);
  const auto& cps = ws.cps;
  const size_t n_chars = cps.size();
  double* v = row.v;

  // Words, symbols, alphabetic and stop words in one sweep.
  ws.word_hash.clear();
  ws.char_prefix.assign(1, 0);
  size_t hashes = 0, ellipses = 0, alpha_words = 0, stop_words = 0, dot_run = 0;
  size_t i = 0;
  while (i < n_chars) {
    uint32_t c = cps[i];
    if (is_space(c)) {
      ellipses += dot_run / 3;
      dot_run = 0;
      ++i;
      continue;
    }
    size_t start = i;
    bool alpha = false;
    while (i < n_chars && !is_space(cps[i])) {
      uint32_t d = cps[i];
      hashes += d == '#';
      if (d == '.') {
        ++dot_run;
      } else {
        ellipses += dot_run / 3 + (d == 0x2026);
        dot_run = 0;
      }
      alpha = alpha || is_alpha(d);
      ++i;
    }
    size_t len = i - start;
    ws.word_hash.push_back(hash_span(&cps[start], len));
    ws.char_prefix.push_back(ws.char_prefix.back() + len);
    alpha_words += alpha;
    stop_words += is_stop_word(&cps[start], len);
  }
  ellipses += dot_run / 3;
  const size_t n_words = ws.word_hash.size();
  const double word_chars = static_cast<double>(ws.char_prefix.back());

  v[0] = static_cast<double>(n_chars);
  v[1] = static_cast<double>(n_words);
  v[2] = ratio(word_chars, static_cast<double>(n_words));
  v[4] = ratio(static_cast<double>(hashes), static_cast<double>(n_words));
  v[5] = ratio(static_cast<double>(ellipses), static_cast<double>(n_words));
  v[3] = n_words ? std::max(v[4], v[5]) : kNaN;
  v[6] = ratio(static_cast<double>(alpha_words), static_cast<double>(n_words));
  v[7] = static_cast<double>(stop_words);

  // Lines ('\n'-separated, stripped, empty ones skipped) and paragraphs (runs of
  // non-empty lines separated by empty ones).
  ws.lines.reset(n_chars / 32 + 8);
  ws.paras.reset(n_chars / 128 + 8);
  size_t n_lines = 0, end_punct = 0, end_ellipsis = 0, bullets = 0, dup_lines = 0;
  size_t n_paras = 0, dup_paras = 0;
  uint64_t line_chars = 0, dup_line_chars = 0, para_chars = 0, dup_para_chars = 0;
  uint64_t para_hash = 0, para_len = 0;
  bool in_para = false;
  auto close_para = [&]() {
    if (!in_para) return;
    ++n_paras;
    para_chars += para_len;
    if (ws.paras.add(para_hash) > 1) {
      ++dup_paras;
      dup_para_chars += para_len;
    }
    in_para = false;
  };
  size_t pos = 0;
  while (pos <= n_chars) {
    size_t eol = pos;
    while (eol < n_chars && cps[eol] != '\n') ++eol;
    size_t a = pos, b = eol;
    while (a < b && is_space(cps[a])) ++a;
    while (b > a && is_space(cps[b - 1])) --b;
    if (a == b) {
      close_para();
    } else {
      size_t len = b - a;
      ++n_lines;
      line_chars += len;
      uint32_t last = cps[b - 1];
      end_punct += is_terminal_punct(last);
      end_ellipsis += last == 0x2026 || (len >= 3 && last == '.' && cps[b - 2] == '.' && cps[b - 3] == '.');
      bullets += is_bullet(cps[a]);
      uint64_t h = hash_span(&cps[a], len);
      if (ws.lines.add(h) > 1) {
        ++dup_lines;
        dup_line_chars += len;
      }
      if (in_para) {
        para_hash = combine(para_hash, h);
        para_len += 1 + len;  // the joining '\n' plus the line
      } else {
        para_hash = combine(0x51ED270B27E2F1A3ull, h);
        para_len = len;
        in_para = true;
      }
    }
    pos = eol + 1;
  }
  close_para();
  v[8] = static_cast<double>(n_lines);
  v[9] = ratio(static_cast<double>(end_punct), static_cast<double>(n_lines));
  v[10] = ratio(static_cast<double>(end_ellipsis), static_cast<double>(n_lines));
  v[11] = ratio(static_cast<double>(bullets), static_cast<double>(n_lines));
  v[12] = ratio(static_cast<double>(dup_lines), static_cast<double>(n_lines));
  v[13] = ratio(static_cast<double>(dup_line_chars), static_cast<double>(line_chars));
  v[14] = ratio(static_cast<double>(dup_paras), static_cast<double>(n_paras));
  v[15] = ratio(static_cast<double>(dup_para_chars), static_cast<double>(para_chars));
  v[25] = static_cast<double>(n_paras);

  // Word n-grams, n = 2..10, hashes extended one word at a time. An n-gram can only
  // repeat if both (n-1)-grams inside it repeat, so each level hashes and counts only
  // those candidates: in natural text repeats thin out fast with n, and levels 4..10
  // touch a small fraction of positions. Counting order over the candidates is the
  // order over all positions, so the tie rule for the top n-gram is unchanged.
  if (n_words == 0) {
    for (size_t n = 2; n <= 10; ++n) v[16 + (n - 2)] = kNaN;
    return;
  }
  ws.gram.assign(ws.word_hash.begin(), ws.word_hash.end());
  ws.counter.reset(n_words);
  for (size_t k = 0; k < n_words; ++k) ws.counter.add(ws.gram[k]);
  ws.repeats.resize(n_words);
  for (size_t k = 0; k < n_words; ++k) ws.repeats[k] = ws.counter.count(ws.gram[k]) >= 2;
  for (size_t n = 2; n <= 10; ++n) {
    double& out = v[16 + (n - 2)];
    if (n_words < n) {
      out = 0.0;
      continue;
    }
    const size_t n_grams = n_words - n + 1;
    auto& rep = ws.repeats;
    size_t candidates = 0;
    for (size_t k = 0; k < n_grams; ++k) {  // ascending: rep[k + 1] is still level n-1
      ws.gram[k] = combine(ws.gram[k], ws.word_hash[k + n - 1]);
      rep[k] = rep[k] && rep[k + 1];
      candidates += rep[k];
    }
    ws.counter.reset(candidates);
    uint32_t top = 0;
    size_t top_at = 0;
    for (size_t k = 0; k < n_grams; ++k) {
      if (!rep[k]) continue;
      uint32_t c = ws.counter.add(ws.gram[k]);
      uint64_t chars = ws.char_prefix[k + n] - ws.char_prefix[k];
      uint64_t top_chars = ws.char_prefix[top_at + n] - ws.char_prefix[top_at];
      if (c > top || (c == top && chars > top_chars)) {
        top = c;
        top_at = k;
      }
    }
    for (size_t k = 0; k < n_grams; ++k) rep[k] = rep[k] && ws.counter.count(ws.gram[k]) >= 2;
    uint64_t covered = 0;
    if (n <= 4) {
      // Most frequent n-gram (ties: the longest in characters); 0 if none repeats.
      if (top >= 2) {
        uint64_t key = ws.gram[top_at];
        covered = covered_chars(ws, n_grams, n, [&](size_t k) { return rep[k] && ws.gram[k] == key; });
      }
    } else {
      // All n-grams that occur more than once.
      covered = covered_chars(ws, n_grams, n, [&](size_t k) { return rep[k] != 0; });
    }
    out = static_cast<double>(covered) / word_chars;
  }
}

}  // namespace

void heuristics(const TextBatch& batch, int threads, double* out) {
  const size_t n = batch.size();
  threads = resolve_threads(threads, (n + kChunk - 1) / kChunk);
  std::vector<Workspace> workspaces(static_cast<size_t>(threads));
  parallel_for(n, threads, kChunk, [&](int tid, size_t begin, size_t end) {
    Workspace& ws = workspaces[static_cast<size_t>(tid)];
    Row row;
    for (size_t i = begin; i < end; ++i) {
      if (!batch.is_valid(i)) {
        for (size_t k = 0; k < kNumHeuristics; ++k) out[k * n + i] = kNaN;
        continue;
      }
      score_document(batch.texts[i], ws, row);
      for (size_t k = 0; k < kNumHeuristics; ++k) out[k * n + i] = row.v[k];
    }
  });
}

}  // namespace fastsynth
