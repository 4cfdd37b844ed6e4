#include "model/kv_cache.h"

#include <algorithm>

#include "format/dtype.h"
#include "kernels/matrix.h"

namespace phinfer::model {

KVCache::KVCache(const ModelConfig& c, bool half)
    : f16(half), layers(c.num_hidden_layers), kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  const auto n = static_cast<size_t>(layers);
  if (f16) {
    k16.resize(n);
    v16.resize(n);
  } else {
    k.resize(n);
    v.resize(n);
  }
}

KVCache::KVCache(const KVCache& o, int64_t n, int64_t cap)
    : f16(o.f16), layers(o.layers), kv_heads(o.kv_heads), head_dim(o.head_dim), table(o.table) {
  k.resize(o.k.size());
  v.resize(o.v.size());
  k16.resize(o.k16.size());
  v16.resize(o.v16.size());
  capacity = 0;
  length = 0;
  reserve(std::max<int64_t>(cap, n));
  auto copy = [&](const auto& from, auto& to) {
    for (size_t l = 0; l < from.size(); ++l)
      for (int64_t h = 0; h < kv_heads; ++h)
        std::copy_n(from[l].data() + h * o.capacity * head_dim, n * head_dim, to[l].data() + h * capacity * head_dim);
  };
  copy(o.k, k);
  copy(o.v, v);
  copy(o.k16, k16);
  copy(o.v16, v16);
  length = n;
}

uint64_t KVCache::bytes_per_position(int64_t layers, int64_t kv_heads, int64_t head_dim, bool f16) {
  return 2 * static_cast<uint64_t>(layers) * static_cast<uint64_t>(kv_heads) * static_cast<uint64_t>(head_dim) *
         (f16 ? 2 : 4);
}

uint64_t KVCache::bytes_per_position(const ModelConfig& c, bool f16) {
  return bytes_per_position(c.num_hidden_layers, c.num_key_value_heads, c.head_dim, f16);
}

namespace {
// Re-lays [head][old_cap][hd] into [head][new_cap][hd], keeping the first `length` positions.
template <typename T>
void grow(std::vector<T>& store, int64_t heads, int64_t hd, int64_t old_cap, int64_t new_cap, int64_t length) {
  std::vector<T> grown(static_cast<size_t>(heads * new_cap * hd));
  for (int64_t h = 0; h < heads; ++h)
    std::copy_n(store.data() + h * old_cap * hd, length * hd, grown.data() + h * new_cap * hd);
  store.swap(grown);
}

// fp32 caches are read in place; fp16 rows are converted into scratch.
const float* cached_rows(const float* f32, const uint16_t* f16, int64_t offset, int64_t n, float* scratch) {
  if (f32) return f32 + offset;
  kernels::WeightMatrix m{kernels::WeightFormat::F16, 1, n, reinterpret_cast<const std::byte*>(f16 + offset)};
  m.row_to_f32(0, scratch);
  return scratch;
}
}  // namespace

void KVCache::reserve(int64_t needed) {
  if (needed <= capacity) return;
  const int64_t cap = std::max<int64_t>(needed, std::max<int64_t>(256, capacity * 2));
  for (auto* store : {&k, &v})
    for (auto& layer : *store) grow(layer, kv_heads, head_dim, capacity, cap, length);
  for (auto* store : {&k16, &v16})
    for (auto& layer : *store) grow(layer, kv_heads, head_dim, capacity, cap, length);
  capacity = cap;
}

void KVCache::store(int layer, int64_t pos, const float* key, const float* value) {
  const auto l = static_cast<size_t>(layer);
  for (int64_t h = 0; h < kv_heads; ++h) {
    const int64_t at = (h * capacity + pos) * head_dim;
    const float* kh = key + h * head_dim;
    const float* vh = value + h * head_dim;
    if (f16) {
      for (int64_t i = 0; i < head_dim; ++i) {
        k16[l][static_cast<size_t>(at + i)] = f32_to_f16(kh[i]);
        v16[l][static_cast<size_t>(at + i)] = f32_to_f16(vh[i]);
      }
    } else {
      std::copy_n(kh, head_dim, k[l].data() + at);
      std::copy_n(vh, head_dim, v[l].data() + at);
    }
  }
}

const float* KVCache::keys(int layer, int64_t head, int64_t pos, int64_t count, float* scratch) const {
  const auto l = static_cast<size_t>(layer);
  const int64_t at = (head * capacity + pos) * head_dim;
  return f16 ? cached_rows(nullptr, k16[l].data(), at, count * head_dim, scratch)
             : cached_rows(k[l].data(), nullptr, at, count * head_dim, scratch);
}

const float* KVCache::values(int layer, int64_t head, int64_t pos, int64_t count, float* scratch) const {
  const auto l = static_cast<size_t>(layer);
  const int64_t at = (head * capacity + pos) * head_dim;
  return f16 ? cached_rows(nullptr, v16[l].data(), at, count * head_dim, scratch)
             : cached_rows(v[l].data(), nullptr, at, count * head_dim, scratch);
}

}  // namespace phinfer::model
