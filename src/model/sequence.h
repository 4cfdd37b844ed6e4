#pragma once
// One token stream with its KV cache, driven by single-sequence forward calls: the simplest client
// of the forward pass (logits of a prompt, perplexity, the pull-style Generator). Handles the
// LongRoPE crossing like transformers: when the sequence first grows past
// original_max_position_embeddings, the cache (built with the short table) is dropped and the whole
// sequence is recomputed with the long table.
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/thread_pool.h"
#include "model/phi3.h"

namespace phinfer::model {

class Sequence {
 public:
  Sequence(const Phi3Model& model, kernels::ThreadPool& pool, KVCacheType kv_type = KVCacheType::F32);

  // Appends tokens and returns the logits of the last one ([vocab]). planned_length: the length the
  // sequence will reach in this prefill when it is fed in chunks, so every chunk uses the LongRoPE
  // table of the whole prompt (as one call would).
  const std::vector<float>& append(std::span<const int32_t> tokens, int64_t planned_length = 0);
  // Appends tokens and returns logits for each requested row of `tokens` ([rows, vocab]).
  std::vector<float> append_with_logits(std::span<const int32_t> tokens, std::span<const int64_t> rows,
                                        int64_t planned_length = 0);

  const std::vector<int32_t>& tokens() const { return tokens_; }
  int64_t recomputations() const { return recomputations_; }  // LongRoPE crossings handled
  void reset();
  // Forgets everything after the first n tokens (their cached keys/values are overwritten later).
  void truncate(size_t n);
  // Makes room for n tokens at once (avoids growing the cache while generating).
  void reserve(int64_t n) { cache_.reserve(n); }
  const KVCache& cache() const { return cache_; }

 private:
  // Runs tokens (appended to the cache) and leaves the logits of `rows` in acts_.logits.
  void run(std::span<const int32_t> tokens, std::span<const int64_t> rows, int64_t planned_length);

  const Phi3Model* model_;
  kernels::ThreadPool* pool_;
  KVCache cache_;
  Activations acts_;
  ForwardBatch batch_;
  std::vector<int32_t> tokens_;
  std::vector<int32_t> recompute_;
  std::vector<int64_t> shifted_;
  std::vector<float> last_logits_;
  int64_t recomputations_ = 0;
};

}  // namespace phinfer::model
