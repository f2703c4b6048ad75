#include "lsh.h"


#include "minhash.h"
#include "parallel.h"

namespace fastsynth {

void band_keys(const uint32_t* sigs, size_t n, size_t num_perm, size_t bands, size_t rows, int threads,
               uint64_t* keys) {
  parallel_for(n, threads, 1024, [&](int, size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i)
      for (size_t j = 0; j < bands; ++j)
        keys[i * bands + j] = hash64(sigs + i * num_perm + j * rows, rows * sizeof(uint32_t));
  });
}

void bucket_pairs(const uint64_t* keys, const int64_t* ids, size_t m, size_t max_all, std::vector<int64_t>& u,
                  std::vector<int64_t>& v) {
  size_t s = 0;
  while (s < m) {
    size_t e = s + 1;
    while (e < m && keys[e] == keys[s]) ++e;
    const size_t size = e - s;
    if (size <= max_all) {
      for (size_t i = s; i < e; ++i)
        for (size_t j = i + 1; j < e; ++j) {
          u.push_back(ids[i]);
          v.push_back(ids[j]);
        }
    } else {
      for (size_t j = s + 1; j < e; ++j) {
        u.push_back(ids[s]);
        v.push_back(ids[j]);
      }
    }
    s = e;
  }
}

void pair_jaccard(const uint64_t* values, const int64_t* offsets, const int64_t* u, const int64_t* v, size_t m,
                  int threads, double* out) {
  parallel_for(m, threads, 256, [&](int, size_t begin, size_t end) {
    for (size_t k = begin; k < end; ++k) {
      const uint64_t *a = values + offsets[u[k]], *ae = values + offsets[u[k] + 1];
      const uint64_t *b = values + offsets[v[k]], *be = values + offsets[v[k] + 1];
      const size_t na = static_cast<size_t>(ae - a), nb = static_cast<size_t>(be - b);
      size_t inter = 0;
      while (a < ae && b < be) {
        if (*a < *b) ++a;
        else if (*b < *a) ++b;
        else { ++inter; ++a; ++b; }
      }
      const size_t uni = na + nb - inter;
      out[k] = uni == 0 ? 0.0 : static_cast<double>(inter) / static_cast<double>(uni);
    }
  });
}

namespace {
inline int64_t find_root(int64_t* parent, int64_t x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]];  // path halving
    x = parent[x];
  }
  return x;
}
}  // namespace

void union_pairs(int64_t* parent, size_t n, const int64_t* u, const int64_t* v, const uint8_t* keep, size_t m) {
  for (size_t k = 0; k < m; ++k) {
    if (keep && !keep[k]) continue;
    int64_t ru = find_root(parent, u[k]), rv = find_root(parent, v[k]);
    if (ru == rv) continue;
    if (ru < rv) parent[rv] = ru;
    else parent[ru] = rv;
  }
}

void resolve_roots(int64_t* parent, size_t n) {
  // Roots are smaller than their members, so one ascending pass resolves everything.
  for (size_t i = 0; i < n; ++i) parent[i] = parent[parent[i]];
}

}  // namespace fastsynth
