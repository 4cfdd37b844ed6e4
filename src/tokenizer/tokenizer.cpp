// Tokenizer: loads tokenizer.json / tokenizer_config.json and runs the declared components
// (added tokens -> normalizer -> pre-tokenizer -> BPE -> post-processor; decoder for the way back).
#include "phinfer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <unordered_map>

#include "format/json_file.h"
#include "phinfer/error.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/json_view.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/utf8.h"

namespace phinfer {

using namespace tok;

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<PostProcessor> post_processor;
  Decoder decoder;

  std::vector<AddedToken> added;  // never resized after loading: the matchers point into it
  std::unordered_map<int32_t, const AddedToken*> added_by_id;
  TokenMap added_by_content;
  // Tokens with normalized=false are found in the raw text, the others in normalized segments.
  AddedTokenMatcher raw_matcher;
  AddedTokenMatcher normalized_matcher;

  int32_t vocab_size = 0;
  std::string bos_token, eos_token, chat_template;

  void load_tokenizer_json(const JsonView& root);
  void load_added_tokens(const JsonView& list);
  void load_config(const JsonView& config);

  std::string normalize(std::string_view text) const {
    return normalizer ? normalizer->normalize(std::string(text)) : std::string(text);
  }
  void encode_segment(std::string_view normalized, std::vector<int32_t>& ids) const;
  const std::string& token_text(int32_t id) const;
};

void Tokenizer::Impl::load_tokenizer_json(const JsonView& root) {
  root.expect_object();
  JsonView model_json = root.at("model");
  const std::string type = model_json.str_or("type", "");
  if (type != "BPE")
    model_json.fail(type.empty() ? "missing model type" : "unsupported model type \"" + type + "\"");
  model = BpeModel::from_json(model_json);
  normalizer = make_normalizer(root.get("normalizer"));
  pre_tokenizer = make_pre_tokenizer(root.get("pre_tokenizer"));
  post_processor = make_post_processor(root.get("post_processor"));
  decoder = Decoder::from_json(root.get("decoder"));
  if (auto list = root.find("added_tokens")) load_added_tokens(*list);
  vocab_size = model->id_limit();
  for (const auto& t : added) vocab_size = std::max(vocab_size, t.id + 1);
  // The ids a post-processor adds (e.g. Bert's cls/sep) must be tokens of this vocabulary.
  if (post_processor)
    for (int32_t id : post_processor->process({}))
      if (id < 0 || id >= vocab_size)
        root.get("post_processor").fail("adds token id " + std::to_string(id) + ", outside the vocabulary [0, " +
                                        std::to_string(vocab_size) + ")");
}

void Tokenizer::Impl::load_added_tokens(const JsonView& list) {
  list.expect_array();
  added.reserve(list.size());
  const int64_t id_bound = BpeModel::id_bound(model->vocab().size() + list.size());
  for (size_t i = 0; i < list.size(); ++i) added.push_back(AddedToken::from_json(list[i], id_bound));
  std::vector<AddedTokenMatcher::Entry> raw, normalized;
  for (const AddedToken& t : added) {
    added_by_id[t.id] = &t;
    added_by_content[t.content] = t.id;
    if (t.normalized)
      normalized.push_back({normalize(t.content), &t});
    else
      raw.push_back({t.content, &t});
  }
  raw_matcher = AddedTokenMatcher(std::move(raw));
  normalized_matcher = AddedTokenMatcher(std::move(normalized));
}

namespace {

// bos_token / eos_token: a string, {"content": ...} (AddedToken form) or null.
std::string special_token_text(const JsonView& config, const char* key) {
  auto v = config.find(key);
  if (!v) return "";
  if (v->is_string()) return v->str();
  if (v->is_object()) return v->at("content").str();
  v->fail("expected a string or an object with \"content\"");
}

// chat_template: a string, or a list of {name, template} of which "default" is the one used.
std::string chat_template_text(const JsonView& config) {
  auto v = config.find("chat_template");
  if (!v) return "";
  if (v->is_string()) return v->str();
  if (!v->is_array()) v->fail("expected a string or a list of {name, template}");
  for (size_t i = 0; i < v->size(); ++i) {
    JsonView entry = (*v)[i];
    if (entry.at("name").str() == "default") return entry.at("template").str();
  }
  return "";
}

std::string read_text_file(const std::filesystem::path& p) {
  // A FIFO would block the read, a folder would fail with a stream error: only plain files.
  if (!std::filesystem::is_regular_file(p)) throw Error(p.string() + ": not a regular file");
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(p.string() + ": cannot open file");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

void Tokenizer::Impl::load_config(const JsonView& config) {
  config.expect_object();
  bos_token = special_token_text(config, "bos_token");
  eos_token = special_token_text(config, "eos_token");
  chat_template = chat_template_text(config);
}

void Tokenizer::Impl::encode_segment(std::string_view normalized, std::vector<int32_t>& ids) const {
  for (const auto& piece : normalized_matcher.split(normalized)) {
    if (piece.token) {
      ids.push_back(piece.token->id);
      continue;
    }
    std::vector<std::string> words{std::string(piece.text)};
    if (pre_tokenizer) pre_tokenizer->apply(words);
    for (const std::string& w : words) {
      std::vector<int32_t> word_ids = model->tokenize(w);
      ids.insert(ids.end(), word_ids.begin(), word_ids.end());
    }
  }
}

const std::string& Tokenizer::Impl::token_text(int32_t id) const {
  if (auto it = added_by_id.find(id); it != added_by_id.end()) return it->second->content;
  if (const std::string* t = model->token(id)) return *t;
  throw Error("token id " + std::to_string(id) + " is out of range (vocabulary size " +
              std::to_string(vocab_size) + ")");
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

namespace {

// Runs a loader; JsonView checks types before use, this only turns anything it missed into an Error.
template <class F>
void guarded(const std::string& name, F&& load) {
  try {
    load();
  } catch (const nlohmann::json::exception& e) {
    throw Error(name + ": malformed tokenizer file: " + e.what());
  }
}

}  // namespace

Tokenizer Tokenizer::from_dir(const std::filesystem::path& dir) {
  auto impl = std::make_unique<Impl>();
  const auto file = dir / "tokenizer.json";
  guarded(file.string(), [&] {
    nlohmann::json json = format::read_json_file(file);
    impl->load_tokenizer_json(JsonView::root(json, file.string()));
  });
  const auto config_file = dir / "tokenizer_config.json";
  if (std::filesystem::exists(config_file)) {
    guarded(config_file.string(), [&] {
      nlohmann::json json = format::read_json_file(config_file);
      impl->load_config(JsonView::root(json, config_file.string()));
    });
  }
  // Newer transformers save the template beside the config instead of inside it.
  if (impl->chat_template.empty() && std::filesystem::exists(dir / "chat_template.jinja"))
    impl->chat_template = read_text_file(dir / "chat_template.jinja");
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_json_text(const std::string& tokenizer_json,
                                    const std::string& tokenizer_config_json,
                                    const std::string& source) {
  auto impl = std::make_unique<Impl>();
  const std::string name = source + " (tokenizer.json)";
  guarded(name, [&] {
    nlohmann::json json = parse_json_text(tokenizer_json, name);
    impl->load_tokenizer_json(JsonView::root(json, name));
  });
  if (!tokenizer_config_json.empty()) {
    const std::string config_name = source + " (tokenizer_config.json)";
    guarded(config_name, [&] {
      nlohmann::json json = parse_json_text(tokenizer_config_json, config_name);
      impl->load_config(JsonView::root(json, config_name));
    });
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& m = *impl_;
  std::string valid = to_valid_utf8(text);  // everything below relies on valid UTF-8
  std::vector<int32_t> ids;
  for (const auto& piece : m.raw_matcher.split(valid)) {
    if (piece.token)
      ids.push_back(piece.token->id);
    else
      m.encode_segment(m.normalize(piece.text), ids);
  }
  if (add_special_tokens && m.post_processor) ids = m.post_processor->process(std::move(ids));
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  StreamDecoder stream(*this, skip_special_tokens);
  std::string out;
  for (int32_t id : ids) out += stream.push(id);
  out += stream.flush();
  return out;
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_by_content.find(token); it != impl_->added_by_content.end())
    return it->second;
  if (auto it = impl_->model->vocab().find(token); it != impl_->model->vocab().end())
    return it->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const { return impl_->token_text(id); }
std::string Tokenizer::token_bytes(int32_t id, bool at_start) const {
  return impl_->decoder.token_bytes(impl_->token_text(id), at_start);
}

bool Tokenizer::is_special(int32_t id) const {
  auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && it->second->special;
}

std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->bos_token.empty() ? std::nullopt : token_to_id(impl_->bos_token);
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->eos_token.empty() ? std::nullopt : token_to_id(impl_->eos_token);
}
std::string Tokenizer::bos_token() const { return impl_->bos_token; }
std::string Tokenizer::eos_token() const { return impl_->eos_token; }
std::string Tokenizer::chat_template() const { return impl_->chat_template; }

// ---- StreamDecoder ----

Tokenizer::StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special_tokens)
    : tok_(&tok),
      skip_special_(skip_special_tokens),
      stream_(std::make_unique<DecodeStream>(tok.impl_->decoder.start())) {}
Tokenizer::StreamDecoder::~StreamDecoder() = default;
Tokenizer::StreamDecoder::StreamDecoder(StreamDecoder&&) noexcept = default;
Tokenizer::StreamDecoder& Tokenizer::StreamDecoder::operator=(StreamDecoder&&) noexcept = default;

std::string Tokenizer::StreamDecoder::push(int32_t id) {
  const std::string& token = tok_->impl_->token_text(id);  // throws for unknown ids
  std::string out;
  if (skip_special_ && tok_->is_special(id)) return out;
  stream_->push_token(token, out);
  return out;
}

std::string Tokenizer::StreamDecoder::flush() {
  std::string out;
  stream_->finish(out);
  return out;
}

}  // namespace phinfer
