#pragma once
// A persistent pool of worker threads: parallel_for splits [0, n) into contiguous chunks, one per
// thread, and the caller's thread takes the first chunk.
// Hand-off is by atomics: after a job, workers spin (pause, then sched_yield) for about 0.3 ms
// waiting for the next one, then sleep on a condition variable; the caller likewise spins, then
// sleeps, while waiting for the workers. Back-to-back calls (a decode step is hundreds of matmuls of tens
// of microseconds each) thus cost well under a microsecond of hand-off instead of a futex wake-up.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace phinfer::kernels {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);  // num_threads <= 0: physical cores
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // fn(begin, end) over disjoint chunks covering [0, n); returns when all are done. Not reentrant:
  // one parallel_for at a time per pool. fn is called by reference, never copied or type-erased
  // into a heap object: a decode step's hundreds of calls allocate nothing.
  template <typename Fn>
  void parallel_for(int64_t n, Fn&& fn) {
    run(n, Job{&fn, [](const void* f, int64_t b, int64_t e) { (*static_cast<const std::remove_reference_t<Fn>*>(f))(b, e); }});
  }

  static int default_threads();  // physical cores (hyper-threads do not help memory-bound decode)

 private:
  struct Job {
    const void* fn = nullptr;
    void (*call)(const void*, int64_t, int64_t) = nullptr;
    void operator()(int64_t b, int64_t e) const { call(fn, b, e); }
  };
  void run(int64_t n, Job job);
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  Job job_;
  int64_t job_n_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};       // workers blocked (or about to block) on wake_
  std::atomic<bool> caller_waiting_{false};
  std::atomic<bool> stop_{false};
};

}  // namespace phinfer::kernels
