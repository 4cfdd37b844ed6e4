// The synthetic checkpoint's tokenizer in the Phi-4-mini format: byte-level BPE as GPT-4o's
// (no normalizer; the o200k split pattern, then ByteLevel; ByteLevel decoder; every byte has a
// token), written the way microsoft/Phi-4-mini-instruct ships it (tokenizer.json, vocab.json,
// merges.txt, tokenizer_config.json, special_tokens_map.json, added_tokens.json) with its special
// tokens at their real ids (<|endoftext|> = 199999, <|assistant|> = 200019, <|end|> = 200020,
// <|user|> = 200021, ...). The merges are learned here over the built-in English text.
//
// The split pattern, the added tokens' flags and the chat template are transcribed from
// microsoft/Phi-4-mini-instruct's tokenizer.json / tokenizer_config.json (MIT licence, Copyright (c)
// Microsoft Corporation); everything else is generated.
#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "phinfer/error.h"
#include "synthetic/detail.h"
#include "synthetic/synthetic.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/json_view.h"
#include "tokenizer/pre_tokenizer.h"

namespace phinfer::synthetic {
namespace {

using ordered_json = nlohmann::ordered_json;

using detail::AddedToken;
using detail::added_token_json;
// As in Phi-4-mini-instruct: the chat and tool markers strip whitespace on their right
// (<|endoftext|> and <|endofprompt|> do not); the tool markers are not flagged special.
constexpr AddedToken kAddedTokens[] = {
    {199999, "<|endoftext|>", false, true},    {200018, "<|endofprompt|>", false, true},
    {200019, "<|assistant|>", true, true},     {200020, "<|end|>", true, true},
    {200021, "<|user|>", true, true},          {200022, "<|system|>", true, true},
    {200023, "<|tool|>", true, false},         {200024, "<|/tool|>", true, false},
    {200025, "<|tool_call|>", true, false},    {200026, "<|/tool_call|>", true, false},
    {200027, "<|tool_response|>", true, false}, {200028, "<|tag|>", true, true},
};
constexpr int32_t kEndOfText = 199999;
constexpr int32_t kFirstChatToken = 200019;  // added_tokens.json lists the tokens from here on

// o200k's pre-tokenizer pattern (GPT-4o), as in Phi-4-mini-instruct's tokenizer.json.
constexpr const char* kSplitPattern =
    R"RE([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)RE"
    R"RE(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)RE"
    R"RE(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)RE";

// Phi-4-mini-instruct's chat template: "<|role|>content<|end|>" per message (a system message's
// tools inside <|tool|>...<|/tool|>), then "<|assistant|>"; no newlines.
constexpr const char* kChatTemplate =
    "{% for message in messages %}{% if message['role'] == 'system' and 'tools' in message and "
    "message['tools'] is not none %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + "
    "message['tools'] + '<|/tool|>' + '<|end|>' }}{% else %}{{ '<|' + message['role'] + '|>' + "
    "message['content'] + '<|end|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}";

constexpr size_t kMerges = 6000;  // upper bound; the built-in text supports fewer

// The vocabulary's strings after the learned and filler pieces, as in the real file: ids 199999
// <|endoftext|>, 200000..200017 <|endoftext00|>..<|endoftext17|> (reserved names that no text
// reaches) and 200018 <|endofprompt|>. The chat markers 200019.. are added tokens only.
std::vector<std::string> reserved_pieces() {
  std::vector<std::string> out = {"<|endoftext|>"};
  for (int k = 0; k < 18; ++k) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "<|endoftext%02d|>", k);
    out.push_back(buf);
  }
  out.push_back("<|endofprompt|>");
  return out;
}

ordered_json pre_tokenizer_json() {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"}, {"pattern", {{"Regex", kSplitPattern}}}, {"behavior", "Removed"}, {"invert", true}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
}

// The 256 byte characters in GPT-2's order (printable bytes first, then the others): ids 0..255.
std::vector<std::string> byte_pieces() {
  const auto& table = tok::ByteLevelTable::get();
  std::vector<std::string> out;
  std::vector<bool> used(256, false);
  auto add = [&](int lo, int hi) {
    for (int b = lo; b <= hi; ++b) {
      out.push_back(table.char_for(static_cast<unsigned char>(b)));
      used[static_cast<size_t>(b)] = true;
    }
  };
  add('!', '~');
  add(0xA1, 0xAC);
  add(0xAE, 0xFF);
  for (int b = 0; b < 256; ++b)
    if (!used[static_cast<size_t>(b)]) out.push_back(table.char_for(static_cast<unsigned char>(b)));
  return out;
}

bool is_ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string quoted(const std::string& s) { return nlohmann::json(s).dump(); }

std::vector<std::string> full_vocabulary(const BpeVocabulary& v) {
  std::vector<std::string> pieces = v.pieces;
  for (auto& p : reserved_pieces()) pieces.push_back(std::move(p));
  return pieces;
}

std::string tokenizer_json(const BpeVocabulary& v) {
  ordered_json head;
  head["version"] = "1.0";
  head["truncation"] = nullptr;
  head["padding"] = nullptr;
  head["added_tokens"] = ordered_json::array();
  for (const auto& t : kAddedTokens) head["added_tokens"].push_back(added_token_json(t, true));
  head["normalizer"] = nullptr;
  head["pre_tokenizer"] = pre_tokenizer_json();
  head["post_processor"] = nullptr;
  head["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  std::string o = head.dump(2, ' ', false);
  o.resize(o.size() - 2);  // drop "\n}"
  // The model is written by hand: ordered_json's object lookups are linear, too slow for 200k entries.
  o += ",\n  \"model\": {\n"
       "    \"type\": \"BPE\",\n"
       "    \"dropout\": null,\n"
       "    \"unk_token\": null,\n"
       "    \"continuing_subword_prefix\": \"\",\n"
       "    \"end_of_word_suffix\": \"\",\n"
       "    \"fuse_unk\": false,\n"
       "    \"byte_fallback\": false,\n"
       "    \"ignore_merges\": false,\n"
       "    \"vocab\": {\n";
  const auto pieces = full_vocabulary(v);
  for (size_t id = 0; id < pieces.size(); ++id)
    o += "      " + quoted(pieces[id]) + ": " + std::to_string(id) + (id + 1 < pieces.size() ? ",\n" : "\n");
  o += "    },\n    \"merges\": [\n";
  for (size_t i = 0; i < v.merges.size(); ++i)
    o += "      [\n        " + quoted(v.merges[i].first) + ",\n        " + quoted(v.merges[i].second) + "\n      ]" +
         (i + 1 < v.merges.size() ? ",\n" : "\n");
  o += "    ]\n  }\n}";
  return o;
}

// vocab.json and merges.txt: the same vocabulary and merges for GPT2Tokenizer (the slow tokenizer).
std::string vocab_json(const BpeVocabulary& v) {
  const auto pieces = full_vocabulary(v);
  std::string o = "{";
  for (size_t id = 0; id < pieces.size(); ++id) {
    if (id) o += ',';
    o += quoted(pieces[id]) + ":" + std::to_string(id);
  }
  return o + "}";
}

std::string merges_txt(const BpeVocabulary& v) {
  std::string o = "#version: 0.2\n";
  for (const auto& [a, b] : v.merges) o += a + " " + b + "\n";
  return o;
}

ordered_json tokenizer_config_json() {
  ordered_json j;
  j["add_bos_token"] = false;
  j["add_eos_token"] = false;
  j["add_prefix_space"] = false;
  j["added_tokens_decoder"] = ordered_json::object();
  for (const auto& t : kAddedTokens)
    j["added_tokens_decoder"][std::to_string(t.id)] = {{"content", t.content}, {"lstrip", false},
                                                        {"normalized", false}, {"rstrip", t.rstrip},
                                                        {"single_word", false}, {"special", t.special}};
  j["bos_token"] = "<|endoftext|>";
  j["chat_template"] = kChatTemplate;
  j["clean_up_tokenization_spaces"] = false;
  j["eos_token"] = "<|endoftext|>";
  j["model_max_length"] = 131072;
  j["pad_token"] = "<|endoftext|>";
  j["tokenizer_class"] = "GPT2Tokenizer";
  j["unk_token"] = "<|endoftext|>";
  return j;
}

ordered_json special_tokens_map_json() {
  const ordered_json tok = {{"content", "<|endoftext|>"}, {"lstrip", false}, {"normalized", false},
                            {"rstrip", false}, {"single_word", false}};
  return {{"bos_token", tok}, {"eos_token", tok}, {"pad_token", tok}, {"unk_token", tok}};
}

ordered_json added_tokens_json() {
  std::map<std::string, int32_t> sorted;  // the real file lists them by name
  for (const auto& t : kAddedTokens)
    if (t.id >= kFirstChatToken) sorted[t.content] = t.id;
  ordered_json j = ordered_json::object();
  for (const auto& [content, id] : sorted) j[content] = id;
  return j;
}

}  // namespace

BpeVocabulary train_byte_level_bpe(std::string_view text, size_t num_merges, size_t vocab_size) {
  // Pre-tokenize exactly as the written tokenizer.json will (split pattern, then bytes to
  // characters), through the project's own tokenizer code.
  const nlohmann::json pre_json = nlohmann::json::parse(pre_tokenizer_json().dump());
  const auto pre = tok::make_pre_tokenizer(tok::JsonView::root(pre_json, "synthetic Phi-4 pre_tokenizer"));
  std::vector<std::string> words_text = {std::string(text)};
  pre->apply(words_text);
  std::map<std::string, int64_t> counts;
  for (const auto& w : words_text) ++counts[w];

  const std::string space = tok::ByteLevelTable::get().char_for(' ');  // "Ġ"
  std::vector<std::pair<std::vector<std::string>, int64_t>> words;
  std::set<std::string> text_words;  // " word" pre-tokens, for the filler
  for (const auto& [w, count] : counts) {
    words.emplace_back(detail::code_points(w), count);
    if (w.size() >= space.size() + 2 && w.compare(0, space.size(), space) == 0 &&
        std::all_of(w.begin() + static_cast<std::ptrdiff_t>(space.size()), w.end(), is_ascii_letter))
      text_words.insert(w);
  }

  BpeVocabulary v;
  v.pieces = byte_pieces();  // every single character is one of these
  std::unordered_set<std::string> have(v.pieces.begin(), v.pieces.end());
  for (const auto& p : reserved_pieces()) have.insert(p);  // never a filler piece
  detail::complete_vocabulary(v, std::move(have), std::move(words), num_merges, {}, text_words, vocab_size);
  return v;
}

void write_phi4_tokenizer_files(const std::filesystem::path& dir) {
  static std::once_flag once;
  static BpeVocabulary vocab;
  std::call_once(once, [] { vocab = train_byte_level_bpe(builtin_corpus(), kMerges, kEndOfText); });
  detail::write_text_file(dir / "tokenizer.json", tokenizer_json(vocab));
  detail::write_text_file(dir / "vocab.json", vocab_json(vocab));
  detail::write_text_file(dir / "merges.txt", merges_txt(vocab));
  detail::write_text_file(dir / "tokenizer_config.json", tokenizer_config_json().dump(2) + "\n");
  detail::write_text_file(dir / "special_tokens_map.json", special_tokens_map_json().dump(2) + "\n");
  detail::write_text_file(dir / "added_tokens.json", added_tokens_json().dump(2) + "\n");
}

}  // namespace phinfer::synthetic
