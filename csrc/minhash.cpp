#include "minhash.h"

#include <algorithm>
#include <cstring>

#include "parallel.h"
#include "sha1.h"

namespace fastsynth {
namespace {

// Odd constants from the golden ratio and xxHash/Murmur families: any odd 64-bit
// values with well-mixed bits work; these are standard choices.
constexpr uint64_t kP0 = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kP1 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kP2 = 0x165667B19E3779F9ull;

inline uint64_t fold_mul(uint64_t a, uint64_t b) {
  unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

inline uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xFF51AFD7ED558CCDull;
  k ^= k >> 33;
  k *= 0xC4CEB9FE1A85EC53ull;
  k ^= k >> 33;
  return k;
}

// a*x+b mod 2^32 minimised over the m pre-hashes, for all permutations. The block of
// 64 permutations keeps its 64 running minima in vector registers (4 AVX-512 or 8
// AVX2 registers) while the shingles stream past; GCC vectorises the inner loop and
// target_clones picks the widest instruction set the CPU has at run time.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FS_CLONES
#endif

FS_CLONES
void permute_min(const uint32_t* x, size_t m, const uint32_t* a, const uint32_t* b, size_t num_perm,
                 uint32_t* sig) {
  constexpr size_t kBlock = 64;
  size_t p0 = 0;
  for (; p0 + kBlock <= num_perm; p0 += kBlock) {
    uint32_t acc[kBlock], ab[kBlock], bb[kBlock];
    for (size_t j = 0; j < kBlock; ++j) {
      acc[j] = sig[p0 + j];
      ab[j] = a[p0 + j];
      bb[j] = b[p0 + j];
    }
    for (size_t i = 0; i < m; ++i) {
      const uint32_t xi = x[i];
      for (size_t j = 0; j < kBlock; ++j) {
        uint32_t v = ab[j] * xi + bb[j];
        acc[j] = v < acc[j] ? v : acc[j];
      }
    }
    for (size_t j = 0; j < kBlock; ++j) sig[p0 + j] = acc[j];
  }
  for (; p0 < num_perm; ++p0) {
    uint32_t acc = sig[p0];
    const uint32_t ap = a[p0], bp = b[p0];
    for (size_t i = 0; i < m; ++i) {
      uint32_t v = ap * x[i] + bp;
      acc = v < acc ? v : acc;
    }
    sig[p0] = acc;
  }
}

// A word shingle's hash: the polynomial sum_j wh[j] * K^(k-1-j) mod 2^64 over its k
// word hashes (Horner form), plus k*kP1, through fmix64. The polynomial rolls in O(1)
// from one shingle to the next; fmix64 restores avalanche in the low bits.
constexpr uint64_t kRoll = kP2;
inline uint64_t finish_words(uint64_t poly, size_t k) { return fmix64(poly + static_cast<uint64_t>(k) * kP1); }

inline uint64_t combine_words(const uint64_t* wh, size_t k) {
  uint64_t h = 0;
  for (size_t j = 0; j < k; ++j) h = h * kRoll + wh[j];
  return finish_words(h, k);
}

// Thread-local scratch: the normalised text, word hashes and the document's pre-hashes.
struct Scratch {
  Normalized norm;
  std::vector<uint64_t> words;
  std::vector<uint32_t> x;
};

// fn(shingle_hash64) for every shingle of a normalised text, in order.
template <class Fn>
void for_each_shingle_hash(const ShingleSpec& spec, Scratch& s, Fn&& fn) {
  const Normalized& t = s.norm;
  if (spec.kind == ShingleKind::Char) {
    for_each_shingle(t, spec.kind, spec.ngram, [&](const char* p, size_t len) { fn(hash64(p, len)); });
    return;
  }
  const size_t w = t.n_words;
  if (w == 0) return;
  s.words.resize(w);
  for (size_t i = 0; i < w; ++i)
    s.words[i] = hash64_padded(t.text.data() + t.word_begin[i], t.word_end[i] - t.word_begin[i]);
  const size_t n = static_cast<size_t>(spec.ngram);
  if (w <= n) {
    fn(combine_words(s.words.data(), w));
    return;
  }
  const uint64_t* wh = s.words.data();
  uint64_t top = 1;  // K^(n-1): the weight of the word leaving the window
  for (size_t j = 1; j < n; ++j) top *= kRoll;
  uint64_t h = 0;
  for (size_t j = 0; j < n; ++j) h = h * kRoll + wh[j];
  fn(finish_words(h, n));
  for (size_t i = 1; i + n <= w; ++i) {
    h = (h - wh[i - 1] * top) * kRoll + wh[i + n - 1];
    fn(finish_words(h, n));
  }
}

void prehash_doc(std::string_view text, const ShingleSpec& spec, Scheme scheme, Scratch& s) {
  s.x.clear();
  normalize(text, spec.kind, s.norm);
  if (scheme == Scheme::Datasketch) {
    for_each_shingle(s.norm, spec.kind, spec.ngram,
                     [&](const char* p, size_t len) { s.x.push_back(fmix32(sha1_hash32(p, len))); });
  } else {
    for_each_shingle_hash(spec, s, [&](uint64_t h) { s.x.push_back(static_cast<uint32_t>(h >> 32)); });
  }
}

// Documents per work item: small enough to balance 2-64 threads over skewed lengths.
constexpr size_t kChunk = 64;

}  // namespace

// hash64 for data followed by at least 8 readable bytes (the normalised buffer's
// padding): the tail is one unaligned load with the excess bytes masked off, instead
// of a variable-length memcpy.
uint64_t hash64_padded(const char* p, size_t len) {
  uint64_t h = kP0 ^ (static_cast<uint64_t>(len) * kP1);
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = fold_mul(h ^ w, kP2);
  }
  if (i < len) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    w &= ~uint64_t{0} >> (8 * (8 - (len - i)));  // little-endian: keep the low len-i bytes
    h = fold_mul(h ^ w ^ kP0, kP2);
  }
  return fmix64(h);
}

uint64_t hash64(const void* data, size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = kP0 ^ (static_cast<uint64_t>(len) * kP1);
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = fold_mul(h ^ w, kP2);
  }
  if (i < len) {
    uint64_t w = 0;
    std::memcpy(&w, p + i, len - i);
    h = fold_mul(h ^ w ^ kP0, kP2);
  }
  return fmix64(h);
}

void minhash_signatures(const TextBatch& batch, const ShingleSpec& spec, Scheme scheme, const uint32_t* a,
                        const uint32_t* b, size_t num_perm, int threads, uint32_t* out) {
  const size_t n = batch.size();
  int nt = resolve_threads(threads, (n + kChunk - 1) / kChunk);
  std::vector<Scratch> scratch(static_cast<size_t>(std::max(nt, 1)));
  parallel_for(n, nt, kChunk, [&](int tid, size_t begin, size_t end) {
    Scratch& s = scratch[static_cast<size_t>(tid)];
    for (size_t i = begin; i < end; ++i) {
      uint32_t* sig = out + i * num_perm;
      std::fill(sig, sig + num_perm, 0xFFFFFFFFu);
      if (!batch.is_valid(i)) continue;
      prehash_doc(batch.texts[i], spec, scheme, s);
      permute_min(s.x.data(), s.x.size(), a, b, num_perm, sig);
    }
  });
}

void minhash_from_prehash(const uint32_t* prehash_values, const int64_t* offsets, size_t n_docs,
                          const uint32_t* a, const uint32_t* b, size_t num_perm, int threads, uint32_t* out) {
  parallel_for(n_docs, threads, kChunk, [&](int, size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      uint32_t* sig = out + i * num_perm;
      std::fill(sig, sig + num_perm, 0xFFFFFFFFu);
      permute_min(prehash_values + offsets[i], static_cast<size_t>(offsets[i + 1] - offsets[i]), a, b,
                  num_perm, sig);
    }
  });
}

namespace {
// Per-document results computed in parallel, then concatenated in order.
template <class T, class PerDoc>
void build_csr(const TextBatch& batch, int threads, std::vector<T>& values, std::vector<int64_t>& offsets,
               PerDoc&& per_doc) {
  const size_t n = batch.size();
  std::vector<std::vector<T>> parts(n);
  int nt = resolve_threads(threads, (n + kChunk - 1) / kChunk);
  std::vector<Scratch> scratch(static_cast<size_t>(std::max(nt, 1)));
  parallel_for(n, nt, kChunk, [&](int tid, size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i)
      if (batch.is_valid(i)) per_doc(batch.texts[i], scratch[static_cast<size_t>(tid)], parts[i]);
  });
  offsets.assign(n + 1, 0);
  for (size_t i = 0; i < n; ++i) offsets[i + 1] = offsets[i] + static_cast<int64_t>(parts[i].size());
  values.resize(static_cast<size_t>(offsets[n]));
  for (size_t i = 0; i < n; ++i) std::copy(parts[i].begin(), parts[i].end(), values.begin() + offsets[i]);
}
}  // namespace

void shingle_prehashes(const TextBatch& batch, const ShingleSpec& spec, Scheme scheme, int threads,
                       std::vector<uint32_t>& values, std::vector<int64_t>& offsets) {
  build_csr<uint32_t>(batch, threads, values, offsets, [&](std::string_view t, Scratch& s, std::vector<uint32_t>& out) {
    prehash_doc(t, spec, scheme, s);
    out = s.x;
  });
}

void shingle_sets(const TextBatch& batch, const ShingleSpec& spec, int threads, std::vector<uint64_t>& values,
                  std::vector<int64_t>& offsets) {
  build_csr<uint64_t>(batch, threads, values, offsets, [&](std::string_view t, Scratch& s, std::vector<uint64_t>& out) {
    normalize(t, spec.kind, s.norm);
    for_each_shingle_hash(spec, s, [&](uint64_t h) { out.push_back(h); });
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
  });
}

uint64_t shingle_hash64(std::string_view shingle, ShingleKind kind) {
  if (kind == ShingleKind::Char) return hash64(shingle.data(), shingle.size());
  std::vector<uint64_t> wh;
  size_t start = 0;
  for (size_t i = 0; i <= shingle.size(); ++i) {
    if (i == shingle.size() || shingle[i] == ' ') {
      wh.push_back(hash64(shingle.data() + start, i - start));
      start = i + 1;
    }
  }
  return combine_words(wh.data(), wh.size());
}

std::vector<std::string> shingles_of(std::string_view text, const ShingleSpec& spec, bool allow_simd) {
  Normalized norm;
  normalize(text, spec.kind, norm, allow_simd);
  std::vector<std::string> out;
  for_each_shingle(norm, spec.kind, spec.ngram, [&](const char* p, size_t len) { out.emplace_back(p, len); });
  return out;
}

}  // namespace fastsynth
