#pragma once
// Model and generation settings read from a Hugging Face checkpoint folder (config.json,
// generation_config.json), with every Phi-3-family field validated.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "phinfer/export.h"

namespace phinfer {

// LongRoPE ("longrope", or its older name "su"): per-frequency rescaling factors, a short table used
// while the sequence fits the original context and a long table beyond, plus an attention factor.
struct LongRopeScaling {
  std::vector<float> short_factor;
  std::vector<float> long_factor;
  double attention_factor = 1.0;  // multiplies cos and sin (so q and k)
};

struct PHINFER_API ModelConfig {
  std::string model_type = "phi3";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;               // hidden_size / num_attention_heads unless given
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  double partial_rotary_factor = 1.0;
  int64_t max_position_embeddings = 4096;
  int64_t original_max_position_embeddings = 4096;
  std::optional<int64_t> sliding_window;  // keys i-j < W are visible; nullopt = no window
  bool tie_word_embeddings = false;
  std::optional<LongRopeScaling> rope_scaling;
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;
  std::optional<int32_t> pad_token_id;
  std::string torch_dtype;

  int64_t rotary_dim() const;  // head_dim * partial_rotary_factor (even)
  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }

  static ModelConfig from_json(const nlohmann::json& j, const std::string& source_name);
  static ModelConfig from_file(const std::filesystem::path& config_json);
  nlohmann::json to_json() const;
};

// Defaults a checkpoint ships in generation_config.json (all optional).
struct PHINFER_API GenerationDefaults {
  std::vector<int32_t> eos_token_ids;
  std::optional<int32_t> bos_token_id;
  std::optional<int32_t> pad_token_id;
  std::optional<bool> do_sample;
  std::optional<double> temperature;
  std::optional<int64_t> top_k;
  std::optional<double> top_p;
  std::optional<int64_t> max_new_tokens;

  // Missing file => empty defaults; malformed file => phinfer::Error.
  static GenerationDefaults from_file(const std::filesystem::path& generation_config_json);
  static GenerationDefaults from_json(const nlohmann::json& j, const std::string& source_name);
};

}  // namespace phinfer
