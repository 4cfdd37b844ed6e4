#pragma once
// The public entry point: load a checkpoint folder once, then tokenize, format chats and generate.
// Shaped like OpenVINO GenAI's LLMPipeline + GenerationConfig + streamer.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "phinfer/chat_template.h"
#include "phinfer/config.h"
#include "phinfer/convert.h"
#include "phinfer/export.h"
#include "phinfer/grammar.h"
#include "phinfer/tokenizer.h"

namespace phinfer {

struct GenerationConfig {
  int64_t max_new_tokens = 256;
  bool do_sample = false;         // false: greedy (argmax, lowest id on ties)
  double temperature = 1.0;       // Hugging Face defaults
  int64_t top_k = 50;             // 0 disables
  double top_p = 1.0;             // 1 disables
  double min_p = 0.0;             // 0 disables
  double repetition_penalty = 1.0;  // 1 disables; applies to greedy decoding too
  // OpenAI's additive penalties over the generated tokens: logit -= frequency_penalty * count +
  // presence_penalty * (count > 0); in [-2, 2]; applied after the repetition penalty, greedy too.
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  // Report each generated token's log-probability (log-softmax of the model's logits, before any
  // penalty or temperature) and the top_logprobs most likely alternatives (0..20).
  bool logprobs = false;
  int top_logprobs = 0;
  uint64_t seed = 0;              // the same seed gives the same text
  bool return_full_text = false;  // result text includes the prompt text
  bool skip_prompt = true;        // the streamer does not receive the prompt text
  bool skip_special_tokens = true;
  // Extra stop ids; the checkpoint's eos ids (generation_config.json, config.json) and <|end|> always stop.
  std::vector<int32_t> extra_eos_token_ids;
  bool ignore_eos = false;        // generate max_new_tokens whatever comes (benchmarks)
  // Set from another thread or a signal handler to stop: checked between prefill chunks and tokens
  // (finish_reason "stopped"), so a long prompt can be interrupted too.
  const std::atomic<bool>* cancel = nullptr;
  // Stop when the generated text contains one of these (matched across token boundaries); the stop
  // text itself is neither streamed nor returned.
  std::vector<std::string> stop_strings;
  // The generated text must match this grammar (phinfer/grammar.h), in Pipeline::generate and the
  // Engine (a Generator refuses it); ignore_eos cannot be combined.
  std::optional<Grammar> grammar;
  // Speculative decoding: each step guesses up to this many next tokens and the model checks them
  // in one forward pass. The guesses come from the pipeline's draft model when it has one
  // (PipelineOptions::draft_model: drawn from its distribution, accepted by the speculative
  // sampling rule), else from prompt lookup (what followed the last place the latest tokens
  // occurred before, in the prompt or the output). Greedy output is exactly plain decoding's;
  // sampled output follows the same distribution (the draws differ). 0: off.
  int draft_tokens = 0;
};

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t reused_prompt_tokens = 0;  // prompt tokens whose KV cache was kept from an earlier call
  int64_t generated_tokens = 0;
  double ttft_ms = 0;              // prompt processing + first token
  double decode_tokens_per_s = 0;  // tokens after the first / their time
  std::vector<double> per_token_ms;
  int64_t draft_tokens = 0;           // speculative decoding: tokens guessed and checked
  int64_t accepted_draft_tokens = 0;  // of those, the ones the model agreed with
};

struct TopLogprob {
  int32_t id = 0;
  float logprob = 0;
};

struct TokenLogprobs {
  int32_t id = 0;
  float logprob = 0;
  std::vector<TopLogprob> top;  // most likely first
};

struct GenerationResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;  // generated ids, including the eos that stopped it
  std::string text;
  std::string finish_reason;        // "eos", "stop" (a stop string), "length", "stopped" (the streamer, the cancel
                                    // flag or Engine::cancel asked), or "error" (an Engine request that failed)
  std::string error;                // with "error": what went wrong (Pipeline::generate throws it instead)
  std::vector<TokenLogprobs> logprobs;  // one per output id, when GenerationConfig::logprobs
  GenerationStats stats;
};

// Receives text as soon as it is final (never a broken UTF-8 sequence); return false to stop.
using Streamer = std::function<bool(std::string_view text)>;

// The KV cache of one token stream, kept between generate calls so a conversation's next turn only
// processes its new tokens. Opaque; one per conversation; used by one call at a time.
class PHINFER_API KVState {
 public:
  KVState();
  ~KVState();
  KVState(KVState&&) noexcept;
  KVState& operator=(KVState&&) noexcept;
  const std::vector<int32_t>& tokens() const;  // the tokens whose keys/values are cached
  void clear();

  struct PHINFER_HIDDEN Impl;
  std::unique_ptr<Impl> impl;
};

struct PipelineOptions {
  int threads = 0;                      // 0: one per physical core
  std::string sliding_window = "auto";  // auto (as config.json), off, or a window size
  std::string kv_cache_dtype = "f32";   // f32 (exact), f16 (half the memory) or q8 (about a quarter)
  // Set: a Hugging Face folder is converted with these options (like OpenVINO's CACHE_DIR, the
  // result is cached under cache_dir, keyed by the source files and options; later loads reuse it).
  std::optional<ConvertOptions> convert;
  std::filesystem::path cache_dir;
  std::string device = "cpu";           // cpu, gpu, gpu:N or auto (a GPU when present and the model fits)
  // Speculative decoding with a draft model (GenerationConfig::draft_tokens): a smaller model with
  // the same vocabulary and tokenizer (checked at load), loaded with these same options (a Hugging
  // Face folder is converted with `convert` too; a phinfer model file is used as it is). Each
  // request drafting with it holds a KV cache of the draft model as well, counted in an Engine's
  // KV budget. Empty: none (drafts come from prompt lookup).
  std::filesystem::path draft_model;
};

// Threading: every method may be called from any thread. generate, logits and Generators share the
// pipeline's one backend and run one at a time (a second caller waits); for concurrent generations
// use an Engine (phinfer/engine.h) on the pipeline, which batches them.
class PHINFER_API Pipeline {
 public:
  // model: a Hugging Face checkpoint folder, a phinfer model file (phinfer convert) or a GGUF file
  // (its own tensor types in the kernels' layouts; with `convert`, dequantized exactly first).
  static Pipeline load(const std::filesystem::path& model, const PipelineOptions& options = {});
  ~Pipeline();
  Pipeline(Pipeline&&) noexcept;
  Pipeline& operator=(Pipeline&&) noexcept;

  const ModelConfig& config() const;
  const Tokenizer& tokenizer() const;
  const GenerationDefaults& generation_defaults() const;
  const std::filesystem::path& model_path() const;   // the file or folder actually loaded
  uint64_t weight_bytes_per_token() const;           // weights one decode step reads
  std::string device() const;                        // where it runs: "cpu", "gpu:0", ... (auto resolved)
  // The ids that stop generation: generation_config + config eos ids and <|end|>.
  std::vector<int32_t> stop_ids(const GenerationConfig& config) const;

  // The model's chat template applied to messages, rendered and tokenized (no extra special tokens).
  std::string render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const;
  std::vector<int32_t> encode_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const;

  GenerationResult generate(std::span<const int32_t> prompt_ids, const GenerationConfig& config,
                            const Streamer& streamer = {}) const;
  GenerationResult generate(std::string_view prompt, const GenerationConfig& config,
                            const Streamer& streamer = {}) const;
  // Continues from `state`: the cached tokens that prefix `prompt_ids` are reused, the rest computed.
  // Afterwards the state holds prompt + generated tokens. Same result as a fresh generate.
  GenerationResult generate(KVState& state, std::span<const int32_t> prompt_ids, const GenerationConfig& config,
                            const Streamer& streamer = {}) const;

  // Logits [positions.size(), vocab] of one forward pass over ids (positions index into ids).
  std::vector<float> logits(std::span<const int32_t> ids, std::span<const int64_t> positions) const;

  struct PHINFER_HIDDEN Impl;
  Impl* impl() const { return impl_.get(); }  // for the engine; opaque to users

 private:
  PHINFER_HIDDEN explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace phinfer
