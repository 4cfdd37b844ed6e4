// Steady-state decode allocates nothing: this test binary's operator new counts calls while a
// flag is set, and a batched decode step through the CPU backend runs with it set.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "backend/backend.h"
#include "model/phi3.h"
#include "phinfer/convert.h"
#include "test_util.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};

void* counted_alloc(size_t n, size_t align) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align)
                                               : std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(size_t n) { return counted_alloc(n, 0); }
void* operator new[](size_t n) { return counted_alloc(n, 0); }
void* operator new(size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<size_t>(a)); }
void* operator new[](size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<size_t>(a)); }
// Every form is replaced, so all of the binary's allocations pair malloc with free (sanitizers
// check that pairing).
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n, static_cast<size_t>(a));
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t& t) noexcept { return operator new(n, a, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

namespace phinfer {
namespace {

long decode_allocations(const std::filesystem::path& path, model::KVCacheType kv = model::KVCacheType::F32) {
  std::shared_ptr<const model::Phi3Model> m = model::Phi3Model::load(path);
  auto be = backend::create_backend("cpu", m, backend::BackendOptions{2, kv});
  std::vector<std::unique_ptr<backend::SequenceCache>> caches;
  std::vector<std::vector<int32_t>> tokens;
  for (int i = 0; i < 4; ++i) {
    caches.push_back(be->new_cache());
    caches.back()->reserve(256);
    tokens.push_back({1, 403 + i, 407, 261});
  }
  std::vector<int64_t> last(4);
  std::vector<backend::BatchEntry> entries(4);
  auto step = [&](bool prefill) {
    for (size_t i = 0; i < 4; ++i) {
      const size_t from = prefill ? 0 : tokens[i].size() - 1;
      last[i] = static_cast<int64_t>(tokens[i].size() - from) - 1;
      entries[i] = {caches[i].get(), model::RopeTable::Short,
                    std::span<const int32_t>(tokens[i]).subspan(from), std::span<const int64_t>(&last[i], 1)};
    }
    auto logits = be->forward(entries);
    const size_t vocab = static_cast<size_t>(m->config().vocab_size);
    for (size_t i = 0; i < 4; ++i) {
      auto l = logits.subspan(i * vocab, vocab);
      tokens[i].push_back(static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin()));
    }
  };
  for (auto& t : tokens) t.reserve(256);
  step(true);
  for (int i = 0; i < 3; ++i) step(false);  // warm-up: per-thread scratch grows here
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < 20; ++i) step(false);
  g_counting = false;
  return g_allocations.load();
}

TEST(SteadyStateDecode, BatchedDecodeStepsAllocateNothing) {
  // The counter itself works.
  g_allocations = 0;
  g_counting = true;
  auto* probe = new std::vector<int>(10);
  g_counting = false;
  delete probe;
  ASSERT_EQ(g_allocations.load(), 2);
  const auto dir = test::shared_path("models/stories260K-phi3");
  EXPECT_EQ(decode_allocations(dir), 0) << "stored (fp32) weights";
  EXPECT_EQ(decode_allocations(dir, model::KVCacheType::F16), 0) << "f16 KV cache";
  EXPECT_EQ(decode_allocations(dir, model::KVCacheType::Q8), 0) << "q8 KV cache";
  auto out = test::temp_dir("alloc-int4") / "model.phi";
  ConvertOptions o;
  o.weight_format = "int4";
  o.plain_rounding = true;
  convert(dir, out, o);
  EXPECT_EQ(decode_allocations(out), 0) << "int4 weights";
}

}  // namespace
}  // namespace phinfer
