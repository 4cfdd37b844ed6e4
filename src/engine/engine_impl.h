#pragma once
// The generation engine's scheduler (see phinfer/engine.h for the contract).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "backend/backend.h"
#include "generate/pipeline_impl.h"
#include "grammar/token_mask.h"
#include "generate/sampler.h"
#include "generate/stop_strings.h"
#include "phinfer/engine.h"

namespace phinfer {

struct Engine::Impl {
  using Clock = std::chrono::steady_clock;

  struct Request {
    RequestId id = 0;
    GenerationConfig config;
    Streamer streamer;
    std::function<bool(const TokenEvent&)> on_token;
    std::function<void(GenerationResult&&)> on_finish;
    KVState* state = nullptr;                      // continued conversation, or null
    std::unique_ptr<backend::SequenceCache> cache;
    std::vector<int32_t> tokens;                   // prompt + generated; [0, cache->length()) are computed
    int64_t prompt_length = 0;
    int64_t capacity = 0;                          // positions reserved
    uint64_t reserved_bytes = 0;
    std::optional<generate::Sampler> sampler;
    std::vector<int32_t> stops;                    // sorted
    std::optional<Tokenizer::StreamDecoder> decoder;
    std::optional<generate::StopStringMatcher> matcher;
    std::optional<grammar::ConstrainedDecoding> constraint;  // with GenerationConfig::grammar
    GenerationResult result;
    bool stopped = false;
    bool finished = false;
    std::string error;
    Clock::time_point start, last_token;
    // This step's rows: tokens [row_begin, row_begin + row_count) of `tokens`, or, when drafting,
    // the last token and the draft (`rows`).
    int64_t row_begin = 0, row_count = 0;
    model::RopeTable table = model::RopeTable::Short;
    std::vector<int64_t> logit_rows;               // rows whose logits are wanted (the last, or all when drafting)
    std::vector<int32_t> draft, rows;              // speculative decoding: this step's draft, and rows to check
    // Drafting with the pipeline's draft model: its KV cache of this sequence, its own sampler (its
    // own random stream), the distribution each draft token was drawn from (when sampling), the
    // tokens drafted this step, and the scratch of its forward passes.
    std::unique_ptr<backend::SequenceCache> draft_cache;
    std::optional<generate::Sampler> draft_sampler;
    std::vector<generate::Sampler::Distribution> draft_dists;
    int64_t draft_plan = 0;
    model::RopeTable draft_table = model::RopeTable::Short;
    std::vector<int32_t> draft_input, draft_history;
    std::vector<int64_t> draft_logit_rows;

    // Tokens still to run before the next sample: 1 when decoding, more while reading the prompt
    // (or recomputing it after a LongRoPE crossing).
    int64_t pending() const { return static_cast<int64_t>(tokens.size()) - cache->length(); }
    bool prefilling() const { return pending() > 1; }
  };

  // KV memory as a sequence grows (`need` positions, `have` with memory, `reservation` the most
  // it may use): doubling, so memory is touched only when used (a request allowed 60,000 tokens
  // does not zero 60,000 positions before its first token; the budget still counts the whole
  // reservation from admission). A doubling that reaches half the reservation takes all of it:
  // growing copies the whole cache (402 MB at 512 positions of Phi-3-mini in f32), never worth
  // paying for the last few positions.
  static int64_t kv_positions_to_reserve(int64_t need, int64_t have, int64_t reservation);

  Impl(const Pipeline::Impl& pipeline, backend::Backend& backend, const EngineOptions& options);

  RequestId add(GenerationRequest request);
  bool step();
  GenerationResult run_to_completion(RequestId id);

  const Pipeline::Impl& pipe;
  std::unique_ptr<backend::Backend> owned_backend;  // when the engine made its own
  backend::Backend* backend;
  std::unique_ptr<backend::Backend> draft_backend;  // the pipeline's draft model, on backend's threads; or null
  EngineOptions options;
  int64_t context = 0;

  // Shared with other threads, under `mu`.
  mutable std::mutex mu;
  std::condition_variable work;  // signalled by add and cancel
  std::vector<std::unique_ptr<Request>> incoming;
  std::vector<RequestId> cancels;
  std::map<RequestId, Status> statuses;
  std::map<RequestId, GenerationResult> results;
  RequestId next_id = 1;
  Stats counters;
  std::atomic<uint64_t> generated{0};  // tokens sampled (read by stats() without the step's lock)
  uint64_t drafted = 0, accepted_drafts = 0;  // speculative decoding (engine thread)
  uint64_t processed = 0;              // rows run (engine thread)

  // Owned by the engine thread.
  std::deque<std::unique_ptr<Request>> waiting;
  std::vector<std::unique_ptr<Request>> running;
  std::vector<backend::BatchEntry> entries;
  std::vector<Request*> scheduled;
  std::vector<Request*> drafting;  // this step's requests using the draft model
  // Finished requests' caches, for prefix reuse (engine thread).
  struct CachedPrefix {
    std::vector<int32_t> tokens;  // the tokens whose keys/values `cache` holds
    std::unique_ptr<backend::SequenceCache> cache;
    uint64_t last_used = 0;
  };
  std::vector<CachedPrefix> prefix_cache;
  uint64_t prefix_cache_used = 0, use_clock = 0, reused = 0;

 private:
  void admit();
  // Gives `r` a cache: the longest computed prefix of its prompt from a running request or the
  // prefix cache, else a new one. False: wait, a running request is about to compute a long
  // prefix `r` shares.
  bool attach_cache(Request& r);
  void keep_prefix(std::vector<int32_t> tokens, std::unique_ptr<backend::SequenceCache> cache);
  void schedule();
  void run_batch();
  // Samples this step's token(s) from the request's logit rows: one, or when drafting, the draft
  // tokens the model agrees with and one more.
  void accept_logits(Request& r, std::span<const float> logits);
  void accept_token(Request& r, int32_t id, std::span<const float> logits);
  // Up to `limit` tokens that followed the latest earlier occurrence of the sequence's last tokens.
  void propose_draft(Request& r, int64_t limit) const;
  // Draft model: plans `r`'s draft of up to `limit` tokens (none while its cache still catches up
  // with the sequence); depends on the request alone, so sampled output is batch-invariant.
  void plan_model_draft(Request& r, int64_t limit);
  // Runs the draft model over every planned request, batched: catch-up rows, then one row per
  // draft token; fills their `draft` (and `draft_dists`).
  void draft_with_model();
  void run_draft_pass(std::span<Request* const> group);
  // Delivers released text to the request's callbacks; false when one of them asked to stop.
  void deliver(Request& r, int32_t id, const std::string& text, const TokenLogprobs* lp);
  void finish(Request& r);
  void publish_counts();
};

}  // namespace phinfer
