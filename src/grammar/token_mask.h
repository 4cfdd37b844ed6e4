#pragma once
// Which tokens may come next under a grammar: the token trie is walked from the parse state,
// byte by byte, and a whole subtree is skipped as soon as its prefix cannot continue the text.
// Masks are cached by parse state (shared by every generation of one grammar on one vocabulary),
// so a state seen before costs a copy.
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "grammar/matcher.h"
#include "grammar/vocabulary.h"

namespace phinfer::grammar {

using TokenMask = std::vector<uint64_t>;  // bit t: token t allowed

// Stack steps one mask may take (a few hundred ms); a grammar that needs more (thousands of
// ambiguous parses at once) fails with phinfer::Error instead of stalling generation.
inline constexpr uint64_t kMaxMaskSteps = uint64_t{1} << 25;

// Thread-safe; bounded (when full it starts over).
class MaskCache {
 public:
  explicit MaskCache(size_t budget_bytes = size_t{64} << 20) : budget_(budget_bytes) {}
  std::shared_ptr<const TokenMask> find(const std::string& key) const;
  void insert(const std::string& key, std::shared_ptr<const TokenMask> mask);

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const TokenMask>> masks_;
  size_t budget_, used_ = 0;
};

// The trie walk (scratch buffers reused between calls; one thread at a time).
//
// Shortcut (on by default): when every stack of the state reads any character of a token class
// alike (or none of them), the stacks after 1, 2, ... characters of the class are the same
// whatever the characters, so one walk of that chain decides, by character count, every token of
// the class (Vocabulary's TokenClassIndex), and the trie walk skips the subtrees that hold only
// such tokens. Inside a JSON string that is ~all of a 200k vocabulary. The result is the same
// mask as the full walk (tested).
class TokenMasker {
 public:
  // mask = the tokens whose bytes the matcher accepts (the matcher's state is left as it was).
  void compute(Matcher& matcher, const Vocabulary& vocab, bool at_start, TokenMask& mask);
  void use_token_classes(bool on) { token_classes_ = on; }
  // The class that decided its tokens in the last compute (none: the whole trie was walked).
  std::optional<TokenClass> last_shortcut() const { return last_shortcut_; }

 private:
  // The chain of a class from the matcher's tops: false when some stack reads only part of the
  // class. Else whole_ = the largest n such that every token of 1..n whole characters is
  // accepted, and partial_ok_[n] = a token of n whole characters and part of one more is.
  bool class_chain(Matcher& matcher, const TokenClassIndex& c);

  bool token_classes_ = true;
  std::optional<TokenClass> last_shortcut_;
  std::vector<int32_t> sets_;  // stack sets along the current trie path, depth after depth
  std::vector<size_t> begin_, end_, marks_;
  std::vector<int32_t> chain_, next_;
  size_t whole_ = 0;
  std::vector<uint8_t> partial_ok_;
};

// One generation's constraint: the parse so far, and the mask before each token.
class ConstrainedDecoding {
 public:
  // end_ids: the ids that end the generation; allowed exactly where the grammar may end.
  ConstrainedDecoding(std::shared_ptr<const Rules> rules, std::shared_ptr<const Vocabulary> vocab,
                      std::shared_ptr<MaskCache> cache, std::vector<int32_t> end_ids);
  // The tokens allowed next (valid until the next call). Never empty: a grammar that can neither
  // continue nor end does not exist (the rule checks), and every byte is some token's.
  std::span<const uint64_t> allowed();
  // Reads the chosen token; throws phinfer::Error when the grammar does not allow it.
  void accept(int32_t id);
  bool complete() const { return matcher_.complete(); }
  // Benchmarks compare the masks with and without the token-class shortcut.
  void use_token_classes(bool on) { masker_.use_token_classes(on); }
  // Mask computations so far and how many came from the cache (for benchmarks).
  uint64_t masks_computed() const { return computed_; }
  uint64_t masks_cached() const { return cached_; }

 private:
  Matcher matcher_;
  std::shared_ptr<const Vocabulary> vocab_;
  std::shared_ptr<MaskCache> cache_;
  std::vector<int32_t> end_ids_;
  TokenMasker masker_;
  TokenMask mask_;
  bool at_start_ = true;
  uint64_t computed_ = 0, cached_ = 0;
};

}  // namespace phinfer::grammar
