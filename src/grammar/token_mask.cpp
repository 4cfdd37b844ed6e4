#include "grammar/token_mask.h"

#include <algorithm>

#include "phinfer/error.h"

namespace phinfer::grammar {

std::shared_ptr<const TokenMask> MaskCache::find(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = masks_.find(key);
  return it == masks_.end() ? nullptr : it->second;
}

void MaskCache::insert(const std::string& key, std::shared_ptr<const TokenMask> mask) {
  const size_t bytes = key.size() + mask->size() * sizeof(uint64_t);
  if (bytes > budget_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (used_ + bytes > budget_) {
    masks_.clear();
    used_ = 0;
  }
  if (masks_.emplace(key, std::move(mask)).second) used_ += bytes;
}

namespace {

enum class Reads { All, None, Some };

// How the stack top at `node` reads one character of class c: every member alike (it then moves
// past its element, whatever the character), none of them, or some (no shortcut then).
Reads reads(const Stacks& stacks, int32_t node, const TokenClassIndex& c) {
  if (stacks.sub(node) != 0) return Reads::Some;  // inside a character already
  const Rules& g = stacks.rules();
  const Element e = g.elements[stacks.pos(node)];
  if (e.kind == ElementKind::Bytes) {
    const ByteSet& set = g.byte_sets[e.value];
    bool all = true, none = true;
    for (int w = 0; w < 2; ++w) {
      all = all && (c.ascii[w] & ~set[w]) == 0;
      none = none && (c.ascii[w] & set[w]) == 0;
    }
    // A byte element never reads a whole multi-byte character: with such members, all is out.
    if (!c.has_non_ascii) return all ? Reads::All : none ? Reads::None : Reads::Some;
    return none && (set[2] | set[3]) == 0 ? Reads::None : Reads::Some;
  }
  const auto& have = g.char_classes[e.value].ranges;
  bool all = true, none = true;
  for (auto [lo, hi] : c.members.ranges) {
    // The first range of the element's class ending at or after lo (ranges sorted and disjoint).
    auto it = std::lower_bound(have.begin(), have.end(), lo,
                               [](const std::pair<char32_t, char32_t>& r, char32_t v) { return r.second < v; });
    const bool meets = it != have.end() && it->first <= hi;
    const bool inside = it != have.end() && it->first <= lo && it->second >= hi;
    all = all && inside;
    none = none && !meets;
  }
  return all ? Reads::All : none ? Reads::None : Reads::Some;
}

}  // namespace

bool TokenMasker::class_chain(Matcher& matcher, const TokenClassIndex& c) {
  Stacks& stacks = matcher.stacks();
  chain_.assign(matcher.tops().begin(), matcher.tops().end());
  whole_ = 0;
  partial_ok_.clear();
  for (size_t n = 0; n <= kMaxClassChars; ++n) {
    bool any = false;
    for (int32_t t : chain_) {
      const Reads r = reads(stacks, t, c);
      if (r == Reads::Some) return false;
      any |= r == Reads::All;
    }
    partial_ok_.push_back(any);
    if (n == kMaxClassChars || !any) break;
    // One more character: every stack that reads the class moves past its element alike.
    next_.clear();
    bool complete = false;
    for (int32_t t : chain_)
      if (reads(stacks, t, c) == Reads::All) complete |= stacks.expand(stacks.pos(t) + 1, stacks.parent(t), next_, 0);
    if (next_.empty() && !complete) break;
    whole_ = n + 1;
    chain_.swap(next_);
  }
  return true;
}

void TokenMasker::compute(Matcher& matcher, const Vocabulary& vocab, bool at_start, TokenMask& mask) {
  mask.assign(vocab.mask_words(), 0);
  if (!matcher.can_continue()) return;
  const TokenTrie& trie = vocab.trie(at_start);
  Stacks& stacks = matcher.stacks();
  const size_t base = stacks.mark();
  // The first class whose chain is determined decides its tokens; the walk skips them.
  const std::vector<uint8_t>* must_walk = nullptr;
  last_shortcut_.reset();
  if (token_classes_) {
    for (const TokenClassIndex& c : trie.classes) {
      const bool ok = class_chain(matcher, c);
      stacks.rollback(base);
      if (!ok) continue;
      if (!c.up_to.empty()) {
        const auto& bits = c.up_to[std::min(whole_, c.up_to.size() - 1)];
        for (size_t w = 0; w < mask.size(); ++w) mask[w] |= bits[w];
      }
      for (size_t n = 0; n < c.partial.size() && n < partial_ok_.size(); ++n)
        if (partial_ok_[n])
          for (int32_t id : c.partial[n]) mask[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
      must_walk = &c.must_walk;
      last_shortcut_ = c.token_class;
      break;
    }
  }
  const size_t depths = static_cast<size_t>(trie.max_depth) + 1;
  begin_.assign(depths, 0);
  end_.assign(depths, 0);
  marks_.assign(depths, base);
  sets_.assign(matcher.tops().begin(), matcher.tops().end());
  end_[0] = sets_.size();
  const size_t n = trie.nodes.size();
  const uint64_t steps_before = stacks.steps();
  for (size_t k = 0; k < n;) {
    if (stacks.steps() - steps_before > kMaxMaskSteps) {
      stacks.rollback(base);
      throw Error("grammar is too expensive: one token mask took more than " + std::to_string(kMaxMaskSteps) +
                  " parse steps (too many ambiguous parses at once)");
    }
    if (must_walk && !(*must_walk)[k]) {
      k = trie.nodes[k].subtree_end;  // only tokens of the class below: decided above
      continue;
    }
    const TokenTrie::Node& node = trie.nodes[k];
    const size_t d = node.depth;
    // Back to the parent's state: drop what the previous sibling path added.
    stacks.rollback(marks_[d - 1]);
    sets_.resize(end_[d - 1]);
    begin_[d] = sets_.size();
    const bool complete = stacks.advance(sets_, begin_[d - 1], end_[d - 1], node.byte, sets_, begin_[d]);
    end_[d] = sets_.size();
    if (end_[d] == begin_[d] && !complete) {
      k = node.subtree_end;  // no token with this prefix can continue the text
      continue;
    }
    for (uint32_t t = node.tokens_begin; t < node.tokens_end; ++t) {
      const auto id = static_cast<size_t>(trie.tokens[t]);
      mask[id >> 6] |= uint64_t{1} << (id & 63);
    }
    marks_[d] = stacks.mark();
    k = end_[d] == begin_[d] ? node.subtree_end : k + 1;  // finished exactly here: nothing may follow
  }
  stacks.rollback(base);
}

ConstrainedDecoding::ConstrainedDecoding(std::shared_ptr<const Rules> rules, std::shared_ptr<const Vocabulary> vocab,
                                         std::shared_ptr<MaskCache> cache, std::vector<int32_t> end_ids)
    : matcher_(std::move(rules)), vocab_(std::move(vocab)), cache_(std::move(cache)), end_ids_(std::move(end_ids)) {
  if (end_ids_.empty()) throw Error("a grammar needs an end-of-sequence token to end the text, and the model has none");
}

std::span<const uint64_t> ConstrainedDecoding::allowed() {
  std::string key = matcher_.key();
  key += at_start_ ? 's' : 'l';
  ++computed_;
  if (auto hit = cache_->find(key)) {
    ++cached_;
    mask_ = *hit;
  } else {
    masker_.compute(matcher_, *vocab_, at_start_, mask_);
    cache_->insert(key, std::make_shared<const TokenMask>(mask_));
  }
  // End ids only where the text may end (even one that has bytes of its own).
  for (int32_t id : end_ids_) {
    if (id < 0 || id >= vocab_->mask_size()) continue;
    uint64_t& word = mask_[static_cast<size_t>(id) >> 6];
    const uint64_t bit = uint64_t{1} << (id & 63);
    word = matcher_.complete() ? word | bit : word & ~bit;
  }
  return mask_;
}

void ConstrainedDecoding::accept(int32_t id) {
  if (matcher_.complete() && std::find(end_ids_.begin(), end_ids_.end(), id) != end_ids_.end()) return;
  const std::string& bytes = vocab_->bytes(id, at_start_);
  if (bytes.empty() || bytes.size() > kMaxTokenBytes || !matcher_.accept(bytes))
    throw Error("token " + std::to_string(id) + " does not continue the text the grammar allows");
  at_start_ = false;
}

}  // namespace phinfer::grammar
