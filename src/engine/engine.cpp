#include "engine/engine_impl.h"

#include <algorithm>
#include <cmath>

#include "grammar/grammar_impl.h"
#include "phinfer/error.h"

namespace phinfer {
namespace {

constexpr int kMaxDraftTokens = 32;  // speculative decoding: most draft tokens a request may ask for
constexpr int64_t kDraftNgram = 3;   // longest suffix looked up for a draft
// Most rows a draft model catches up on per step (a new request's prompt, a conversation's history):
// a constant, not an engine option, so that a request's drafts, and with them its sampled tokens,
// are the same in every engine.
constexpr int64_t kDraftCatchUpRows = 512;
// The draft model's random stream is the request's seed mixed with this (its own, reproducible).
constexpr uint64_t kDraftSeedMix = 0x9e3779b97f4a7c15ULL;

double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Text of ids; ids past the tokenizer's vocabulary (embedding padding rows, e.g. Phi-4-mini's
// 200029..200063) have no text, as in Hugging Face's decode.
std::string text_of(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  std::vector<int32_t> known;
  for (int32_t id : ids)
    if (id < tok.vocab_size()) known.push_back(id);
  return tok.decode(known, skip_special);
}

}  // namespace

Engine::Impl::Impl(const Pipeline::Impl& pipeline, backend::Backend& be, const EngineOptions& o)
    : pipe(pipeline), backend(&be), options(o), context(pipeline.model->config().max_position_embeddings) {
  if (o.max_step_tokens < 1) throw Error("engine: max_step_tokens must be >= 1, found " + std::to_string(o.max_step_tokens));
  if (o.prefill_chunk < 1) throw Error("engine: prefill_chunk must be >= 1, found " + std::to_string(o.prefill_chunk));
  if (o.max_running < 1) throw Error("engine: max_running must be >= 1, found " + std::to_string(o.max_running));
  if (pipeline.draft_model) draft_backend = backend->companion(pipeline.draft_model);
  // A device with its own memory (a GPU) bounds the KV budget, so requests that do not fit wait; the
  // prefix cache gets at most a quarter of it, the running requests the rest.
  if (const uint64_t device = backend->kv_memory_limit(); device > 0) {
    options.prefix_cache_bytes = std::min(options.prefix_cache_bytes, device / 4);
    const uint64_t running = device - options.prefix_cache_bytes;
    if (options.kv_cache_bytes == 0 || running < options.kv_cache_bytes) options.kv_cache_bytes = running;
  }
}

Engine::RequestId Engine::Impl::add(GenerationRequest req) {
  const std::span<const int32_t> prompt = req.prompt_ids;
  const GenerationConfig& gc = req.config;
  KVState* state = req.state;
  if (prompt.empty()) throw Error("the prompt is empty: give at least one token");
  if (gc.max_new_tokens < 0) throw Error("max_new_tokens must be >= 0, found " + std::to_string(gc.max_new_tokens));
  if (gc.draft_tokens < 0 || gc.draft_tokens > kMaxDraftTokens)
    throw Error("draft_tokens must be in [0, " + std::to_string(kMaxDraftTokens) + "], found " +
                std::to_string(gc.draft_tokens));
  if (static_cast<int64_t>(prompt.size()) > context)
    throw Error("the prompt has " + std::to_string(prompt.size()) + " tokens; the model's context is " +
                std::to_string(context) + " (max_position_embeddings)");
  model::check_token_ids(prompt, pipe.model->config().vocab_size);
  if (!gc.stop_strings.empty() && !pipe.tokenizer) throw Error("stop strings need a tokenizer.json in the model folder");
  for (const auto& s : gc.stop_strings)
    if (s.empty()) throw Error("a stop string must not be empty");
  if (gc.top_logprobs < 0 || gc.top_logprobs > 20)
    throw Error("top_logprobs must be in [0, 20], found " + std::to_string(gc.top_logprobs));
  if (gc.grammar && !gc.grammar->impl) throw Error("the grammar is empty (make one with Grammar::from_...)");
  if (gc.grammar && gc.ignore_eos) throw Error("ignore_eos cannot be combined with a grammar (the grammar decides where the text ends)");
  if (gc.grammar && !pipe.tokenizer) throw Error("a grammar needs a tokenizer.json in the model folder");

  auto r = std::make_unique<Request>();
  r->config = gc;
  r->streamer = std::move(req.streamer);
  r->on_token = std::move(req.on_token);
  r->on_finish = std::move(req.on_finish);
  r->state = state;
  r->tokens.assign(prompt.begin(), prompt.end());
  r->prompt_length = static_cast<int64_t>(prompt.size());
  // The longest this sequence can get; saturating, so any max_new_tokens is safe.
  r->capacity = std::min(context, r->prompt_length + std::min<int64_t>(gc.max_new_tokens, context));
  r->reserved_bytes = static_cast<uint64_t>(r->capacity) * backend->cache_bytes_per_position();
  if (state && state->impl->cache && state->impl->owner == backend)
    r->reserved_bytes = std::max(r->reserved_bytes, state->impl->cache->bytes());
  const bool model_drafts = draft_backend && gc.draft_tokens > 0 && !gc.grammar;
  if (model_drafts) r->reserved_bytes += static_cast<uint64_t>(r->capacity) * draft_backend->cache_bytes_per_position();
  if (options.kv_cache_bytes > 0 && r->reserved_bytes > options.kv_cache_bytes)
    throw Error("the request needs " + std::to_string(r->reserved_bytes) + " bytes of KV cache (" +
                std::to_string(r->capacity) + " positions), more than the engine's whole budget of " +
                std::to_string(options.kv_cache_bytes) + " bytes");
  r->sampler.emplace(generate::SamplingParams{gc.do_sample, gc.temperature, gc.top_k, gc.top_p, gc.min_p,
                                              gc.repetition_penalty, gc.presence_penalty, gc.frequency_penalty},
                     gc.seed);
  if (model_drafts) r->draft_sampler.emplace(generate::SamplingParams{gc.do_sample, gc.temperature, gc.top_k, gc.top_p, gc.min_p,
                                                                      gc.repetition_penalty, gc.presence_penalty, gc.frequency_penalty},
                                             gc.seed ^ kDraftSeedMix);
  r->stops = pipe.stop_ids(gc);
  if (gc.grammar) {
    auto vocab = pipe.vocabulary();
    r->constraint.emplace(gc.grammar->impl->rules, vocab, gc.grammar->impl->cache_for(*vocab), r->stops);
  }
  if (pipe.tokenizer) r->decoder.emplace(*pipe.tokenizer, gc.skip_special_tokens);
  r->matcher.emplace(gc.stop_strings);
  r->result.prompt_ids = r->tokens;
  r->result.stats.prompt_tokens = r->prompt_length;
  r->result.finish_reason = "length";
  r->start = Clock::now();

  RequestId id = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    r->id = id = next_id++;
    statuses[id] = Status::Waiting;
    incoming.push_back(std::move(r));
    ++counters.waiting;
  }
  work.notify_all();
  return id;
}

void Engine::Impl::publish_counts() {
  uint64_t used = 0;
  size_t prefilling = 0;
  for (const auto& r : running) {
    used += r->reserved_bytes;
    if (r->prefilling()) ++prefilling;
  }
  std::lock_guard<std::mutex> lock(mu);
  counters.waiting = waiting.size() + incoming.size();
  counters.running = running.size();
  counters.prefilling = prefilling;
  counters.kv_cache_bytes = used;
  counters.reused_prompt_tokens = reused;
  counters.prefix_cache_bytes = prefix_cache_used;
  counters.processed_tokens = processed;
  counters.draft_tokens = drafted;
  counters.accepted_draft_tokens = accepted_drafts;
  ++counters.steps;
}

namespace {
size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b, size_t limit) {
  size_t n = 0;
  const size_t m = std::min({a.size(), b.size(), limit});
  while (n < m && a[n] == b[n]) ++n;
  return n;
}
// Shorter shared prefixes are computed again rather than copied or waited for.
constexpr size_t kMinSharedPrefix = 16;
}  // namespace

bool Engine::Impl::attach_cache(Request& r) {
  // At least the last prompt token is recomputed, for its logits.
  const size_t limit = r.tokens.size() - 1;
  KVState::Impl* st = r.state ? r.state->impl.get() : nullptr;
  size_t keep = 0;
  if (st && st->cache && st->owner == backend) {
    r.cache = std::move(st->cache);
    keep = common_prefix(st->tokens, r.tokens, std::min<size_t>(limit, static_cast<size_t>(r.cache->length())));
    r.cache->truncate(static_cast<int64_t>(keep));
    st->tokens.clear();
  } else if (!st) {
    // The longest computed prefix among running requests and the prefix cache.
    size_t best = 0;
    Request* from_running = nullptr;
    CachedPrefix* from_cache = nullptr;
    for (const auto& o : running) {
      const size_t shared = common_prefix(o->tokens, r.tokens, limit);
      const size_t computed = std::min(shared, static_cast<size_t>(o->cache->length()));
      // Another request is computing a long prefix this one shares: wait for it rather than
      // compute it twice (n samples of one prompt).
      if (shared >= kMinSharedPrefix && computed < shared && o->prefilling()) return false;
      if (computed > best) best = computed, from_running = o.get(), from_cache = nullptr;
    }
    for (auto& c : prefix_cache) {
      const size_t shared = common_prefix(c.tokens, r.tokens, limit);
      if (shared > best) best = shared, from_cache = &c, from_running = nullptr;
    }
    if (best >= kMinSharedPrefix) {
      keep = best;
      if (from_running) {
        r.cache = from_running->cache->clone(static_cast<int64_t>(keep), static_cast<int64_t>(keep));
      } else if (keep == from_cache->tokens.size()) {
        // The whole entry continues into this request (a conversation's next turn): take it.
        r.cache = std::move(from_cache->cache);
        prefix_cache_used -= r.cache->bytes();
        std::erase_if(prefix_cache, [](const CachedPrefix& c) { return !c.cache; });
      } else {
        r.cache = from_cache->cache->clone(static_cast<int64_t>(keep), static_cast<int64_t>(keep));
        from_cache->last_used = ++use_clock;
      }
      reused += keep;
    }
  }
  if (!r.cache) r.cache = backend->new_cache();
  r.cache->truncate(static_cast<int64_t>(keep));
  r.result.stats.reused_prompt_tokens = static_cast<int64_t>(keep);
  return true;
}

void Engine::Impl::keep_prefix(std::vector<int32_t> tokens, std::unique_ptr<backend::SequenceCache> cache) {
  if (options.prefix_cache_bytes == 0 || tokens.size() < kMinSharedPrefix) return;
  const uint64_t bytes = cache->bytes();
  if (bytes > options.prefix_cache_bytes) return;
  // An entry that is a prefix of the new one adds nothing.
  std::erase_if(prefix_cache, [&](const CachedPrefix& c) {
    if (c.tokens.size() <= tokens.size() && std::equal(c.tokens.begin(), c.tokens.end(), tokens.begin())) {
      prefix_cache_used -= c.cache->bytes();
      return true;
    }
    return false;
  });
  while (!prefix_cache.empty() && prefix_cache_used + bytes > options.prefix_cache_bytes) {
    auto oldest = std::min_element(prefix_cache.begin(), prefix_cache.end(),
                                   [](const CachedPrefix& a, const CachedPrefix& b) { return a.last_used < b.last_used; });
    prefix_cache_used -= oldest->cache->bytes();
    prefix_cache.erase(oldest);
  }
  prefix_cache_used += bytes;
  prefix_cache.push_back({std::move(tokens), std::move(cache), ++use_clock});
}

// Moves waiting requests into the running set, in arrival order, while their KV reservation fits.
void Engine::Impl::admit() {
  uint64_t used = 0;
  for (const auto& r : running) used += r->reserved_bytes;
  while (!waiting.empty() && static_cast<int64_t>(running.size()) < options.max_running) {
    Request& r = *waiting.front();
    if (options.kv_cache_bytes > 0 && used + r.reserved_bytes > options.kv_cache_bytes) break;
    if (!attach_cache(r)) break;
    if (r.streamer && !r.config.skip_prompt && pipe.tokenizer) {
      const std::string text = text_of(*pipe.tokenizer, r.result.prompt_ids, r.config.skip_special_tokens);
      if (!text.empty() && !r.streamer(text)) r.stopped = r.finished = true;
    }
    used += r.reserved_bytes;
    {
      std::lock_guard<std::mutex> lock(mu);
      statuses[r.id] = Status::Running;
    }
    running.push_back(std::move(waiting.front()));
    waiting.pop_front();
  }
}

// Chooses this step's rows: one decode row per request that has a token to run, then one
// prefill chunk (the oldest request still reading its prompt) within the token budget.
void Engine::Impl::schedule() {
  scheduled.clear();
  drafting.clear();
  int64_t budget = options.max_step_tokens;
  Request* prefill = nullptr;
  for (const auto& rp : running) {
    Request& r = *rp;
    // The LongRoPE table of a forward call covering the whole sequence so far, as transformers picks it.
    const model::RopeTable table = backend->model().table_for_length(static_cast<int64_t>(r.tokens.size()));
    if (r.cache->length() > 0 && r.cache->table() != table)
      r.cache->truncate(0);  // the crossing: recompute the whole sequence with the new table
    r.table = table;
    r.draft.clear();
    if (r.pending() == 1) {
      r.row_begin = r.cache->length();
      r.row_count = 1;
      if (r.config.draft_tokens > 0 && !r.constraint) {  // drafts would bypass the grammar's mask
        // Room: the budget (prompt lookup only: a draft model's drafts depend on the request
        // alone), the reserved positions, the tokens still allowed, and no LongRoPE table change
        // inside the rows (plain decoding would switch tables between them).
        const int64_t n = static_cast<int64_t>(r.tokens.size());
        int64_t limit = std::min<int64_t>({r.config.draft_tokens, r.capacity - n,
                                           r.config.max_new_tokens - static_cast<int64_t>(r.result.output_ids.size()) - 1});
        if (!r.draft_sampler) limit = std::min(limit, budget - 1);
        while (limit > 0 && backend->model().table_for_length(n + limit) != table) --limit;
        if (r.draft_sampler) {
          plan_model_draft(r, limit);
          r.row_count = 1 + r.draft_plan;  // the rows are filled in by draft_with_model below
        } else if (limit > 0) {
          propose_draft(r, limit);
        }
        if (!r.draft.empty()) {
          r.rows.assign(1, r.tokens.back());
          r.rows.insert(r.rows.end(), r.draft.begin(), r.draft.end());
          r.row_count = static_cast<int64_t>(r.rows.size());
        }
      }
      scheduled.push_back(&r);
      budget -= r.row_count;
    } else if (!prefill) {
      prefill = &r;
    }
  }
  if (prefill) {
    Request& r = *prefill;
    r.row_begin = r.cache->length();
    r.row_count = std::min({r.pending(), options.prefill_chunk, std::max<int64_t>(budget, 1)});
    scheduled.push_back(&r);
  }
  if (!drafting.empty()) draft_with_model();
  for (Request* r : scheduled) {
    const int64_t need = r->cache->length() + r->row_count, have = r->cache->capacity();
    if (need > have) r->cache->reserve(kv_positions_to_reserve(need, have, r->capacity));
    r->logit_rows.clear();
    if (!r->draft.empty()) {
      for (int64_t i = 0; i < r->row_count; ++i) r->logit_rows.push_back(i);
    } else if (r->row_begin + r->row_count == static_cast<int64_t>(r->tokens.size())) {
      r->logit_rows.push_back(r->row_count - 1);
    }
  }
}

int64_t Engine::Impl::kv_positions_to_reserve(int64_t need, int64_t have, int64_t reservation) {
  int64_t grow_to = std::max<int64_t>(2 * have, need + 256);
  if (2 * grow_to >= reservation) grow_to = reservation;
  return std::max(need, grow_to);
}

void Engine::Impl::propose_draft(Request& r, int64_t limit) const {
  // The longest suffix of 3, 2 or 1 tokens that occurred before; its latest occurrence wins.
  const std::vector<int32_t>& t = r.tokens;
  const int64_t n = static_cast<int64_t>(t.size());
  for (int64_t len = std::min<int64_t>(kDraftNgram, n - 1); len >= 1; --len) {
    for (int64_t at = n - len - 1; at >= 0; --at) {
      if (!std::equal(t.begin() + at, t.begin() + at + len, t.end() - len)) continue;
      const int64_t from = at + len, count = std::min(limit, n - from);
      r.draft.assign(t.begin() + from, t.begin() + from + count);
      return;
    }
  }
}

void Engine::Impl::plan_model_draft(Request& r, int64_t limit) {
  r.draft_plan = 0;
  const int64_t n = static_cast<int64_t>(r.tokens.size());
  // The draft model's own context bounds its positions (the last draft token is never run).
  limit = std::min(limit, draft_backend->model().config().max_position_embeddings - n + 1);
  if (limit <= 0) return;
  const model::RopeTable table = draft_backend->model().table_for_length(n + limit);
  if (!r.draft_cache) r.draft_cache = draft_backend->new_cache();
  if (r.draft_cache->length() > 0 && r.draft_cache->table() != table) r.draft_cache->truncate(0);
  r.draft_table = table;
  // A draft needs the draft model's logits after the sequence's last token: until its cache has
  // caught up (a new prompt, a long conversation), it only reads the sequence, a chunk per step.
  if (n - r.draft_cache->length() <= kDraftCatchUpRows) r.draft_plan = limit;
  drafting.push_back(&r);
}

void Engine::Impl::draft_with_model() {
  // Pass 0: each request's tokens the draft model has not read (with the logits of the last one
  // when it drafts this step); pass j: draft token j, for the next one.
  for (Request* r : drafting) {
    const int64_t from = r->draft_cache->length();
    const int64_t count = std::min<int64_t>(static_cast<int64_t>(r->tokens.size()) - from, kDraftCatchUpRows);
    r->draft_input.assign(r->tokens.begin() + from, r->tokens.begin() + from + count);
    r->draft_logit_rows.clear();
    if (r->draft_plan > 0) r->draft_logit_rows.push_back(count - 1);
    r->draft.clear();
    r->draft_dists.clear();
    r->draft_history = r->tokens;
  }
  std::vector<Request*> group = drafting;
  while (!group.empty()) {
    run_draft_pass(group);
    std::erase_if(group, [](Request* r) { return static_cast<int64_t>(r->draft.size()) >= r->draft_plan; });
    for (Request* r : group) {
      r->draft_input.assign(1, r->draft.back());
      r->draft_logit_rows.assign(1, 0);
    }
  }
  for (Request* r : drafting) {
    r->rows.assign(1, r->tokens.back());
    r->rows.insert(r->rows.end(), r->draft.begin(), r->draft.end());
    r->row_count = static_cast<int64_t>(r->rows.size());
  }
}

void Engine::Impl::run_draft_pass(std::span<Request* const> group) {
  entries.clear();
  for (Request* r : group) {
    backend::SequenceCache& cache = *r->draft_cache;
    const int64_t need = cache.length() + static_cast<int64_t>(r->draft_input.size()), have = cache.capacity();
    if (need > have) cache.reserve(kv_positions_to_reserve(need, have, r->capacity));
    entries.push_back({&cache, r->draft_table, r->draft_input, r->draft_logit_rows});
  }
  try {
    std::span<const float> logits = draft_backend->forward(entries);
    const size_t vocab = static_cast<size_t>(draft_backend->model().config().vocab_size);
    size_t at = 0;
    for (Request* r : group) {
      if (r->draft_logit_rows.empty()) continue;
      const auto row = logits.subspan(at, vocab);
      at += vocab;
      try {
        const size_t prompt_length = static_cast<size_t>(r->prompt_length);
        const int32_t id = r->config.do_sample
                               ? r->draft_sampler->next_keeping_distribution(row, r->draft_history, prompt_length,
                                                                             r->draft_dists.emplace_back())
                               : r->draft_sampler->next(row, r->draft_history, prompt_length);
        r->draft.push_back(id);
        r->draft_history.push_back(id);
      } catch (const Error&) {
        // The draft model is only a guess: this request decodes without one this step.
        r->draft_plan = 0;
      }
    }
  } catch (const Error&) {
    if (group.size() > 1) {
      // A failed call changes no cache: alone, only the request at fault goes without a draft.
      for (Request* r : group) run_draft_pass(std::span<Request* const>(&r, 1));
      return;
    }
    group.front()->draft_plan = 0;
  }
  for (Request* r : group)
    if (r->draft_plan == 0) {
      r->draft.clear();
      r->draft_dists.clear();
    }
}

void Engine::Impl::run_batch() {
  entries.clear();
  for (Request* r : scheduled)
    entries.push_back({r->cache.get(), r->table,
                       r->draft.empty() ? std::span<const int32_t>(r->tokens).subspan(static_cast<size_t>(r->row_begin),
                                                                                      static_cast<size_t>(r->row_count))
                                        : std::span<const int32_t>(r->rows),
                       std::span<const int64_t>(r->logit_rows)});
  const size_t vocab = static_cast<size_t>(pipe.model->config().vocab_size);
  try {
    std::span<const float> logits = backend->forward(entries);
    for (const auto& e : entries) processed += e.tokens.size();
    size_t at = 0;
    for (Request* r : scheduled) {
      const size_t n = r->logit_rows.size() * vocab;
      if (n) accept_logits(*r, logits.subspan(at, n));
      at += n;
    }
  } catch (const Error& e) {
    if (entries.size() == 1) {
      scheduled.front()->error = e.what();
      scheduled.front()->finished = true;
      return;
    }
    // A failed call changes no cache: run each request alone to find the one at fault, so the
    // others go on exactly as if it had never been there.
    std::vector<Request*> all = scheduled;
    for (Request* r : all) {
      scheduled.assign(1, r);
      run_batch();
    }
  }
}

namespace {

// log-softmax of one row at `id`, and the k most likely ids (most likely first, lowest id on ties).
TokenLogprobs logprobs_of(std::span<const float> logits, int32_t id, int k) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  const double log_z = mx + std::log(sum);
  TokenLogprobs out;
  out.id = id;
  out.logprob = static_cast<float>(logits[static_cast<size_t>(id)] - log_z);
  if (k > 0) {
    std::vector<int32_t> ids(logits.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
    const auto kk = static_cast<std::ptrdiff_t>(std::min<size_t>(static_cast<size_t>(k), ids.size()));
    std::partial_sort(ids.begin(), ids.begin() + kk, ids.end(), [&](int32_t a, int32_t b) {
      const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
      return la > lb || (la == lb && a < b);
    });
    for (std::ptrdiff_t i = 0; i < kk; ++i)
      out.top.push_back({ids[static_cast<size_t>(i)], static_cast<float>(logits[static_cast<size_t>(ids[static_cast<size_t>(i)])] - log_z)});
  }
  return out;
}

}  // namespace

void Engine::Impl::deliver(Request& r, int32_t id, const std::string& text, const TokenLogprobs* lp) {
  if (r.stopped) return;
  if (r.streamer && !text.empty() && !r.streamer(text)) r.stopped = true;
  if (r.on_token && !r.on_token(TokenEvent{id, text, lp})) r.stopped = true;
}

void Engine::Impl::accept_logits(Request& r, std::span<const float> logits) {
  const auto prompt_length = static_cast<size_t>(r.prompt_length);
  if (r.draft.empty()) {
    int32_t id = -1;
    try {
      std::span<const uint64_t> allowed;
      if (r.constraint) allowed = r.constraint->allowed();
      id = r.sampler->next(logits, r.tokens, prompt_length, allowed);
      if (r.constraint) r.constraint->accept(id);
    } catch (const Error& e) {
      // This request alone fails (a hostile grammar's limits); the others in the batch go on.
      r.error = e.what();
      r.finished = true;
      return;
    }
    accept_token(r, id, logits);
    // A draft pass that failed midway may have left draft tokens in the draft model's cache.
    if (r.draft_cache) r.draft_cache->truncate(std::min<int64_t>(r.draft_cache->length(), static_cast<int64_t>(r.tokens.size()) - 1));
    return;
  }
  // Row i holds the logits after draft token i (row 0: after the last real token). Each agreed
  // draft token is the token plain decoding would have produced there, so go on; the first
  // disagreement gives the model's own token, and the rows after it are void.
  const size_t vocab = logits.size() / r.rows.size();
  for (size_t i = 0; i < r.rows.size() && !r.finished; ++i) {
    const auto row = logits.subspan(i * vocab, vocab);
    const bool has_draft = i < r.draft.size();
    const generate::Sampler::Distribution* q = i < r.draft_dists.size() ? &r.draft_dists[i] : nullptr;
    const int32_t id = has_draft ? r.sampler->next_with_draft(row, r.tokens, prompt_length, r.draft[i], q)
                                 : r.sampler->next(row, r.tokens, prompt_length);
    accept_token(r, id, row);
    if (!has_draft || id != r.draft[i]) break;
    ++r.result.stats.accepted_draft_tokens;
    ++accepted_drafts;
  }
  r.result.stats.draft_tokens += static_cast<int64_t>(r.draft.size());
  drafted += r.draft.size();
  // Keep the keys and values of the tokens that stand: the last token and the agreed drafts.
  r.cache->truncate(std::min<int64_t>(r.cache->length(), static_cast<int64_t>(r.tokens.size()) - 1));
  if (r.draft_cache) r.draft_cache->truncate(std::min<int64_t>(r.draft_cache->length(), static_cast<int64_t>(r.tokens.size()) - 1));
}

void Engine::Impl::accept_token(Request& r, int32_t id, std::span<const float> logits) {
  const auto now = Clock::now();
  ++generated;
  r.result.output_ids.push_back(id);
  r.tokens.push_back(id);
  if (r.config.logprobs) r.result.logprobs.push_back(logprobs_of(logits, id, r.config.top_logprobs));
  if (r.result.output_ids.size() == 1) r.result.stats.ttft_ms = ms_between(r.start, now);
  r.result.stats.per_token_ms.push_back(ms_between(r.result.output_ids.size() == 1 ? r.start : r.last_token, now));
  r.last_token = now;
  const int32_t tokenizer_size = pipe.tokenizer ? pipe.tokenizer->vocab_size() : 0;
  std::string text;
  if (r.decoder && id < tokenizer_size) text = r.matcher->push(r.decoder->push(id));  // padding ids have no text
  deliver(r, id, text, r.config.logprobs ? &r.result.logprobs.back() : nullptr);
  if (r.matcher->matched()) {
    r.result.finish_reason = "stop";
    r.finished = true;
  } else if (!r.config.ignore_eos && std::binary_search(r.stops.begin(), r.stops.end(), id)) {
    r.result.finish_reason = "eos";
    r.finished = true;
  } else if (static_cast<int64_t>(r.result.output_ids.size()) >= r.config.max_new_tokens ||
             static_cast<int64_t>(r.tokens.size()) > context) {
    r.finished = true;  // "length": max_new_tokens, or the context is full
  }
  if (r.stopped) r.finished = true;
}

void Engine::Impl::finish(Request& r) {
  GenerationResult& res = r.result;
  if (r.stopped) res.finish_reason = "stopped";
  if (!r.error.empty()) res.finish_reason = "error";
  if (r.decoder && !r.matcher->matched() && r.error.empty()) {
    const std::string tail = r.matcher->push(r.decoder->flush()) + r.matcher->flush();
    if (!tail.empty()) deliver(r, -1, tail, nullptr);
  }
  res.stats.generated_tokens = static_cast<int64_t>(res.output_ids.size());
  if (res.output_ids.size() > 1) {
    const double decode_ms = ms_between(r.start, r.last_token) - res.stats.ttft_ms;
    res.stats.decode_tokens_per_s = decode_ms > 0 ? static_cast<double>(res.output_ids.size() - 1) * 1000.0 / decode_ms : 0;
  }
  if (pipe.tokenizer) {
    const bool skip = r.config.skip_special_tokens;
    res.text = r.matcher->matched() ? r.matcher->text() : text_of(*pipe.tokenizer, res.output_ids, skip);
    if (r.config.return_full_text) res.text = text_of(*pipe.tokenizer, res.prompt_ids, skip) + res.text;
  }
  res.error = r.error;
  if (r.state && r.cache) {
    // The conversation keeps the cache of every token it computed.
    KVState::Impl& st = *r.state->impl;
    st.tokens.assign(r.tokens.begin(), r.tokens.begin() + r.cache->length());
    st.cache = std::move(r.cache);
    st.owner = backend;
  } else if (r.cache && r.error.empty() && r.cache->length() > 0) {
    std::vector<int32_t> computed(r.tokens.begin(), r.tokens.begin() + r.cache->length());
    keep_prefix(std::move(computed), std::move(r.cache));
  }
  r.cache.reset();  // frees the KV memory (unless the prefix cache took it)
  r.draft_cache.reset();
  if (r.on_finish) {
    {
      std::lock_guard<std::mutex> lock(mu);
      statuses.erase(r.id);
    }
    r.on_finish(std::move(res));
    return;
  }
  std::lock_guard<std::mutex> lock(mu);
  statuses[r.id] = Status::Finished;
  results[r.id] = std::move(res);
}

bool Engine::Impl::step() {
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& r : incoming) waiting.push_back(std::move(r));
    incoming.clear();
    for (RequestId id : cancels) {
      for (auto& r : running)
        if (r->id == id) r->stopped = r->finished = true;
      for (auto& r : waiting)
        if (r->id == id) r->stopped = r->finished = true;
    }
    cancels.clear();
  }
  // Requests stopped before they ran, by cancel() or their cancel flag, leave without running.
  for (auto* queue : {&waiting}) {
    for (auto& r : *queue) {
      if (r->config.cancel && r->config.cancel->load()) r->stopped = r->finished = true;
      if (r->finished) finish(*r);
    }
    std::erase_if(*queue, [](const auto& r) { return r->finished; });
  }
  for (auto& r : running)
    if (r->config.cancel && r->config.cancel->load()) r->stopped = r->finished = true;
  for (auto& r : running)
    if (r->finished) finish(*r);
  std::erase_if(running, [](const auto& r) { return r->finished; });

  admit();
  // A request asked for no tokens at all finishes as soon as it is admitted.
  for (auto& r : running)
    if (r->config.max_new_tokens == 0) r->finished = true;
  for (auto& r : running)
    if (r->finished) finish(*r);
  std::erase_if(running, [](const auto& r) { return r->finished; });
  schedule();
  if (!scheduled.empty()) run_batch();
  for (auto& r : running)
    if (r->finished) finish(*r);
  std::erase_if(running, [](const auto& r) { return r->finished; });
  publish_counts();
  std::lock_guard<std::mutex> lock(mu);
  return !running.empty() || !waiting.empty() || !incoming.empty();
}

GenerationResult Engine::Impl::run_to_completion(RequestId id) {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = results.find(id);
      if (it != results.end()) {
        GenerationResult r = std::move(it->second);
        results.erase(it);
        statuses.erase(id);
        return r;
      }
      if (!statuses.count(id)) throw Error("engine: unknown request " + std::to_string(id));
    }
    step();
  }
}

// --- Engine -------------------------------------------------------------------------------

Engine::Engine(const Pipeline& pipeline, const EngineOptions& options) {
  const Pipeline::Impl& p = *pipeline.impl();
  backend::BackendOptions bo;
  bo.threads = options.threads > 0 ? options.threads : p.options.threads;
  bo.kv_type = model::parse_kv_cache_type(p.options.kv_cache_dtype);
  auto be = backend::create_backend(p.options.device, p.model, bo);
  impl_ = std::make_unique<Impl>(p, *be, options);
  impl_->owned_backend = std::move(be);
}

Engine::~Engine() = default;

Engine::RequestId Engine::add_request(std::span<const int32_t> prompt, const GenerationConfig& config, Streamer streamer) {
  return impl_->add({{prompt.begin(), prompt.end()}, config, std::move(streamer), {}, {}, nullptr});
}

Engine::RequestId Engine::add_request(KVState& state, std::span<const int32_t> prompt, const GenerationConfig& config,
                                      Streamer streamer) {
  return impl_->add({{prompt.begin(), prompt.end()}, config, std::move(streamer), {}, {}, &state});
}

Engine::RequestId Engine::add_request(GenerationRequest request) { return impl_->add(std::move(request)); }

void Engine::cancel(RequestId id) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->cancels.push_back(id);
  }
  impl_->work.notify_all();
}

bool Engine::wait_for_work(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  return impl_->work.wait_for(lock, timeout, [&] { return !impl_->incoming.empty() || !impl_->cancels.empty(); });
}

bool Engine::step() { return impl_->step(); }

GenerationResult Engine::run_to_completion(RequestId id) { return impl_->run_to_completion(id); }

Engine::Status Engine::status(RequestId id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->statuses.find(id);
  return it == impl_->statuses.end() ? Status::Unknown : it->second;
}

std::optional<GenerationResult> Engine::take_result(RequestId id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->results.find(id);
  if (it == impl_->results.end()) return std::nullopt;
  GenerationResult r = std::move(it->second);
  impl_->results.erase(it);
  impl_->statuses.erase(id);
  return r;
}

Engine::Stats Engine::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Stats s = impl_->counters;
  s.generated_tokens = impl_->generated.load();
  return s;
}

size_t Engine::waiting() const { return stats().waiting; }
size_t Engine::running() const { return stats().running; }
uint64_t Engine::kv_cache_bytes_in_use() const { return stats().kv_cache_bytes; }

}  // namespace phinfer
