#pragma once
// Many token streams on one model: a generation engine with a step API (continuous batching), and a
// pull-style generator for one stream.
//
// Engine: requests join with add_request and leave when finished or cancelled; every step() runs
// one forward pass over the decode rows of all running requests plus at most one prefill chunk of
// a request still reading its prompt (within a token budget per step, so a long prompt delays the
// others by at most one chunk). Each request has its own KV cache, sampler, stop strings, streamer
// and finish reason. Batching never changes a request's result: its tokens are exactly those of
// the same request run alone.
//
// KV memory: a request reserves the KV cache of its longest possible sequence (prompt +
// max_new_tokens, at most the context) when it is admitted; requests that do not fit the budget
// wait in arrival order until running ones finish. Nothing is ever evicted from a running request.
// A request drafting with the pipeline's draft model reserves the draft model's KV cache too.
//
// Prefix reuse: a request starts from the longest prefix of its prompt whose keys and values
// another request already computed: a running one (n samples of one prompt share its prefill: a
// request waits while another still computes a long prefix they share) or a finished one kept in
// the prefix cache (prefix_cache_bytes). Reuse is exact: a position's keys and values depend only
// on the tokens up to it, bit for bit.
//
// Threading contract:
//   - step() is called by one thread at a time (the "engine thread"); streamers run on it, inside
//     step(). A streamer must not call the engine.
//   - add_request, cancel, status, take_result and the counters may be called from any thread, at
//     any time, including while step() runs; they take effect at the next step.
//   - An Engine uses its own thread pool and buffers: several engines (and the Pipeline's own
//     generate) may run concurrently on one Pipeline.
#include <chrono>
#include <cstdint>
#include <functional>
#include <string_view>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "phinfer/export.h"
#include "phinfer/pipeline.h"

namespace phinfer {

struct EngineOptions {
  int threads = 0;                   // 0: the Pipeline's setting
  int64_t max_step_tokens = 512;     // rows of one forward pass (decode rows + one prefill chunk)
  int64_t prefill_chunk = 256;       // most prompt tokens of one request per step
  int64_t max_running = 64;          // requests decoding at once; more wait
  uint64_t kv_cache_bytes = 0;       // KV memory budget over all requests; 0: unlimited
  // Finished requests' KV caches kept for later requests that start with the same tokens (a
  // conversation's next turn, a shared system prompt); least recently used dropped first. 0: off.
  uint64_t prefix_cache_bytes = 0;
};

// One generated token as it is accepted: its id, the text it released (may be empty: stop-string
// matching or an incomplete UTF-8 sequence can hold text back; the held text comes with a later
// token or with the final event), and its log-probabilities when the config asks for them.
struct TokenEvent {
  int32_t id = -1;                        // -1 for the final event, which only flushes held-back text
  std::string_view text;
  const TokenLogprobs* logprobs = nullptr;  // null unless GenerationConfig::logprobs
};

// Everything one request needs. Callbacks run on the engine thread, inside step(); they must not
// call the engine. Returning false from on_token or the streamer stops the request ("stopped").
struct GenerationRequest {
  std::vector<int32_t> prompt_ids;
  GenerationConfig config;
  Streamer streamer;                                  // text only
  std::function<bool(const TokenEvent&)> on_token;    // ids, text and log-probabilities
  // Called once when the request ends, with its result (which is then not kept for take_result).
  std::function<void(GenerationResult&&)> on_finish;
  KVState* state = nullptr;                           // continue this conversation (see add_request)
};

class PHINFER_API Engine {
 public:
  using RequestId = uint64_t;
  enum class Status { Waiting, Running, Finished, Unknown };

  explicit Engine(const Pipeline& pipeline, const EngineOptions& options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request; throws phinfer::Error for an invalid one (empty prompt, prompt longer than
  // the context, a request whose KV cache can never fit the budget, ...).
  RequestId add_request(std::span<const int32_t> prompt_ids, const GenerationConfig& config,
                        Streamer streamer = {});
  // Continues the token stream of `state` (a conversation): its cached prefix of prompt_ids is
  // reused, and when the request finishes the state holds prompt + generated tokens. The state must
  // not be used elsewhere until then.
  RequestId add_request(KVState& state, std::span<const int32_t> prompt_ids, const GenerationConfig& config,
                        Streamer streamer = {});
  RequestId add_request(GenerationRequest request);
  // Stops a request at the next step (finish_reason "stopped"); its KV memory is freed then.
  void cancel(RequestId id);
  // One scheduling step. Returns true while requests are waiting or running.
  bool step();
  // Blocks until a request or cancel arrives (true) or the timeout passes (false); for a thread
  // that drives the engine: `while (running) if (!engine.step()) engine.wait_for_work(100ms);`.
  bool wait_for_work(std::chrono::milliseconds timeout);
  // Steps until `id` has finished and returns its result.
  GenerationResult run_to_completion(RequestId id);

  Status status(RequestId id) const;
  // The result of a finished request (then forgotten); nullopt while it runs or when unknown.
  std::optional<GenerationResult> take_result(RequestId id);

  size_t waiting() const;
  size_t running() const;
  uint64_t kv_cache_bytes_in_use() const;  // reserved by running requests

  // Counters as of the end of the last step.
  struct Stats {
    size_t waiting = 0, running = 0;
    size_t prefilling = 0;              // running requests still reading their prompt
    uint64_t kv_cache_bytes = 0;        // reserved by running requests
    uint64_t generated_tokens = 0;      // sampled since the engine started
    uint64_t processed_tokens = 0;      // rows run through the model since the engine started
    uint64_t steps = 0;
    uint64_t reused_prompt_tokens = 0;  // prompt tokens taken from another request's KV cache
    uint64_t prefix_cache_bytes = 0;    // held by the prefix cache
    uint64_t draft_tokens = 0;          // speculative decoding: tokens guessed and checked
    uint64_t accepted_draft_tokens = 0; // of those, the ones the model agreed with
  };
  Stats stats() const;

  struct PHINFER_HIDDEN Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// One token stream driven by its caller, like onnxruntime-genai's Generator: append tokens, read
// the logits, choose the next token, rewind. Not thread-safe; one thread uses a Generator at a
// time. Uses the Pipeline's model (its compute is serialized with the Pipeline's other calls).
class PHINFER_API Generator {
 public:
  explicit Generator(const Pipeline& pipeline, const GenerationConfig& config = {});
  ~Generator();
  Generator(Generator&&) noexcept;
  Generator& operator=(Generator&&) noexcept;

  // Runs the tokens through the model (their logits become available).
  void append_tokens(std::span<const int32_t> ids);
  // Logits of the last appended token ([vocab]); empty before any token.
  std::span<const float> logits() const;
  // Chooses the next token from the current logits with the config's sampling, appends it and
  // returns it. Throws when nothing was appended yet.
  int32_t generate_next_token();
  // True after a stop id, max_new_tokens generated tokens, or a full context.
  bool is_done() const;
  // Forgets every token after the first `length` (the logits are gone until the next append).
  void rewind_to(size_t length);
  const std::vector<int32_t>& tokens() const;

  struct PHINFER_HIDDEN Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace phinfer
