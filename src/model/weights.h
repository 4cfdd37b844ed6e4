#pragma once
// The Phi-3 checkpoint schema and its loading: which tensors a checkpoint holds, and views of them
// as weight matrices over the memory-mapped Hugging Face folder or phinfer model file. The
// converter and the forward pass both build on this; it knows nothing about computing.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "format/native_file.h"
#include "format/safetensors.h"
#include "kernels/matrix.h"
#include "kernels/quant.h"
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

// How a GGUF file's matrices are held for the kernels.
enum class GgufWeights {
  Native,      // in the kernels' formats, at the file's precision: F32/F16/BF16 in place; Q8_0
               // (int8 group 16: each block's scale twice, so activations are quantized per 16),
               // Q4_0, Q4_1 (int4 group 32), Q5_0, Q5_1 (int8 group 32) repacked losslessly; Q4_K
               // and Q5_K into int4/int8 group 32 asymmetric and Q6_K into int8 group 16, codes
               // kept, each sub-block's scale (and minimum) d*sc rounded to fp16
  Dequantize,  // exact: every quantized matrix dequantized to fp32 (F16/BF16 stay in place)
};

// The config and every weight of a checkpoint, viewed in place (the mapping lives as long as this).
class LoadedWeights {
 public:
  // A Hugging Face checkpoint folder, a phinfer model file or a GGUF file (held as `gguf` says);
  // validates names, shapes and formats.
  static LoadedWeights open(const std::filesystem::path& path, GgufWeights gguf = GgufWeights::Native);

  const std::filesystem::path& path() const { return path_; }
  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  // The metadata of a phinfer model file (tokenizer, generation config, ...); null for HF folders.
  const nlohmann::json& native_metadata() const;
  // The GGUF file the weights came from (its tokenizer metadata); null for other sources.
  const format::GgufFile* gguf() const { return gguf_.get(); }
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
  std::optional<format::NativeFile> native_;   // of a phinfer model file, or
  std::shared_ptr<const format::GgufFile> gguf_;  // of a GGUF file,
  std::vector<kernels::AlignedBytes> owned_;   // with the matrices it does not hold as stored
  ModelWeights weights_;
};

}  // namespace phinfer::model
