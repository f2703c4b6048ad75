// Run-time thread pool for the hot paths: a parallel for-loop over [0, n) with dynamic
// scheduling, on workers that persist between calls. Documents vary in length by orders
// of magnitude, so static partitioning leaves cores idle; threads instead claim chunks
// from an atomic counter.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
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

// Worker threads kept for the life of the process, so a parallel loop costs a wake-up
// instead of thread start-ups (~20-50 us each; far more when other processes hold the
// cores). Decode steps make ~120 small products per token, back to back, which is where
// the difference shows. After a job a worker spins for a short while (spin_us(), default
// 100 us; FASTSYNTH_SPIN_US=0 turns it off) before it sleeps on the condition variable, and
// the caller spins as long for the workers to finish: a loop that follows within that time
// starts at once, where a sleeping worker's futex wake-up takes ~10-50 us on these VMs —
// a third of a batch-1 decode step's products (docs/serving.md, "Decode speed"). llama.cpp's
// thread pool spins for the same reason. Work is claimed in jobs (generation numbers): one
// loop runs on the pool at a time; a loop started while the pool is busy (another Python
// thread, or a loop inside a loop) starts its own threads.
class WorkerPool {
 public:
  // The pool of this process (a forked child gets a fresh one: its parent's workers do not
  // exist in it).
  static WorkerPool& get();
  // Runs task(ctx, t) for t in [0, threads): t = 0 on the calling thread, the others on
  // pool workers; returns when all have returned. task must not throw. Returns false
  // without running anything when the pool is busy.
  bool run(int threads, void (*task)(void*, int), void* ctx);
  // Microseconds a worker (and the caller) spins before sleeping: $FASTSYNTH_SPIN_US, read
  // once; 100 when unset.
  static long spin_us();

 private:
  void loop(int index);
  // Job word: generation << 16 | workers wanted (indices 1..wanted). One atomic, so a worker
  // never pairs one job's generation with another's worker count.
  static constexpr int kWantedBits = 16;

  std::mutex run_mutex_;  // held for the whole of one run()
  std::mutex mutex_;      // guards sleeping on wake_/done_ (and workers_)
  std::condition_variable wake_, done_;
  int workers_ = 0;       // started so far (indices 1..workers_)
  std::atomic<uint64_t> job_{0};
  std::atomic<int> remaining_{0};
  std::atomic<int> sleepers_{0};       // workers inside wake_.wait
  void (*task_)(void*, int) = nullptr;  // written before job_ is published (release)
  void* ctx_ = nullptr;
};

// fn(thread_index, begin, end) processes items [begin, end). Exceptions thrown by any
// worker are rethrown (the first one) on the calling thread after all workers finish.
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
  using Worker = decltype(worker);
  auto task = [](void* ctx, int tid) { (*static_cast<Worker*>(ctx))(tid); };
  if (!WorkerPool::get().run(threads, task, &worker)) {
    std::vector<std::thread> own;
    own.reserve(static_cast<size_t>(threads - 1));
    for (int t = 1; t < threads; ++t) own.emplace_back(worker, t);
    worker(0);
    for (auto& th : own) th.join();
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace fastsynth
