#pragma once
// The HF "BPE" model: a word's characters (or their bytes via <0xNN> tokens when byte_fallback is
// on) are merged pairwise by merge rank, lowest rank first, leftmost first on ties.
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/json_view.h"

namespace phinfer::tok {

// Hash that lets unordered_map<std::string, ...> be searched with a string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // From the "model" object (type "BPE" already checked by the caller).
  static std::unique_ptr<BpeModel> from_json(const JsonView& j);
  // Exclusive bound of the ids a file with `entries` tokens may use. Ids index tables, so a corrupt
  // file must not be able to ask for a gigantic one, and id + 1 must still fit an int32_t.
  static int64_t id_bound(size_t entries);

  // Token ids of one pre-tokenized word.
  std::vector<int32_t> tokenize(std::string_view word) const;

  const TokenMap& vocab() const { return vocab_; }
  // Highest vocabulary id + 1.
  int32_t id_limit() const { return static_cast<int32_t>(id_to_token_.size()); }
  // Token string of id, nullptr when the id has no vocabulary entry.
  const std::string* token(int32_t id) const;

 private:
  struct Merge {
    uint32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void load_vocab(const JsonView& vocab);
  void load_merges(const JsonView& merges);
  std::vector<int32_t> initial_symbols(std::string_view word) const;
  std::vector<int32_t> merge(std::vector<int32_t> symbols) const;

  TokenMap vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_token_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  std::array<int32_t, 256> byte_ids_{};  // id of "<0xNN>", -1 if absent

  // Short words repeat a lot in real text, so their results are cached (bounded, thread-safe).
  static constexpr size_t kCacheMaxWordBytes = 64;
  static constexpr size_t kCacheCapacity = 50000;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace phinfer::tok
