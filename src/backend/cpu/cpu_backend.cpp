// The CPU backend: weights stay in the memory-mapped file (the kernels read the packed layout in
// place), KV caches in host memory, forward calls through model::Phi3Model on a thread pool.
#include <algorithm>
#include <memory>

#include "backend/backend.h"
#include "kernels/thread_pool.h"
#include "phinfer/error.h"

namespace phinfer::backend {
namespace {

class CpuCache final : public SequenceCache {
 public:
  explicit CpuCache(model::KVCache kv) : kv(std::move(kv)) {}
  int64_t length() const override { return kv.length; }
  model::RopeTable table() const override { return kv.table; }
  void truncate(int64_t n) override {
    if (n < kv.length) kv.length = n;
    if (kv.length == 0) kv.clear();
  }
  void reserve(int64_t positions) override { kv.reserve(positions); }
  int64_t capacity() const override { return kv.capacity; }
  uint64_t bytes() const override { return kv.bytes(); }
  std::unique_ptr<SequenceCache> clone(int64_t length, int64_t capacity) const override {
    model::KVCache copy(kv, std::min(length, kv.length), capacity);
    return std::make_unique<CpuCache>(std::move(copy));
  }
  model::KVCache kv;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::shared_ptr<const model::Phi3Model> model, const BackendOptions& o,
             std::shared_ptr<kernels::ThreadPool> pool = nullptr)
      : model_(std::move(model)),
        options_(o),
        pool_(pool ? std::move(pool) : std::make_shared<kernels::ThreadPool>(o.threads)),
        acts_(model_->config(), 16, 1) {}

  std::string device() const override { return "cpu"; }
  const model::Phi3Model& model() const override { return *model_; }
  std::unique_ptr<SequenceCache> new_cache() override {
    return std::make_unique<CpuCache>(model_->new_cache(options_.kv_type));
  }
  uint64_t cache_bytes_per_position() const override {
    return model::KVCache::bytes_per_position(model_->config(), options_.kv_type);
  }

  std::span<const float> forward(std::span<const BatchEntry> entries) override {
    batch_.clear();
    for (const BatchEntry& e : entries) {
      auto* cache = dynamic_cast<CpuCache*>(e.cache);
      if (!cache) throw Error("internal: a KV cache of another backend was given to the cpu backend");
      batch_.add(cache->kv, e.table, e.tokens, e.logit_rows);
    }
    model_->forward(batch_, acts_, *pool_);
    return {acts_.logits.data(), batch_.logit_rows.size() * static_cast<size_t>(model_->config().vocab_size)};
  }

  std::unique_ptr<Backend> companion(std::shared_ptr<const model::Phi3Model> model) override {
    return std::make_unique<CpuBackend>(std::move(model), options_, pool_);
  }

 private:
  std::shared_ptr<const model::Phi3Model> model_;
  BackendOptions options_;
  std::shared_ptr<kernels::ThreadPool> pool_;  // shared with companions
  model::Activations acts_;
  model::ForwardBatch batch_;
};

}  // namespace

std::unique_ptr<Backend> create_cpu_backend(std::shared_ptr<const model::Phi3Model> model, const BackendOptions& options) {
  return std::make_unique<CpuBackend>(std::move(model), options);
}

}  // namespace phinfer::backend
