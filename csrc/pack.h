// Sequence packing: place documents (token counts) into rows of seq_len tokens
// (see fastsynth.train.packing and docs/token-shards.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fastsynth {

enum class PackMethod {
  // Best-fit decreasing: pieces longest first, each into the open row whose free space
  // is the smallest that still holds it (a new row when none does).
  BestFit,
  // First-fit in input order: each piece into the lowest-numbered row with room.
  FirstFit,
  // Concatenate every document in input order and cut the stream every seq_len tokens.
  Concat,
};

// One placed piece of a document: tokens [start, start + length) of document `doc`
// go into row `row`. The layout is the numpy record of fastsynth.train.PIECE_DTYPE.
struct Piece {
  int64_t row;
  int64_t doc;
  int64_t start;
  int64_t length;
};

// Packs documents of lengths[0..n) into rows of seq_len tokens. For BestFit and
// FirstFit a document longer than seq_len is first cut into seq_len-token chunks (the
// last chunk holds the rest). Documents of length 0 place nothing. Pieces come out
// sorted by row; inside a row, in the order they were placed. Throws
// std::invalid_argument (naming the parameter) for seq_len < 2 or a negative length.
std::vector<Piece> pack(const int64_t* lengths, size_t n, int64_t seq_len, PackMethod method);

}  // namespace fastsynth
