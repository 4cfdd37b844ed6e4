#pragma once
// The keys and values of one token stream, per layer laid out [kv head][capacity][head_dim] (one
// head's keys are contiguous: attention streams them), in one of three precisions:
//   f32: exact.
//   f16: IEEE half per value (half the memory).
//   q8:  per (layer, kv head, position) row of head_dim values: int8 codes q[i] and one fp32 scale s,
//        value = s * q[i], s = max|x| / 127, q[i] = round(x[i] / s) (symmetric, no zero point); a
//        quarter of f32's memory plus 4 bytes per row. Scales live in their own [kv head][capacity]
//        array per layer, beside the codes.
#include <cstdint>
#include <string>
#include <vector>

#include "phinfer/config.h"

namespace phinfer::model {

// Which LongRoPE frequency table a forward call uses (always Short without LongRoPE).
enum class RopeTable { Short, Long };

enum class KVCacheType { F32, F16, Q8 };
// "f32", "f16" or "q8"; throws phinfer::Error naming the accepted names for anything else.
KVCacheType parse_kv_cache_type(const std::string& name);
const char* kv_cache_type_name(KVCacheType type);

struct KVCache {
  KVCacheType type = KVCacheType::F32;
  int64_t layers = 0, kv_heads = 0, head_dim = 0;
  std::vector<std::vector<float>> k, v;          // f32
  std::vector<std::vector<uint16_t>> k16, v16;   // f16
  std::vector<std::vector<int8_t>> k8, v8;       // q8 codes
  std::vector<std::vector<float>> k_scale, v_scale;  // q8 scales, [kv head][capacity]
  int64_t length = 0;    // positions [0, length) hold keys and values
  int64_t capacity = 0;  // positions with memory
  RopeTable table = RopeTable::Short;  // the table the cached keys were rotated with

  KVCache() = default;
  KVCache(const ModelConfig& config, KVCacheType type);
  // A copy of the first `length` positions of `other`, with room for `capacity` positions.
  KVCache(const KVCache& other, int64_t length, int64_t capacity);
  // Bytes of keys and values one position takes over all layers.
  static uint64_t bytes_per_position(const ModelConfig& config, KVCacheType type);
  uint64_t bytes() const {
    return static_cast<uint64_t>(capacity) * bytes_per_position(layers, kv_heads, head_dim, type);
  }

  // Room for exactly `positions` tokens (when it has less); growing keeps the first `length` positions.
  void reserve(int64_t positions);
  // Forgets every position (keeps the memory).
  void clear() { length = 0; table = RopeTable::Short; }
  // key and value: [kv_heads * head_dim] of one position.
  void store(int layer, int64_t pos, const float* key, const float* value);
  // Attention of nq (<= kernels::kMaxQueryRows) queries over positions [pos, pos + count) of one kv
  // head (count <= kernels::kMaxConvertedRows), read in the cache's precision, each key and value once
  // for all nq queries (kernels::dot_rows / axpy_rows: the same bits as on fp32 copies of the cached
  // values, and as one query at a time):
  //   scores[i][j] = dot(q[i], key[pos + j]);   out[i] += sum_j weights[i][j] * value[pos + j], in order of j.
  void key_scores(int layer, int64_t head, int64_t pos, int64_t count, const float* const* q, int nq,
                  float* const* scores) const;
  void add_weighted_values(int layer, int64_t head, int64_t pos, int64_t count, const float* const* weights, int nq,
                           float* const* out) const;
  // Asks the memory system for the keys or the values (and their q8 scales) of positions [pos, pos + count)
  // of one kv head ahead of their use: in decode, attention streams the cache from DRAM one block
  // at a time, and the next block's lines then arrive while the current one computes. f16 and q8
  // caches only (an f32 cache measured slower with it).
  enum class Part { Keys, Values };
  void prefetch(Part part, int layer, int64_t head, int64_t pos, int64_t count) const;
  // fp32 copies of positions [pos, pos + count) of one kv head (count * head_dim floats into out;
  // returns out): what attention reads, for inspection.
  const float* keys(int layer, int64_t head, int64_t pos, int64_t count, float* out) const;
  const float* values(int layer, int64_t head, int64_t pos, int64_t count, float* out) const;

 private:
  static uint64_t bytes_per_position(int64_t layers, int64_t kv_heads, int64_t head_dim, KVCacheType type);
};

}  // namespace phinfer::model
