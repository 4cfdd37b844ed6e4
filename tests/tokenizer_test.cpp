// Tokenizer: exact agreement with the Hugging Face goldens (transformers.js, cross-checked with the
// Rust tokenizers library) for Phi-3-mini-4k, Phi-3.5-mini and Phi-4-mini, llama.cpp's Phi-3
// vectors, the streaming detokenizer, and errors for malformed files and bad ids.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phinfer/error.h"
#include "phinfer/tokenizer.h"
#include "test_util.h"
#include "tokenizer/utf8.h"

namespace phinfer {
namespace {

using nlohmann::json;
using test::read_jsonl;
using test::shared_path;

// Loading is the slow part (Phi-4's tokenizer.json is 15 MB), so each folder is loaded once.
const Tokenizer& tokenizer(const std::string& folder) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(folder);
  if (it == cache.end())
    it = cache.emplace(folder, Tokenizer::from_dir(shared_path("data/" + folder))).first;
  return it->second;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

// Streams ids one at a time; every piece must be valid UTF-8 on its own.
std::string stream_decode(const Tokenizer& tok, const std::vector<int32_t>& ids,
                          bool skip_special = false) {
  Tokenizer::StreamDecoder stream(tok, skip_special);
  std::string out;
  for (int32_t id : ids) {
    std::string piece = stream.push(id);
    EXPECT_EQ(tok::to_valid_utf8(piece), piece) << "broken UTF-8 emitted after id " << id;
    out += piece;
  }
  std::string rest = stream.flush();
  EXPECT_EQ(tok::to_valid_utf8(rest), rest);
  return out + rest;
}

struct GoldenCounts {
  size_t lines = 0, ids_exact = 0, decoded_exact = 0, stream_exact = 0;
};

GoldenCounts check_golden(const std::string& golden, const std::string& folder) {
  const Tokenizer& tok = tokenizer(folder);
  GoldenCounts c;
  for (const json& line : read_jsonl(shared_path("golden/tokenizer/" + golden))) {
    ++c.lines;
    const std::string text = line.at("text");
    const auto expected = line.at("ids").get<std::vector<int32_t>>();
    const std::string decoded = line.at("decoded");
    const auto ids = tok.encode(text);
    if (ids == expected) ++c.ids_exact;
    EXPECT_EQ(show(ids), show(expected)) << golden << " line " << c.lines << " text " << json(text);
    const std::string got = tok.decode(expected);
    if (got == decoded) ++c.decoded_exact;
    EXPECT_EQ(got, decoded) << golden << " line " << c.lines;
    const std::string streamed = stream_decode(tok, expected);
    if (streamed == decoded) ++c.stream_exact;
    EXPECT_EQ(streamed, decoded) << golden << " line " << c.lines << " (StreamDecoder)";
  }
  std::cout << "[ golden   ] " << golden << ": ids exact " << c.ids_exact << "/" << c.lines
            << ", decode exact " << c.decoded_exact << "/" << c.lines << ", stream exact "
            << c.stream_exact << "/" << c.lines << "\n";
  EXPECT_EQ(c.lines, 284u);
  return c;
}

TEST(TokenizerGolden, Phi3Mini4k) { check_golden("phi3-mini-4k.jsonl", "phi3-mini-4k-instruct"); }
TEST(TokenizerGolden, Phi35Mini) { check_golden("phi3.5-mini.jsonl", "phi3.5-mini-instruct"); }
TEST(TokenizerGolden, Phi4Mini) { check_golden("phi4-mini.jsonl", "phi4-mini-instruct"); }

// The chat goldens' `ids`: each rendered conversation encoded without adding special tokens.
TEST(TokenizerGolden, ChatRenderedIds) {
  for (const char* folder : {"phi3-mini-4k-instruct", "phi3-mini-128k-instruct-2024-04",
                             "phi3-mini-128k-instruct-2024-07", "phi3.5-mini-instruct",
                             "phi4-mini-instruct"}) {
    const Tokenizer& tok = tokenizer(folder);
    size_t lines = 0, exact = 0;
    for (const json& line : read_jsonl(shared_path(std::string("golden/chat/") + folder + ".jsonl"))) {
      ++lines;
      const auto expected = line.at("ids").get<std::vector<int32_t>>();
      const auto ids = tok.encode(line.at("rendered").get<std::string>(), false);
      if (ids == expected) ++exact;
      EXPECT_EQ(show(ids), show(expected)) << folder << " line " << lines;
    }
    EXPECT_GE(lines, 6u);
    std::cout << "[ golden   ] chat/" << folder << ".jsonl: ids exact " << exact << "/" << lines << "\n";
  }
}

// Which field decides BOS: the tokenizer.json post-processor (as in HF tokenizers and
// transformers.js), not tokenizer_config.json's add_bos_token. In the raw 2024-04 128k files the
// two disagree (add_bos_token true, post-processor adds nothing).
TEST(TokenizerSpecialTokens, PostProcessorDecidesBos) {
  EXPECT_EQ(tokenizer("phi3-mini-4k-instruct").encode(""), (std::vector<int32_t>{1}));
  EXPECT_EQ(tokenizer("phi3-mini-4k-instruct").encode("", false), (std::vector<int32_t>{}));
  EXPECT_EQ(tokenizer("phi3.5-mini-instruct").encode(""), (std::vector<int32_t>{}));
  EXPECT_EQ(tokenizer("phi3-mini-128k-instruct-2024-04").encode("Hello"),
            (std::vector<int32_t>{15043}));
  EXPECT_EQ(tokenizer("phi4-mini-instruct").encode("Hello"), (std::vector<int32_t>{13225}));
}

TEST(TokenizerSpecialTokens, ConfigFields) {
  const Tokenizer& phi3 = tokenizer("phi3-mini-4k-instruct");
  EXPECT_EQ(phi3.bos_token(), "<s>");
  EXPECT_EQ(phi3.bos_id(), 1);
  EXPECT_EQ(phi3.eos_token(), "<|endoftext|>");
  EXPECT_EQ(phi3.eos_id(), 32000);
  EXPECT_EQ(phi3.vocab_size(), 32011);
  EXPECT_EQ(phi3.token_to_id("<|user|>"), 32010);
  EXPECT_EQ(phi3.token_to_id("\xE2\x96\x81Hello"), 15043);
  EXPECT_EQ(phi3.token_to_id("no such token"), std::nullopt);
  EXPECT_EQ(phi3.id_to_token(13), "<0x0A>");
  EXPECT_EQ(phi3.id_to_token(32007), "<|end|>");
  EXPECT_TRUE(phi3.is_special(32007));
  EXPECT_FALSE(phi3.is_special(2));  // </s> is an added token but not special
  EXPECT_FALSE(phi3.is_special(15043));
  EXPECT_EQ(phi3.chat_template().rfind("{{ bos_token }}", 0), 0u);

  const Tokenizer& phi4 = tokenizer("phi4-mini-instruct");
  EXPECT_EQ(phi4.bos_id(), 199999);
  EXPECT_EQ(phi4.eos_id(), 199999);
  EXPECT_EQ(phi4.vocab_size(), 200029);
  EXPECT_NE(phi4.chat_template().find("<|tool|>"), std::string::npos);
}

TEST(TokenizerDecode, SkipSpecialTokens) {
  const Tokenizer& tok = tokenizer("phi3-mini-4k-instruct");
  auto ids = tok.encode("<|user|>\nHi<|end|>\n<|assistant|>");
  EXPECT_EQ(tok.decode(ids), "<s><|user|> Hi<|end|><|assistant|>");
  // </s> (id 2) is not special, so it stays.
  ids.push_back(2);
  EXPECT_EQ(tok.decode(ids, true), "Hi</s>");
  EXPECT_EQ(stream_decode(tok, ids, true), "Hi</s>");
}

TEST(TokenizerDecode, OutOfRangeIdsThrow) {
  const Tokenizer& tok = tokenizer("phi3-mini-4k-instruct");
  EXPECT_THROW(tok.decode({15043, 32011}), Error);
  EXPECT_THROW(tok.decode({-1}), Error);
  EXPECT_THROW(tok.id_to_token(1 << 30), Error);
  Tokenizer::StreamDecoder stream(tok);
  EXPECT_THROW(stream.push(40000), Error);
  try {
    tok.decode({32064});
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("32064"), std::string::npos) << e.what();
  }
  // Phi-4-mini: ids 200029..200063 are embedding rows without a token.
  EXPECT_THROW(tokenizer("phi4-mini-instruct").decode({200030}), Error);
}

// Text becomes final as early as it can: a space after "<s>" is kept at once, a leading space of
// the first token is stripped at once, and an incomplete <0xNN> run waits for the next token.
TEST(TokenizerStream, EmitsFinalTextEarly) {
  const Tokenizer& tok = tokenizer("phi3-mini-4k-instruct");
  Tokenizer::StreamDecoder s(tok);
  EXPECT_EQ(s.push(1), "<s>");
  EXPECT_EQ(s.push(15043), " Hello");
  EXPECT_EQ(s.push(3186), " world");
  // U+1F600 has no piece: bytes F0 9F 98 80.
  const auto emoji = tok.encode("\xF0\x9F\x98\x80!", false);
  ASSERT_EQ(show(emoji), show({29871, 243, 162, 155, 131, 29991}));  // <0xNN> is id 3 + NN
  EXPECT_EQ(s.push(29871), " ");
  EXPECT_EQ(s.push(243), "");
  EXPECT_EQ(s.push(162), "");
  EXPECT_EQ(s.push(155), "");
  EXPECT_EQ(s.push(131), "");
  EXPECT_EQ(s.push(29991), "\xF0\x9F\x98\x80!");
  EXPECT_EQ(s.flush(), "");

  Tokenizer::StreamDecoder t(tokenizer("phi3.5-mini-instruct"));
  EXPECT_EQ(t.push(15043), "Hello");  // the decoder's Strip removes the first leading space
  EXPECT_EQ(t.push(3186), " world");
  // An unfinished byte run at the end is invalid UTF-8: one U+FFFD per byte.
  EXPECT_EQ(t.push(243), "");
  EXPECT_EQ(t.push(162), "");
  EXPECT_EQ(t.flush(), "\xEF\xBF\xBD\xEF\xBF\xBD");
  // After flush the decoder starts a new sequence.
  EXPECT_EQ(t.push(15043), "Hello");
}

TEST(TokenizerStream, ByteLevelWaitsForCompleteCharacters) {
  const Tokenizer& tok = tokenizer("phi4-mini-instruct");
  // "€" is E2 82 AC; give its three bytes one token each (byte-level stand-ins "â", "Ĥ", "¬").
  std::vector<int32_t> ids;
  for (const char* t : {"\xC3\xA2", "\xC4\xA4", "\xC2\xAC"}) {
    auto id = tok.token_to_id(t);
    ASSERT_TRUE(id) << t;
    ids.push_back(*id);
  }
  Tokenizer::StreamDecoder s(tok);
  EXPECT_EQ(s.push(ids[0]), "");
  EXPECT_EQ(s.push(ids[1]), "");
  EXPECT_EQ(s.push(ids[2]), "\xE2\x82\xAC");
  EXPECT_EQ(s.push(ids[0]), "");
  EXPECT_EQ(s.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode({ids[0], ids[1], ids[2], ids[0]}), "\xE2\x82\xAC\xEF\xBF\xBD");
}

// Random text over many scripts, controls, white space and supplementary planes (no '<', so no
// added token can appear): decoding the encoding gives the text back, and streaming agrees.
TEST(TokenizerEncode, RandomTextRoundTrips) {
  std::mt19937 rng(1234);
  const std::vector<std::pair<char32_t, char32_t>> ranges = {
      {0x00, 0x3B},       {0x3D, 0x7F},       {0x80, 0x2FF},     {0x370, 0x6FF},
      {0x900, 0x97F},     {0x1680, 0x1680},   {0x2000, 0x206F},  {0x3000, 0x30FF},
      {0x4E00, 0x9FFF},   {0xAC00, 0xD7A3},   {0xE000, 0xE0FF},  {0xFE00, 0xFFFD},
      {0x1F300, 0x1FAFF}, {0x20000, 0x2A6DF}, {0x10FF00, 0x10FFFF}};
  for (const char* folder : {"phi3-mini-4k-instruct", "phi4-mini-instruct"}) {
    const Tokenizer& tok = tokenizer(folder);
    for (int round = 0; round < 300; ++round) {
      std::string text;
      const int n = std::uniform_int_distribution<int>(0, 40)(rng);
      for (int i = 0; i < n; ++i) {
        auto [lo, hi] = ranges[std::uniform_int_distribution<size_t>(0, ranges.size() - 1)(rng)];
        tok::append_utf8(text, std::uniform_int_distribution<uint32_t>(lo, hi)(rng));
      }
      auto ids = tok.encode(text, false);
      EXPECT_EQ(tok.decode(ids), text) << folder << " " << json(text);
      EXPECT_EQ(stream_decode(tok, ids), text) << folder << " " << json(text);
    }
  }
}

// Random id sequences (mostly byte tokens, so that broken UTF-8 is common): the stream gives the
// same text as decode() and never a broken sequence.
TEST(TokenizerStream, RandomIdsMatchDecode) {
  std::mt19937 rng(99);
  for (const char* folder : {"phi3-mini-4k-instruct", "phi4-mini-instruct"}) {
    const Tokenizer& tok = tokenizer(folder);
    const int32_t byte_hi = std::string(folder).rfind("phi3", 0) == 0 ? 258 : 255;
    for (int round = 0; round < 300; ++round) {
      std::vector<int32_t> ids(std::uniform_int_distribution<int>(0, 12)(rng));
      for (auto& id : ids)
        id = rng() % 3 ? std::uniform_int_distribution<int32_t>(0, byte_hi)(rng)
                       : std::uniform_int_distribution<int32_t>(0, tok.vocab_size() - 1)(rng);
      const std::string text = tok.decode(ids);
      EXPECT_EQ(tok::to_valid_utf8(text), text);
      EXPECT_EQ(stream_decode(tok, ids), text) << folder << " " << show(ids);
    }
  }
}

TEST(TokenizerEncode, InvalidUtf8IsReplaced) {
  const Tokenizer& tok = tokenizer("phi3.5-mini-instruct");
  EXPECT_EQ(tok.encode("a\xFF" "b"), tok.encode("a\xEF\xBF\xBD" "b"));
}

// ~100 kB of mixed text (the golden strings, repeated): timing printed, and a loose bound that
// only catches accidental quadratic behaviour. Phi-3 has no pre-tokenizer, so a long text without
// added tokens is a single 100 kB BPE word.
TEST(TokenizerSpeed, HundredKilobytes) {
  std::string text;
  const auto lines = read_jsonl(shared_path("golden/tokenizer/phi4-mini.jsonl"));
  while (text.size() < 100000)
    for (const json& line : lines) text += line.at("text").get<std::string>() + "\n";
  std::string plain;
  while (plain.size() < 100000) plain += "The quick brown fox jumps over the lazy dog. ";
  for (const char* folder : {"phi3-mini-4k-instruct", "phi4-mini-instruct"}) {
    const Tokenizer& tok = tokenizer(folder);
    for (const std::string* t : {&text, &plain}) {
      auto start = std::chrono::steady_clock::now();
      auto ids = tok.encode(*t);
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      std::cout << "[ speed    ] " << folder << ": " << t->size() << " bytes ("
                << (t == &text ? "golden mix" : "one plain segment") << ") -> " << ids.size()
                << " tokens in " << ms << " ms\n";
      EXPECT_LT(ms, 10000.0);
      start = std::chrono::steady_clock::now();
      EXPECT_EQ(tok.decode(ids), stream_decode(tok, ids));
    }
  }
}

// ---- malformed files ----

const char* kMinimal = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})";

std::filesystem::path write_tokenizer(const std::string& name, const std::string& tokenizer_json,
                                      const std::string& config_json = "") {
  auto dir = test::temp_dir("tokenizer_" + name);
  std::ofstream(dir / "tokenizer.json") << tokenizer_json;
  if (!config_json.empty()) std::ofstream(dir / "tokenizer_config.json") << config_json;
  return dir;
}

// Loading must throw phinfer::Error whose message contains every one of `needles`.
void expect_load_error(const std::string& name, const std::string& tokenizer_json,
                       std::vector<std::string> needles, const std::string& config_json = "") {
  auto dir = write_tokenizer(name, tokenizer_json, config_json);
  try {
    Tokenizer::from_dir(dir);
    ADD_FAILURE() << name << ": no error";
  } catch (const Error& e) {
    for (const auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << name << ": message lacks \"" << n << "\": " << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << name << ": not a phinfer::Error: " << e.what();
  }
}

json minimal() { return json::parse(kMinimal); }

TEST(TokenizerErrors, MalformedFiles) {
  expect_load_error("bad_json", "{\"model\": {", {"tokenizer.json", "malformed JSON"});
  expect_load_error("not_object", "[1, 2]", {"tokenizer.json", "expected an object"});
  expect_load_error("no_model", "{}", {"tokenizer.json", "missing field \"model\""});
  json j = minimal();
  j["model"]["type"] = "WordPiece";
  expect_load_error("unknown_model", j.dump(), {"model", "unsupported model type \"WordPiece\""});
  j = minimal();
  j["model"].erase("type");
  expect_load_error("untyped_model", j.dump(), {"model", "missing model type"});
  j = minimal();
  j["normalizer"] = {{"type", "NFKC"}};
  expect_load_error("unknown_normalizer", j.dump(), {"normalizer.type", "NFKC"});
  j = minimal();
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Whitespace"}}}}};
  expect_load_error("unknown_pre_tokenizer", j.dump(), {"pre_tokenizer.pretokenizers[0].type", "Whitespace"});
  j = minimal();
  j["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", "1"}, {"stop", 0}};
  expect_load_error("strip_start_string", j.dump(), {"decoder.start", "expected an integer, found string"});
  j = minimal();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_load_error("unknown_decoder", j.dump(), {"decoder.type", "WordPiece"});
  j = minimal();
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}}},
                         {"special_tokens", json::object()}};
  expect_load_error("template_unknown_special", j.dump(), {"post_processor.single[0].SpecialToken.id", "<s>"});
  j = minimal();
  j["model"]["vocab"] = json::array({"a", "b"});
  expect_load_error("vocab_array", j.dump(), {"model.vocab", "expected an object, found array"});
  j = minimal();
  j["model"]["vocab"]["c"] = "3";
  expect_load_error("vocab_id_string", j.dump(), {"model.vocab.c", "expected an integer id"});
  j = minimal();
  j["model"]["merges"] = json::array({42});
  expect_load_error("merge_number", j.dump(), {"model.merges[0]", "expected"});
  j = minimal();
  j["model"]["merges"] = json::array({"a c"});
  expect_load_error("merge_unknown_token", j.dump(), {"model.merges[0]", "\"c\" is not in the vocabulary"});
  j = minimal();
  j["model"]["unk_token"] = "<unk>";
  expect_load_error("unk_not_in_vocab", j.dump(), {"model.unk_token", "<unk>"});
  j = minimal();
  j["added_tokens"] = json::array({{{"id", "5"}, {"content", "<x>"}}});
  expect_load_error("added_token_id_string", j.dump(), {"added_tokens[0].id", "expected an integer"});
  j = minimal();
  j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", "(unclosed"}}}, {"content", "x"}};
  expect_load_error("bad_regex", j.dump(), {"normalizer.pattern.Regex", "invalid regex"});
  expect_load_error("config_bos_number", kMinimal, {"tokenizer_config.json", "bos_token"},
                    R"({"bos_token": 5})");
  expect_load_error("config_bad_json", kMinimal, {"tokenizer_config.json", "malformed JSON"}, "{oops");
  try {
    Tokenizer::from_dir(test::temp_dir("tokenizer_missing_dir") / "nothing");
    ADD_FAILURE() << "no error for a missing folder";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
}

// ---- small hand-written tokenizers exercising components the Phi files do not use ----

Tokenizer load(const std::string& name, const json& j, const std::string& config = "") {
  return Tokenizer::from_dir(write_tokenizer(name, j.dump(), config));
}

TEST(TokenizerComponents, MinimalBpeAndNullDecoder) {
  Tokenizer tok = load("minimal", minimal());
  EXPECT_EQ(tok.encode("abab"), (std::vector<int32_t>{2, 2}));
  EXPECT_EQ(tok.encode("ba"), (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(tok.encode("xa"), (std::vector<int32_t>{0}));  // no unk token: "x" is dropped
  EXPECT_EQ(tok.decode({2, 0, 1}), "ab a b");  // no decoder: tokens joined with spaces
  EXPECT_EQ(tok.bos_id(), std::nullopt);
  EXPECT_EQ(tok.chat_template(), "");
}

TEST(TokenizerComponents, UnknownTokenFusing) {
  json j = minimal();
  j["model"]["vocab"]["<unk>"] = 3;
  j["model"]["unk_token"] = "<unk>";
  j["model"]["fuse_unk"] = true;
  EXPECT_EQ(load("fuse_unk", j).encode("axyb"), (std::vector<int32_t>{0, 3, 1}));
  j["model"]["fuse_unk"] = false;
  EXPECT_EQ(load("no_fuse_unk", j).encode("axyb"), (std::vector<int32_t>{0, 3, 3, 1}));
}

TEST(TokenizerComponents, SplitBehaviours) {
  json j = minimal();
  auto split = [&](const std::string& behavior, bool invert) {
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", "b"}}}, {"behavior", behavior},
                          {"invert", invert}};
    return load("split_" + behavior, j).encode("abab");
  };
  // "abab" split at "b": a|b|a|b.
  EXPECT_EQ(split("Isolated", false), (std::vector<int32_t>{0, 1, 0, 1}));
  EXPECT_EQ(split("Removed", false), (std::vector<int32_t>{0, 0}));
  EXPECT_EQ(split("Removed", true), (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(split("MergedWithPrevious", false), (std::vector<int32_t>{2, 2}));
  EXPECT_EQ(split("MergedWithNext", false), (std::vector<int32_t>{0, 1, 0, 1}));
  EXPECT_EQ(split("Contiguous", false), (std::vector<int32_t>{0, 1, 0, 1}));
}

TEST(TokenizerComponents, AddedTokenFlags) {
  json j = minimal();
  j["model"]["vocab"][" "] = 3;
  j["added_tokens"] = json::array({
      {{"id", 10}, {"content", "<x>"}, {"lstrip", true}, {"rstrip", false}, {"special", true}},
      {{"id", 11}, {"content", "<x>y"}, {"single_word", true}},
      {{"id", 12}, {"content", "ab"}, {"single_word", true}},
  });
  j["decoder"] = {{"type", "Fuse"}};
  Tokenizer tok = load("added_flags", j);
  EXPECT_EQ(tok.encode("a  <x> b"), (std::vector<int32_t>{0, 10, 3, 1}));  // lstrip eats "  "
  EXPECT_EQ(tok.encode("<x>y"), (std::vector<int32_t>{11}));  // longest match wins
  EXPECT_EQ(tok.encode("ab ab"), (std::vector<int32_t>{12, 3, 12}));
  EXPECT_EQ(tok.encode("abab"), (std::vector<int32_t>{2, 2}));  // single_word: inside a word
  EXPECT_EQ(tok.decode({0, 10, 1}), "a<x>b");
  EXPECT_EQ(tok.decode({0, 10, 1}, true), "ab");
  EXPECT_EQ(tok.vocab_size(), 13);
}

TEST(TokenizerComponents, FromJsonText) {
  Tokenizer tok = Tokenizer::from_json_text(kMinimal, R"({"eos_token": "b"})", "model.phin");
  EXPECT_EQ(tok.encode("ab"), (std::vector<int32_t>{2}));
  EXPECT_EQ(tok.eos_id(), 1);
  try {
    Tokenizer::from_json_text("{}", "", "model.phin");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.phin (tokenizer.json)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tokenizer::from_json_text(kMinimal, "[", "model.phin"), Error);
}

TEST(TokenizerComponents, ChatTemplateListAndBosObject) {
  Tokenizer tok = load("config_forms", minimal(),
                       R"({"bos_token": {"content": "ab", "lstrip": false}, "eos_token": "b",
                           "chat_template": [{"name": "tool_use", "template": "T"},
                                             {"name": "default", "template": "D"}]})");
  EXPECT_EQ(tok.bos_token(), "ab");
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.chat_template(), "D");
}

}  // namespace
}  // namespace phinfer
