// llama.cpp's Phi-3 tokenizer vectors (models/ggml-vocab-phi-3.gguf.inp/.out), encoded with the
// phi3-mini-4k tokenizer.json and with the tokenizer built from the GGUF metadata. The vectors come from tests/test-tokenizer-0, which tokenizes with
// add_special = false (no BOS, although the GGUF says add_bos_token = true), so they are compared
// with encode(text, false). The GGUF's token list is checked to be the tokenizer.json vocabulary.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/gguf.h"
#include "phinfer/tokenizer.h"
#include "tokenizer/gguf_vocab.h"
#include "test_util.h"

namespace phinfer {
namespace {

using test::shared_path;

std::string read_file(const std::string& rel) {
  std::ifstream in(shared_path(rel), std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(TokenizerLlamaCpp, SameVocabularyAsTokenizerJson) {
  const auto gguf = format::GgufFile::open(shared_path("data/llamacpp-vocab-phi3/ggml-vocab-phi-3.gguf"));
  EXPECT_EQ(gguf.get_string("tokenizer.ggml.model"), "llama");  // SentencePiece-style, scores not merges
  EXPECT_EQ(gguf.get_bool("tokenizer.ggml.add_bos_token"), true);
  const auto& tokens = gguf.get_array("tokenizer.ggml.tokens", {format::GgufValueType::String})->strings;
  ASSERT_EQ(tokens.size(), 32064u);  // 32011 real tokens + [PAD32011].. up to the embedding size
  Tokenizer tok = Tokenizer::from_dir(shared_path("data/phi3-mini-4k-instruct"));
  ASSERT_EQ(tok.vocab_size(), 32011);
  for (int32_t id = 0; id < tok.vocab_size(); ++id)
    ASSERT_EQ(tok.id_to_token(id), tokens[id]) << "id " << id;
  EXPECT_EQ(tokens[32011], "[PAD32011]");
}

// The same vectors through the tokenizer built from the GGUF's own metadata (tokenizer/gguf_vocab.h).
Tokenizer gguf_tokenizer(const std::string& rel) {
  const auto files = tok::tokenizer_files_from_gguf(format::GgufFile::open(shared_path(rel)));
  return Tokenizer::from_json_text(files.tokenizer_json, files.tokenizer_config_json, rel);
}

void check_vectors(const Tokenizer& tok, const char* which) {
  const std::string inp = read_file("data/llamacpp-vocab-phi3/ggml-vocab-phi-3.gguf.inp");
  const std::string out = read_file("data/llamacpp-vocab-phi3/ggml-vocab-phi-3.gguf.out");
  // Each text is followed by "\n__ggml_vocab_test__\n" (the file ends with one).
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0;;) {
    size_t next = inp.find(sep, pos);
    if (next == std::string::npos) break;
    texts.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<std::vector<int32_t>> expected;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream nums(line);
    std::vector<int32_t> ids;
    for (int32_t id; nums >> id;) ids.push_back(id);
    expected.push_back(ids);
  }
  ASSERT_EQ(texts.size(), 46u);
  ASSERT_EQ(expected.size(), texts.size());
  size_t exact = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto ids = tok.encode(texts[i], /*add_special_tokens=*/false);
    if (ids == expected[i]) ++exact;
    EXPECT_EQ(testing::PrintToString(ids), testing::PrintToString(expected[i]))
        << "vector " << i << ": " << nlohmann::json(texts[i]);
  }
  std::cout << "[ llama.cpp] ggml-vocab-phi-3 vectors (" << which << "): " << exact << "/" << texts.size()
            << " exact (no vector needed an exception)\n";
}

TEST(TokenizerLlamaCpp, Phi3Vectors) {
  check_vectors(Tokenizer::from_dir(shared_path("data/phi3-mini-4k-instruct")), "tokenizer.json");
}

TEST(TokenizerLlamaCpp, Phi3VectorsFromGgufMetadata) {
  for (const char* f : {"data/llamacpp-vocab-phi3/ggml-vocab-phi-3.gguf", "data/llamacpp-vocab-phi3/ggml-vocab-llama-spm.gguf"})
    check_vectors(gguf_tokenizer(f), f);
}

}  // namespace
}  // namespace phinfer
