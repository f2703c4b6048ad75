#include "parallel.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fastsynth {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Spins until done() or `us` microseconds pass; true when done() held. The clock is read
// once per 64 checks (a pause is ~10-140 cycles depending on the core).
template <class Done>
bool spin_until(Done&& done, long us) {
  if (us <= 0) return done();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
  }
}

}  // namespace

long WorkerPool::spin_us() {
  static const long us = [] {
    const char* v = std::getenv("FASTSYNTH_SPIN_US");
    if (v == nullptr || *v == '\0') return 100L;
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    return (end != v && x >= 0) ? x : 100L;
  }();
  return us;
}

WorkerPool& WorkerPool::get() {
  // Never destroyed: workers sleep in wait() until the process exits, and a destructor
  // running at exit would have to join threads the runtime may already have stopped.
  static std::mutex create_mutex;
  static WorkerPool* pool = nullptr;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lock(create_mutex);
  if (pool == nullptr || owner != getpid()) {  // first use, or first use in a forked child
    pool = new WorkerPool();
    owner = getpid();
  }
  return *pool;
}

bool WorkerPool::run(int threads, void (*task)(void*, int), void* ctx) {
  std::unique_lock<std::mutex> running(run_mutex_, std::try_to_lock);
  if (!running.owns_lock()) return false;
  if (threads - 1 >= (1 << kWantedBits)) return false;  // the caller starts its own threads
  {
    std::lock_guard<std::mutex> lock(mutex_);
    while (workers_ < threads - 1) {  // counted once started: a failed start throws, and
      const int index = workers_ + 1;  // no job ever waits for a worker that does not exist
      std::thread([this, index] { loop(index); }).detach();
      workers_ = index;
    }
    task_ = task;
    ctx_ = ctx;
    remaining_.store(threads - 1, std::memory_order_relaxed);
    const uint64_t generation = (job_.load(std::memory_order_relaxed) >> kWantedBits) + 1;
    // published under mutex_: a worker about to sleep re-checks job_ under it, so none misses it
    job_.store(generation << kWantedBits | static_cast<uint64_t>(threads - 1), std::memory_order_release);
  }
  if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_.notify_all();
  task(ctx, 0);
  auto finished = [this] { return remaining_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(finished, spin_us())) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, finished);
  }
  task_ = nullptr;
  ctx_ = nullptr;
  return true;
}

void WorkerPool::loop(int index) {
  // A worker started for a job takes part in it: it starts one generation behind. run()
  // holds mutex_ from starting the thread until the job is published, so this read sees it.
  uint64_t seen = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    seen = (job_.load(std::memory_order_acquire) >> kWantedBits) - 1;
  }
  for (;;) {
    uint64_t job = 0;
    auto posted = [&] {
      job = job_.load(std::memory_order_acquire);
      return (job >> kWantedBits) != seen;
    };
    if (!spin_until(posted, spin_us())) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      wake_.wait(lock, posted);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = job >> kWantedBits;
    if (static_cast<uint64_t>(index) > (job & ((uint64_t{1} << kWantedBits) - 1))) continue;
    task_(ctx_, index);
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      // the caller may be asleep (or about to sleep: it re-checks under mutex_)
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_one();
    }
  }
}

}  // namespace fastsynth
