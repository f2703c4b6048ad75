#include "word_scan.h"

#include <cstring>

#include "hash64.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "compact_table.h"
#define FS_HAVE_WORD_SCAN 1
#endif

namespace fastsynth {
namespace {

// The reference definition: normalise, then hash each word (word_hash).
void word_hashes_via_normalize(std::string_view raw, Normalized& norm, std::vector<uint64_t>& out,
                               bool allow_simd) {
  normalize(raw, ShingleKind::Word, norm, allow_simd);
  const char* t = norm.text.data();
  for (size_t k = 0; k < norm.n_words; ++k)
    out.push_back(hashing::word_hash_padded(t + norm.word_begin[k], norm.word_end[k] - norm.word_begin[k]));
}

#ifdef FS_HAVE_WORD_SCAN
#define FS_SCAN __attribute__((target("avx2,bmi,bmi2,popcnt")))

// One 64-byte block: the bitmaps' words and the lower-cased bytes, 32 bytes per step
// (signed compares: non-ASCII bytes are negative, so never letters or digits).
FS_SCAN inline void classify_block(const unsigned char* p, char* lower, uint64_t& sep, uint64_t& punct,
                                   uint64_t& high) {
  const __m256i a1 = _mm256_set1_epi8('a' - 1), z1 = _mm256_set1_epi8('z' + 1);
  const __m256i d0 = _mm256_set1_epi8('0' - 1), d9 = _mm256_set1_epi8('9' + 1);
  const __m256i und = _mm256_set1_epi8('_'), sp = _mm256_set1_epi8(0x20), del = _mm256_set1_epi8(0x7F);
  uint64_t s = 0, w = 0, h = 0;
  for (int half = 0; half < 2; ++half) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * half));
    const __m256i lc = _mm256_or_si256(v, sp);
    const __m256i letter = _mm256_and_si256(_mm256_cmpgt_epi8(lc, a1), _mm256_cmpgt_epi8(z1, lc));
    const __m256i digit = _mm256_and_si256(_mm256_cmpgt_epi8(v, d0), _mm256_cmpgt_epi8(d9, v));
    const __m256i word = _mm256_or_si256(_mm256_or_si256(letter, digit), _mm256_cmpeq_epi8(v, und));
    // separators: bytes <= 0x20 (unsigned) and DEL
    const __m256i sepv = _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_min_epu8(v, sp), v), _mm256_cmpeq_epi8(v, del));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lower + 32 * half),
                        _mm256_or_si256(v, _mm256_and_si256(letter, sp)));
    const int shift = 32 * half;
    s |= static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_epi8(sepv))) << shift;
    w |= static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_epi8(word))) << shift;
    h |= static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_epi8(v))) << shift;
  }
  sep = s;
  punct = ~(s | w | h);
  high = h;
}

// Appends base + the position of each set bit of m to pos (which has room for 64 more).
// Eight positions are written unconditionally: a 64-byte block holds about as many
// words, so the count rarely needs the loop and the exit rarely mispredicts.
FS_SCAN inline uint32_t* flatten_bits(uint32_t* pos, uint32_t base, uint64_t m) {
  const int cnt = __builtin_popcountll(m);
  for (int j = 0; j < 8; ++j) {
    pos[j] = base + static_cast<uint32_t>(__builtin_ctzll(m | (uint64_t{1} << 63)));
    m &= m - 1;
  }
  for (int j = 8; j < cnt; ++j) {
    pos[j] = base + static_cast<uint32_t>(__builtin_ctzll(m));
    m &= m - 1;
  }
  return pos + cnt;
}

// First position >= i whose bit is set (the bitmap's sentinel word stops the search).
FS_SCAN inline size_t next_set(const uint64_t* bits, size_t i) {
  size_t k = i >> 6;
  uint64_t m = bits[k] & (~uint64_t{0} << (i & 63));
  while (!m) m = bits[++k];
  return 64 * k + static_cast<size_t>(__builtin_ctzll(m));
}

// Whether any bit in [b, e) is set (b < e).
FS_SCAN inline bool any_in(const uint64_t* bits, size_t b, size_t e) {
  const size_t kb = b >> 6, ke = (e - 1) >> 6;
  const uint64_t first = ~uint64_t{0} << (b & 63), last = ~uint64_t{0} >> (63 - ((e - 1) & 63));
  if (kb == ke) return (bits[kb] & first & last) != 0;
  if (bits[kb] & first) return true;
  for (size_t k = kb + 1; k < ke; ++k)
    if (bits[k]) return true;
  return (bits[ke] & last) != 0;
}

// The 16 bits of a bitmap starting at bit b: one unaligned 4-byte load at byte b/8
// (little-endian, so the bitmap's bytes are in bit order; the sentinel word keeps the
// load inside the buffer) and a shift below 8.
FS_SCAN inline uint32_t bits16(const uint64_t* bits, size_t b) {
  uint32_t v;
  std::memcpy(&v, reinterpret_cast<const unsigned char*>(bits) + (b >> 3), 4);
  return (v >> (b & 7)) & 0xFFFFu;
}

FS_SCAN void scan(std::string_view raw, WordScanScratch& s, std::vector<uint64_t>& out) {
  const size_t n = raw.size();
  const size_t blocks = (n + 63) / 64;
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  if (s.lower.size() < 64 * blocks + 16) s.lower.resize(64 * blocks + 16);
  if (s.sep.size() < blocks + 1) {
    s.sep.resize(blocks + 1);
    s.punct.resize(blocks + 1);
    s.high.resize(blocks + 1);
  }
  uint64_t* sep = s.sep.data();
  uint64_t* punct = s.punct.data();
  uint64_t* high = s.high.data();
  char* lower = s.lower.data();
  const size_t full = n / 64;
  for (size_t k = 0; k < full; ++k) classify_block(p + 64 * k, lower + 64 * k, sep[k], punct[k], high[k]);
  if (const size_t tail = n % 64) {  // the last partial block, through a zero-padded copy
    alignas(32) unsigned char buf[64] = {};
    std::memcpy(buf, p + 64 * full, tail);
    classify_block(buf, lower + 64 * full, sep[full], punct[full], high[full]);
    const uint64_t past = ~uint64_t{0} << tail;
    sep[full] |= past;
    punct[full] &= ~past;
    high[full] &= ~past;
  }
  sep[blocks] = ~uint64_t{0};  // sentinel: stops searches for a run's end
  punct[blocks] = 0;
  high[blocks] = 0;
  uint64_t any_high = 0;
  for (size_t k = 0; k < blocks; ++k) any_high |= high[k];

  // Run starts: a non-separator after a separator (or at 0). A run ends at the first
  // separator after its start (bits past n are separators, so at or before n): found
  // per run from the bitmap, so runs stay independent of one another.
  if (s.begin.size() < n + 64) s.begin.resize(n + 64);
  uint32_t* rb = s.begin.data();
  uint64_t prev_sep = 1;  // position -1 counts as a separator
  for (size_t k = 0; k < blocks; ++k) {
    const uint64_t sv = sep[k];
    rb = flatten_bits(rb, static_cast<uint32_t>(64 * k), ~sv & ((sv << 1) | prev_sep));
    prev_sep = sv >> 63;
  }
  const size_t runs = static_cast<size_t>(rb - s.begin.data());
  rb = s.begin.data();

  // Each run is independent of the others, so the out-of-order core overlaps them.
  size_t count = out.size();
  out.resize(count + runs);
  uint64_t* o = out.data();  // a local pointer: stores through it cannot move it
  for (size_t r = 0; r < runs; ++r) {
    const size_t b = rb[r];
    uint64_t ahead;  // separator bits from b on (57 or more of them)
    std::memcpy(&ahead, reinterpret_cast<const unsigned char*>(sep) + (b >> 3), 8);
    ahead >>= (b & 7);
    const size_t e = ahead ? b + static_cast<size_t>(__builtin_ctzll(ahead)) : next_set(sep, b);
    const size_t len = e - b;
    const uint32_t in_run = len < 16 ? (1u << len) - 1u : 0xFFFFu;
    if (len <= 16 && !(any_high && (bits16(high, b) & in_run))) {
      // Fast path, branch-free: keep the non-punctuation bytes of the run (all of them
      // for a plain word), compacting each 8-byte half with pshufb, then join the halves.
      const uint32_t keep = ~bits16(punct, b) & in_run;
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(lower + b));
      const __m128i lo_idx = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kCompact.idx[keep & 0xFF]));
      const __m128i hi_idx = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kCompact.idx[keep >> 8]));
      const uint64_t lo = static_cast<uint64_t>(_mm_cvtsi128_si64(_mm_shuffle_epi8(v, lo_idx)));
      const uint64_t hi = static_cast<uint64_t>(_mm_cvtsi128_si64(_mm_shuffle_epi8(_mm_srli_si128(v, 8), hi_idx)));
      const unsigned c = static_cast<unsigned>(__builtin_popcount(keep & 0xFF));
      // (hi << 8c | lo) as two words; each shift split in two halves of at most 32 bits,
      // so c = 0 and c = 8 need no branch.
      const uint64_t w0 = lo | ((hi << (4 * c)) << (4 * c));
      const uint64_t w1 = (hi >> (32 - 4 * c)) >> (32 - 4 * c);
      const size_t kept = static_cast<size_t>(__builtin_popcount(keep));
      o[count] = hashing::word_hash_short(w0, w1, kept);
      count += kept != 0;  // a run of punctuation alone is no word
      continue;
    }
    if (!(any_high && any_in(high, b, e))) {  // a long ASCII run: compact 8 bytes per step
      if (s.word.size() < len + 16) s.word.resize(len + 16);
      char* w = s.word.data();
      size_t kept = 0;
      for (size_t j = b; j < e; j += 8) {
        const uint32_t in8 = e - j < 8 ? (1u << (e - j)) - 1u : 0xFFu;
        const uint32_t keep = ~bits16(punct, j) & in8;
        const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(lower + j));
        const __m128i idx = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kCompact.idx[keep]));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(w + kept), _mm_shuffle_epi8(v, idx));
        kept += static_cast<size_t>(__builtin_popcount(keep));
      }
      o[count] = hashing::word_hash_padded(w, kept);
      count += kept != 0;
      continue;
    }
    // Runs holding non-ASCII bytes: the normaliser, on the run alone.
    s.slow.clear();
    word_hashes_via_normalize(raw.substr(b, len), s.norm, s.slow, true);
    if (count + s.slow.size() + (runs - r - 1) > out.size()) {
      out.resize(count + s.slow.size() + (runs - r - 1));
      o = out.data();
    }
    // A run of punctuation alone yields no words: memcpy from an empty vector's null
    // data() is undefined behaviour even for 0 bytes (UBSan, scripts/sanitize.sh).
    if (!s.slow.empty()) std::memcpy(o + count, s.slow.data(), s.slow.size() * sizeof(uint64_t));
    count += s.slow.size();
  }
  out.resize(count);
}

const bool kHaveAvx2 = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt");
}();
#endif

}  // namespace

void normalized_word_hashes(std::string_view raw, WordScanScratch& s, std::vector<uint64_t>& out, bool allow_simd) {
#ifdef FS_HAVE_WORD_SCAN
  if (allow_simd && kHaveAvx2) return scan(raw, s, out);
#endif
  word_hashes_via_normalize(raw, s.norm, out, allow_simd);
}

}  // namespace fastsynth
