#pragma once
// The Phi3ForCausalLM forward pass (Hugging Face semantics), fp32 compute over weights kept in
// their stored format, over a batch of rows from many sequences at once.
//
// Batch invariance: every row's result depends only on its own sequence (its tokens and KV cache),
// never on the other rows of the call, on how a prompt was cut into chunks, or on the thread
// count. Matrix products compute each (row, output) in a fixed order (kernels/matrix.h), RMSNorm
// and RoPE are per row, and attention visits a row's keys in blocks aligned to absolute positions.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "kernels/thread_pool.h"
#include "model/batch.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "phinfer/config.h"

namespace phinfer::model {

// The sliding-window setting a user can override: auto = as config.json declares.
struct SlidingWindow {
  enum class Mode { Auto, Off, Fixed } mode = Mode::Auto;
  int64_t size = 0;  // for Fixed
  static SlidingWindow parse(const std::string& text);  // "auto", "off" or a positive integer
  // The keys a position sees for this model (nullopt: all earlier ones).
  std::optional<int64_t> resolve(const ModelConfig& config) const;
};

// Buffers of one forward call, sized for up to max_rows rows and max_logit_rows logit rows;
// allocated once per engine and reused, so steady-state decode allocates nothing.
struct Activations {
  Activations(const ModelConfig& config, int64_t max_rows, int64_t max_logit_rows);
  // Grows the buffers when a call needs more (never in steady state).
  void ensure(const ModelConfig& config, int64_t rows, int64_t logit_rows);

  struct AttentionJob {
    int32_t seq;
    int32_t kv_head;
    int64_t first_row;  // relative to the sequence's rows
  };
  int64_t max_rows = 0, max_logit_rows = 0;
  std::vector<float> x, xn, qkv, att, gate_up, act, tmp, selected, logits;
  std::vector<float> rope_cos, rope_sin;  // [rows, rotary_dim / 2]
  std::vector<AttentionJob> jobs;
};

// Throws phinfer::Error naming the first id outside [0, vocab_size).
void check_token_ids(std::span<const int32_t> ids, int64_t vocab_size);

class Phi3Model {
 public:
  // Loads and validates the config and every tensor of a Hugging Face checkpoint folder or a
  // phinfer model file (memory-mapped either way).
  static std::unique_ptr<Phi3Model> load(const std::filesystem::path& path, SlidingWindow window = {});
  Phi3Model(LoadedWeights weights, SlidingWindow window);

  const ModelConfig& config() const { return loaded_.config(); }
  const ModelWeights& weights() const { return loaded_.weights(); }
  const LoadedWeights& loaded() const { return loaded_; }
  const nlohmann::json& native_metadata() const { return loaded_.native_metadata(); }
  // Bytes of weights one decode step reads (every layer matrix and lm_head).
  uint64_t weight_bytes_per_token() const;
  std::optional<int64_t> sliding_window() const { return window_; }
  // The table HF uses for a forward call whose highest position is total_length - 1.
  RopeTable table_for_length(int64_t total_length) const;
  KVCache new_cache(KVCacheType type = KVCacheType::F32) const { return KVCache(config(), type); }
  // The RoPE cos/sin ([rotary_dim / 2] each, attention factor applied) of one position: what the
  // forward pass rotates with, for backends that rotate on a device.
  void rope_row(RopeTable table, int64_t position, float* cos, float* sin) const;

  // Runs every row of the batch, appends each row's keys/values to its sequence's cache, and
  // writes logits [batch.logit_rows.size(), vocab] into acts.logits. A sequence whose cache was
  // built with another RopeTable than its row's must be recomputed from position 0 by the caller
  // (the LongRoPE crossing). Throws phinfer::Error on invalid ids or a non-finite value (naming
  // the tensor at fault when one is, else the position).
  void forward(const ForwardBatch& batch, Activations& acts, kernels::ThreadPool& pool) const;

 private:
  void attention(const ForwardBatch& batch, Activations& acts, int layer, kernels::ThreadPool& pool) const;
  void rope_tables(const ForwardBatch& batch, Activations& acts) const;
  // Rotates the first n_heads heads of one row (batch row t) in place.
  void apply_rope(float* row, const Activations& acts, int64_t t, int64_t n_heads) const;
  [[noreturn]] void non_finite(const ForwardBatch& batch, int64_t layer, int64_t row, const char* what) const;

  LoadedWeights loaded_;
  std::optional<int64_t> window_;
  std::vector<double> inv_freq_short_, inv_freq_long_;
  double attention_factor_ = 1.0;
};

}  // namespace phinfer::model
