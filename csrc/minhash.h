// MinHash signatures from raw UTF-8 (see fastsynth.dedup.minhash for the contract).
//
// Every shingle is first reduced to a 32-bit "pre-hash" x, then permutation k maps it
// to a_k * x + b_k mod 2^32 (a_k odd, so a bijection) and the signature keeps the
// minimum over the document's shingles, starting from 0xFFFFFFFF (so a document with
// no shingles has the all-0xFFFFFFFF signature).
//   Scheme::Fast:       x = high 32 bits of shingle_hash64(shingle)
//   Scheme::Datasketch: x = fmix32(sha1_hash32(shingle bytes))   (datasketch 2.0, affine32)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hash64.h"
#include "shingle.h"
#include "text_batch.h"

namespace fastsynth {

enum class Scheme : int { Fast = 0, Datasketch = 1 };

struct ShingleSpec {
  ShingleKind kind = ShingleKind::Word;
  int ngram = 5;
};

// The 64-bit hash of one shingle (its UTF-8 bytes as shingles_of returns them). Word
// shingles: the word_hash (hash64.h) of each space-separated word, combined in order
// by a rolling polynomial and finished by one multiply-fold (each word is hashed once
// per document, not once per shingle it belongs to). Character shingles: hash64 of
// the bytes.
uint64_t shingle_hash64(std::string_view shingle, ShingleKind kind);

// MurmurHash3's 32-bit finaliser (a bijection), as datasketch applies it.
inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

// out: (batch.size(), num_perm) row-major. a, b: num_perm permutation parameters.
void minhash_signatures(const TextBatch& batch, const ShingleSpec& spec, Scheme scheme, const uint32_t* a,
                        const uint32_t* b, size_t num_perm, int threads, uint32_t* out);

// min over shingles of a*x+b for pre-hashed shingles in CSR layout: document i owns
// prehash[offsets[i], offsets[i+1]). The CPU twin of the Triton kernel.
void minhash_from_prehash(const uint32_t* prehash, const int64_t* offsets, size_t n_docs, const uint32_t* a,
                          const uint32_t* b, size_t num_perm, int threads, uint32_t* out);

// Pre-hashes (x above) of every shingle of every document, in CSR layout.
void shingle_prehashes(const TextBatch& batch, const ShingleSpec& spec, Scheme scheme, int threads,
                       std::vector<uint32_t>& values, std::vector<int64_t>& offsets);

// Sorted, de-duplicated hash64 of every document's shingles (CSR), for exact Jaccard.
void shingle_sets(const TextBatch& batch, const ShingleSpec& spec, int threads, std::vector<uint64_t>& values,
                  std::vector<int64_t>& offsets);

// The normalised shingles of one text (what the hashes are computed over).
// allow_simd=false uses the portable normalisation loop (tests compare the two).
std::vector<std::string> shingles_of(std::string_view text, const ShingleSpec& spec, bool allow_simd = true);

}  // namespace fastsynth
