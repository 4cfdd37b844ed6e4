// The synthetic checkpoint's tokenizer: a small BPE learned here over a built-in English text,
// written in the format of microsoft/Phi-3-mini-4k-instruct's tokenizer files (Llama SentencePiece
// BPE with byte fallback, converted by transformers), with the Phi-3 special tokens at their ids.
#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "phinfer/error.h"
#include "synthetic/detail.h"
#include "synthetic/synthetic.h"

namespace phinfer::synthetic {
namespace {

using ordered_json = nlohmann::ordered_json;

const std::string kSpace = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's whitespace mark

using detail::AddedToken;
using detail::added_token_json;
// As in Phi-3-mini-4k-instruct: every chat marker strips whitespace on its right, except
// <|endoftext|>; </s> is not flagged special.
constexpr AddedToken kAddedTokens[] = {
    {0, "<unk>", false, true},
    {1, "<s>", false, true},
    {2, "</s>", true, false},
    {32000, "<|endoftext|>", false, true},
    {32001, "<|assistant|>", true, true},
    {32002, "<|placeholder1|>", true, true},
    {32003, "<|placeholder2|>", true, true},
    {32004, "<|placeholder3|>", true, true},
    {32005, "<|placeholder4|>", true, true},
    {32006, "<|system|>", true, true},
    {32007, "<|end|>", true, true},
    {32008, "<|placeholder5|>", true, true},
    {32009, "<|placeholder6|>", true, true},
    {32010, "<|user|>", true, true},
};

constexpr size_t kMerges = 6000;  // upper bound; the built-in text supports fewer (see train_bpe)

constexpr const char* kChatTemplate =
    "{% for message in messages %}"
    "{% if message['role'] == 'system' and message['content'] %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

enum class CharClass { Letter, Digit, Punct, Break };

CharClass classify(const std::string& ch) {
  if (ch.size() != 1) return CharClass::Break;  // non-ASCII: left to byte fallback
  const unsigned char c = static_cast<unsigned char>(ch[0]);
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CharClass::Letter;
  if (c >= '0' && c <= '9') return CharClass::Digit;
  if (c > 0x20 && c < 0x7f) return CharClass::Punct;
  return CharClass::Break;  // newline, tab, control characters
}

// SentencePiece-style units of the normalized text ("▁" + text with spaces as "▁"): a unit is an
// optional "▁" and then a run of letters or a run of punctuation, or a single digit (without "▁",
// as Llama's vocabulary splits numbers into "▁" and digits). Each line counts as a sentence of its
// own (SentencePiece trains on lines, each with the dummy "▁" prefix); other characters (tabs,
// non-ASCII) are left to byte fallback and only separate units.
std::map<std::vector<std::string>, int64_t> count_units(std::string_view text) {
  std::map<std::vector<std::string>, int64_t> units;
  std::vector<std::string> cur = {kSpace};
  bool has_class = false;
  CharClass cls = CharClass::Break;
  auto flush = [&] {
    if (has_class) ++units[cur];
    cur.clear();
    has_class = false;
  };
  for (std::string ch : detail::code_points(text)) {
    if (ch == " " || ch == "\n") {
      flush();
      cur.push_back(kSpace);
      continue;
    }
    const CharClass k = classify(ch);
    if (k == CharClass::Break) {
      flush();
      continue;
    }
    if (has_class ? (k != cls || k == CharClass::Digit) : k == CharClass::Digit) flush();
    cur.push_back(ch);
    has_class = true;
    cls = k;
  }
  flush();
  return units;
}

// tokenizer.json without its "model" (written by model_json: ordered_json's object lookups are
// linear, too slow for 32000 vocabulary entries).
ordered_json tokenizer_json_head() {
  ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = ordered_json::array();
  for (const auto& t : kAddedTokens) j["added_tokens"].push_back(added_token_json(t, true));
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Prepend"}, {"prepend", kSpace}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}}}}};
  j["pre_tokenizer"] = nullptr;
  const ordered_json bos = {{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}};
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {bos, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair",
       {bos,
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        {{"SpecialToken", {{"id", "<s>"}, {"type_id", 1}}}},
        {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  return j;
}

std::string quoted(const std::string& s) { return nlohmann::json(s).dump(); }

// The BPE model as transformers writes it, indented to sit at the top level of tokenizer.json.
std::string model_json(const BpeVocabulary& v) {
  std::string o = "  \"model\": {\n"
                  "    \"type\": \"BPE\",\n"
                  "    \"dropout\": null,\n"
                  "    \"unk_token\": \"<unk>\",\n"
                  "    \"continuing_subword_prefix\": null,\n"
                  "    \"end_of_word_suffix\": null,\n"
                  "    \"fuse_unk\": true,\n"
                  "    \"byte_fallback\": true,\n"
                  "    \"ignore_merges\": false,\n"
                  "    \"vocab\": {\n";
  for (size_t id = 0; id < v.pieces.size(); ++id)
    o += "      " + quoted(v.pieces[id]) + ": " + std::to_string(id) + (id + 1 < v.pieces.size() ? ",\n" : "\n");
  o += "    },\n    \"merges\": [\n";
  for (size_t i = 0; i < v.merges.size(); ++i)
    o += "      " + quoted(v.merges[i].first + " " + v.merges[i].second) + (i + 1 < v.merges.size() ? ",\n" : "\n");
  o += "    ]\n  }";
  return o;
}

std::string tokenizer_json(const BpeVocabulary& v) {
  std::string head = tokenizer_json_head().dump(2);  // "{\n ... \n}"
  head.resize(head.size() - 2);                      // drop "\n}"
  return head + ",\n" + model_json(v) + "\n}\n";
}

ordered_json tokenizer_config_json() {
  ordered_json j;
  j["add_bos_token"] = true;
  j["add_eos_token"] = false;
  j["added_tokens_decoder"] = ordered_json::object();
  for (const auto& t : kAddedTokens) j["added_tokens_decoder"][std::to_string(t.id)] = added_token_json(t, false);
  j["bos_token"] = "<s>";
  j["chat_template"] = kChatTemplate;
  j["clean_up_tokenization_spaces"] = false;
  j["eos_token"] = "<|endoftext|>";
  j["legacy"] = false;
  j["model_max_length"] = 4096;
  j["pad_token"] = "<|endoftext|>";
  j["padding_side"] = "left";
  j["sp_model_kwargs"] = ordered_json::object();
  j["tokenizer_class"] = "LlamaTokenizer";
  j["unk_token"] = "<unk>";
  j["use_default_system_prompt"] = false;
  return j;
}

ordered_json special_tokens_map_json() {
  auto tok = [](const char* content) {
    return ordered_json{{"content", content}, {"lstrip", false}, {"normalized", false}, {"rstrip", false},
                        {"single_word", false}};
  };
  ordered_json j;
  j["bos_token"] = tok("<s>");
  j["eos_token"] = tok("<|endoftext|>");
  j["pad_token"] = tok("<|endoftext|>");
  j["unk_token"] = tok("<unk>");
  return j;
}

ordered_json added_tokens_json() {
  ordered_json j = ordered_json::object();
  for (const auto& t : kAddedTokens)
    if (t.id >= 32000) j[t.content] = t.id;
  return j;
}

}  // namespace

BpeVocabulary train_bpe(std::string_view text, size_t num_merges, size_t vocab_size) {
  BpeVocabulary v;
  v.pieces = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    v.pieces.push_back(buf);
  }
  std::vector<std::pair<std::vector<std::string>, int64_t>> words;
  std::set<std::string> text_words;  // "▁word" units, for the filler
  for (const auto& [unit, count] : count_units(text)) {
    if (unit.size() >= 3 && unit[0] == kSpace && classify(unit[1]) == CharClass::Letter) {
      std::string joined;
      for (const auto& ch : unit) joined += ch;
      text_words.insert(joined);
    }
    words.emplace_back(unit, count);
  }
  // Single characters: "▁" and all printable ASCII, then any others of the text in order.
  std::vector<std::string> singles = {kSpace};
  for (int c = 0x21; c < 0x7f; ++c) singles.emplace_back(1, static_cast<char>(c));
  for (const auto& [w, count] : words) singles.insert(singles.end(), w.begin(), w.end());

  detail::complete_vocabulary(v, std::unordered_set<std::string>(v.pieces.begin(), v.pieces.end()), std::move(words), num_merges, singles,
                              text_words, vocab_size);
  return v;
}

void write_tokenizer_files(const std::filesystem::path& dir) {
  static std::once_flag once;
  static BpeVocabulary vocab;
  std::call_once(once, [] { vocab = train_bpe(builtin_corpus(), kMerges); });
  detail::write_text_file(dir / "tokenizer.json", tokenizer_json(vocab));
  detail::write_text_file(dir / "tokenizer_config.json", tokenizer_config_json().dump(2) + "\n");
  detail::write_text_file(dir / "special_tokens_map.json", special_tokens_map_json().dump(2) + "\n");
  detail::write_text_file(dir / "added_tokens.json", added_tokens_json().dump(2) + "\n");
}

namespace detail {

std::vector<std::string> code_points(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + len > s.size()) len = 1;
    out.emplace_back(s.substr(i, len));
    i += len;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> learn_merges(
    std::vector<std::pair<std::vector<std::string>, int64_t>> text_words, size_t num_merges) {
  // Symbols are ids into `sym`; words are symbol sequences with their counts.
  std::vector<std::string> sym;
  std::unordered_map<std::string, int32_t> sym_id;
  auto intern = [&](const std::string& s) {
    auto [it, added] = sym_id.emplace(s, static_cast<int32_t>(sym.size()));
    if (added) sym.push_back(s);
    return it->second;
  };
  std::vector<std::pair<std::vector<int32_t>, int64_t>> words;
  words.reserve(text_words.size());
  for (const auto& [w, count] : text_words) {
    std::vector<int32_t> ids;
    ids.reserve(w.size());
    for (const auto& ch : w) ids.push_back(intern(ch));
    words.emplace_back(std::move(ids), count);
  }

  std::vector<std::pair<std::string, std::string>> merges;
  while (merges.size() < num_merges) {
    std::unordered_map<uint64_t, int64_t> pairs;
    for (const auto& [w, count] : words)
      for (size_t i = 0; i + 1 < w.size(); ++i)
        pairs[(static_cast<uint64_t>(w[i]) << 32) | static_cast<uint32_t>(w[i + 1])] += count;
    if (pairs.empty()) break;
    // Most frequent pair; ties by the merged string, then the left part (deterministic).
    uint64_t best = 0;
    int64_t best_count = -1;
    std::string best_text;
    for (const auto& [key, count] : pairs) {
      if (count < best_count) continue;
      const std::string& a = sym[key >> 32];
      const std::string& b = sym[key & 0xffffffffu];
      std::string t = a + b;
      if (count > best_count || t < best_text || (t == best_text && a.size() < sym[best >> 32].size())) {
        best = key;
        best_count = count;
        best_text = std::move(t);
      }
    }
    const int32_t left = static_cast<int32_t>(best >> 32), right = static_cast<int32_t>(best & 0xffffffffu);
    const int32_t merged = intern(best_text);
    merges.emplace_back(sym[static_cast<size_t>(left)], sym[static_cast<size_t>(right)]);
    for (auto& [w, count] : words) {
      size_t o = 0;
      for (size_t i = 0; i < w.size(); ++i) {
        if (i + 1 < w.size() && w[i] == left && w[i + 1] == right) {
          w[o++] = merged;
          ++i;
        } else {
          w[o++] = w[i];
        }
      }
      w.resize(o);
    }
  }
  return merges;
}

nlohmann::ordered_json added_token_json(const AddedToken& t, bool with_id) {
  nlohmann::ordered_json j;
  if (with_id) j["id"] = t.id;
  j["content"] = t.content;
  j["single_word"] = false;
  j["lstrip"] = false;
  j["rstrip"] = t.rstrip;
  j["normalized"] = false;
  j["special"] = t.special;
  return j;
}

void complete_vocabulary(BpeVocabulary& v, std::unordered_set<std::string> have,
                         std::vector<std::pair<std::vector<std::string>, int64_t>> words, size_t num_merges,
                         const std::vector<std::string>& singles, const std::set<std::string>& text_words,
                         size_t vocab_size) {
  v.merges = learn_merges(std::move(words), num_merges);
  for (const auto& [a, b] : v.merges)
    if (have.insert(a + b).second) v.pieces.push_back(a + b);
  for (const auto& s : singles)
    if (have.insert(s).second) v.pieces.push_back(s);
  v.learned = v.pieces.size();
  if (v.pieces.size() > vocab_size)
    throw Error("synthetic tokenizer: " + std::to_string(v.pieces.size()) + " learned pieces exceed the vocabulary size " +
                std::to_string(vocab_size));
  add_filler(v.pieces, have, text_words, vocab_size);
}

void add_filler(std::vector<std::string>& pieces, std::unordered_set<std::string>& have,
                const std::set<std::string>& text_words, size_t vocab_size) {
  std::vector<std::string> words;  // whole words of the text that are pieces, in id order
  for (const auto& p : pieces)
    if (text_words.count(p)) words.push_back(p);
  uint64_t state = 0x5EED5EED5EED5EEDull;
  auto next = [&] { return mix64(state += kGamma); };  // splitmix64
  const size_t tries_limit = (vocab_size + 64) * 8;
  for (size_t tries = 0; words.size() >= 2 && pieces.size() < vocab_size && tries < tries_limit; ++tries) {
    std::string p = words[next() % words.size()] + words[next() % words.size()];
    if (have.insert(p).second) pieces.push_back(std::move(p));
  }
  for (size_t k = 0; pieces.size() < vocab_size; ++k) {  // only for texts with almost no words
    std::string p = "<unused" + std::to_string(k) + ">";
    if (have.insert(p).second) pieces.push_back(std::move(p));
  }
}

}  // namespace detail

}  // namespace phinfer::synthetic
