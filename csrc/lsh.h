// LSH banding and clustering primitives (see fastsynth.dedup.lsh / .cluster).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fastsynth {

// keys (n, bands) row-major: band j of row i is hash64 of the r uint32 values
// sig[i, j*r:(j+1)*r] (their little-endian bytes). Rows are independent.
void band_keys(const uint32_t* sigs, size_t n, size_t num_perm, size_t bands, size_t rows, int threads,
               uint64_t* keys);

// Candidate pairs from one band's entries sorted by (key, id): every pair inside a
// bucket of at most max_all members, and a star from the first (lowest id) member for
// larger buckets (enough for clustering; verification then checks star edges only).
void bucket_pairs(const uint64_t* keys, const int64_t* ids, size_t m, size_t max_all, std::vector<int64_t>& u,
                  std::vector<int64_t>& v);

// Exact Jaccard of sorted, de-duplicated uint64 sets (CSR) for each pair (u[k], v[k]).
// Two empty sets have Jaccard 0 here: empty documents never match.
void pair_jaccard(const uint64_t* values, const int64_t* offsets, const int64_t* u, const int64_t* v, size_t m,
                  int threads, double* out);

// Union-find over parent (n entries, parent[i] == i for a root), updated in place:
// joins u[k] and v[k] for every k with keep[k] != 0 (keep may be null). The smaller
// root becomes the new root, so a root is always its component's smallest index.
void union_pairs(int64_t* parent, size_t n, const int64_t* u, const int64_t* v, const uint8_t* keep, size_t m);

// Points every entry straight at its root: afterwards parent[i] is i's component label.
void resolve_roots(int64_t* parent, size_t n);

}  // namespace fastsynth
