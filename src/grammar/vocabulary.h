#pragma once
// A tokenizer's vocabulary as the grammar sees it: every token's bytes (what it adds to decoded
// text) in a trie, so the token mask tests a shared prefix once for all tokens that start with it.
// Built once per tokenizer (immutable afterwards, shared between threads).
//
// Two views: a token as the first of a text and anywhere else, since a decoder may strip a leading
// space (Phi-3's "▁the" is "the" at the start of a decode and " the" after). Special tokens and
// tokens with no bytes are in neither trie: the grammar never allows them (end-of-sequence ids are
// allowed separately, where the grammar may end).
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "grammar/rules.h"
#include "phinfer/tokenizer.h"

namespace phinfer::grammar {

// Tokens made only of characters of one common class (JSON string characters, ASCII letters and
// digits, ...). From a parse state in which every stack reads any character of the class alike,
// or none of them, such a token is accepted or refused by its character count alone: the token
// mask takes these tokens from the sets below and walks the trie only where other tokens are.
enum class TokenClass : uint8_t {
  JsonStringChar,   // U+0020 and above but '"' and '\\' (what a JSON string holds unescaped)
  JsonStringAscii,  // its ASCII part
  AsciiAlnum,       // [0-9A-Za-z]
  OfGrammar,        // a character set of the grammar itself, indexed when a state first needs it
};
inline constexpr size_t kTokenClasses = 3;  // the built-in classes (indexed with the vocabulary)
inline constexpr size_t kMaxClassChars = 48;  // longer tokens are walked like any other

using TokenMask = std::vector<uint64_t>;  // bit t: token t allowed
inline void allow(TokenMask& mask, int32_t id) { mask[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63); }

struct TokenClassIndex {
  TokenClass token_class{};
  CharClass members;             // the class's code points (and the bytes that begin one)
  ByteSet ascii{};               // its ASCII members
  bool has_non_ascii = false;
  // up_to[c]: the tokens of 1..c whole characters of the class (c < up_to.size()).
  std::vector<TokenMask> up_to;
  // partial[c]: the tokens of c whole characters followed by the first bytes of another one
  // (a character split between tokens; only for classes past ASCII).
  std::vector<std::vector<int32_t>> partial;
  // Per trie node: 1 when its subtree holds a token not of the class (the walk must go there).
  std::vector<uint8_t> must_walk;
};

struct TokenTrie {
  // Nodes in depth-first order: a node's descendants are the nodes up to subtree_end.
  struct Node {
    uint32_t subtree_end;
    uint32_t tokens_begin, tokens_end;  // ids (in `tokens`) whose bytes end at this node
    uint16_t depth;                     // 1 for a first byte
    uint8_t byte;
  };
  std::vector<Node> nodes;
  std::vector<int32_t> tokens;
  uint16_t max_depth = 0;
  std::array<TokenClassIndex, kTokenClasses> classes;
};

inline constexpr size_t kMaxTokenBytes = 4096;  // longer tokens are never allowed under a grammar

class Vocabulary {
 public:
  // mask_size: bits in a mask (the model's vocabulary; ids past the tokenizer's have no text).
  static std::shared_ptr<const Vocabulary> build(const Tokenizer& tokenizer, int32_t mask_size);

  int32_t mask_size() const { return mask_size_; }
  size_t mask_words() const { return (static_cast<size_t>(mask_size_) + 63) / 64; }
  const TokenTrie& trie(bool at_start) const { return at_start && start_differs_ ? start_trie_ : trie_; }
  // The bytes of a token ("" for special tokens and ids without text).
  const std::string& bytes(int32_t id, bool at_start) const;
  // Identifies this vocabulary for caches (never reused by another one).
  uint64_t serial() const { return serial_; }
  // The index of another class (code point ranges: sorted, disjoint, no surrogates) on one view.
  TokenClassIndex index_class(const CharClass& members, bool at_start) const;

 private:
  int32_t mask_size_ = 0;
  uint64_t serial_ = 0;
  bool start_differs_ = false;
  std::vector<std::string> bytes_, start_bytes_;  // start_bytes_: only when start_differs_
  TokenTrie trie_, start_trie_;
};

}  // namespace phinfer::grammar
