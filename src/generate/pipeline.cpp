#include "phinfer/pipeline.h"

#include <algorithm>

#include "engine/engine_impl.h"
#include "format/native_file.h"
#include "generate/pipeline_impl.h"
#include "model/gguf_weights.h"
#include "tokenizer/gguf_vocab.h"
#include "phinfer/error.h"

namespace phinfer {

const Tokenizer& Pipeline::Impl::tok() const {
  if (!tokenizer) throw Error(dir.string() + ": no tokenizer.json in the model folder; give token ids instead of text");
  return *tokenizer;
}

std::shared_ptr<const grammar::Vocabulary> Pipeline::Impl::vocabulary() const {
  std::call_once(vocabulary_once, [&] { grammar_vocabulary = grammar::Vocabulary::build(tok(), model->config().vocab_size); });
  return grammar_vocabulary;
}

std::vector<int32_t> Pipeline::Impl::stop_ids(const GenerationConfig& gc) const {
  std::vector<int32_t> ids = defaults.eos_token_ids;
  const auto& cfg = model->config().eos_token_ids;
  ids.insert(ids.end(), cfg.begin(), cfg.end());
  ids.insert(ids.end(), gc.extra_eos_token_ids.begin(), gc.extra_eos_token_ids.end());
  if (tokenizer) {
    // Phi-3 chat models end a turn with <|end|>; some configs list only <|endoftext|>.
    if (auto end = tokenizer->token_to_id("<|end|>")) ids.push_back(*end);
    if (auto eos = tokenizer->eos_id()) ids.push_back(*eos);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::~Pipeline() = default;
Pipeline::Pipeline(Pipeline&&) noexcept = default;
Pipeline& Pipeline::operator=(Pipeline&&) noexcept = default;

namespace {

// One checkpoint's model, tokenizer and generation defaults, as Pipeline::load reads them.
struct LoadedCheckpoint {
  std::filesystem::path dir;  // what was actually loaded (a converted model file, when converting)
  std::shared_ptr<const model::Phi3Model> model;
  std::optional<Tokenizer> tokenizer;
  GenerationDefaults defaults;
};

LoadedCheckpoint load_checkpoint(const std::filesystem::path& model_path, const PipelineOptions& options,
                                 bool convert_folders_only) {
  LoadedCheckpoint c;
  c.dir = model_path;
  if (options.convert) {
    const bool native = format::is_native_file(model_path);
    if (native && !convert_folders_only)
      throw Error(model_path.string() + " is already a phinfer model file; only Hugging Face folders are converted");
    if (!native) c.dir = cached_conversion(model_path, *options.convert, options.cache_dir);
  }
  c.model = model::Phi3Model::load(c.dir, model::SlidingWindow::parse(options.sliding_window));
  if (format::is_native_file(c.dir)) {
    // Everything travels inside the model file.
    const auto& meta = c.model->native_metadata();
    const std::string src = c.dir.string();
    if (meta.contains("tokenizer") && meta["tokenizer"].is_object() && meta["tokenizer"].contains("tokenizer.json")) {
      const auto& t = meta["tokenizer"];
      for (const char* name : {"tokenizer.json", "tokenizer_config.json"})
        if (t.contains(name) && !t[name].is_string())
          throw Error(src + ": metadata field tokenizer." + name + " must hold the file's text as a string, found " +
                      t[name].type_name());
      c.tokenizer = Tokenizer::from_json_text(t["tokenizer.json"].get<std::string>(),
                                               t.contains("tokenizer_config.json") ? t["tokenizer_config.json"].get<std::string>() : "",
                                               src);
    }
    if (meta.contains("generation_config") && !meta["generation_config"].is_null())
      c.defaults = GenerationDefaults::from_json(meta["generation_config"], src + " (generation_config)");
  } else if (const format::GgufFile* gguf = c.model->loaded().gguf()) {
    // The tokenizer and the special token ids travel in the GGUF metadata.
    if (gguf->find("tokenizer.ggml.model")) {
      const tok::TokenizerFiles files = tok::tokenizer_files_from_gguf(*gguf);
      c.tokenizer = Tokenizer::from_json_text(files.tokenizer_json, files.tokenizer_config_json, gguf->source());
    }
    c.defaults = model::generation_defaults_from_gguf(*gguf);
  } else {
    if (std::filesystem::exists(model_path / "tokenizer.json")) c.tokenizer = Tokenizer::from_dir(model_path);
    c.defaults = GenerationDefaults::from_file(model_path / "generation_config.json");
  }
  return c;
}

// A draft model's tokens must mean what the target's mean: the acceptance rule compares the two
// models' probabilities id by id. Compares the vocabulary sizes, the special ids and, when both
// have tokenizers, every token's string (a few milliseconds for 200,000 tokens).
void check_same_vocabulary(const LoadedCheckpoint& target, const LoadedCheckpoint& draft) {
  auto fail = [&](const std::string& why) {
    throw Error("the draft model " + draft.dir.string() + " does not share the vocabulary of " + target.dir.string() +
                ": " + why);
  };
  const ModelConfig &t = target.model->config(), &d = draft.model->config();
  if (t.vocab_size != d.vocab_size)
    fail("vocab_size " + std::to_string(d.vocab_size) + " vs " + std::to_string(t.vocab_size));
  if (target.tokenizer.has_value() != draft.tokenizer.has_value())
    fail(std::string("only the ") + (target.tokenizer ? "target" : "draft") + " model has a tokenizer, so they cannot be compared");
  if (!target.tokenizer) {
    if (t.bos_token_id != d.bos_token_id || t.eos_token_ids != d.eos_token_ids) fail("different bos / eos token ids");
    return;
  }
  const Tokenizer &tt = *target.tokenizer, &dt = *draft.tokenizer;
  if (tt.bos_id() != dt.bos_id() || tt.eos_id() != dt.eos_id()) fail("the tokenizers' bos / eos tokens differ");
  // Ids only one tokenizer names are the embedding's padding rows (a GGUF file names Phi-3's
  // 32011..32063 [PAD...], its Hugging Face tokenizer does not): no text produces them.
  const int32_t common = std::min(tt.vocab_size(), dt.vocab_size());
  if (std::max(tt.vocab_size(), dt.vocab_size()) > t.vocab_size) fail("a tokenizer has more tokens than the model's vocab_size");
  for (int32_t id = 0; id < common; ++id)
    if (tt.id_to_token(id) != dt.id_to_token(id) || tt.is_special(id) != dt.is_special(id))
      fail("token " + std::to_string(id) + " is '" + dt.id_to_token(id) + "' vs '" + tt.id_to_token(id) + "'");
}

}  // namespace

Pipeline Pipeline::load(const std::filesystem::path& model_path, const PipelineOptions& options) {
  if (options.threads < 0 || options.threads > 1024)
    throw Error("threads: expected 0 (auto) to 1024, found " + std::to_string(options.threads));
  model::parse_kv_cache_type(options.kv_cache_dtype);  // before any work
  backend::check_device(options.device);  // before any work
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  LoadedCheckpoint target = load_checkpoint(model_path, options, /*convert_folders_only=*/false);
  if (!options.draft_model.empty()) {
    LoadedCheckpoint draft = load_checkpoint(options.draft_model, options, /*convert_folders_only=*/true);
    check_same_vocabulary(target, draft);
    impl->draft_model = std::move(draft.model);
    impl->draft_dir = std::move(draft.dir);
  }
  impl->dir = std::move(target.dir);
  impl->model = std::move(target.model);
  impl->tokenizer = std::move(target.tokenizer);
  impl->defaults = std::move(target.defaults);
  if (impl->tokenizer) {
    std::string tmpl = impl->tokenizer->chat_template();
    if (!tmpl.empty()) impl->chat_template.emplace(tmpl);
  }
  backend::BackendOptions bo;
  bo.threads = options.threads;
  bo.kv_type = model::parse_kv_cache_type(options.kv_cache_dtype);
  impl->backend = backend::create_backend(options.device, impl->model, bo);
  impl->engine = std::make_unique<Engine::Impl>(*impl, *impl->backend, EngineOptions{});
  return Pipeline(std::move(impl));
}

const std::filesystem::path& Pipeline::model_path() const { return impl_->dir; }
uint64_t Pipeline::weight_bytes_per_token() const { return impl_->model->weight_bytes_per_token(); }
std::string Pipeline::device() const { return impl_->backend->device(); }

const ModelConfig& Pipeline::config() const { return impl_->model->config(); }
const Tokenizer& Pipeline::tokenizer() const { return impl_->tok(); }
const GenerationDefaults& Pipeline::generation_defaults() const { return impl_->defaults; }
std::vector<int32_t> Pipeline::stop_ids(const GenerationConfig& gc) const { return impl_->stop_ids(gc); }

std::string Pipeline::render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  const Tokenizer& tok = impl_->tok();
  if (!impl_->chat_template)
    throw Error(impl_->dir.string() + ": tokenizer_config.json has no chat_template, so chat messages cannot be formatted");
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

KVState::KVState() : impl(std::make_unique<Impl>()) {}
KVState::~KVState() = default;
KVState::KVState(KVState&&) noexcept = default;
KVState& KVState::operator=(KVState&&) noexcept = default;
const std::vector<int32_t>& KVState::tokens() const { return impl->tokens; }
void KVState::clear() {
  impl->tokens.clear();
  if (impl->cache) impl->cache->truncate(0);
}

GenerationResult Pipeline::generate(std::span<const int32_t> prompt, const GenerationConfig& gc, const Streamer& streamer) const {
  KVState state;
  return generate(state, prompt, gc, streamer);
}

GenerationResult Pipeline::generate(KVState& state, std::span<const int32_t> prompt, const GenerationConfig& gc,
                                    const Streamer& streamer) const {
  std::lock_guard<std::mutex> lock(impl_->compute);
  Engine::Impl& engine = *impl_->engine;
  GenerationResult r = engine.run_to_completion(engine.add({{prompt.begin(), prompt.end()}, gc, streamer, {}, {}, &state}));
  if (!r.error.empty()) throw Error(r.error);
  return r;
}

std::vector<float> Pipeline::logits(std::span<const int32_t> ids, std::span<const int64_t> positions) const {
  if (ids.empty()) throw Error("no token ids given");
  for (int64_t p : positions)
    if (p < 0 || p >= static_cast<int64_t>(ids.size()))
      throw Error("position " + std::to_string(p) + " is outside the " + std::to_string(ids.size()) + " given ids");
  std::lock_guard<std::mutex> lock(impl_->compute);
  auto cache = impl_->backend->new_cache();
  const backend::BatchEntry entry{cache.get(), impl_->model->table_for_length(static_cast<int64_t>(ids.size())), ids,
                                  positions};
  std::span<const float> out = impl_->backend->forward(std::span<const backend::BatchEntry>(&entry, 1));
  return std::vector<float>(out.begin(), out.end());
}

// --- Generator ----------------------------------------------------------------------------

struct Generator::Impl {
  Pipeline::Impl* pipe;
  GenerationConfig config;
  std::optional<generate::Sampler> sampler;
  std::vector<int32_t> stops;
  std::unique_ptr<backend::SequenceCache> cache;
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // of the last token; empty when unknown
  int64_t generated = 0;
  bool done = false;
};

Generator::Generator(const Pipeline& pipeline, const GenerationConfig& config) : impl_(std::make_unique<Impl>()) {
  if (config.grammar)
    throw Error("a Generator cannot follow a grammar (its tokens can be appended and rewound freely); use "
                "Pipeline::generate or an Engine");
  impl_->pipe = pipeline.impl();
  impl_->config = config;
  impl_->sampler.emplace(generate::SamplingParams{config.do_sample, config.temperature, config.top_k, config.top_p,
                                                  config.min_p, config.repetition_penalty, config.presence_penalty,
                                                  config.frequency_penalty},
                         config.seed);
  impl_->stops = impl_->pipe->stop_ids(config);
  std::lock_guard<std::mutex> lock(impl_->pipe->compute);
  impl_->cache = impl_->pipe->backend->new_cache();
}

Generator::~Generator() = default;
Generator::Generator(Generator&&) noexcept = default;
Generator& Generator::operator=(Generator&&) noexcept = default;

void Generator::append_tokens(std::span<const int32_t> ids) {
  if (ids.empty()) return;
  Impl& g = *impl_;
  const int64_t context = g.pipe->model->config().max_position_embeddings;
  if (static_cast<int64_t>(g.tokens.size() + ids.size()) > context)
    throw Error("appending " + std::to_string(ids.size()) + " tokens to " + std::to_string(g.tokens.size()) +
                " exceeds the model's context of " + std::to_string(context));
  const size_t before = g.tokens.size();
  g.tokens.insert(g.tokens.end(), ids.begin(), ids.end());
  const model::RopeTable table = g.pipe->model->table_for_length(static_cast<int64_t>(g.tokens.size()));
  std::lock_guard<std::mutex> lock(g.pipe->compute);
  // Tokens not yet in the cache (after a rewind or a LongRoPE crossing, more than `ids`).
  if (g.cache->length() > 0 && g.cache->table() != table) g.cache->truncate(0);
  const std::span<const int32_t> todo = std::span<const int32_t>(g.tokens).subspan(static_cast<size_t>(g.cache->length()));
  const int64_t last = static_cast<int64_t>(todo.size()) - 1;
  const backend::BatchEntry entry{g.cache.get(), table, todo, std::span<const int64_t>(&last, 1)};
  try {
    std::span<const float> out = g.pipe->backend->forward(std::span<const backend::BatchEntry>(&entry, 1));
    g.logits.assign(out.begin(), out.end());
  } catch (...) {
    g.tokens.resize(before);  // a failed call changes no cache; the tokens stay as they were too
    throw;
  }
  if (static_cast<int64_t>(g.tokens.size()) >= context) g.done = true;
}

std::span<const float> Generator::logits() const { return impl_->logits; }

int32_t Generator::generate_next_token() {
  Impl& g = *impl_;
  if (g.logits.empty()) throw Error("generate_next_token: append tokens first (there are no logits to choose from)");
  if (g.done) throw Error("generate_next_token: the generation is done (stop token, max_new_tokens or full context)");
  const int32_t id = g.sampler->next(g.logits, g.tokens, g.tokens.size() - static_cast<size_t>(g.generated));
  ++g.generated;
  const bool stop = !g.config.ignore_eos && std::binary_search(g.stops.begin(), g.stops.end(), id);
  if (stop || g.generated >= g.config.max_new_tokens) {
    g.tokens.push_back(id);  // part of the sequence, not run through the model yet
    g.logits.clear();
    g.done = true;
  } else {
    append_tokens(std::span<const int32_t>(&id, 1));
  }
  return id;
}

bool Generator::is_done() const { return impl_->done; }

void Generator::rewind_to(size_t length) {
  Impl& g = *impl_;
  if (length >= g.tokens.size()) return;
  g.tokens.resize(length);
  std::lock_guard<std::mutex> lock(g.pipe->compute);
  g.cache->truncate(std::min<int64_t>(g.cache->length(), static_cast<int64_t>(length)));
  g.logits.clear();
  g.done = false;
  g.generated = 0;
}

const std::vector<int32_t>& Generator::tokens() const { return impl_->tokens; }

}  // namespace phinfer
