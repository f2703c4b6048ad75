// Byte compaction with pshufb: kCompact.idx[m] holds the shuffle indices that move the
// bytes selected by the 8-bit mask m to the front of an 8-byte lane (0x80 zeroes the
// rest). Shared by the normaliser and the word scanner.
#pragma once

#include <cstdint>

namespace fastsynth {

struct CompactTable {
  alignas(16) uint8_t idx[256][8];
  CompactTable() {
    for (int m = 0; m < 256; ++m) {
      int k = 0;
      for (int j = 0; j < 8; ++j)
        if (m & (1 << j)) idx[m][k++] = static_cast<uint8_t>(j);
      for (; k < 8; ++k) idx[m][k] = 0x80;
    }
  }
};

inline const CompactTable kCompact;

}  // namespace fastsynth
