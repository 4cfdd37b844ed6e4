#include "tokenizer/gguf_vocab.h"

#include <algorithm>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "phinfer/error.h"

namespace phinfer::tok {
namespace {

using format::GgufFile;
using format::GgufValue;
using format::GgufValueType;
using nlohmann::json;

// llama.cpp's token types (tokenizer.ggml.token_type).
enum TokenType : int64_t { kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// Phi-4's pre-tokenizer regex (o200k), as its tokenizer.json has it.
constexpr const char* kGpt4oPattern =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct Vocab {
  const std::vector<std::string_view>* tokens = nullptr;
  std::vector<int64_t> types;
  std::vector<double> scores;  // llama only
};

Vocab read_vocab(const GgufFile& f, bool need_scores) {
  Vocab v;
  const GgufValue* tokens = f.get_array("tokenizer.ggml.tokens", {GgufValueType::String});
  if (!tokens) throw Error(f.source() + ": metadata key 'tokenizer.ggml.tokens' is missing");
  if (tokens->count == 0 || tokens->count > (uint64_t{1} << 31) - 1)
    throw Error(f.source() + ": metadata key 'tokenizer.ggml.tokens': expected 1 to 2^31-1 tokens, found " +
                std::to_string(tokens->count));
  v.tokens = &tokens->strings;
  const size_t n = tokens->strings.size();
  auto same_length = [&](const char* key, const GgufValue& a) {
    if (a.count != n)
      throw Error(f.source() + ": metadata key '" + key + "' has " + std::to_string(a.count) + " entries, expected " +
                  std::to_string(n) + " (one per token of tokenizer.ggml.tokens)");
  };
  v.types.assign(n, kNormal);
  if (const GgufValue* t = f.get_array("tokenizer.ggml.token_type", {GgufValueType::I32, GgufValueType::U32, GgufValueType::I8,
                                                                    GgufValueType::U8, GgufValueType::I16, GgufValueType::U16,
                                                                    GgufValueType::I64, GgufValueType::U64})) {
    same_length("tokenizer.ggml.token_type", *t);
    for (size_t k = 0; k < n; ++k) {
      v.types[k] = t->integer_at(k);
      if (v.types[k] < kUndefined || v.types[k] > kByte)
        throw Error(f.source() + ": metadata key 'tokenizer.ggml.token_type'[" + std::to_string(k) +
                    "]: expected a token type 0..6, found " + std::to_string(v.types[k]));
    }
  }
  const GgufValue* scores = f.get_array("tokenizer.ggml.scores", {GgufValueType::F32, GgufValueType::F64});
  if (need_scores && !scores)
    throw Error(f.source() + ": metadata key 'tokenizer.ggml.scores' is missing (a \"llama\" vocabulary needs token scores)");
  if (scores) {
    same_length("tokenizer.ggml.scores", *scores);
    v.scores.resize(n);
    for (size_t k = 0; k < n; ++k) v.scores[k] = scores->number_at(k);
  }
  return v;
}

std::optional<int64_t> id_key(const GgufFile& f, const std::string& key, size_t n_tokens) {
  auto id = f.get_uint(key);
  if (!id) return std::nullopt;
  if (*id >= n_tokens)
    throw Error(f.source() + ": metadata key '" + key + "': expected a token id below the " + std::to_string(n_tokens) +
                " tokens, found " + std::to_string(*id));
  return static_cast<int64_t>(*id);
}

// transformers' SentencePieceExtractor: for each token (in id order), every split into two
// vocabulary pieces at a character boundary, ordered by the pieces' ids; then all of them stably
// sorted by the token's score, highest first.
json spm_merges(const Vocab& v, const std::unordered_map<std::string_view, int64_t>& ids) {
  struct Merge {
    double score;
    int64_t left, right;
  };
  std::vector<Merge> merges;
  std::vector<Merge> local;
  const auto& tokens = *v.tokens;
  for (size_t k = 0; k < tokens.size(); ++k) {
    if (v.types[k] != kNormal && v.types[k] != kUndefined) continue;
    const std::string_view t = tokens[k];
    local.clear();
    for (size_t cut = 1; cut < t.size(); ++cut) {
      if ((static_cast<unsigned char>(t[cut]) & 0xC0) == 0x80) continue;  // inside a UTF-8 sequence
      auto l = ids.find(t.substr(0, cut)), r = ids.find(t.substr(cut));
      if (l != ids.end() && r != ids.end()) local.push_back({v.scores[k], l->second, r->second});
    }
    std::sort(local.begin(), local.end(),
              [](const Merge& a, const Merge& b) { return a.left != b.left ? a.left < b.left : a.right < b.right; });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) { return a.score > b.score; });
  json out = json::array();
  for (const Merge& m : merges) out.push_back(json::array({tokens[static_cast<size_t>(m.left)], tokens[static_cast<size_t>(m.right)]}));
  return out;
}

}  // namespace

TokenizerFiles tokenizer_files_from_gguf(const GgufFile& f) {
  const auto model = f.get_string("tokenizer.ggml.model");
  if (!model) throw Error(f.source() + ": metadata key 'tokenizer.ggml.model' is missing (the file holds no tokenizer)");
  const bool spm = *model == "llama";
  if (!spm && *model != "gpt2")
    throw Error(f.source() + ": metadata key 'tokenizer.ggml.model': expected \"llama\" or \"gpt2\", found \"" +
                std::string(*model) + "\"");
  const Vocab v = read_vocab(f, spm);
  const auto& tokens = *v.tokens;
  const size_t n = tokens.size();

  std::unordered_map<std::string_view, int64_t> ids;
  ids.reserve(n);
  json vocab = json::object();
  for (size_t k = 0; k < n; ++k)
    if (ids.emplace(tokens[k], static_cast<int64_t>(k)).second) vocab[std::string(tokens[k])] = k;

  const auto bos = id_key(f, "tokenizer.ggml.bos_token_id", n);
  const auto eos = id_key(f, "tokenizer.ggml.eos_token_id", n);
  const auto unk = id_key(f, "tokenizer.ggml.unknown_token_id", n);
  const auto pad = id_key(f, "tokenizer.ggml.padding_token_id", n);
  const bool add_bos = f.get_bool("tokenizer.ggml.add_bos_token").value_or(spm);
  const bool add_eos = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  const bool phi3 = f.get_string("general.architecture").value_or("") == "phi3";

  json tj;
  tj["version"] = "1.0";
  tj["truncation"] = nullptr;
  tj["padding"] = nullptr;
  json added = json::array();
  for (size_t k = 0; k < n; ++k) {
    const int64_t type = v.types[k];
    if (type != kControl && type != kUserDefined && type != kUnknown) continue;
    const std::string content(tokens[k]);
    if (content.empty()) continue;  // cannot be matched in text; it still decodes through the vocabulary
    const bool keeps_space = content == "<unk>" || content == "<s>" || content == "<|endoftext|>";
    added.push_back({{"id", k}, {"content", content}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", phi3 && !keeps_space}, {"normalized", false}, {"special", type != kUserDefined}});
  }
  tj["added_tokens"] = added;

  json bpe = {{"type", "BPE"}, {"dropout", nullptr}, {"vocab", std::move(vocab)}, {"ignore_merges", false}};
  if (spm) {
    const bool prefix = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    json norms = json::array();
    if (prefix) norms.push_back({{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}});
    norms.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}});
    tj["normalizer"] = {{"type", "Sequence"}, {"normalizers", norms}};
    tj["pre_tokenizer"] = nullptr;
    bpe["unk_token"] = unk ? json(std::string(tokens[static_cast<size_t>(*unk)])) : json(nullptr);
    bpe["fuse_unk"] = true;
    bpe["byte_fallback"] = true;
    bpe["merges"] = spm_merges(v, ids);
    json decoders = json::array({{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                                 {{"type", "ByteFallback"}},
                                 {{"type", "Fuse"}}});
    if (prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    tj["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
  } else {
    const std::string pre(f.get_string("tokenizer.ggml.pre").value_or("default"));
    json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    tj["normalizer"] = nullptr;
    if (pre == "gpt-4o") {
      byte_level["use_regex"] = false;
      tj["pre_tokenizer"] = {{"type", "Sequence"},
                             {"pretokenizers",
                              {{{"type", "Split"}, {"pattern", {{"Regex", kGpt4oPattern}}}, {"behavior", "Removed"}, {"invert", true}},
                               byte_level}}};
    } else if (pre == "gpt2" || pre == "default") {
      tj["pre_tokenizer"] = byte_level;
    } else {
      throw Error(f.source() + ": metadata key 'tokenizer.ggml.pre': pre-tokenizer \"" + pre +
                  "\" is not supported (expected \"gpt-4o\", \"gpt2\" or \"default\")");
    }
    const GgufValue* merges = f.get_array("tokenizer.ggml.merges", {GgufValueType::String});
    if (!merges) throw Error(f.source() + ": metadata key 'tokenizer.ggml.merges' is missing (a \"gpt2\" vocabulary needs merges)");
    json list = json::array();
    for (std::string_view m : merges->strings) list.push_back(std::string(m));
    bpe["unk_token"] = nullptr;
    bpe["fuse_unk"] = false;
    bpe["byte_fallback"] = false;
    bpe["continuing_subword_prefix"] = "";
    bpe["end_of_word_suffix"] = "";
    bpe["merges"] = std::move(list);
    tj["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  }
  tj["model"] = std::move(bpe);

  // add_bos_token / add_eos_token as the post-processor Hugging Face builds from them.
  if ((add_bos && bos) || (add_eos && eos)) {
    json single = json::array(), special = json::object();
    auto special_token = [&](int64_t id) {
      const std::string t(tokens[static_cast<size_t>(id)]);
      special[t] = {{"id", t}, {"ids", {id}}, {"tokens", {t}}};
      return json{{"SpecialToken", {{"id", t}, {"type_id", 0}}}};
    };
    if (add_bos && bos) single.push_back(special_token(*bos));
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    if (add_eos && eos) single.push_back(special_token(*eos));
    json pair = single;
    pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
    tj["post_processor"] = {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", special}};
  } else {
    tj["post_processor"] = nullptr;
  }

  json config = {{"add_bos_token", add_bos}, {"add_eos_token", add_eos}, {"clean_up_tokenization_spaces", false}};
  auto token_text = [&](const std::optional<int64_t>& id) { return id ? json(std::string(tokens[static_cast<size_t>(*id)])) : json(nullptr); };
  config["bos_token"] = token_text(bos);
  config["eos_token"] = token_text(eos);
  config["unk_token"] = token_text(unk);
  config["pad_token"] = token_text(pad);
  if (auto tmpl = f.get_string("tokenizer.chat_template")) config["chat_template"] = std::string(*tmpl);

  TokenizerFiles out;
  try {
    out.tokenizer_json = tj.dump();
    out.tokenizer_config_json = config.dump();
  } catch (const json::exception& e) {  // tokens that are not UTF-8
    throw Error(f.source() + ": the tokenizer metadata is not valid UTF-8: " + e.what());
  }
  return out;
}

}  // namespace phinfer::tok
