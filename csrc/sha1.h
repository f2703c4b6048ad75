// SHA-1 (FIPS 180-4), written here so compat-mode MinHash needs no OpenSSL. Only the
// first 32 bits of the digest are used (datasketch's sha1_hash32), but the full digest
// is computed so the function can be tested against hashlib.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastsynth {

// digest receives the 20-byte SHA-1 of data[0, len).
void sha1(const void* data, size_t len, uint8_t digest[20]);

// The first 4 digest bytes read as a little-endian uint32 (datasketch's sha1_hash32).
uint32_t sha1_hash32(const void* data, size_t len);

}  // namespace fastsynth
