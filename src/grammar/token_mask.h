#pragma once
// Which tokens may come next under a grammar: the token trie is walked from the parse state,
// byte by byte, and a whole subtree is skipped as soon as its prefix cannot continue the text.
// Masks are cached by parse state (shared by every generation of one grammar on one vocabulary),
// so a state seen before costs a copy.
#include <cstdint>
#include <map>
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


// Stack steps one mask may take (a few hundred ms); a grammar that needs more (thousands of
// ambiguous parses at once) fails with phinfer::Error instead of stalling generation.
inline constexpr uint64_t kMaxMaskSteps = uint64_t{1} << 25;
// A trie subtree at least this large below a character outside the class gets a chain of its own.
inline constexpr size_t kLocalChainNodes = 256;

// What one grammar keeps for one vocabulary: token masks by parse state, and the token-class
// indexes of the grammar's own character sets. Thread-safe; bounded (when the masks outgrow the
// budget they start over; at most kMaxGrammarClasses class indexes, each built once).
inline constexpr size_t kMaxGrammarClasses = 8;

class MaskCache {
 public:
  explicit MaskCache(size_t budget_bytes = size_t{64} << 20) : budget_(budget_bytes) {}
  std::shared_ptr<const TokenMask> find(const std::string& key) const;
  void insert(const std::string& key, std::shared_ptr<const TokenMask> mask);
  // The index of the class `members` on one view of the vocabulary, built on first use; null once
  // kMaxGrammarClasses are held.
  std::shared_ptr<const TokenClassIndex> class_index(const CharClass& members, bool at_start, const Vocabulary& vocab);
  // Class indexes built so far and the CPU time that took (for benchmarks).
  size_t classes_built() const;
  double class_build_ms() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const TokenMask>> masks_;
  size_t budget_, used_ = 0;
  std::map<std::pair<std::vector<std::pair<char32_t, char32_t>>, bool>, std::shared_ptr<const TokenClassIndex>> classes_;
  double class_build_ms_ = 0;
};

// The trie walk (scratch buffers reused between calls; one thread at a time).
//
// Shortcut (on by default): when every stack of the state reads any character of a token class
// alike (or none of them), the stacks after 1, 2, ... characters of the class are the same
// whatever the characters, so one walk of that chain decides, by character count, every token of
// the class (Vocabulary's TokenClassIndex), and the trie walk skips the subtrees that hold only
// such tokens. Inside a JSON string that is ~all of a 200k vocabulary. The classes tried: JSON
// string characters, their ASCII part, then the largest character set among the state's stack
// tops (a class of the grammar, e.g. an e-mail's), then letters and digits. The result is the
// same mask as the full walk (tested).
class TokenMasker {
 public:
  // mask = the tokens whose bytes the matcher accepts (the matcher's state is left as it was).
  // `classes` (may be null) holds the indexes of the grammar's own character sets.
  void compute(Matcher& matcher, const Vocabulary& vocab, bool at_start, TokenMask& mask,
               MaskCache* classes = nullptr);
  void use_token_classes(bool on) { token_classes_ = on; }
  // The class that decided its tokens in the last compute (none: the whole trie was walked).
  std::optional<TokenClass> last_shortcut() const { return last_shortcut_; }

 private:
  // A chain of a class: the stacks after n = 0..whole whole characters are step first + n.
  // truncated: the chain stopped at its length limit (a further character is not known dead).
  struct Chain {
    size_t first, whole;
    bool truncated;
  };
  // Appends the chain of class c from the stacks tops[0, n_tops) (complete: the text may end
  // there), at most max_chars characters long. False (nothing appended) when some stack reads
  // only part of the class. partial_ok (if given) gets, per step, whether a character can begin.
  bool class_chain(Stacks& stacks, const int32_t* tops, size_t n_tops, bool complete, const TokenClassIndex& c,
                   size_t max_chars, Chain& out, std::vector<uint8_t>* partial_ok);
  // Finds the first class whose chain from the matcher's tops is determined and sets its accepted
  // tokens in mask. Returns it (null: none), its chain in root (its stacks stay in the arena),
  // and in own the index of a class of the grammar's when that is the one.
  const TokenClassIndex* take_class_tokens(Matcher& matcher, const Vocabulary& vocab, bool at_start, TokenMask& mask,
                                           MaskCache* classes, std::shared_ptr<const TokenClassIndex>& own,
                                           Chain& root);

  bool token_classes_ = true;
  std::optional<TokenClass> last_shortcut_;
  std::vector<int32_t> sets_;  // stack sets along the current trie path, depth after depth
  std::vector<size_t> begin_, end_, marks_;
  std::vector<ByteSet> next_bytes_;  // per depth: the bytes the stacks there may read
  // Chain steps: stacks chain_sets_[step_begin_[s], step_end_[s]), whether the text may end
  // there, and the bytes they may read next.
  std::vector<int32_t> chain_sets_;
  std::vector<size_t> step_begin_, step_end_;
  std::vector<uint8_t> step_complete_;
  std::vector<ByteSet> step_next_;
  std::vector<Chain> chains_;
  std::vector<int32_t> pure_, chain_at_;  // per depth: characters since the chain's start, and which chain
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
