#include "model/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "format/dtype.h"
#include "kernels/matrix.h"
#include "phinfer/error.h"

namespace phinfer::model {

KVCacheType parse_kv_cache_type(const std::string& name) {
  if (name == "f32") return KVCacheType::F32;
  if (name == "f16") return KVCacheType::F16;
  if (name == "q8") return KVCacheType::Q8;
  throw Error("KV cache type: expected f32, f16 or q8, found '" + name + "'");
}

const char* kv_cache_type_name(KVCacheType type) {
  switch (type) {
    case KVCacheType::F32: return "f32";
    case KVCacheType::F16: return "f16";
    case KVCacheType::Q8: return "q8";
  }
  return "?";
}

KVCache::KVCache(const ModelConfig& c, KVCacheType t)
    : type(t), layers(c.num_hidden_layers), kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  const auto n = static_cast<size_t>(layers);
  switch (type) {
    case KVCacheType::F32: k.resize(n), v.resize(n); break;
    case KVCacheType::F16: k16.resize(n), v16.resize(n); break;
    case KVCacheType::Q8: k8.resize(n), v8.resize(n), k_scale.resize(n), v_scale.resize(n); break;
  }
}

namespace {
// Copies (or re-lays) the first `length` rows of each head from a [heads][from_cap][row] array
// into a [heads][to_cap][row] one.
template <typename T>
void copy_heads(const std::vector<T>& from, std::vector<T>& to, int64_t heads, int64_t row, int64_t from_cap,
                int64_t to_cap, int64_t length) {
  for (int64_t h = 0; h < heads; ++h)
    std::copy_n(from.data() + h * from_cap * row, length * row, to.data() + h * to_cap * row);
}

template <typename T>
void grow(std::vector<T>& store, int64_t heads, int64_t row, int64_t old_cap, int64_t new_cap, int64_t length) {
  std::vector<T> grown(static_cast<size_t>(heads * new_cap * row));
  copy_heads(store, grown, heads, row, old_cap, new_cap, length);
  store.swap(grown);
}

// Calls f(store, values per position) for every per-layer array of the cache.
template <typename Cache, typename F>
void for_each_store(Cache& c, F&& f) {
  for (auto* s : {&c.k, &c.v})
    for (auto& layer : *s) f(layer, c.head_dim);
  for (auto* s : {&c.k_scale, &c.v_scale})
    for (auto& layer : *s) f(layer, int64_t{1});
  for (auto* s : {&c.k16, &c.v16})
    for (auto& layer : *s) f(layer, c.head_dim);
  for (auto* s : {&c.k8, &c.v8})
    for (auto& layer : *s) f(layer, c.head_dim);
}

void quantize_row(const float* x, int64_t n, int8_t* q, float* scale) {
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  // A non-finite input keeps its NaN in the scale, so the forward pass's non-finite check names it.
  if (!std::isfinite(amax)) {
    *scale = std::numeric_limits<float>::quiet_NaN();
    std::fill_n(q, n, int8_t{0});
    return;
  }
  *scale = amax / 127.0f;
  const float inv = amax > 0 ? 127.0f / amax : 0.0f;
  for (int64_t i = 0; i < n; ++i)
    q[i] = static_cast<int8_t>(std::clamp(std::lrint(x[i] * inv), -127L, 127L));
}

}  // namespace

KVCache::KVCache(const KVCache& o, int64_t n, int64_t cap)
    : type(o.type), layers(o.layers), kv_heads(o.kv_heads), head_dim(o.head_dim), table(o.table) {
  k.resize(o.k.size()), v.resize(o.v.size());
  k16.resize(o.k16.size()), v16.resize(o.v16.size());
  k8.resize(o.k8.size()), v8.resize(o.v8.size());
  k_scale.resize(o.k_scale.size()), v_scale.resize(o.v_scale.size());
  capacity = 0;
  length = 0;
  reserve(std::max<int64_t>(cap, n));
  auto copy = [&](const auto& from, auto& to, int64_t row) {
    for (size_t l = 0; l < from.size(); ++l) copy_heads(from[l], to[l], kv_heads, row, o.capacity, capacity, n);
  };
  copy(o.k, k, head_dim), copy(o.v, v, head_dim);
  copy(o.k16, k16, head_dim), copy(o.v16, v16, head_dim);
  copy(o.k8, k8, head_dim), copy(o.v8, v8, head_dim);
  copy(o.k_scale, k_scale, 1), copy(o.v_scale, v_scale, 1);
  length = n;
}

uint64_t KVCache::bytes_per_position(int64_t layers, int64_t kv_heads, int64_t head_dim, KVCacheType type) {
  const uint64_t rows = 2 * static_cast<uint64_t>(layers) * static_cast<uint64_t>(kv_heads);
  const uint64_t hd = static_cast<uint64_t>(head_dim);
  switch (type) {
    case KVCacheType::F32: return rows * hd * 4;
    case KVCacheType::F16: return rows * hd * 2;
    case KVCacheType::Q8: return rows * (hd + sizeof(float));
  }
  return 0;
}

uint64_t KVCache::bytes_per_position(const ModelConfig& c, KVCacheType type) {
  return bytes_per_position(c.num_hidden_layers, c.num_key_value_heads, c.head_dim, type);
}

void KVCache::reserve(int64_t needed) {
  if (needed <= capacity) return;
  const int64_t cap = needed;
  for_each_store(*this, [&](auto& layer, int64_t row) { grow(layer, kv_heads, row, capacity, cap, length); });
  capacity = cap;
}

void KVCache::store(int layer, int64_t pos, const float* key, const float* value) {
  const auto l = static_cast<size_t>(layer);
  for (int64_t h = 0; h < kv_heads; ++h) {
    const int64_t row = h * capacity + pos, at = row * head_dim;
    const float* kh = key + h * head_dim;
    const float* vh = value + h * head_dim;
    switch (type) {
      case KVCacheType::F32:
        std::copy_n(kh, head_dim, k[l].data() + at);
        std::copy_n(vh, head_dim, v[l].data() + at);
        break;
      case KVCacheType::F16:
        for (int64_t i = 0; i < head_dim; ++i) {
          k16[l][static_cast<size_t>(at + i)] = f32_to_f16(kh[i]);
          v16[l][static_cast<size_t>(at + i)] = f32_to_f16(vh[i]);
        }
        break;
      case KVCacheType::Q8:
        quantize_row(kh, head_dim, k8[l].data() + at, k_scale[l].data() + row);
        quantize_row(vh, head_dim, v8[l].data() + at, v_scale[l].data() + row);
        break;
    }
  }
}

namespace {
template <typename V>
const V& layer_or_empty(const std::vector<V>& layers, size_t l) {
  static const V empty;
  return l < layers.size() ? layers[l] : empty;
}

const float* copy_rows(KVCacheType type, const std::vector<float>& f32, const std::vector<uint16_t>& f16,
                       const std::vector<int8_t>& q8, const std::vector<float>& scales, int64_t row, int64_t count,
                       int64_t hd, float* out) {
  const auto at = static_cast<size_t>(row * hd), n = static_cast<size_t>(count * hd);
  switch (type) {
    case KVCacheType::F32: std::copy_n(f32.begin() + static_cast<ptrdiff_t>(at), n, out); break;
    case KVCacheType::F16:
      for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(f16[at + i]);
      break;
    case KVCacheType::Q8:
      for (size_t i = 0; i < n; ++i) out[i] = scales[static_cast<size_t>(row) + i / static_cast<size_t>(hd)] * static_cast<float>(q8[at + i]);
      break;
  }
  return out;
}
}  // namespace

const float* KVCache::keys(int layer, int64_t head, int64_t pos, int64_t count, float* out) const {
  const auto l = static_cast<size_t>(layer);
  return copy_rows(type, layer_or_empty(k, l), layer_or_empty(k16, l), layer_or_empty(k8, l), layer_or_empty(k_scale, l),
                   head * capacity + pos, count, head_dim, out);
}

const float* KVCache::values(int layer, int64_t head, int64_t pos, int64_t count, float* out) const {
  const auto l = static_cast<size_t>(layer);
  return copy_rows(type, layer_or_empty(v, l), layer_or_empty(v16, l), layer_or_empty(v8, l), layer_or_empty(v_scale, l),
                   head * capacity + pos, count, head_dim, out);
}

namespace {
void prefetch_bytes(const void* p, size_t bytes) {
  const auto* c = static_cast<const char*>(p);
  for (size_t at = 0; at < bytes; at += 64) __builtin_prefetch(c + at);
  if (bytes > 0) __builtin_prefetch(c + bytes - 1);  // the last line when p is not line-aligned
}
}  // namespace

void KVCache::prefetch(Part part, int layer, int64_t head, int64_t pos, int64_t count) const {
  if (count <= 0) return;
  const auto l = static_cast<size_t>(layer);
  const int64_t row = head * capacity + pos, at = row * head_dim;
  const auto n = static_cast<size_t>(count * head_dim);
  const bool keys = part == Part::Keys;
  switch (type) {
    // f16 and q8 blocks stall on memory between their conversions; an f32 cache already streams at the
    // memory's speed, and the prefetch instructions only cost there (measured at 2,100 tokens of context).
    case KVCacheType::F32: return;
    case KVCacheType::F16: return prefetch_bytes((keys ? k16 : v16)[l].data() + at, n * sizeof(uint16_t));
    case KVCacheType::Q8:
      prefetch_bytes((keys ? k8 : v8)[l].data() + at, n);
      prefetch_bytes((keys ? k_scale : v_scale)[l].data() + row, static_cast<size_t>(count) * sizeof(float));
      return;
  }
}

void KVCache::key_scores(int layer, int64_t head, int64_t pos, int64_t count, const float* const* q, int nq,
                         float* const* scores) const {
  const auto l = static_cast<size_t>(layer);
  const int64_t row = head * capacity + pos, at = row * head_dim;
  switch (type) {
    case KVCacheType::F32: return kernels::dot_rows(q, nq, k[l].data() + at, count, head_dim, scores);
    case KVCacheType::F16: return kernels::dot_rows(q, nq, k16[l].data() + at, count, head_dim, scores);
    case KVCacheType::Q8:
      return kernels::dot_rows(q, nq, k8[l].data() + at, k_scale[l].data() + row, count, head_dim, scores);
  }
}

void KVCache::add_weighted_values(int layer, int64_t head, int64_t pos, int64_t count, const float* const* weights,
                                  int nq, float* const* out) const {
  const auto l = static_cast<size_t>(layer);
  const int64_t row = head * capacity + pos, at = row * head_dim;
  switch (type) {
    case KVCacheType::F32: return kernels::axpy_rows(weights, nq, v[l].data() + at, count, head_dim, out);
    case KVCacheType::F16: return kernels::axpy_rows(weights, nq, v16[l].data() + at, count, head_dim, out);
    case KVCacheType::Q8:
      return kernels::axpy_rows(weights, nq, v8[l].data() + at, v_scale[l].data() + row, count, head_dim, out);
  }
}

}  // namespace phinfer::model
