#include "parallel.h"

#include <unistd.h>

namespace fastsynth {

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
  {
    std::lock_guard<std::mutex> lock(mutex_);
    while (workers_ < threads - 1) {  // counted once started: a failed start throws, and
      const int index = workers_ + 1;  // no job ever waits for a worker that does not exist
      std::thread([this, index] { loop(index); }).detach();
      workers_ = index;
    }
    task_ = task;
    ctx_ = ctx;
    wanted_ = threads - 1;
    remaining_ = threads - 1;
    ++generation_;
  }
  wake_.notify_all();
  task(ctx, 0);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return remaining_ == 0; });
  task_ = nullptr;
  ctx_ = nullptr;
  return true;
}

void WorkerPool::loop(int index) {
  std::unique_lock<std::mutex> lock(mutex_);
  uint64_t seen = generation_ - 1;  // a worker started for a job takes part in it
  for (;;) {
    wake_.wait(lock, [&] { return generation_ != seen; });
    seen = generation_;
    if (index > wanted_) continue;
    void (*task)(void*, int) = task_;
    void* ctx = ctx_;
    lock.unlock();
    task(ctx, index);
    lock.lock();
    if (--remaining_ == 0) done_.notify_one();
  }
}

}  // namespace fastsynth
