#include "kernels/thread_pool.h"

#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <utility>

namespace phinfer::kernels {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Waits for pred(): pause-spins for up to kSpin, then yields the CPU (other runnable threads,
// such as this pool's own workers on an oversubscribed machine, get to run) up to kYield; returns
// pred() (false: the caller blocks on its condition variable).
constexpr std::chrono::microseconds kSpin{50}, kYield{300};

template <typename Pred>
bool spin_until(Pred pred) {
  auto start = std::chrono::steady_clock::time_point{};
  bool yielding = false;
  for (uint32_t i = 0;; ++i) {
    if (pred()) return true;
    if ((i & 63) == 63) {
      const auto now = std::chrono::steady_clock::now();
      if (start == std::chrono::steady_clock::time_point{}) start = now;
      const auto waited = now - start;
      if (waited >= kYield) return pred();
      yielding = waited >= kSpin;
    }
    if (yielding)
      std::this_thread::yield();
    else
      cpu_relax();
  }
}

std::pair<int64_t, int64_t> chunk(int64_t n, int parts, int index) {
  int64_t base = n / parts, extra = n % parts;
  int64_t begin = index * base + std::min<int64_t>(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

}  // namespace

int ThreadPool::default_threads() {
  // Count distinct (physical id, core id) pairs; fall back to the logical count.
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, phys = "0";
  while (std::getline(cpuinfo, line)) {
    auto value = [&] { return line.substr(line.find(':') + 1); };
    if (line.rfind("physical id", 0) == 0) phys = value();
    if (line.rfind("core id", 0) == 0) cores.emplace(phys, value());
  }
  int logical = static_cast<int>(std::thread::hardware_concurrency());
  int physical = static_cast<int>(cores.size());
  if (physical <= 0) return logical > 0 ? logical : 1;
  return physical;
}

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = default_threads();
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run(int64_t n, Job fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    fn(0, n);
    return;
  }
  job_ = fn;
  job_n_ = n;
  pending_.store(static_cast<int>(workers_.size()));
  generation_.fetch_add(1);  // seq_cst: pairs with the sleepers_ increment in worker_loop
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    wake_.notify_all();
  }
  auto [b, e] = chunk(n, size(), 0);
  if (b < e) fn(b, e);
  if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
    std::unique_lock<std::mutex> lock(mu_);
    caller_waiting_.store(true);
    done_.wait(lock, [&] { return pending_.load() == 0; });
    caller_waiting_.store(false);
  }
  job_ = Job{};
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1);  // seq_cst, then re-check the generation under the lock
      wake_.wait(lock, [&] { return generation_.load() != seen; });
      sleepers_.fetch_sub(1);
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    auto [b, e] = chunk(job_n_, size(), index);
    if (b < e) job_(b, e);
    if (pending_.fetch_sub(1) == 1 && caller_waiting_.load()) {
      std::lock_guard<std::mutex> lock(mu_);
      done_.notify_one();
    }
  }
}

}  // namespace phinfer::kernels
