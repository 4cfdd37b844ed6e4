#include "phinfer/pipeline.h"

#include <algorithm>
#include <chrono>

#include "generate/sampler.h"
#include "generate/stop_strings.h"
#include "format/native_file.h"
#include "model/phi3.h"
#include "phinfer/error.h"

namespace phinfer {

using generate::StopStringMatcher;

struct Pipeline::Impl {
  std::filesystem::path dir;
  std::unique_ptr<model::Phi3Model> model;
  std::optional<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat_template;
  GenerationDefaults defaults;
  mutable kernels::ThreadPool pool;

  Impl(int threads) : pool(threads) {}

  const Tokenizer& tok() const {
    if (!tokenizer) throw Error(dir.string() + ": no tokenizer.json in the model folder; use token ids (--prompt-ids)");
    return *tokenizer;
  }
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::~Pipeline() = default;
Pipeline::Pipeline(Pipeline&&) noexcept = default;
Pipeline& Pipeline::operator=(Pipeline&&) noexcept = default;

Pipeline Pipeline::load(const std::filesystem::path& model_path, const PipelineOptions& options) {
  if (options.threads < 0 || options.threads > 1024)
    throw Error("--threads: expected 0 (auto) to 1024, found " + std::to_string(options.threads));
  if (options.kv_cache_dtype != "f32" && options.kv_cache_dtype != "f16")
    throw Error("--kv-cache: expected f32 or f16, found '" + options.kv_cache_dtype + "'");
  auto impl = std::make_unique<Impl>(options.threads);
  impl->dir = model_path;
  if (options.convert) {
    if (format::is_native_file(model_path))
      throw Error(model_path.string() + " is already a phinfer model file; --weight-format converts Hugging Face folders");
    impl->dir = cached_conversion(model_path, *options.convert, options.cache_dir);
  }
  impl->model = model::Phi3Model::load(impl->dir, model::SlidingWindow::parse(options.sliding_window));
  impl->model->set_kv_cache_f16(options.kv_cache_dtype == "f16");
  if (format::is_native_file(impl->dir)) {
    // Everything travels inside the model file.
    const auto& meta = impl->model->native_metadata();
    const std::string src = impl->dir.string();
    if (meta.contains("tokenizer") && meta["tokenizer"].contains("tokenizer.json")) {
      const auto& t = meta["tokenizer"];
      impl->tokenizer = Tokenizer::from_json_text(t["tokenizer.json"].get<std::string>(),
                                                  t.contains("tokenizer_config.json") ? t["tokenizer_config.json"].get<std::string>() : "",
                                                  src);
    }
    if (meta.contains("generation_config") && !meta["generation_config"].is_null())
      impl->defaults = GenerationDefaults::from_json(meta["generation_config"], src + " (generation_config)");
  } else {
    if (std::filesystem::exists(model_path / "tokenizer.json")) impl->tokenizer = Tokenizer::from_dir(model_path);
    impl->defaults = GenerationDefaults::from_file(model_path / "generation_config.json");
  }
  if (impl->tokenizer) {
    std::string tmpl = impl->tokenizer->chat_template();
    if (!tmpl.empty()) impl->chat_template.emplace(tmpl);
  }
  return Pipeline(std::move(impl));
}

const std::filesystem::path& Pipeline::model_path() const { return impl_->dir; }
uint64_t Pipeline::weight_bytes_per_token() const { return impl_->model->weight_bytes_per_token(); }

const ModelConfig& Pipeline::config() const { return impl_->model->config(); }
const Tokenizer& Pipeline::tokenizer() const { return impl_->tok(); }
const GenerationDefaults& Pipeline::generation_defaults() const { return impl_->defaults; }

std::vector<int32_t> Pipeline::stop_ids(const GenerationConfig& gc) const {
  std::vector<int32_t> ids = impl_->defaults.eos_token_ids;
  const auto& cfg = config().eos_token_ids;
  ids.insert(ids.end(), cfg.begin(), cfg.end());
  ids.insert(ids.end(), gc.extra_eos_token_ids.begin(), gc.extra_eos_token_ids.end());
  if (impl_->tokenizer) {
    // Phi-3 chat models end a turn with <|end|>; some configs list only <|endoftext|>.
    if (auto end = impl_->tokenizer->token_to_id("<|end|>")) ids.push_back(*end);
    if (auto eos = impl_->tokenizer->eos_id()) ids.push_back(*eos);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

std::string Pipeline::render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  const Tokenizer& tok = impl_->tok();
  if (!impl_->chat_template)
    throw Error(impl_->dir.string() + ": tokenizer_config.json has no chat_template, so --chat cannot format messages");
  return impl_->chat_template->render(messages, add_generation_prompt, tok.bos_token(), tok.eos_token());
}

std::vector<int32_t> Pipeline::encode_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  return impl_->tok().encode(render_chat(messages, add_generation_prompt), /*add_special_tokens=*/false);
}

GenerationResult Pipeline::generate(std::string_view prompt, const GenerationConfig& gc, const Streamer& streamer) const {
  std::vector<int32_t> ids = impl_->tok().encode(prompt, /*add_special_tokens=*/true);
  // return_full_text with a text prompt gives back the prompt as written, as HF pipeline does.
  GenerationConfig inner = gc;
  inner.return_full_text = false;
  GenerationResult r = generate(ids, inner, streamer);
  if (gc.return_full_text) r.text = std::string(prompt) + r.text;
  return r;
}

struct KVState::Impl {
  std::optional<model::Sequence> seq;
  const Pipeline::Impl* owner = nullptr;
};
KVState::KVState() : impl(std::make_unique<Impl>()) {}
KVState::~KVState() = default;
KVState::KVState(KVState&&) noexcept = default;
KVState& KVState::operator=(KVState&&) noexcept = default;
const std::vector<int32_t>& KVState::tokens() const {
  static const std::vector<int32_t> none;
  return impl->seq ? impl->seq->tokens() : none;
}
void KVState::clear() {
  if (impl->seq) impl->seq->reset();
}

GenerationResult Pipeline::generate(std::span<const int32_t> prompt, const GenerationConfig& gc, const Streamer& streamer) const {
  KVState state;
  return generate(state, prompt, gc, streamer);
}

GenerationResult Pipeline::generate(KVState& state, std::span<const int32_t> prompt, const GenerationConfig& gc,
                                    const Streamer& streamer) const {
  using Clock = std::chrono::steady_clock;
  auto ms_since = [](Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); };
  if (prompt.empty()) throw Error("the prompt is empty: give at least one token");
  if (gc.max_new_tokens < 0) throw Error("max_new_tokens must be >= 0, found " + std::to_string(gc.max_new_tokens));
  const int64_t max_len = config().max_position_embeddings;
  if (static_cast<int64_t>(prompt.size()) > max_len)
    throw Error("the prompt has " + std::to_string(prompt.size()) + " tokens; the model's context is " +
                std::to_string(max_len) + " (max_position_embeddings)");

  generate::Sampler sampler({gc.do_sample, gc.temperature, gc.top_k, gc.top_p, gc.min_p, gc.repetition_penalty}, gc.seed);
  const std::vector<int32_t> stops = stop_ids(gc);
  GenerationResult r;
  r.prompt_ids.assign(prompt.begin(), prompt.end());
  r.stats.prompt_tokens = static_cast<int64_t>(prompt.size());
  r.finish_reason = "length";
  if (!gc.stop_strings.empty() && !impl_->tokenizer) throw Error("stop strings need a tokenizer.json in the model folder");
  for (const auto& s : gc.stop_strings)
    if (s.empty()) throw Error("a stop string must not be empty");

  std::optional<Tokenizer::StreamDecoder> decoder;
  if (impl_->tokenizer) decoder.emplace(*impl_->tokenizer, gc.skip_special_tokens);
  StopStringMatcher matcher(gc.stop_strings);
  const int32_t tokenizer_size = impl_->tokenizer ? impl_->tokenizer->vocab_size() : 0;
  auto text_of = [&](const std::vector<int32_t>& ids) {
    std::vector<int32_t> known;
    for (int32_t id : ids)
      if (id < tokenizer_size) known.push_back(id);
    return impl_->tokenizer->decode(known, gc.skip_special_tokens);
  };
  bool stopped = false;
  auto emit = [&](const std::string& text) {
    if (!stopped && streamer && !text.empty() && !streamer(text)) stopped = true;
  };
  if (streamer && !gc.skip_prompt && impl_->tokenizer) emit(text_of(r.prompt_ids));

  const auto start = Clock::now();
  if (!state.impl->seq || state.impl->owner != impl_.get()) {
    state.impl->seq.emplace(*impl_->model, impl_->pool);
    state.impl->owner = impl_.get();
  }
  model::Sequence& seq = *state.impl->seq;
  // Keep the cached prefix the new prompt shares; at least the last prompt token is recomputed for its logits.
  const auto& cached = seq.tokens();
  size_t keep = 0;
  while (keep < cached.size() && keep + 1 < prompt.size() && cached[keep] == prompt[keep]) ++keep;
  seq.truncate(keep);
  seq.reserve(std::min<int64_t>(max_len, static_cast<int64_t>(prompt.size()) + gc.max_new_tokens));
  r.stats.reused_prompt_tokens = static_cast<int64_t>(keep);
  auto last_token_time = start;
  auto cancelled = [&] { return gc.cancel && gc.cancel->load(); };
  // The prompt goes in chunks so a cancel request is seen within one chunk's time.
  constexpr size_t kPrefillChunk = 256;
  const auto planned = static_cast<int64_t>(prompt.size());
  size_t fed = keep;
  while (gc.max_new_tokens > 0 && prompt.size() - fed > kPrefillChunk && !cancelled()) {
    seq.append_with_logits(prompt.subspan(fed, kPrefillChunk), {}, planned);
    fed += kPrefillChunk;
  }
  if (cancelled()) stopped = true;
  for (int64_t step = 0; step < gc.max_new_tokens && !stopped; ++step) {
    if (static_cast<int64_t>(seq.tokens().size()) >= max_len) break;  // the context is full
    const std::vector<float>& logits =
        step == 0 ? seq.append(prompt.subspan(fed), planned) : seq.append(std::span<const int32_t>(&r.output_ids.back(), 1));
    const int32_t id = sampler.next(logits, seq.tokens());
    r.output_ids.push_back(id);
    if (step == 0) r.stats.ttft_ms = ms_since(start);
    r.stats.per_token_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - last_token_time).count());
    last_token_time = Clock::now();
    // Ids past the tokenizer's vocabulary (embedding padding rows, e.g. Phi-4-mini's 200029..200063)
    // have no text, as in Hugging Face's decode.
    if (decoder && id < tokenizer_size) {
      emit(matcher.push(decoder->push(id)));
      if (matcher.matched()) {
        r.finish_reason = "stop";
        break;
      }
    }
    if (!gc.ignore_eos && std::binary_search(stops.begin(), stops.end(), id)) {
      r.finish_reason = "eos";
      break;
    }
    if (cancelled()) stopped = true;
  }
  if (stopped) r.finish_reason = "stopped";
  if (decoder && !matcher.matched()) emit(matcher.push(decoder->flush()) + matcher.flush());
  r.stats.generated_tokens = static_cast<int64_t>(r.output_ids.size());
  if (r.output_ids.size() > 1) {
    double decode_ms = std::chrono::duration<double, std::milli>(last_token_time - start).count() - r.stats.ttft_ms;
    r.stats.decode_tokens_per_s = decode_ms > 0 ? static_cast<double>(r.output_ids.size() - 1) * 1000.0 / decode_ms : 0;
  }
  if (impl_->tokenizer) {
    r.text = matcher.matched() ? matcher.text() : text_of(r.output_ids);
    if (gc.return_full_text) r.text = text_of(r.prompt_ids) + r.text;
  }
  return r;
}

std::vector<float> Pipeline::logits(std::span<const int32_t> ids, std::span<const int64_t> positions) const {
  if (ids.empty()) throw Error("no token ids given");
  for (int64_t p : positions)
    if (p < 0 || p >= static_cast<int64_t>(ids.size()))
      throw Error("position " + std::to_string(p) + " is outside the " + std::to_string(ids.size()) + " given ids");
  model::Sequence seq(*impl_->model, impl_->pool);
  return seq.append_with_logits(ids, positions);
}

}  // namespace phinfer
