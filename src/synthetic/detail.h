#pragma once
// Small helpers shared by the synthetic checkpoint writer's files.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "phinfer/error.h"
#include "synthetic/synthetic.h"

namespace phinfer::synthetic::detail {

// splitmix64's output function: a bijective 64-bit mixer.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;  // splitmix64's increment

inline void write_text_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(path.string() + ": cannot create file");
  f << text;
  f.close();
  if (!f) throw Error(path.string() + ": write failed");
}

// Splits UTF-8 text into code points (invalid bytes become single-byte strings).
std::vector<std::string> code_points(std::string_view s);

// The BPE training loop shared by both tokenizer formats: `words` are symbol sequences (strings)
// with their counts; repeatedly merges the most frequent adjacent pair (ties: the smaller merged
// string, then the shorter left part), at most num_merges times or until no pair is left.
// Returns the merges in rank order.
std::vector<std::pair<std::string, std::string>> learn_merges(
    std::vector<std::pair<std::vector<std::string>, int64_t>> words, size_t num_merges);

// An added token of tokenizer.json.
struct AddedToken {
  int32_t id;
  const char* content;
  bool rstrip;
  bool special;
};
// Its JSON as tokenizer.json's added_tokens (with_id) or tokenizer_config.json's
// added_tokens_decoder (without) list it in the Phi-3 files: id, content, single_word, lstrip,
// rstrip, normalized, special.
nlohmann::ordered_json added_token_json(const AddedToken& t, bool with_id);

// The end of both trainings: learns the merges of `words`, then the vocabulary is v.pieces (the
// fixed first ids), the merged pieces in merge order, the `singles` not yet there, then filler up
// to vocab_size entries (add_filler over text_words). `have` holds every string no new piece may
// repeat (v.pieces and any reserved ones).
void complete_vocabulary(BpeVocabulary& v, std::unordered_set<std::string> have,
                         std::vector<std::pair<std::vector<std::string>, int64_t>> words, size_t num_merges,
                         const std::vector<std::string>& singles, const std::set<std::string>& text_words,
                         size_t vocab_size);

// Appends filler pieces that no merge reaches until `pieces` has vocab_size entries: pairs of the
// text's whole words that are pieces (so a random model's output still decodes to words), then
// "<unusedK>" if the words run out. `have` is the set of pieces so far and is kept up to date.
void add_filler(std::vector<std::string>& pieces, std::unordered_set<std::string>& have,
                const std::set<std::string>& text_words, size_t vocab_size);

}  // namespace phinfer::synthetic::detail
