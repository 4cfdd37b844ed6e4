// llama.cpp's Phi-3 tokenizer vectors (models/ggml-vocab-phi-3.gguf.inp/.out), encoded with the
// phi3-mini-4k tokenizer.json. The vectors come from tests/test-tokenizer-0, which tokenizes with
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

#include "phinfer/tokenizer.h"
#include "test_util.h"

namespace phinfer {
namespace {

using test::shared_path;

std::string read_file(const std::string& rel) {
  std::ifstream in(shared_path(rel), std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Just enough of GGUF (v2/v3) to read the metadata key/values of a vocab-only file: string
// arrays and scalars (scalars are skipped, only their size matters here).
class GgufMetadata {
 public:
  explicit GgufMetadata(std::string data) : d_(std::move(data)) {
    if (d_.compare(0, 4, "GGUF") != 0) throw std::runtime_error("not a GGUF file");
    pos_ = 4;
    read<uint32_t>();                 // version
    read<uint64_t>();                 // tensor count
    uint64_t n = read<uint64_t>();    // key/value count
    for (uint64_t i = 0; i < n; ++i) {
      std::string key = read_string();
      uint32_t type = read<uint32_t>();
      if (type == kArray) {
        uint32_t elem = read<uint32_t>();
        uint64_t count = read<uint64_t>();
        for (uint64_t k = 0; k < count; ++k) {
          if (elem == kString) string_arrays_[key].push_back(read_string());
          else skip_scalar(elem);
        }
      } else if (type == kString) {
        strings_[key] = read_string();
      } else if (type == kBool) {
        bools_[key] = read<uint8_t>() != 0;
      } else {
        skip_scalar(type);
      }
    }
  }
  const std::vector<std::string>& strings(const std::string& key) { return string_arrays_.at(key); }
  bool flag(const std::string& key) { return bools_.at(key); }
  const std::string& string(const std::string& key) { return strings_.at(key); }

 private:
  static constexpr uint32_t kBool = 7, kString = 8, kArray = 9;
  template <class T>
  T read() {
    if (pos_ + sizeof(T) > d_.size()) throw std::runtime_error("truncated GGUF");
    T v;
    std::memcpy(&v, d_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string() {
    uint64_t n = read<uint64_t>();
    if (pos_ + n > d_.size()) throw std::runtime_error("truncated GGUF");
    std::string s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  void skip_scalar(uint32_t type) {
    static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type >= std::size(sizes) || sizes[type] == 0) throw std::runtime_error("unexpected GGUF type");
    pos_ += sizes[type];
  }
  std::string d_;
  size_t pos_ = 0;
  std::map<std::string, std::vector<std::string>> string_arrays_;
  std::map<std::string, std::string> strings_;
  std::map<std::string, bool> bools_;
};

TEST(TokenizerLlamaCpp, SameVocabularyAsTokenizerJson) {
  GgufMetadata gguf(read_file("data/llamacpp-vocab-phi3/ggml-vocab-phi-3.gguf"));
  EXPECT_EQ(gguf.string("tokenizer.ggml.model"), "llama");  // SentencePiece-style, scores not merges
  EXPECT_TRUE(gguf.flag("tokenizer.ggml.add_bos_token"));
  const auto& tokens = gguf.strings("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 32064u);  // 32011 real tokens + [PAD32011].. up to the embedding size
  Tokenizer tok = Tokenizer::from_dir(shared_path("data/phi3-mini-4k-instruct"));
  ASSERT_EQ(tok.vocab_size(), 32011);
  for (int32_t id = 0; id < tok.vocab_size(); ++id)
    ASSERT_EQ(tok.id_to_token(id), tokens[id]) << "id " << id;
  EXPECT_EQ(tokens[32011], "[PAD32011]");
}

TEST(TokenizerLlamaCpp, Phi3Vectors) {
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
  Tokenizer tok = Tokenizer::from_dir(shared_path("data/phi3-mini-4k-instruct"));
  size_t exact = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto ids = tok.encode(texts[i], /*add_special_tokens=*/false);
    if (ids == expected[i]) ++exact;
    EXPECT_EQ(testing::PrintToString(ids), testing::PrintToString(expected[i]))
        << "vector " << i << ": " << nlohmann::json(texts[i]);
  }
  std::cout << "[ llama.cpp] ggml-vocab-phi-3 vectors: " << exact << "/" << texts.size()
            << " exact (no vector needed an exception)\n";
}

}  // namespace
}  // namespace phinfer
