#pragma once
// The Phi3ForCausalLM forward pass (Hugging Face semantics), fp32 compute over weights kept in
// their stored format. A Sequence owns the KV cache of one conversation.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "format/native_file.h"
#include "format/safetensors.h"
#include "kernels/matrix.h"
#include "kernels/thread_pool.h"
#include "phinfer/config.h"

namespace phinfer::model {

// Which LongRoPE frequency table a forward call uses (always Short without LongRoPE).
enum class RopeTable { Short, Long };

struct LayerWeights {
  kernels::WeightMatrix qkv_proj;      // [q_dim + 2 kv_dim, hidden]: q, k, v
  kernels::WeightMatrix o_proj;        // [hidden, q_dim]
  kernels::WeightMatrix gate_up_proj;  // [2 intermediate, hidden]: gate, up
  kernels::WeightMatrix down_proj;     // [hidden, intermediate]
  std::vector<float> input_norm;       // [hidden]
  std::vector<float> post_attention_norm;
};

struct ModelWeights {
  kernels::WeightMatrix embed_tokens;  // [vocab, hidden]
  kernels::WeightMatrix lm_head;       // [vocab, hidden]; the embedding when tied
  std::vector<float> final_norm;
  std::vector<LayerWeights> layers;
};

// Every tensor a Phi-3 checkpoint holds, as the loader requires it.
struct TensorSpec {
  enum class Kind { Embedding, Linear, Norm, LmHead } kind;
  std::string name;
  std::vector<int64_t> shape;
};
// In file order of a transformers state_dict; lm_head only when embeddings are not tied.
std::vector<TensorSpec> expected_tensors(const ModelConfig& config);

// A float (F32/F16/BF16) safetensors tensor as a weight matrix viewing its bytes; 1-D tensors are one row.
kernels::WeightMatrix as_matrix(const format::TensorView& t);
// Every element of a matrix as fp32, row-major (exact for float formats, dequantized otherwise).
std::vector<float> to_f32(const kernels::WeightMatrix& m);

// The sliding-window setting a user can override: auto = as config.json declares.
struct SlidingWindow {
  enum class Mode { Auto, Off, Fixed } mode = Mode::Auto;
  int64_t size = 0;  // for Fixed
  static SlidingWindow parse(const std::string& text);  // "auto", "off" or a positive integer
};

class Phi3Model {
 public:
  // Loads and validates the config and every tensor of a Hugging Face checkpoint folder or a
  // phinfer model file (memory-mapped either way).
  static std::unique_ptr<Phi3Model> load(const std::filesystem::path& path, SlidingWindow window = {});
  // Bytes of weights one decode step reads (every layer matrix and lm_head).
  uint64_t weight_bytes_per_token() const;
  const ModelWeights& weights() const { return weights_; }
  // The metadata of a phinfer model file (tokenizer, generation config, ...); null for HF folders.
  const nlohmann::json& native_metadata() const;
  // fp16 halves the KV cache's memory; fp32 (the default) keeps results exact.
  void set_kv_cache_f16(bool f16) { kv_f16_ = f16; }

  const ModelConfig& config() const { return config_; }
  std::optional<int64_t> sliding_window() const { return window_; }
  // The table HF uses for a forward call whose highest position is total_length - 1.
  RopeTable table_for_length(int64_t total_length) const;

  // Keys and values of every processed position, per layer laid out [kv head][capacity][head_dim]
  // (one head's keys are contiguous: attention streams them), in fp32 or fp16.
  struct KVCache {
    bool f16 = false;
    int64_t kv_heads = 0, head_dim = 0;
    std::vector<std::vector<float>> k, v;
    std::vector<std::vector<uint16_t>> k16, v16;
    int64_t length = 0;
    int64_t capacity = 0;
    RopeTable table = RopeTable::Short;

    // Room for `positions` tokens; growing keeps the first `length` positions.
    void reserve(int64_t positions);
    // key and value: [kv_heads * head_dim] of one position.
    void store(int layer, int64_t pos, const float* key, const float* value);
    // Positions [pos, pos + count) of one kv head as fp32 rows of head_dim (a pointer into the
    // cache for fp32, else converted into `scratch`).
    const float* keys(int layer, int64_t head, int64_t pos, int64_t count, std::vector<float>& scratch) const;
    const float* values(int layer, int64_t head, int64_t pos, int64_t count, std::vector<float>& scratch) const;
  };
  KVCache new_cache() const;

  // Runs tokens at positions [cache.length, cache.length + n) with the given table, appends their
  // keys/values to the cache, and writes logits [logit_rows.size(), vocab] for the requested rows
  // (indices into `tokens`).
  void forward(std::span<const int32_t> tokens, KVCache& cache, RopeTable table, std::span<const int64_t> logit_rows,
               float* logits, kernels::ThreadPool& pool) const;

 private:
  Phi3Model() = default;
  void attention(const float* q, const KVCache& cache, int layer, int64_t n, int64_t pos0, float* out,
                 kernels::ThreadPool& pool) const;
  void apply_rope(float* qk, int64_t n, int64_t pos0, int64_t stride, int64_t n_heads, RopeTable table) const;

  ModelConfig config_;
  std::optional<int64_t> window_;
  std::vector<double> inv_freq_short_, inv_freq_long_;
  double attention_factor_ = 1.0;
  bool kv_f16_ = false;
  format::SafetensorsCheckpoint checkpoint_;   // weights of a Hugging Face folder, or
  std::optional<format::NativeFile> native_;    // of a phinfer model file
  ModelWeights weights_;
};

// One token stream with its KV cache. Handles the LongRoPE crossing like transformers: when the
// sequence first grows past original_max_position_embeddings, the cache (built with the short
// table) is dropped and the whole sequence is recomputed with the long table.
class Sequence {
 public:
  Sequence(const Phi3Model& model, kernels::ThreadPool& pool);

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

 private:
  const Phi3Model* model_;
  kernels::ThreadPool* pool_;
  Phi3Model::KVCache cache_;
  std::vector<int32_t> tokens_;
  std::vector<float> last_logits_;
  int64_t recomputations_ = 0;
};

}  // namespace phinfer::model
