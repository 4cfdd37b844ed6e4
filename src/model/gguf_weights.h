#pragma once
// A GGUF file (llama.cpp architecture "phi3": Phi-3/3.5-mini and -medium, Phi-4-mini) as a Phi-3
// checkpoint: the config from its metadata, and each tensor of the schema (model/weights.h) from
// the GGUF tensor holding it. The names map one to one (no rows permuted; qkv and gate+up are fused
// in both layouts):
//   token_embd -> model.embed_tokens        output -> lm_head (absent: tied embeddings)
//   output_norm -> model.norm               blk.N.attn_norm -> model.layers.N.input_layernorm
//   blk.N.attn_qkv -> ...self_attn.qkv_proj blk.N.attn_output -> ...self_attn.o_proj
//   blk.N.ffn_norm -> ...post_attention_layernorm
//   blk.N.ffn_up -> ...mlp.gate_up_proj     blk.N.ffn_down -> ...mlp.down_proj
//   rope_factors_short / rope_factors_long -> rope_scaling short_factor / long_factor
#include <string>
#include <vector>

#include "format/gguf.h"
#include "kernels/quant.h"
#include "model/weights.h"
#include "phinfer/config.h"

namespace phinfer::model {

// The validated config a GGUF file's metadata describes (through ModelConfig::from_json, so the
// same bounds apply as to a config.json); throws phinfer::Error naming the key at fault.
ModelConfig config_from_gguf(const format::GgufFile& f);
// bos / eos / pad ids of the tokenizer metadata, as generation_config.json would give them.
GenerationDefaults generation_defaults_from_gguf(const format::GgufFile& f);

// The GGUF name of a schema tensor ("model.layers.3.mlp.down_proj.weight" -> "blk.3.ffn_down.weight").
std::string gguf_tensor_name(const std::string& checkpoint_name);
// The GGUF tensor of a schema tensor, present, of a type this importer reads and of the expected shape.
const format::GgufTensor& require_gguf_tensor(const format::GgufFile& f, const TensorSpec& spec);
// Its values dequantized exactly to fp32 (row-major [rows, cols]).
std::vector<float> gguf_tensor_f32(const format::GgufFile& f, const TensorSpec& spec);


// The weight matrix of a schema tensor; `storage` receives the bytes when they are not the file's.
kernels::WeightMatrix gguf_matrix(const format::GgufFile& f, const TensorSpec& spec, GgufWeights mode,
                                  std::vector<kernels::AlignedBytes>& storage);

}  // namespace phinfer::model
