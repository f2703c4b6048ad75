// Word hashes straight from raw UTF-8, for the fast MinHash scheme's word shingles.
// A word's hash is hashing::word_hash of its normalised bytes (hash64.h).
//
// The words of normalize(raw) are the maximal runs of bytes between separators with
// their deleted characters removed and their letters folded (shingle.h). For a run of
// plain ASCII letters and digits the normalised word is the run itself, lower-cased in
// place: no compaction, no copy. So instead of building the normalised text, one SIMD
// pass (AVX2) classifies every byte into bitmaps (ASCII separator, ASCII punctuation,
// non-ASCII) and writes the lower-cased bytes at their original offsets; a second pass
// walks the runs on the bitmaps. A run of at most 16 ASCII bytes (nearly every word)
// is compacted past its punctuation with two pshufb and hashed, without a branch on its
// content. A longer run, or one holding any non-ASCII byte, is handed to normalize()
// whole (an ASCII separator never falls inside a UTF-8 sequence, so the run normalises
// exactly as it would inside the document). CPUs without AVX2 normalise the document.
//
// The result is the same sequence of values as hashing each word of normalize(raw)
// (tests compare the two on random text).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "shingle.h"

namespace fastsynth {

struct WordScanScratch {
  std::vector<char> lower;        // lower-cased input at its original offsets, padded
  std::vector<uint64_t> sep;      // bit i: byte i is an ASCII separator (bits past the end set)
  std::vector<uint64_t> punct;    // bit i: byte i is ASCII punctuation (deleted)
  std::vector<uint64_t> high;     // bit i: byte i is not ASCII
  std::vector<uint32_t> begin;    // where runs start (byte offsets)
  std::vector<char> word;         // a long run, compacted (padded)
  Normalized norm;                // a long or non-ASCII run, normalised
  std::vector<uint64_t> slow;     // its word hashes
};

// Appends to out the word_hash of each word of normalize(raw, Word), in order.
// allow_simd=false uses the portable path (normalise, then hash each word): same result.
void normalized_word_hashes(std::string_view raw, WordScanScratch& s, std::vector<uint64_t>& out,
                            bool allow_simd = true);

}  // namespace fastsynth
