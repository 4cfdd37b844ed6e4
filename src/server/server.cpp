#include "server/server.h"

#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <algorithm>
#include <deque>
#include <random>
#include <thread>

#include "phinfer/error.h"
#include "server/metrics.h"

namespace phinfer::server {

extern const char kChatPageHtml[];  // the web chat page, embedded at build time (chat_page.html)

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s%016llx", prefix,
                static_cast<unsigned long long>(salt ^ (++counter * 0x9E3779B97F4A7C15ull)));
  return buf;
}

// Compares in time that depends only on the lengths, so a wrong key leaks nothing about the right one.
bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    diff |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

struct ModelSlot {
  std::string id;
  Pipeline pipeline;
  std::unique_ptr<Engine> engine;
  int64_t context = 0;
  std::thread driver;
};

// One HTTP request's generations (one engine request per choice), filled by the engine thread.
struct Job {
  struct Event {
    size_t choice;
    int32_t id;  // -1: held-back text, or (finished) the choice's end
    std::string text;
    std::optional<TokenLogprobs> logprobs;
    bool finished = false;
  };
  ModelSlot* slot = nullptr;
  std::vector<std::vector<int32_t>> prompts;  // per choice
  std::vector<Engine::RequestId> ids;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Event> events;
  std::vector<GenerationResult> results;
  std::vector<Clock::time_point> last_token;
  // Per choice, the text each generated token released (held-back text joins the last token), so
  // the tokens of logprobs add up to the content exactly, as OpenAI's do.
  std::vector<std::vector<std::string>> token_texts;
  size_t finished = 0;
  Clock::time_point start = Clock::now();
  bool all_done() const { return finished == ids.size(); }
};

std::string finish_reason(const GenerationResult& r) {
  return r.finish_reason == "length" ? "length" : "stop";  // eos, a stop string, or stopped
}

// OpenAI's tool_calls list (streamed deltas carry each call's index).
json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index) {
  json list = json::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    json c = {{"id", random_id("call_")}, {"type", "function"},
              {"function", {{"name", calls[k].name}, {"arguments", calls[k].arguments}}}};
    if (with_index) c["index"] = k;
    list.push_back(std::move(c));
  }
  return list;
}

// Streaming with tools: text is sent as it comes, except from the start of a call block on (held
// until the choice ends, then sent as tool_calls) and a tail that may still become one.
struct ToolStream {
  std::string pending;
  bool in_call = false;

  // The text that can be sent now.
  std::string push(const std::string& text) {
    pending += text;
    if (in_call) return {};
    size_t cut = std::string::npos;
    for (const char* marker : {"<|tool_call|>", "functools["}) cut = std::min(cut, pending.find(marker));
    if (cut != std::string::npos) {
      in_call = true;
      std::string out = pending.substr(0, cut);
      pending.erase(0, cut);
      return out;
    }
    // Keep the longest tail that begins a marker.
    size_t keep = 0;
    for (std::string_view marker : {std::string_view("<|tool_call|>"), std::string_view("functools[")})
      for (size_t n = std::min(marker.size() - 1, pending.size()); n > keep; --n)
        if (std::string_view(pending).substr(pending.size() - n) == marker.substr(0, n)) {
          keep = n;
          break;
        }
    std::string out = pending.substr(0, pending.size() - keep);
    pending.erase(0, pending.size() - keep);
    return out;
  }
};

std::string sse(const json& j) { return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n"; }

class Server {
 public:
  Server(std::vector<ServedModel> models, const ServerOptions& o) : options_(o) {
    for (auto& m : models) {
      auto slot = std::make_unique<ModelSlot>(ModelSlot{m.id, std::move(m.pipeline), nullptr, 0, {}});
      EngineOptions eo;
      eo.max_running = o.parallel;
      // Conversations resend their history each turn, and the n choices of a request share a
      // prompt: the engine reuses computed prefixes (exactly) from running and finished requests.
      eo.prefix_cache_bytes = 512ull << 20;
      slot->engine = std::make_unique<Engine>(slot->pipeline, eo);
      const int64_t model_context = slot->pipeline.config().max_position_embeddings;
      slot->context = o.ctx_size > 0 ? std::min(o.ctx_size, model_context) : model_context;
      slots_.push_back(std::move(slot));
    }
  }

  int run();

 private:
  ModelSlot& find_model(const std::string& id) {
    for (auto& s : slots_)
      if (s->id == id) return *s;
    throw ApiError(404, "the model '" + id + "' does not exist", "model", "model_not_found");
  }

  GenerationConfig config_for(const ApiRequest& r, size_t choice, int64_t context, size_t prompt_length) const;
  std::shared_ptr<Job> submit(ModelSlot& slot, const ApiRequest& r, std::vector<std::vector<int32_t>> prompts);
  void cancel(Job& job);
  void wait(Job& job);
  void handle_generation(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  // `in_flight` counts the request until its answer is sent: a stream holds it until it ends.
  void respond(const ApiRequest& r, const std::shared_ptr<Job>& job, httplib::Response& res,
               std::shared_ptr<const void> in_flight);
  json logprobs_json(const ApiRequest& r, const Tokenizer& tok, const std::vector<TokenLogprobs>& lps,
                     const std::vector<std::string>& texts, size_t text_offset) const;
  json usage_json(const ApiRequest& r, const Job& job) const;
  json final_json(const ApiRequest& r, const Job& job, const std::string& id, int64_t created) const;
  void stream(const ApiRequest& r, const std::shared_ptr<Job>& job, httplib::Response& res,
              std::shared_ptr<const void> in_flight);
  std::string metrics_text() const;

  ServerOptions options_;
  std::vector<std::unique_ptr<ModelSlot>> slots_;
  httplib::Server http_;
  Metrics metrics_;
  std::atomic<bool> stopping_{false}, draining_{false};
  std::mutex jobs_mu_;
  std::vector<std::weak_ptr<Job>> jobs_;  // for SIGTERM: cancel what is still running
  const std::string fingerprint_ = "phinfer-0.1.0";
};

GenerationConfig Server::config_for(const ApiRequest& r, size_t choice, int64_t context, size_t prompt_length) const {
  GenerationConfig c;
  const int64_t room = context - static_cast<int64_t>(prompt_length);
  c.max_new_tokens = std::min(r.max_tokens.value_or(options_.limits.max_tokens), room);
  const double temperature = r.temperature.value_or(1.0);  // OpenAI's default samples
  c.do_sample = temperature > 0;
  c.temperature = temperature > 0 ? temperature : 1.0;
  c.top_p = r.top_p.value_or(1.0);
  c.top_k = 0;  // OpenAI has no top-k
  // Without a seed every call differs, as OpenAI's; each choice gets its own stream.
  static std::atomic<uint64_t> unseeded{std::random_device{}()};
  c.seed = (r.seed ? *r.seed : unseeded.fetch_add(0x9E3779B97F4A7C15ull)) + choice;
  c.presence_penalty = r.presence_penalty;
  c.frequency_penalty = r.frequency_penalty;
  c.logprobs = r.logprobs;
  c.top_logprobs = r.top_logprobs;
  c.stop_strings = r.stop;
  c.grammar = r.grammar;
  c.draft_tokens = options_.draft_tokens;
  return c;
}

std::shared_ptr<Job> Server::submit(ModelSlot& slot, const ApiRequest& r, std::vector<std::vector<int32_t>> prompts) {
  auto job = std::make_shared<Job>();
  job->slot = &slot;
  job->prompts = std::move(prompts);
  const size_t choices = job->prompts.size();
  job->results.resize(choices);
  job->last_token.resize(choices);
  job->token_texts.resize(choices);
  Job* j = job.get();
  for (size_t i = 0; i < choices; ++i) {
    GenerationRequest g;
    g.prompt_ids = j->prompts[i];
    g.config = config_for(r, i % static_cast<size_t>(r.n), slot.context, g.prompt_ids.size());
    // The callbacks hold the job: it outlives an HTTP handler that gave up.
    g.on_token = [this, job, i](const TokenEvent& e) {
      const auto now = Clock::now();
      if (e.id >= 0) {
        metrics_.generated_tokens++;
        metrics_.per_token.observe(seconds_between(job->last_token[i] == Clock::time_point{} ? job->start : job->last_token[i], now));
        if (job->last_token[i] == Clock::time_point{}) metrics_.ttft.observe(seconds_between(job->start, now));
        job->last_token[i] = now;
        job->token_texts[i].emplace_back(e.text);
      } else if (!job->token_texts[i].empty()) {
        job->token_texts[i].back() += e.text;
      }
      std::lock_guard<std::mutex> lock(job->mu);
      job->events.push_back({i, e.id, std::string(e.text), e.logprobs ? std::optional(*e.logprobs) : std::nullopt});
      job->cv.notify_all();
      return true;
    };
    g.on_finish = [this, job, i](GenerationResult&& res) {
      metrics_.prompt_tokens += res.prompt_ids.size();
      if (res.finish_reason == "stopped") metrics_.cancelled++;
      std::lock_guard<std::mutex> lock(job->mu);
      job->results[i] = std::move(res);
      ++job->finished;
      job->events.push_back({i, -1, {}, std::nullopt, true});
      job->cv.notify_all();
    };
    try {
      std::lock_guard<std::mutex> lock(job->mu);  // on_finish must not see a half-filled ids
      job->ids.push_back(slot.engine->add_request(std::move(g)));
    } catch (const Error& e) {
      cancel(*job);
      throw ApiError(400, e.what(), "", "invalid_request");
    }
  }
  std::lock_guard<std::mutex> lock(jobs_mu_);
  std::erase_if(jobs_, [](const auto& w) { return w.expired(); });
  jobs_.push_back(job);
  return job;
}

void Server::cancel(Job& job) {
  std::vector<Engine::RequestId> ids;
  {
    std::lock_guard<std::mutex> lock(job.mu);
    if (job.all_done()) return;
    ids = job.ids;
  }
  for (auto id : ids) job.slot->engine->cancel(id);  // unknown (finished) ids are ignored
}

void Server::wait(Job& job) {
  std::unique_lock<std::mutex> lock(job.mu);
  job.cv.wait(lock, [&] { return job.all_done(); });
}

json Server::logprobs_json(const ApiRequest& r, const Tokenizer& tok, const std::vector<TokenLogprobs>& lps,
                           const std::vector<std::string>& texts, size_t text_offset) const {
  // Alternatives: the token alone. Ids past the tokenizer (embedding padding rows, which a model
  // may rank or even sample) have no text, as in the engine's decode.
  auto piece = [&](int32_t id) { return id < tok.vocab_size() ? tok.decode({id}, false) : std::string(); };
  auto text_of = [&](size_t k) { return k < texts.size() ? texts[k] : piece(lps[k].id); };
  auto bytes = [](const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(c);
    return b;
  };
  if (r.endpoint == Endpoint::Chat) {
    json content = json::array();
    for (size_t k = 0; k < lps.size(); ++k) {
      const TokenLogprobs& lp = lps[k];
      json top = json::array();
      for (const auto& t : lp.top) top.push_back({{"token", piece(t.id)}, {"logprob", t.logprob}, {"bytes", bytes(piece(t.id))}});
      const std::string s = text_of(k);
      content.push_back({{"token", s}, {"logprob", lp.logprob}, {"bytes", bytes(s)}, {"top_logprobs", top}});
    }
    return {{"content", content}, {"refusal", nullptr}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
  for (size_t k = 0; k < lps.size(); ++k) {
    const TokenLogprobs& lp = lps[k];
    const std::string s = text_of(k);
    tokens.push_back(s);
    token_logprobs.push_back(lp.logprob);
    json alternatives = json::object();
    for (const auto& t : lp.top) alternatives[piece(t.id)] = t.logprob;
    top.push_back(alternatives);
    offsets.push_back(text_offset);
    text_offset += s.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

json Server::usage_json(const ApiRequest& r, const Job& job) const {
  int64_t prompt = 0, generated = 0;
  for (size_t i = 0; i < job.results.size(); ++i) {
    if (i % static_cast<size_t>(r.n) == 0) prompt += static_cast<int64_t>(job.prompts[i].size());  // n choices share one prompt
    generated += static_cast<int64_t>(job.results[i].output_ids.size());
  }
  if (r.endpoint == Endpoint::Responses)
    return {{"input_tokens", prompt}, {"output_tokens", generated}, {"total_tokens", prompt + generated}};
  return {{"prompt_tokens", prompt}, {"completion_tokens", generated}, {"total_tokens", prompt + generated}};
}

json responses_message(const std::string& text, const std::string& item_id, const char* status) {
  return {{"type", "message"},
          {"id", item_id},
          {"status", status},
          {"role", "assistant"},
          {"content", json::array({{{"type", "output_text"}, {"text", text}, {"annotations", json::array()}}})}};
}

json Server::final_json(const ApiRequest& r, const Job& job, const std::string& id, int64_t created) const {
  const Tokenizer& tok = job.slot->pipeline.tokenizer();
  if (r.endpoint == Endpoint::Responses) {
    const GenerationResult& res = job.results[0];
    const bool complete = res.finish_reason != "length";
    return {{"id", id},
            {"object", "response"},
            {"created_at", created},
            {"status", complete ? "completed" : "incomplete"},
            {"incomplete_details", complete ? json(nullptr) : json{{"reason", "max_output_tokens"}}},
            {"model", job.slot->id},
            {"output", json::array({responses_message(res.text, "msg_" + id.substr(5), "completed")})},
            {"usage", usage_json(r, job)},
            {"error", nullptr}};
  }
  json choices = json::array();
  for (size_t i = 0; i < job.results.size(); ++i) {
    const GenerationResult& res = job.results[i];
    if (r.endpoint == Endpoint::Chat) {
      json message = {{"role", "assistant"}, {"content", res.text}, {"refusal", nullptr}};
      std::string reason = finish_reason(res);
      if (r.tools) {
        ToolCallOutput out = r.tools->parse_output(res.text);
        if (!out.calls.empty()) {
          message["content"] = out.content.empty() ? json(nullptr) : json(out.content);
          message["tool_calls"] = tool_calls_json(out.calls, false);
          reason = "tool_calls";
        }
      }
      choices.push_back({{"index", i},
                         {"message", message},
                         {"logprobs", r.logprobs ? logprobs_json(r, tok, res.logprobs, job.token_texts[i], 0) : json(nullptr)},
                         {"finish_reason", reason}});
    } else {
      const std::string prefix = r.echo ? r.prompts[i / static_cast<size_t>(r.n)] : "";
      choices.push_back({{"index", i},
                         {"text", prefix + res.text},
                         {"logprobs", r.logprobs ? logprobs_json(r, tok, res.logprobs, job.token_texts[i], prefix.size()) : json(nullptr)},
                         {"finish_reason", finish_reason(res)}});
    }
  }
  return {{"id", id},
          {"object", r.endpoint == Endpoint::Chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", job.slot->id},
          {"system_fingerprint", fingerprint_},
          {"choices", choices},
          {"usage", usage_json(r, job)}};
}

void Server::respond(const ApiRequest& r, const std::shared_ptr<Job>& job, httplib::Response& res,
                     std::shared_ptr<const void> in_flight) {
  if (r.stream) return stream(r, job, res, std::move(in_flight));
  wait(*job);
  for (const auto& result : job->results)
    if (result.finish_reason == "error") throw ApiError(500, "generation failed: " + result.error, "", "generation_error", "server_error");
  const char* prefix = r.endpoint == Endpoint::Chat ? "chatcmpl-" : r.endpoint == Endpoint::Completions ? "cmpl-" : "resp_";
  res.set_content(final_json(r, *job, random_id(prefix), unix_now()).dump(-1, ' ', false, json::error_handler_t::replace),
                  "application/json");
}

// Server-sent events in OpenAI's chunk format. The engine thread queues events; this HTTP worker
// drains them. A failed write means the client left: the provider returns false and the
// releaser cancels the job's engine requests, which leave the batch at the next step.
void Server::stream(const ApiRequest& request, const std::shared_ptr<Job>& job, httplib::Response& res,
                    std::shared_ptr<const void> in_flight) {
  // The provider runs after this call returns: everything it uses is owned by its lambdas.
  auto rp = std::make_shared<const ApiRequest>(request);
  const ApiRequest& r = *rp;
  const char* prefix = r.endpoint == Endpoint::Chat ? "chatcmpl-" : r.endpoint == Endpoint::Completions ? "cmpl-" : "resp_";
  const std::string id = random_id(prefix);
  const int64_t created = unix_now();
  auto started = std::make_shared<bool>(false);
  auto tool_streams = std::make_shared<std::vector<ToolStream>>(job->prompts.size());
  auto sequence = std::make_shared<int64_t>(0);
  const std::string item_id = "msg_" + id.substr(5);
  // A Responses API event: "event: TYPE" plus its JSON, numbered.
  auto event = [sequence](const std::string& type, json body) {
    body["type"] = type;
    body["sequence_number"] = (*sequence)++;
    return "event: " + type + "\n" + sse(body);
  };
  auto chunk = [this, rp, id, created, job](json choices) {
    const ApiRequest& r = *rp;
    json c = {{"id", id},
              {"object", r.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion"},
              {"created", created},
              {"model", job->slot->id},
              {"system_fingerprint", fingerprint_},
              {"choices", std::move(choices)}};
    if (r.include_usage) c["usage"] = nullptr;
    return sse(c);
  };
  auto opening = [=, this]() {
    const ApiRequest& r = *rp;
    std::string out;
    if (r.endpoint == Endpoint::Chat) {
      for (size_t i = 0; i < job->ids.size(); ++i)
        out += chunk(json::array({{{"index", i},
                                   {"delta", {{"role", "assistant"}, {"content", ""}}},
                                   {"logprobs", nullptr},
                                   {"finish_reason", nullptr}}}));
    } else if (r.endpoint == Endpoint::Completions && r.echo) {
      for (size_t i = 0; i < job->ids.size(); ++i)
        out += chunk(json::array({{{"index", i}, {"text", r.prompts[i / static_cast<size_t>(r.n)]}, {"logprobs", nullptr},
                                   {"finish_reason", nullptr}}}));
    } else if (r.endpoint == Endpoint::Responses) {
      json response = {{"id", id}, {"object", "response"}, {"created_at", created}, {"status", "in_progress"},
                       {"model", job->slot->id}, {"output", json::array()}, {"usage", nullptr}, {"error", nullptr},
                       {"incomplete_details", nullptr}};
      out += event("response.created", {{"response", response}});
      out += event("response.in_progress", {{"response", response}});
      out += event("response.output_item.added", {{"output_index", 0}, {"item", responses_message("", item_id, "in_progress")}});
      out += event("response.content_part.added",
                   {{"output_index", 0}, {"content_index", 0}, {"item_id", item_id},
                    {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}});
    }
    return out;
  };
  // Text and the end of one choice.
  auto render = [=, this](const Job::Event& e) -> std::string {
    const ApiRequest& r = *rp;
    const GenerationResult& result = job->results[e.choice];
    if (r.endpoint == Endpoint::Responses) {
      if (!e.finished)
        return e.text.empty() ? "" : event("response.output_text.delta", {{"output_index", 0}, {"content_index", 0},
                                                                           {"item_id", item_id}, {"delta", e.text}});
      const json part = {{"type", "output_text"}, {"text", result.text}, {"annotations", json::array()}};
      std::string out = event("response.output_text.done",
                              {{"output_index", 0}, {"content_index", 0}, {"item_id", item_id}, {"text", result.text}});
      out += event("response.content_part.done", {{"output_index", 0}, {"content_index", 0}, {"item_id", item_id}, {"part", part}});
      out += event("response.output_item.done", {{"output_index", 0}, {"item", responses_message(result.text, item_id, "completed")}});
      return out;
    }
    const Tokenizer& tok = job->slot->pipeline.tokenizer();
    json lp = nullptr;
    if (!e.finished && e.logprobs) lp = logprobs_json(r, tok, {*e.logprobs}, {e.text}, 0);
    std::string text = e.text, reason = e.finished ? finish_reason(result) : "";
    std::string out;
    if (r.tools) {
      ToolStream& ts = (*tool_streams)[e.choice];
      if (!e.finished) {
        text = ts.push(e.text);
      } else {
        ToolCallOutput calls = r.tools->parse_output(result.text);
        if (!calls.calls.empty()) {
          out += chunk(json::array({{{"index", e.choice}, {"delta", {{"tool_calls", tool_calls_json(calls.calls, true)}}},
                                     {"logprobs", nullptr}, {"finish_reason", nullptr}}}));
          reason = "tool_calls";
        } else if (!ts.pending.empty()) {  // not a call after all: the held text is content
          out += chunk(json::array({{{"index", e.choice}, {"delta", {{"content", ts.pending}}}, {"logprobs", nullptr},
                                     {"finish_reason", nullptr}}}));
        }
        ts.pending.clear();
      }
    }
    if (!e.finished && text.empty() && lp.is_null()) return out;
    json c = {{"index", e.choice}, {"logprobs", lp}, {"finish_reason", e.finished ? json(reason) : json(nullptr)}};
    if (r.endpoint == Endpoint::Chat)
      c["delta"] = e.finished ? json::object() : json{{"content", text}};
    else
      c["text"] = e.finished ? "" : text;
    return out + chunk(json::array({c}));
  };
  auto closing = [=, this]() {
    const ApiRequest& r = *rp;
    if (r.endpoint == Endpoint::Responses) {
      json response = final_json(r, *job, id, created);
      return event("response.completed", {{"response", response}});
    }
    std::string out;
    if (r.include_usage) {
      json c = {{"id", id}, {"object", r.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created}, {"model", job->slot->id}, {"system_fingerprint", fingerprint_},
                {"choices", json::array()}, {"usage", usage_json(r, *job)}};
      out += sse(c);
    }
    return out + "data: [DONE]\n\n";
  };
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [job, started, opening, render, closing, in_flight](size_t, httplib::DataSink& sink) {
        std::string out;
        bool done = false;
        // httplib does not catch what a provider throws: a failure ends the stream with an error event.
        try {
          if (!*started) {
            out = opening();
            *started = true;
          }
          std::deque<Job::Event> batch;
          {
            std::unique_lock<std::mutex> lock(job->mu);
            job->cv.wait_for(lock, std::chrono::seconds(1), [&] { return !job->events.empty() || job->all_done(); });
            batch.swap(job->events);
            done = job->all_done();  // every event of a finished job is queued before it finishes
          }
          for (const auto& e : batch) out += render(e);
          if (done) out += closing();
        } catch (const std::exception& e) {
          out = sse(ApiError(500, std::string("internal error: ") + e.what(), "", "internal_error", "server_error").body());
          sink.write(out.data(), out.size());
          return false;
        }
        // While a request waits for a slot, a comment line keeps the connection checked.
        if (out.empty()) out = ": keep-alive\n\n";
        if (!sink.write(out.data(), out.size())) return false;
        if (done) sink.done();
        return true;
      },
      [this, job](bool) { cancel(*job); });
}

void Server::handle_generation(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
  if (draining_) {
    res.set_header("Retry-After", "5");
    throw ApiError(503, "the server is shutting down", "", "server_shutting_down", "server_error");
  }
  const json body = parse_body(req.body);
  ApiRequest r = endpoint == Endpoint::Chat          ? parse_chat_request(body, options_.limits)
                 : endpoint == Endpoint::Completions ? parse_completion_request(body, options_.limits)
                                                     : parse_responses_request(body, options_.limits);
  ModelSlot& slot = find_model(r.model);
  const char* prompt_field = endpoint == Endpoint::Completions ? "prompt" : endpoint == Endpoint::Responses ? "input" : "messages";
  std::vector<std::vector<int32_t>> prompts;
  try {
    if (endpoint == Endpoint::Completions) {
      for (const auto& p : r.prompts) {
        auto ids = slot.pipeline.tokenizer().encode(p);
        for (int i = 0; i < r.n; ++i) prompts.push_back(ids);
      }
    } else {
      // Tools where the model reads them, and earlier calls and results in its own syntax.
      const bool has_tool_history = std::any_of(r.messages.begin(), r.messages.end(), [](const ChatMessage& m) {
        return m.role == "tool" || m.extra.contains("tool_calls");
      });
      const std::vector<ChatMessage> messages =
          r.tools ? r.tools->prompt_messages(r.messages, slot.pipeline)
                  : has_tool_history ? ToolSet::history_messages(r.messages, slot.pipeline) : r.messages;
      auto ids = slot.pipeline.encode_chat(messages);
      for (int i = 0; i < r.n; ++i) prompts.push_back(ids);
    }
  } catch (const Error& e) {
    throw ApiError(400, e.what(), prompt_field, "invalid_prompt");
  }
  // A prompt that can never fit is the client's error, busy server or not (a 503 invites a retry).
  for (const auto& p : prompts) {
    if (static_cast<int64_t>(p.size()) >= slot.context)
      throw ApiError(400, "the prompt has " + std::to_string(p.size()) + " tokens; the context of '" + slot.id + "' is " +
                              std::to_string(slot.context) + " tokens",
                     prompt_field, "context_length_exceeded");
    if (p.empty()) throw ApiError(400, "the prompt is empty", prompt_field, "invalid_value");
  }
  // Bounded work: past max_queued requests in flight (streams until they end), clients are told to
  // come back.
  struct InFlight {
    std::atomic<uint64_t>& n;
    uint64_t count;  // this one included
    explicit InFlight(std::atomic<uint64_t>& n) : n(n), count(++n) {}
    ~InFlight() { --n; }
  };
  auto in_flight = std::make_shared<const InFlight>(metrics_.in_flight);
  if (in_flight->count > options_.max_queued) {
    res.set_header("Retry-After", "1");
    throw ApiError(503, "the server is busy: too many requests in flight", "", "server_busy", "server_error");
  }
  auto job = submit(slot, r, std::move(prompts));
  respond(r, job, res, std::move(in_flight));
}

std::string Server::metrics_text() const {
  std::string out = metrics_.render();
  auto series = [&](const char* type, const char* name, const char* help, auto value) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    for (const auto& s : slots_) out += std::string(name) + "{model=\"" + s->id + "\"} " + std::to_string(value(*s)) + "\n";
  };
  auto gauge = [&](const char* name, const char* help, auto value) { series("gauge", name, help, value); };
  gauge("phinfer_queue_length", "Requests waiting for a slot", [](const ModelSlot& s) { return s.engine->stats().waiting; });
  gauge("phinfer_running_requests", "Requests in the running batch", [](const ModelSlot& s) { return s.engine->stats().running; });
  gauge("phinfer_kv_cache_bytes", "KV cache memory reserved by running requests",
        [](const ModelSlot& s) { return s.engine->stats().kv_cache_bytes; });
  series("counter", "phinfer_draft_tokens_total", "Speculative decoding: draft tokens checked",
         [](const ModelSlot& s) { return s.engine->stats().draft_tokens; });
  series("counter", "phinfer_accepted_draft_tokens_total", "Speculative decoding: draft tokens accepted",
         [](const ModelSlot& s) { return s.engine->stats().accepted_draft_tokens; });
  return out;
}

std::string endpoint_label(const std::string& path) {
  for (const char* known : {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/models", "/health", "/metrics", "/"})
    if (path == known) return known;
  return path.rfind("/v1/models/", 0) == 0 ? "/v1/models/{id}" : "other";
}

int Server::run() {
  auto error_json = [](httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    res.set_content(e.body().dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  };
  http_.new_task_queue = [n = options_.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
  http_.set_payload_max_length(options_.max_body_bytes);
  http_.set_read_timeout(options_.timeout_s, 0);
  http_.set_write_timeout(options_.timeout_s, 0);
  // An idle keep-alive connection holds its worker too: no longer than a stalled read would.
  http_.set_keep_alive_timeout(std::min(5, options_.timeout_s));
  // A client that stops reading is noticed (write timeout) only once its socket's buffers are full:
  // a fixed send buffer, which accepted sockets inherit from the listener, bounds both that delay
  // and the kernel memory a stalled reader pins. 128 KiB still streams far faster than tokens come.
  http_.set_socket_options([](socket_t sock) {
    httplib::default_socket_options(sock);
    const int bytes = 128 << 10;
    setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  });
  http_.set_exception_handler([error_json](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const ApiError& e) {
      error_json(res, e);
    } catch (const std::exception& e) {
      error_json(res, ApiError(500, std::string("internal error: ") + e.what(), "", "internal_error", "server_error"));
    } catch (...) {
      error_json(res, ApiError(500, "internal error", "", "internal_error", "server_error"));
    }
  });
  // httplib's own refusals (413 too large, 404 no route, 400 unparsable HTTP) get OpenAI's shape too.
  http_.set_error_handler(httplib::Server::HandlerWithResponse([error_json](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string what = res.status == 413 ? "the request body is too large"
                             : res.status == 404 ? "no route for " + req.method + " " + req.path
                                                 : "the request was refused (HTTP " + std::to_string(res.status) + ")";
    const int status = res.status;
    error_json(res, ApiError(status, what, "", status == 404 ? "not_found" : "invalid_request"));
    return httplib::Server::HandlerResponse::Handled;
  }));
  http_.set_pre_routing_handler([this, error_json](const httplib::Request& req, httplib::Response& res) {
    const bool open = req.path == "/health" || req.path == "/" || req.method == "OPTIONS";
    if (options_.api_key.empty() || open) return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    const std::string bearer = "Bearer ";
    const std::string given = auth.rfind(bearer, 0) == 0 ? auth.substr(bearer.size()) : "";
    if (constant_time_equal(given, options_.api_key)) return httplib::Server::HandlerResponse::Unhandled;
    error_json(res, ApiError(401, "invalid or missing API key (Authorization: Bearer ...)", "", "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  http_.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics_.count_request(endpoint_label(req.path), res.status);
  });

  http_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"status", draining_ ? "draining" : "ok"}}.dump(), "application/json");
    if (draining_) res.status = 503;
  });
  http_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
  auto model_json = [](const ModelSlot& s) {
    return json{{"id", s.id}, {"object", "model"}, {"created", 0}, {"owned_by", "phinfer"}, {"context_length", s.context}};
  };
  http_.Get("/v1/models", [this, model_json](const httplib::Request&, httplib::Response& res) {
    json data = json::array();
    for (const auto& s : slots_) data.push_back(model_json(*s));
    res.set_content(json{{"object", "list"}, {"data", data}}.dump(), "application/json");
  });
  http_.Get(R"(/v1/models/(.+))", [this, model_json](const httplib::Request& req, httplib::Response& res) {
    res.set_content(model_json(find_model(req.matches[1])).dump(), "application/json");
  });
  http_.Post("/v1/chat/completions",
             [this](const httplib::Request& req, httplib::Response& res) { handle_generation(req, res, Endpoint::Chat); });
  http_.Post("/v1/completions",
             [this](const httplib::Request& req, httplib::Response& res) { handle_generation(req, res, Endpoint::Completions); });
  http_.Post("/v1/responses",
             [this](const httplib::Request& req, httplib::Response& res) { handle_generation(req, res, Endpoint::Responses); });
  http_.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'");
    res.set_content(kChatPageHtml, "text/html; charset=utf-8");
  });

  const sigset_t signals = block_stop_signals();
  signal(SIGPIPE, SIG_IGN);  // a vanished client is a failed write, not a dead server

  for (auto& s : slots_) {
    ModelSlot* slot = s.get();
    slot->driver = std::thread([this, slot] {
      while (!stopping_) {
        try {
          if (!slot->engine->step()) slot->engine->wait_for_work(std::chrono::milliseconds(50));
        } catch (const std::exception& e) {
          std::fprintf(stderr, "engine %s: %s\n", slot->id.c_str(), e.what());
        }
      }
    });
  }

  int port = options_.port;
  const bool bound = port == 0 ? (port = http_.bind_to_any_port(options_.host)) > 0 : http_.bind_to_port(options_.host, port);
  int rc = 0;
  std::thread watcher;
  if (!bound) {
    std::fprintf(stderr, "error: cannot listen on %s:%d\n", options_.host.c_str(), options_.port);
    rc = 1;
  } else {
    if (options_.host != "127.0.0.1" && options_.host != "localhost" && options_.host != "::1" && options_.api_key.empty())
      std::fprintf(stderr, "warning: listening on %s without --api-key: anyone who can reach this address can use the models\n",
                   options_.host.c_str());
    watcher = std::thread([this, signals] {
      int sig = 0;
      sigwait(&signals, &sig);
      std::fprintf(stderr, "signal %d: draining (up to %d s), then stopping\n", sig, options_.drain_s);
      draining_ = true;
      const auto deadline = Clock::now() + std::chrono::seconds(options_.drain_s);
      while (metrics_.in_flight.load() > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      {
        std::lock_guard<std::mutex> lock(jobs_mu_);
        for (auto& w : jobs_)
          if (auto job = w.lock()) cancel(*job);
      }
      while (metrics_.in_flight.load() > 0 && Clock::now() < deadline + std::chrono::seconds(5))
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      http_.stop();
    });
    std::fprintf(stderr, "listening on http://%s:%d\n", options_.host.c_str(), port);
    std::fflush(stderr);
    if (!http_.listen_after_bind()) rc = rc ? rc : 0;
  }
  if (watcher.joinable()) watcher.join();
  stopping_ = true;
  for (auto& s : slots_)
    if (s->driver.joinable()) s->driver.join();
  std::fprintf(stderr, "stopped\n");
  return rc;
}

}  // namespace

sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

int serve(std::vector<ServedModel> models, const ServerOptions& options) {
  Server server(std::move(models), options);
  return server.run();
}

}  // namespace phinfer::server
