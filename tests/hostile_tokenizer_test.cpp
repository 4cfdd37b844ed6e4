// Hostile tokenizer files: deeply nested components, deeply nested JSON, token ids at the edge of
// int32_t. Each must end in a phinfer::Error that says what and where, never a crash or a hang.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <vector>

#include "phinfer/error.h"
#include "phinfer/tokenizer.h"
#include "test_util.h"

namespace phinfer {
namespace {

const std::string kModel = R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]})";

// `{"type": "Sequence", <list_key>: [` `depth` times around `leaf`, built as text: building it as
// nlohmann::json and dumping it would itself recurse `depth` levels.
std::string nested_sequence(const std::string& list_key, const std::string& leaf, size_t depth) {
  const std::string open = R"({"type": "Sequence", ")" + list_key + R"(": [)";
  std::string s;
  s.reserve(depth * (open.size() + 2) + leaf.size());
  for (size_t i = 0; i < depth; ++i) s += open;
  s += leaf;
  for (size_t i = 0; i < depth; ++i) s += "]}";
  return s;
}

std::string with_component(const std::string& key, const std::string& component) {
  return "{" + kModel + ", \"" + key + "\": " + component + "}";
}

// The call must throw phinfer::Error whose message holds every needle (and stays short: the path
// in an error must not grow with the nesting of the file).
template <class F>
void expect_error(F&& load, const std::vector<std::string>& needles) {
  try {
    load();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "lacks \"" << n << "\": " << msg;
    EXPECT_LT(msg.size(), 4096u) << msg.substr(0, 300);
  }
}

struct Component {
  std::string key, list_key, leaf;
};

const std::vector<Component> kComponents = {
    {"normalizer", "normalizers", R"({"type": "Strip"})"},
    {"pre_tokenizer", "pretokenizers", R"({"type": "ByteLevel"})"},
    {"post_processor", "processors", R"({"type": "ByteLevel"})"},
    {"decoder", "decoders", R"({"type": "Fuse"})"},
};

TEST(HostileTokenizer, DeeplyNestedSequencesAreRejected) {
  for (const auto& c : kComponents) {
    SCOPED_TRACE(c.key);
    // 100k levels: ~4 MB of JSON; recursing into it used to overflow the stack.
    const std::string text = with_component(c.key, nested_sequence(c.list_key, c.leaf, 100000));
    expect_error([&] { Tokenizer::from_json_text(text, "", "hostile.phi"); },
                 {"hostile.phi (tokenizer.json)", c.key + "." + c.list_key + "[0]", "32", "Sequence"});
  }
}

TEST(HostileTokenizer, NestingLimitIsExactAndNamesTheFile) {
  for (const auto& c : kComponents) {
    SCOPED_TRACE(c.key);
    // 32 levels of Sequence (the limit) load and work; 33 do not.
    Tokenizer ok = Tokenizer::from_json_text(with_component(c.key, nested_sequence(c.list_key, c.leaf, 32)), "", "x");
    EXPECT_NO_THROW(ok.decode(ok.encode("ab")));
    auto dir = test::temp_dir("hostile_tokenizer_" + c.key);
    std::ofstream(dir / "tokenizer.json") << with_component(c.key, nested_sequence(c.list_key, c.leaf, 33));
    expect_error([&] { Tokenizer::from_dir(dir); }, {(dir / "tokenizer.json").string(), c.key, "limit"});
  }
}

TEST(HostileTokenizer, DeeplyNestedJsonIsAnErrorNotACrash) {
  const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  expect_error([&] { Tokenizer::from_json_text(deep, "", "deep.phi"); }, {"deep.phi (tokenizer.json)"});
  const std::string minimal = "{" + kModel + "}";
  expect_error([&] { Tokenizer::from_json_text(minimal, deep, "deep.phi"); }, {"deep.phi (tokenizer_config.json)"});
  // Deep JSON in a field nobody recurses into is parsed, freed and ignored.
  const std::string deep_field = "{" + kModel + R"(, "extra": )" + deep + "}";
  EXPECT_EQ(Tokenizer::from_json_text(deep_field, "", "x").vocab_size(), 3);
  // Unterminated: the parser gives up at the end of the text.
  expect_error([&] { Tokenizer::from_json_text(std::string(1000000, '['), "", "open.phi"); }, {"malformed JSON"});
}

std::string with_added_token(const std::string& id) {
  return "{" + kModel + R"(, "added_tokens": [{"id": )" + id + R"(, "content": "<x>"}]})";
}

TEST(HostileTokenizer, AddedTokenIdsAreBounded) {
  // INT32_MAX used to overflow in id + 1; any id far beyond the vocabulary is refused.
  for (const std::string id : {"2147483647", "2147483646", "4294967296", "-1", "9223372036854775807"}) {
    SCOPED_TRACE(id);
    expect_error([&] { Tokenizer::from_json_text(with_added_token(id), "", "ids.phi"); },
                 {"ids.phi (tokenizer.json)", "added_tokens[0].id", id});
  }
  // A generous margin above the vocabulary stays allowed (files do leave gaps).
  Tokenizer tok = Tokenizer::from_json_text(with_added_token("60000"), "", "ids.phi");
  EXPECT_EQ(tok.vocab_size(), 60001);
  EXPECT_EQ(tok.encode("a<x>"), (std::vector<int32_t>{0, 60000}));
}

TEST(HostileTokenizer, PostProcessorIdsAreBounded) {
  const std::string templ = R"({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}],
      "special_tokens": {"<s>": {"id": "<s>", "ids": [4294967296], "tokens": ["<s>"]}}})";
  expect_error([&] { Tokenizer::from_json_text(with_component("post_processor", templ), "", "pp.phi"); },
               {"post_processor.special_tokens.<s>.ids[0]", "4294967296"});
  const std::string bert = R"({"type": "BertProcessing", "cls": ["<s>", -5], "sep": ["</s>", 1]})";
  expect_error([&] { Tokenizer::from_json_text(with_component("post_processor", bert), "", "pp.phi"); },
               {"post_processor.cls[1]", "-5"});
}

TEST(HostileTokenizer, ChatTemplateFileMustBeARegularFile) {
  auto dir = test::temp_dir("hostile_tokenizer_template_fifo");
  std::ofstream(dir / "tokenizer.json") << "{" + kModel + "}";
  ASSERT_EQ(::mkfifo((dir / "chat_template.jinja").c_str(), 0600), 0);  // reading it used to block
  expect_error([&] { Tokenizer::from_dir(dir); }, {"chat_template.jinja", "not a regular file"});
}

}  // namespace
}  // namespace phinfer
