#pragma once
// Random-weight Phi-3 / Phi-4-mini checkpoints in exactly the Hugging Face layout (config.json,
// generation_config.json, model.safetensors or model-0000K-of-0000N.safetensors +
// model.safetensors.index.json, and the tokenizer files), for demos, tests and benchmarks without
// downloading a model. Weights are streamed to disk in small chunks, so even the 14B-parameter
// "medium" preset is written with a few MB of memory.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "phinfer/config.h"

namespace phinfer::synthetic {

struct Options {
  std::string preset = "tiny";       // a name of presets() (see preset_config)
  std::filesystem::path out;         // created if missing
  uint64_t seed = 0;
  DType dtype = DType::BF16;         // F32, F16 or BF16
  // Largest shard in bytes of tensor data, as transformers' max_shard_size; 0 = the preset's
  // default (the real shapes: 5 GB like the real checkpoints; tiny ones: one model.safetensors).
  uint64_t max_shard_bytes = 0;
  int threads = 0;                   // for generating the numbers; <= 0: physical cores
  std::function<void(double)> progress;  // fraction of tensor bytes written, 0..1 (main thread)
};

// The tokenizer files a preset is written with.
enum class TokenizerFormat {
  Phi3,  // Phi-3 / Phi-3.5: Llama SentencePiece BPE with byte fallback, vocabulary 32064
  Phi4,  // Phi-4-mini: GPT-4o style byte-level BPE, vocabulary 200064
};

struct PresetInfo {
  std::string name;
  std::string description;  // one line, for --help
  TokenizerFormat tokenizer;
  uint64_t default_max_shard_bytes;  // 0: one model.safetensors
};
// Every preset, in the order --help lists them.
const std::vector<PresetInfo>& presets();
std::vector<std::string> preset_names();
const PresetInfo& preset_info(const std::string& preset);  // throws phinfer::Error if unknown

// The model shape of a preset; throws phinfer::Error for an unknown name (listing the valid ones).
//   tiny:      Phi-3 vocabulary and token ids, hidden 256, intermediate 512, 4 layers, 8 heads / 4
//              kv heads (GQA); 18,778,368 parameters.
//   mini:      microsoft/Phi-3-mini-4k-instruct (3072 hidden, 8192 intermediate, 32 layers, 32
//              heads, 32 kv heads, vocab 32064; 3,821,079,552 parameters).
//   medium:    microsoft/Phi-3-medium-4k-instruct (5120 hidden, 17920 intermediate, 40 layers, 40
//              heads / 10 kv heads, head_dim 128, vocab 32064; 13,960,238,080 parameters).
//   phi4-mini: microsoft/Phi-4-mini-instruct's config.json (3072 hidden, 8192 intermediate, 32
//              layers, 24 heads / 8 kv heads, head_dim 128, partial rotary 0.75, LongRoPE,
//              vocab 200064, tied embeddings; 3,836,021,760 parameters).
//   phi4-tiny: the Phi-4-mini structure (tokenizer, tied embeddings, partial rotary, LongRoPE,
//              GQA) at hidden 256, intermediate 512, 4 layers, 8 heads / 2 kv heads; 53,446,912
//              parameters (mostly the 200064-row embedding).
ModelConfig preset_config(const std::string& preset);

// "f32"/"float32", "f16"/"float16", "bf16"/"bfloat16" -> DType; throws phinfer::Error otherwise.
DType parse_dtype(const std::string& text);
std::string torch_dtype_name(DType dtype);  // "bfloat16", "float16", "float32"

// One tensor of the checkpoint and how its values are drawn.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  float std = 0.0f;  // normal(0, std); 0 = all ones (RMSNorm weights)
  int64_t numel() const;
};

// Every tensor, in the order transformers' state_dict lists them (which decides the sharding).
// Standard deviations: 0.02, except qkv_proj sqrt(0.6 / hidden) (attention is not uniform) and
// lm_head 5 / sqrt(hidden) (logits of std ~5: a peaked next-token distribution like a trained
// model's); for tiny that is 0.048 and 0.31.
// With tied embeddings (the Phi-4 presets: no lm_head.weight) the last hidden state holds the input
// token's own embedding e, and e.e is large: a random tied model just repeats its input token unless
// the layers' writes to the residual stream outweigh e. So there: embed_tokens 3 / sqrt(hidden)
// (logits of std ~3), o_proj 2 / sqrt(q_dim), gate_up_proj 1 / sqrt(hidden), down_proj
// 2 / sqrt(intermediate) (each layer adds a few units of RMS whatever the width; qkv_proj as above).
std::vector<TensorSpec> tensor_specs(const ModelConfig& config);
uint64_t parameter_count(const ModelConfig& config);

// How the tensors are split into files, as transformers does it: in state_dict order, a new shard
// starts when the next tensor would push the current one past max_shard_bytes. One shard is named
// model.safetensors (no index); several are model-00001-of-0000N.safetensors, ...
struct ShardPlan {
  struct Shard {
    std::string file;
    std::vector<size_t> tensors;  // indices into the spec list, sorted by tensor name (file order)
    uint64_t bytes = 0;           // tensor data bytes
  };
  std::vector<Shard> shards;
  uint64_t total_bytes = 0;
};
ShardPlan plan_shards(const std::vector<TensorSpec>& specs, DType dtype, uint64_t max_shard_bytes);

// The values of one tensor, elements [first, first + count), as float: a pure function of
// (seed, name, index), so they do not depend on the order or chunking in which they are written.
void generate_values(const TensorSpec& spec, uint64_t seed, uint64_t first, size_t count, float* out);

// Writes the whole checkpoint folder. Files of an earlier checkpoint in `out`
// (model.safetensors, model-*-of-*.safetensors, model.safetensors.index.json, and vocab.json /
// merges.txt, which only the Phi-4 tokenizer has) are removed first so that the folder never mixes
// two models.
void write_checkpoint(const Options& options);
// The same without the weights: config.json, generation_config.json and the tokenizer files (for
// tests and for inspecting a preset; no model loads from it).
void write_metadata_files(const Options& options);

// --- tokenizer files (synthetic/tokenizer_files.cpp) ---

// tokenizer.json, tokenizer_config.json, special_tokens_map.json, added_tokens.json in the Phi-3
// format (Llama SentencePiece BPE with byte fallback; <s> = 1, <|endoftext|> = 32000,
// <|assistant|> = 32001, <|end|> = 32007, <|user|> = 32010, ...). The pieces are learned by BPE
// over a built-in English text; independent of the weights' seed.
void write_tokenizer_files(const std::filesystem::path& dir);

// tokenizer.json, vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json,
// added_tokens.json in the Phi-4-mini-instruct format: byte-level BPE (GPT-4o's o200k split
// pattern, ByteLevel pre-tokenizer and decoder, no normalizer, no post-processor so no BOS), the
// 256 byte characters at ids 0..255, merges learned over the built-in text, filler up to id 199998,
// then <|endoftext|> = 199999, <|endofprompt|> = 200018 and the added tokens <|assistant|> = 200019,
// <|end|> = 200020, <|user|> = 200021, <|system|> = 200022, tool tokens 200023..200027, <|tag|> =
// 200028 with the real flags; the Phi-4-mini chat template (no newlines).
void write_phi4_tokenizer_files(const std::filesystem::path& dir);

struct BpeVocabulary {
  std::vector<std::string> pieces;  // id -> piece: the base vocabulary (Phi-3: ids 0..31999)
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  size_t learned = 0;  // pieces reached by merges or single characters (the rest is filler)
};
// Trains num_merges merges (fewer if the text runs out) over `text`, SentencePiece style: spaces
// become "▁" and start a piece; letters, digits and punctuation are never merged with each other.
// Each line is a sentence with the "▁" prefix; digits stay single, as in Llama's vocabulary;
// characters other than printable ASCII are left to byte fallback.
// Ids: <unk>, <s>, </s>, <0x00>..<0xFF>, learned merges, single characters ("▁" and all printable
// ASCII), then filler pieces that no merge reaches (pairs of the text's words, so a random model's
// output still decodes to words) up to `vocab_size` entries: the vocabulary is dense like Phi-3's,
// so any tokenizer.json reader keeps the added tokens at 32000.. .
BpeVocabulary train_bpe(std::string_view text, size_t num_merges, size_t vocab_size = 32000);
// The byte-level (GPT-4o style) counterpart: `text` is pre-tokenized by the o200k pattern and
// mapped to GPT-2's byte characters, as the written tokenizer.json does; pieces are the 256 byte
// characters (ids 0..255, GPT-2 order), the learned merges, then filler pieces (pairs of the
// text's words) up to `vocab_size` entries (Phi-4-mini: 199999, so <|endoftext|> keeps 199999).
BpeVocabulary train_byte_level_bpe(std::string_view text, size_t num_merges, size_t vocab_size = 199999);
std::string_view builtin_corpus();

}  // namespace phinfer::synthetic
