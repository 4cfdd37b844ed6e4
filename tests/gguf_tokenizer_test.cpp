// The tokenizer built from a GGUF file's metadata (tokenizer/gguf_vocab.h) against the Hugging Face
// tokenizer.json of the same model: the 284 golden strings of ../shared/golden/tokenizer and the
// fixtures' prompts encode to the same ids and decode to the same text; special tokens, add_bos
// and the chat template come through.
#include <gtest/gtest.h>

#include "format/gguf.h"
#include "phinfer/tokenizer.h"
#include "test_util.h"
#include "tokenizer/gguf_vocab.h"

namespace phinfer {
namespace {

using nlohmann::json;

Tokenizer from_gguf(const std::string& file) {
  const auto path = test::shared_path("models/gguf/" + file);
  const auto files = tok::tokenizer_files_from_gguf(format::GgufFile::open(path));
  return Tokenizer::from_json_text(files.tokenizer_json, files.tokenizer_config_json, path.string());
}

const json& golden() {
  static const json g = test::read_json(test::shared_path("models/gguf/golden.json"));
  return g;
}

// Every golden string, with and without special tokens, and the decoded text of the HF ids.
void same_as_hf(const Tokenizer& gguf, const Tokenizer& hf, const std::string& strings_file, bool check_ids_file) {
  int n = 0;
  for (const json& line : test::read_jsonl(test::shared_path("golden/tokenizer/" + strings_file))) {
    const std::string text = line["text"].get<std::string>();
    SCOPED_TRACE(json(text).dump());
    const auto ids = hf.encode(text, true);
    if (check_ids_file) EXPECT_EQ(ids, line["ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(gguf.encode(text, true), ids);
    EXPECT_EQ(gguf.encode(text, false), hf.encode(text, false));
    EXPECT_EQ(gguf.decode(ids), hf.decode(ids));
    EXPECT_EQ(gguf.decode(ids, true), hf.decode(ids, true));
    ++n;
  }
  EXPECT_EQ(n, 284);
}

void prompts_match(const Tokenizer& gguf, const std::string& model, bool add_special_for_text) {
  for (const auto& [name, p] : golden()["models"][model]["prompts"].items()) {
    SCOPED_TRACE(model + "/" + name);
    const bool chat_template = p.contains("messages");  // encoded without special tokens
    EXPECT_EQ(gguf.encode(p["text"].get<std::string>(), !chat_template && add_special_for_text),
              p["ids"].get<std::vector<int32_t>>());
  }
}

TEST(GgufTokenizer, LlamaVocabularyEqualsPhi3Mini4kTokenizerJson) {
  const Tokenizer gguf = from_gguf("phi3-tiny-k256-Q4_K_M.gguf");
  const Tokenizer hf = Tokenizer::from_dir(test::shared_path("data/phi3-mini-4k-instruct"));
  same_as_hf(gguf, hf, "phi3-mini-4k.jsonl", true);
  prompts_match(gguf, "phi3-tiny-k256", true);
  EXPECT_EQ(gguf.bos_id(), 1);
  EXPECT_EQ(gguf.eos_id(), 32000);
  EXPECT_EQ(gguf.token_to_id("<|end|>"), 32007);
  EXPECT_TRUE(gguf.is_special(32007));
  EXPECT_EQ(gguf.encode("Hi", true).front(), 1);  // add_bos_token true
}

TEST(GgufTokenizer, LlamaVocabularyEqualsPhi3Mini128kTokenizerJson) {
  const Tokenizer gguf = from_gguf("phi3-tiny-gqa-longrope-Q4_0.gguf");
  const Tokenizer hf = Tokenizer::from_dir(test::shared_path("data/phi3-mini-128k-instruct-2024-07"));
  same_as_hf(gguf, hf, "phi3-mini-4k.jsonl", false);
  prompts_match(gguf, "phi3-tiny-gqa-longrope", true);
  EXPECT_NE(gguf.encode("Hi", true).front(), 1);  // add_bos_token false
}

TEST(GgufTokenizer, Gpt2VocabularyEqualsPhi4MiniTokenizerJson) {
  const Tokenizer gguf = from_gguf("phi4-tiny-synth-Q8_0.gguf");
  const Tokenizer hf = Tokenizer::from_dir(test::shared_path("data/phi4-mini-instruct"));
  same_as_hf(gguf, hf, "phi4-mini.jsonl", true);
  prompts_match(gguf, "phi4-tiny-synth", true);
  EXPECT_EQ(gguf.eos_id(), 199999);
  EXPECT_EQ(gguf.token_to_id("<|assistant|>"), 200019);
}

}  // namespace
}  // namespace phinfer
