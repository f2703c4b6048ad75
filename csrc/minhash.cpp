#include "minhash.h"

#include <algorithm>
#include <cstring>

#include "parallel.h"
#include "sha1.h"
#include "word_scan.h"

namespace fastsynth {
namespace {

using hashing::kP1;
using hashing::kP2;

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
// word hashes (Horner form; wh = word_hash of the word, hash64.h), plus k*kP1, through one
// multiply-fold. The polynomial rolls in O(1) from one shingle to the next; the fold
// restores avalanche in the bits the pre-hash keeps.
constexpr uint64_t kRoll = kP2;
inline uint64_t finish_words(uint64_t poly, size_t k) {
  return hashing::fold_mul(poly + static_cast<uint64_t>(k) * kP1, hashing::kP0);
}

inline uint64_t combine_words(const uint64_t* wh, size_t k) {
  uint64_t h = 0;
  for (size_t j = 0; j < k; ++j) h = h * kRoll + wh[j];
  return finish_words(h, k);
}

// Thread-local scratch: the normalised text, the word scanner's buffers, word hashes
// and the document's pre-hashes.
struct Scratch {
  Normalized norm;
  WordScanScratch scan;
  std::vector<uint64_t> words;
  std::vector<uint32_t> x;
  std::string utf8;  // a deferred str, encoded (TextBatch::utf8)
};

// fn(shingle_hash64) for every shingle of a text, in order. Word shingles come from
// the word scanner (word hashes without building the normalised text), rolled n at a time.
template <class Fn>
void for_each_shingle_hash(std::string_view text, const ShingleSpec& spec, Scratch& s, Fn&& fn) {
  if (spec.kind == ShingleKind::Char) {
    normalize(text, spec.kind, s.norm);
    for_each_shingle(s.norm, spec.kind, spec.ngram, [&](const char* p, size_t len) { fn(hash64(p, len)); });
    return;
  }
  s.words.clear();
  normalized_word_hashes(text, s.scan, s.words);
  const size_t w = s.words.size();
  if (w == 0) return;
  const size_t n = static_cast<size_t>(spec.ngram);
  if (w <= n) {
    fn(combine_words(s.words.data(), w));
    return;
  }
  const uint64_t* wh = s.words.data();
  uint64_t out_weight = 1;  // K^n: the leaving word's weight once the window has moved
  for (size_t j = 0; j < n; ++j) out_weight *= kRoll;
  uint64_t h = 0;
  for (size_t j = 0; j < n; ++j) h = h * kRoll + wh[j];
  fn(finish_words(h, n));
  for (size_t i = 1; i + n <= w; ++i) {
    // (h - wh[i-1] K^(n-1)) K + wh[i+n-1], arranged so that only one multiply and one
    // add sit on the loop-carried chain.
    h = h * kRoll + (wh[i + n - 1] - wh[i - 1] * out_weight);
    fn(finish_words(h, n));
  }
}

void prehash_doc(std::string_view text, const ShingleSpec& spec, Scheme scheme, Scratch& s) {
  s.x.clear();
  if (scheme == Scheme::Datasketch) {
    normalize(text, spec.kind, s.norm);
    for_each_shingle(s.norm, spec.kind, spec.ngram,
                     [&](const char* p, size_t len) { s.x.push_back(fmix32(sha1_hash32(p, len))); });
  } else {
    for_each_shingle_hash(text, spec, s, [&](uint64_t h) { s.x.push_back(static_cast<uint32_t>(h >> 32)); });
  }
}

// Documents per work item: small enough to balance 2-64 threads over skewed lengths.
constexpr size_t kChunk = 64;

}  // namespace

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
      prehash_doc(batch.utf8(i, s.utf8), spec, scheme, s);
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
      if (batch.is_valid(i)) {
        Scratch& s = scratch[static_cast<size_t>(tid)];
        per_doc(batch.utf8(i, s.utf8), s, parts[i]);
      }
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
    for_each_shingle_hash(t, spec, s, [&](uint64_t h) { out.push_back(h); });
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
      wh.push_back(hashing::word_hash(shingle.data() + start, i - start));
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
