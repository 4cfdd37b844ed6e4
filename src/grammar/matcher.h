#pragma once
// The parse state of a grammar over bytes: a pushdown automaton whose state is a set of stacks
// (one per way the text so far can be parsed), as in llama.cpp's grammar sampler. Each stack is a
// chain of parse positions in a shared arena, top first; a top is always a Bytes or Char element,
// the position of the next byte (a Char top also holds the part of a character read so far). A parse that has finished is the empty stack (`complete`).
//
// Stacks share their lower parts; arena nodes are only appended, so a caller can try bytes and
// roll back to a mark (the token mask walks a token trie this way). Everything is bounded: stack
// depth, stacks per state and expansion work per byte (hostile grammars fail with phinfer::Error).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/rules.h"

namespace phinfer::grammar {

inline constexpr uint32_t kMaxStackDepth = 4096;  // nesting of rules inside one parse
inline constexpr size_t kMaxStacks = 256;          // simultaneous parses (ambiguity)
inline constexpr size_t kMaxExpansionWork = 1u << 16;

class Stacks {
 public:
  explicit Stacks(const Rules& rules) : rules_(&rules) {}

  // Appends to `out` the stacks that result from standing at `pos` above `parent` (rule
  // references expanded, finished rules popped); stacks equal to one already in out[from..] are
  // dropped. Returns true when a parse finished (the empty stack).
  bool expand(uint32_t pos, int32_t parent, std::vector<int32_t>& out, size_t from);
  // The stacks after reading `byte` from each of `tops`, appended to `out` from `from` on.
  // tops: in[begin, end); `out` may be `in` itself (the new stacks go after `from` >= end).
  bool advance(const std::vector<int32_t>& in, size_t begin, size_t end, uint8_t byte, std::vector<int32_t>& out,
               size_t from);
  // The stacks at the start of the root rule.
  bool start(std::vector<int32_t>& out);

  size_t mark() const { return nodes_.size(); }
  void rollback(size_t mark) { nodes_.resize(mark); }
  uint32_t pos(int32_t node) const { return nodes_[static_cast<size_t>(node)].pos; }
  uint32_t sub(int32_t node) const { return nodes_[static_cast<size_t>(node)].sub; }
  int32_t parent(int32_t node) const { return nodes_[static_cast<size_t>(node)].parent; }
  const Rules& rules() const { return *rules_; }
  // Stack steps taken so far (the token mask bounds its work with it).
  uint64_t steps() const { return steps_; }

 private:
  struct Node {
    uint32_t pos;
    int32_t parent;
    uint32_t depth;
    uint32_t sub;  // Char tops: the character read so far (0: none)
  };
  int32_t push(uint32_t pos, int32_t parent, uint32_t sub = 0);
  bool same(int32_t a, int32_t b) const;
  void add_top(int32_t node, std::vector<int32_t>& out, size_t from);

  const Rules* rules_;
  std::vector<Node> nodes_;
  std::vector<std::pair<uint32_t, int32_t>> work_;
  uint64_t steps_ = 0;
};

// One text's parse: bytes are accepted or refused whole.
class Matcher {
 public:
  explicit Matcher(std::shared_ptr<const Rules> rules);
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;

  // Reads the bytes; false (and the state is unchanged) when they cannot continue the text.
  bool accept(std::string_view bytes);
  bool complete() const { return complete_; }             // the text so far is a whole match
  bool can_continue() const { return !tops_.empty(); }    // some byte may follow
  std::span<const int32_t> tops() const { return tops_; }
  Stacks& stacks() { return stacks_; }
  // The state, canonically (equal strings: equal futures); for caching token masks.
  std::string key() const;

 private:
  std::shared_ptr<const Rules> rules_;
  Stacks stacks_;
  std::vector<int32_t> tops_, scratch_;
  bool complete_ = false;
};

}  // namespace phinfer::grammar
