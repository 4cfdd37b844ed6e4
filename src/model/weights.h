#pragma once
// The Phi-3 checkpoint schema and its loading: which tensors a checkpoint holds, and views of them
// as weight matrices over the memory-mapped Hugging Face folder or phinfer model file. The
// converter and the forward pass both build on this; it knows nothing about computing.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "format/native_file.h"
#include "format/safetensors.h"
#include "kernels/matrix.h"
#include "phinfer/config.h"

namespace phinfer::model {

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

// The config and every weight of a checkpoint, viewed in place (the mapping lives as long as this).
class LoadedWeights {
 public:
  // A Hugging Face checkpoint folder or a phinfer model file; validates names, shapes and formats.
  static LoadedWeights open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  // The metadata of a phinfer model file (tokenizer, generation config, ...); null for HF folders.
  const nlohmann::json& native_metadata() const;
  // The checkpoint name of a layer matrix or norm, for error messages ("model.layers.3.mlp.down_proj.weight").
  static std::string layer_tensor_name(int64_t layer, const char* field);
  // Throws naming the first tensor of `layer` (-1: embedding, lm_head, final norm) that holds a
  // NaN or infinity after dequantization; returns normally when all are finite. Reads every weight
  // of the layer: called only once a forward pass has seen a non-finite value.
  void check_finite(int64_t layer) const;

 private:
  std::filesystem::path path_;
  ModelConfig config_;
  format::SafetensorsCheckpoint checkpoint_;  // weights of a Hugging Face folder, or
  std::optional<format::NativeFile> native_;   // of a phinfer model file
  ModelWeights weights_;
};

}  // namespace phinfer::model
