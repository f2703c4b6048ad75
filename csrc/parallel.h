// Run-time thread pool for the hot paths: a parallel for-loop over [0, n) with
// dynamic scheduling. Documents vary in length by orders of magnitude, so static
// partitioning leaves cores idle; threads instead claim chunks from an atomic counter.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace fastsynth {

inline int resolve_threads(int requested, size_t n_items) {
  int t = requested;
  if (t <= 0) {
    t = static_cast<int>(std::thread::hardware_concurrency());
    if (t <= 0) t = 1;
  }
  if (static_cast<size_t>(t) > n_items) t = static_cast<int>(std::max<size_t>(n_items, 1));
  return t;
}

// fn(thread_index, begin, end) processes items [begin, end). Exceptions thrown by any
// worker are rethrown (the first one) on the calling thread after all workers join.
template <class Fn>
void parallel_for(size_t n, int threads, size_t chunk, Fn&& fn) {
  if (n == 0) return;
  threads = resolve_threads(threads, (n + chunk - 1) / chunk);
  if (threads == 1) {
    fn(0, size_t{0}, n);
    return;
  }
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&](int tid) {
    try {
      for (;;) {
        size_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
        if (begin >= n) break;
        fn(tid, begin, std::min(n, begin + chunk));
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next.store(n, std::memory_order_relaxed);
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads - 1));
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace fastsynth
