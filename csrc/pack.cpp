// Sequence packing (docs/token-shards.md, "Packing"). Hand-written because the loader
// packs every window of documents on the fly: best-fit decreasing over a million
// documents must take a fraction of a second, and the data structures that make it
// O(n log seq_len) (a bitset tree over free capacities, a max-tree over rows) are not
// something numpy can express.
#include "pack.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace fastsynth {
namespace {

// Largest seq_len best fit accepts: its tables (a stack head and a count per free space,
// plus the bit tree) take ~17 bytes per token of seq_len, 272 MiB at this bound.
constexpr int64_t kMaxBestFitSeqLen = int64_t{1} << 24;

// Pieces before placement: documents longer than seq_len cut into seq_len chunks.
struct Cut {
  int64_t doc;
  int64_t start;
  int64_t length;
};

std::vector<Cut> cut_documents(const int64_t* lengths, size_t n, int64_t seq_len, size_t max_cuts) {
  std::vector<Cut> cuts;
  cuts.reserve(max_cuts);
  for (size_t i = 0; i < n; ++i) {
    for (int64_t s = 0; s < lengths[i]; s += seq_len)
      cuts.push_back({static_cast<int64_t>(i), s, std::min(seq_len, lengths[i] - s)});
  }
  return cuts;
}

// A set of integers in [0, size) with "smallest member >= x" in O(log64 size): one bit
// per value, and above each level a word-per-64-words summary of which words are
// non-empty.
class BitTree {
 public:
  explicit BitTree(size_t size) {
    size_t words = (size + 63) / 64;
    do {
      levels_.emplace_back(words, 0);
      words = (words + 63) / 64;
    } while (levels_.back().size() > 1);
  }

  void insert(size_t v) {
    for (auto& level : levels_) {
      uint64_t& w = level[v >> 6];
      const bool was_empty = w == 0;
      w |= uint64_t{1} << (v & 63);
      if (!was_empty) return;
      v >>= 6;
    }
  }

  void erase(size_t v) {
    for (auto& level : levels_) {
      uint64_t& w = level[v >> 6];
      w &= ~(uint64_t{1} << (v & 63));
      if (w != 0) return;
      v >>= 6;
    }
  }

  // Smallest member >= x, or -1.
  int64_t next(size_t x) const {
    size_t level = 0;
    size_t v = x;
    // Climb until a word holds a member at or after v's position.
    while (true) {
      if (level == levels_.size()) return -1;
      const auto& words = levels_[level];
      const size_t wi = v >> 6;
      if (wi >= words.size()) return -1;
      const uint64_t masked = words[wi] & (~uint64_t{0} << (v & 63));
      if (masked != 0) {
        v = (wi << 6) | static_cast<size_t>(__builtin_ctzll(masked));
        break;
      }
      ++level;
      v = wi + 1;  // the next word of this level, as a position in the level above
    }
    // Descend to the lowest member below v.
    while (level > 0) {
      --level;
      v = (v << 6) | static_cast<size_t>(__builtin_ctzll(levels_[level][v]));
    }
    return static_cast<int64_t>(v);
  }

 private:
  std::vector<std::vector<uint64_t>> levels_;
};

// Rows numbered by creation; returns the row of each piece, given longest first.
// length_of(i) is the length of the i-th piece in that order.
template <class LengthOf>
std::vector<int64_t> best_fit(size_t n_pieces, LengthOf length_of, int64_t seq_len, int64_t* n_rows) {
  // Open rows (free space in [1, seq_len - 1]) are kept in one stack per free space,
  // linked through next_row; the bit tree holds the free spaces whose stack is non-empty.
  BitTree free_spaces(static_cast<size_t>(seq_len));
  std::vector<int64_t> head(static_cast<size_t>(seq_len), -1);
  std::vector<int64_t> next_row;
  next_row.reserve(n_pieces);
  std::vector<int64_t> row_of(n_pieces);
  int64_t rows = 0;
  for (size_t i = 0; i < n_pieces; ++i) {
    const int64_t len = length_of(i);
    const int64_t space = free_spaces.next(static_cast<size_t>(len));
    int64_t row, left;
    if (space < 0) {
      row = rows++;
      next_row.push_back(-1);
      left = seq_len - len;
    } else {
      row = head[space];
      head[space] = next_row[row];
      if (head[space] < 0) free_spaces.erase(static_cast<size_t>(space));
      left = space - len;
    }
    row_of[i] = row;
    if (left > 0) {
      if (head[left] < 0) free_spaces.insert(static_cast<size_t>(left));
      next_row[row] = head[left];
      head[left] = row;
    }
  }
  *n_rows = rows;
  return row_of;
}

// First fit: a max-tree over row free spaces; rows not yet opened count as empty
// (free = seq_len), so the leftmost leaf with room is the answer either way.
std::vector<int64_t> first_fit(const std::vector<Cut>& cuts, int64_t seq_len, int64_t* n_rows) {
  size_t leaves = 1;
  while (leaves < std::max<size_t>(cuts.size(), 1)) leaves <<= 1;
  std::vector<int64_t> tree(2 * leaves, seq_len);
  std::vector<int64_t> row_of(cuts.size());
  int64_t rows = 0;
  for (size_t i = 0; i < cuts.size(); ++i) {
    const int64_t len = cuts[i].length;
    size_t node = 1;
    while (node < leaves) node = tree[2 * node] >= len ? 2 * node : 2 * node + 1;
    const int64_t row = static_cast<int64_t>(node - leaves);
    row_of[i] = row;
    rows = std::max(rows, row + 1);
    tree[node] -= len;
    for (node >>= 1; node >= 1; node >>= 1) tree[node] = std::max(tree[2 * node], tree[2 * node + 1]);
  }
  *n_rows = rows;
  return row_of;
}

// Groups pieces by row (stable: placement order inside a row), O(n + rows).
std::vector<Piece> by_row(const std::vector<Cut>& cuts, const std::vector<int64_t>& row_of, int64_t n_rows) {
  std::vector<size_t> first(static_cast<size_t>(n_rows) + 1, 0);
  for (int64_t r : row_of) ++first[static_cast<size_t>(r) + 1];
  for (size_t r = 0; r < static_cast<size_t>(n_rows); ++r) first[r + 1] += first[r];
  std::vector<Piece> out(cuts.size());
  for (size_t i = 0; i < cuts.size(); ++i) {
    const Cut& c = cuts[i];
    out[first[static_cast<size_t>(row_of[i])]++] = {row_of[i], c.doc, c.start, c.length};
  }
  return out;
}

std::vector<Piece> concat(const int64_t* lengths, size_t n, int64_t seq_len, size_t max_pieces) {
  std::vector<Piece> out;
  out.reserve(max_pieces);
  // The position is kept as (row, tokens used in that row), never as a running token
  // count: nothing here grows past the row count, and no division per piece.
  int64_t row = 0;
  int64_t used = 0;  // in [0, seq_len)
  for (size_t i = 0; i < n; ++i) {
    int64_t s = 0;
    while (s < lengths[i]) {
      const int64_t len = std::min(seq_len - used, lengths[i] - s);
      out.push_back({row, static_cast<int64_t>(i), s, len});
      s += len;
      used += len;
      if (used == seq_len) {
        ++row;
        used = 0;
      }
    }
  }
  return out;
}


// Best-fit decreasing. A full seq_len chunk fills a row alone wherever it is placed, so
// full chunks take rows 0..F-1 in document order without entering the search, and only
// each document's remainder (< seq_len tokens, at most one per document) is sorted and
// placed; the row count equals that of running every chunk through best fit. The
// remainders are ordered by a counting sort on length (longest first, ties by document:
// O(n + seq_len)) straight from the lengths, without a list of all chunks.
std::vector<Piece> best_fit_decreasing(const int64_t* lengths, size_t n, int64_t seq_len) {
  int64_t full_rows = 0;
  std::vector<size_t> count(static_cast<size_t>(seq_len) + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    full_rows += lengths[i] / seq_len;
    const int64_t tail = lengths[i] % seq_len;
    if (tail > 0) ++count[static_cast<size_t>(seq_len - tail)];
  }
  size_t n_rest = 0;
  for (auto& c : count) {
    const size_t here = c;
    c = n_rest;
    n_rest += here;
  }
  // (document, remainder length) in placement order: read sequentially by the search
  std::vector<Cut> order(n_rest);
  for (size_t i = 0; i < n; ++i) {
    const int64_t tail = lengths[i] % seq_len;
    if (tail > 0) order[count[static_cast<size_t>(seq_len - tail)]++] = {static_cast<int64_t>(i), lengths[i] - tail, tail};
  }
  int64_t n_rows = 0;
  const std::vector<int64_t> row_of =
      best_fit(n_rest, [&](size_t k) { return order[k].length; }, seq_len, &n_rows);
  // push_back into reserved memory: the full-chunk part (most of the output for corpora of
  // long documents) is written once, not zeroed first
  std::vector<Piece> out;
  out.reserve(static_cast<size_t>(full_rows) + n_rest);
  int64_t row = 0;
  for (size_t i = 0; i < n; ++i)
    for (int64_t s = 0; s + seq_len <= lengths[i]; s += seq_len) out.push_back({row++, static_cast<int64_t>(i), s, seq_len});
  const size_t k = out.size();
  out.resize(k + n_rest);
  // group the remainders by row (stable: placement order inside a row)
  std::vector<size_t> first(static_cast<size_t>(n_rows) + 1, 0);
  for (int64_t r : row_of) ++first[static_cast<size_t>(r) + 1];
  for (size_t r = 0; r < static_cast<size_t>(n_rows); ++r) first[r + 1] += first[r];
  for (size_t j = 0; j < n_rest; ++j) {
    const Cut& c = order[j];
    out[k + first[static_cast<size_t>(row_of[j])]++] = {full_rows + row_of[j], c.doc, c.start, c.length};
  }
  return out;
}

}  // namespace

std::vector<Piece> pack(const int64_t* lengths, size_t n, int64_t seq_len, PackMethod method) {
  if (seq_len < 2) throw std::invalid_argument("seq_len must be >= 2, got " + std::to_string(seq_len));
  // Best fit keeps tables indexed by free space (about 17 bytes per token of seq_len):
  // bound seq_len before sizing them.
  if (method == PackMethod::BestFit && seq_len > kMaxBestFitSeqLen)
    throw std::invalid_argument("seq_len must be <= " + std::to_string(kMaxBestFitSeqLen) +
                                " for best-fit (its tables take ~17 bytes per token of seq_len), got " +
                                std::to_string(seq_len) + "; first-fit and concat take any seq_len");
  // Every method numbers tokens, rows and pieces in int64: the total must fit.
  int64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    if (lengths[i] < 0)
      throw std::invalid_argument("lengths[" + std::to_string(i) + "] is negative (" + std::to_string(lengths[i]) +
                                  ")");
    if (__builtin_add_overflow(total, lengths[i], &total))
      throw std::invalid_argument("lengths sum past 2**63 - 1 tokens (overflow at lengths[" + std::to_string(i) +
                                  "])");
  }
  // Pieces <= total / seq_len + n (each document adds at most one piece beyond the row
  // boundaries it crosses): the output is reserved at once, so a size past memory fails
  // before filling it, and a size past what a vector can index is refused here.
  const uint64_t max_pieces = static_cast<uint64_t>(total / seq_len) + n;
  if (max_pieces > std::vector<Piece>().max_size())
    throw std::invalid_argument("lengths and seq_len give up to " + std::to_string(max_pieces) +
                                " pieces, more than an array can hold");
  if (method == PackMethod::Concat) return concat(lengths, n, seq_len, static_cast<size_t>(max_pieces));
  if (method == PackMethod::BestFit) return best_fit_decreasing(lengths, n, seq_len);
  const std::vector<Cut> cuts = cut_documents(lengths, n, seq_len, static_cast<size_t>(max_pieces));
  int64_t n_rows = 0;
  std::vector<int64_t> row_of = first_fit(cuts, seq_len, &n_rows);
  return by_row(cuts, row_of, n_rows);
}

}  // namespace fastsynth
