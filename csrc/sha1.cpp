#include "sha1.h"

#include <cstring>

namespace fastsynth {
namespace {

inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

inline uint32_t load_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// One 64-byte block into the five-word state.
void compress(uint32_t st[5], const uint8_t* block) {
  uint32_t w[80];
  for (int i = 0; i < 16; ++i) w[i] = load_be32(block + 4 * i);
  for (int i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4];
  for (int i = 0; i < 80; ++i) {
    uint32_t f, k;
    if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999u; }
    else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1u; }
    else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDCu; }
    else { f = b ^ c ^ d; k = 0xCA62C1D6u; }
    uint32_t t = rotl(a, 5) + f + e + k + w[i];
    e = d; d = c; c = rotl(b, 30); b = a; a = t;
  }
  st[0] += a; st[1] += b; st[2] += c; st[3] += d; st[4] += e;
}

}  // namespace

void sha1(const void* data, size_t len, uint8_t digest[20]) {
  uint32_t st[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  const uint8_t* p = static_cast<const uint8_t*>(data);
  size_t left = len;
  while (left >= 64) {
    compress(st, p);
    p += 64;
    left -= 64;
  }
  // Padding: 0x80, zeros, then the message length in bits as a big-endian uint64.
  uint8_t tail[128] = {0};
  if (left) std::memcpy(tail, p, left);
  tail[left] = 0x80;
  size_t tail_len = (left < 56) ? 64 : 128;
  uint64_t bits = static_cast<uint64_t>(len) * 8u;
  for (int i = 0; i < 8; ++i) tail[tail_len - 1 - i] = static_cast<uint8_t>(bits >> (8 * i));
  compress(st, tail);
  if (tail_len == 128) compress(st, tail + 64);
  for (int i = 0; i < 5; ++i) {
    digest[4 * i] = static_cast<uint8_t>(st[i] >> 24);
    digest[4 * i + 1] = static_cast<uint8_t>(st[i] >> 16);
    digest[4 * i + 2] = static_cast<uint8_t>(st[i] >> 8);
    digest[4 * i + 3] = static_cast<uint8_t>(st[i]);
  }
}

uint32_t sha1_hash32(const void* data, size_t len) {
  uint8_t d[20];
  sha1(data, len, d);
  return uint32_t(d[0]) | (uint32_t(d[1]) << 8) | (uint32_t(d[2]) << 16) | (uint32_t(d[3]) << 24);
}

}  // namespace fastsynth
