// The 64-bit non-cryptographic hashes (written here): hash64 for character shingles
// and LSH band keys — a multiply-fold over 8-byte little-endian words seeded by the
// length, then a 64-bit finaliser — and word_hash for the words of word shingles.
//   h = kP0 ^ len*kP1
//   for each full 8-byte word w:        h = fold(h ^ w, kP2)
//   for the last 1-7 bytes (as w):      h = fold(h ^ w ^ kP0, kP2)
//   return fmix64(h)
// fold(a, b) = low ^ high 64 bits of the 128-bit product (every output bit depends on
// every input bit). fmix64 also serves the heuristics' n-gram counters. Inline: the word
// hash runs once per word of every document.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace fastsynth {
namespace hashing {

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

inline uint64_t load8(const void* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

// The multiply-fold chain over the bytes: hash64 without its finaliser.
inline uint64_t fold_chain(const void* data, size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = kP0 ^ (static_cast<uint64_t>(len) * kP1);
  size_t i = 0;
  for (; i + 8 <= len; i += 8) h = fold_mul(h ^ load8(p + i), kP2);
  if (i < len) {
    uint64_t w = 0;
    std::memcpy(&w, p + i, len - i);
    h = fold_mul(h ^ w ^ kP0, kP2);
  }
  return h;
}

// The hash of one normalised word (word shingles combine these). 1-16 bytes (nearly
// every word): the two little-endian halves w0, w1 (bytes past len zero), salted by
// the length, through a single 64x64->128-bit multiply-fold; longer words: fold_chain.
// Branch-free on the length, which varies unpredictably from word to word.
struct LengthSalts {
  uint64_t v[17];
  constexpr LengthSalts() : v() {
    for (uint64_t len = 0; len <= 16; ++len) v[len] = kP0 ^ (len * kP1);
  }
};
inline constexpr LengthSalts kLengthSalt{};

inline uint64_t word_hash_short(uint64_t w0, uint64_t w1, size_t len) {
  return fold_mul(w0 ^ kLengthSalt.v[len], w1 ^ kP2);
}

// word hash of data followed by at least 16 readable bytes (padding).
inline uint64_t word_hash_padded(const char* p, size_t len) {
  if (len == 0 || len > 16) return fold_chain(p, len);
  const size_t first = len < 8 ? len : 8;  // bytes in word 0
  const uint64_t mask1 = len > 8 ? ~uint64_t{0} >> (8 * (16 - len)) : 0;
  return word_hash_short(load8(p) & (~uint64_t{0} >> (8 * (8 - first))), load8(p + 8) & mask1, len);
}

// The same for any data.
inline uint64_t word_hash(const char* p, size_t len) {
  if (len == 0 || len > 16) return fold_chain(p, len);
  char buf[32] = {};
  std::memcpy(buf, p, len);
  return word_hash_padded(buf, len);
}

}  // namespace hashing

inline uint64_t hash64(const void* data, size_t len) { return hashing::fmix64(hashing::fold_chain(data, len)); }

}  // namespace fastsynth
