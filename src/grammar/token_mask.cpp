#include "grammar/token_mask.h"

#include <algorithm>
#include <optional>
#include <time.h>

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

constexpr ByteSet kContinuationBytes = {0, 0, ~uint64_t{0}, 0};  // 0x80-0xBF

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
  const CharClass& have = g.char_classes[e.value];
  bool all = true, none = true;
  for (auto [lo, hi] : c.members.ranges) {
    all = all && covers(have, lo, hi);
    none = none && !intersects(have, lo, hi);
  }
  return all ? Reads::All : none ? Reads::None : Reads::Some;
}

// The bytes some stack of sets[begin, end) may read next (a superset: a byte outside it is
// refused by every stack, so the walk skips it without trying).
ByteSet next_bytes(const Stacks& stacks, const std::vector<int32_t>& sets, size_t begin, size_t end) {
  const Rules& g = stacks.rules();
  ByteSet out{};
  for (size_t i = begin; i < end; ++i) {
    const Element e = g.elements[stacks.pos(sets[i])];
    const ByteSet& b = e.kind == ElementKind::Bytes ? g.byte_sets[e.value]
                       : stacks.sub(sets[i]) == 0   ? g.char_classes[e.value].first
                                                    : kContinuationBytes;
    for (int w = 0; w < 4; ++w) out[w] |= b[w];
  }
  return out;
}

}  // namespace

bool TokenMasker::class_chain(Stacks& stacks, const int32_t* tops, size_t n_tops, bool complete,
                              const TokenClassIndex& c, size_t max_chars, Chain& out, std::vector<uint8_t>* partial_ok) {
  const size_t sets0 = chain_sets_.size(), steps0 = step_begin_.size();
  auto undo = [&] {
    chain_sets_.resize(sets0);
    step_begin_.resize(steps0), step_end_.resize(steps0), step_complete_.resize(steps0), step_next_.resize(steps0);
    return false;
  };
  chain_sets_.insert(chain_sets_.end(), tops, tops + n_tops);
  step_begin_.push_back(sets0), step_end_.push_back(chain_sets_.size()), step_complete_.push_back(complete);
  out = {steps0, 0, false};
  for (size_t n = 0;; ++n) {
    const size_t b = step_begin_[steps0 + n], e = step_end_[steps0 + n];
    bool any = false;
    for (size_t i = b; i < e; ++i) {
      const Reads r = reads(stacks, chain_sets_[i], c);
      if (r == Reads::Some) return undo();
      any |= r == Reads::All;
    }
    if (partial_ok) partial_ok->push_back(any);
    if (n == max_chars) {
      out.truncated = true;  // what a further character does is not known
      break;
    }
    if (!any) break;
    // One more character: every stack that reads the class moves past its element alike.
    const size_t from = chain_sets_.size();
    bool done = false;
    for (size_t i = b; i < e; ++i) {
      const int32_t t = chain_sets_[i];
      if (reads(stacks, t, c) == Reads::All) done |= stacks.expand(stacks.pos(t) + 1, stacks.parent(t), chain_sets_, from);
    }
    if (chain_sets_.size() == from && !done) break;
    out.whole = n + 1;
    step_begin_.push_back(from), step_end_.push_back(chain_sets_.size()), step_complete_.push_back(done);
  }
  for (size_t n = 0; n <= out.whole; ++n)
    step_next_.push_back(next_bytes(stacks, chain_sets_, step_begin_[steps0 + n], step_end_[steps0 + n]));
  return true;
}

std::shared_ptr<const TokenClassIndex> MaskCache::class_index(const CharClass& members, bool at_start,
                                                             const Vocabulary& vocab) {
  auto key = std::make_pair(members.ranges, at_start);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = classes_.find(key); it != classes_.end()) return it->second;
    if (classes_.size() >= kMaxGrammarClasses) return nullptr;
  }
  // Built outside the lock (a few ms on a 200k vocabulary); two threads may both build one.
  timespec t0{}, t1{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  auto index = std::make_shared<const TokenClassIndex>(vocab.index_class(members, at_start));
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  std::lock_guard<std::mutex> lock(mu_);
  class_build_ms_ += static_cast<double>(t1.tv_sec - t0.tv_sec) * 1e3 + static_cast<double>(t1.tv_nsec - t0.tv_nsec) * 1e-6;
  if (classes_.size() >= kMaxGrammarClasses) return nullptr;
  return classes_.emplace(std::move(key), std::move(index)).first->second;
}

size_t MaskCache::classes_built() const {
  std::lock_guard<std::mutex> lock(mu_);
  return classes_.size();
}

double MaskCache::class_build_ms() const {
  std::lock_guard<std::mutex> lock(mu_);
  return class_build_ms_;
}

namespace {

// The largest character set among the tops (at least 8 characters: smaller ones are cheap to
// walk), as a class: a byte set's ASCII members, or a character class.
std::optional<CharClass> largest_top_class(const Stacks& stacks, std::span<const int32_t> tops) {
  const Rules& g = stacks.rules();
  std::vector<std::pair<char32_t, char32_t>> best;
  uint64_t best_size = 7;
  for (int32_t t : tops) {
    const Element e = g.elements[stacks.pos(t)];
    std::vector<std::pair<char32_t, char32_t>> ranges;
    if (e.kind == ElementKind::Bytes) {
      const ByteSet& set = g.byte_sets[e.value];
      for (char32_t b = 0; b < 0x80; ++b) {
        if (!contains(set, static_cast<uint8_t>(b))) continue;
        if (!ranges.empty() && ranges.back().second + 1 == b) ranges.back().second = b;
        else ranges.emplace_back(b, b);
      }
    } else {
      ranges = g.char_classes[e.value].ranges;
    }
    uint64_t size = 0;
    for (auto [lo, hi] : ranges) size += hi - lo + 1;
    if (size > best_size) best_size = size, best = std::move(ranges);
  }
  if (best.empty()) return std::nullopt;
  return make_char_class(std::move(best));
}


}  // namespace

const TokenClassIndex* TokenMasker::take_class_tokens(Matcher& matcher, const Vocabulary& vocab, bool at_start,
                                                      TokenMask& mask, MaskCache* classes,
                                                      std::shared_ptr<const TokenClassIndex>& own, Chain& root) {
  const TokenTrie& trie = vocab.trie(at_start);
  Stacks& stacks = matcher.stacks();
  const size_t base = stacks.mark();
  // The built-in classes, widest first, with the grammar's own class before letters and digits.
  const TokenClassIndex* order[kTokenClasses + 1] = {&trie.classes[0], &trie.classes[1], nullptr, &trie.classes[2]};
  for (size_t i = 0; i < kTokenClasses + 1; ++i) {
    if (i == 2) {
      if (!classes) continue;
      std::optional<CharClass> cls = largest_top_class(stacks, matcher.tops());
      // A built-in class was tried already.
      if (!cls || std::any_of(trie.classes.begin(), trie.classes.end(),
                              [&](const TokenClassIndex& b) { return b.members.ranges == cls->ranges; }))
        continue;
      own = classes->class_index(*cls, at_start, vocab);
      if (!own) continue;
      order[i] = own.get();
    }
    const TokenClassIndex& c = *order[i];
    partial_ok_.clear();
    if (!class_chain(stacks, matcher.tops().data(), matcher.tops().size(), matcher.complete(), c, kMaxClassChars, root,
                     &partial_ok_)) {
      stacks.rollback(base);
      continue;
    }
    // The chain's stacks stay in the arena: the walk continues from them.
    if (!c.up_to.empty()) {
      const auto& bits = c.up_to[std::min(root.whole, c.up_to.size() - 1)];
      for (size_t w = 0; w < mask.size(); ++w) mask[w] |= bits[w];
    }
    for (size_t n = 0; n < c.partial.size() && n < partial_ok_.size(); ++n)
      if (partial_ok_[n])
        for (int32_t id : c.partial[n]) allow(mask, id);
    return &c;
  }
  return nullptr;
}

void TokenMasker::compute(Matcher& matcher, const Vocabulary& vocab, bool at_start, TokenMask& mask,
                          MaskCache* classes) {
  mask.assign(vocab.mask_words(), 0);
  if (!matcher.can_continue()) return;
  const TokenTrie& trie = vocab.trie(at_start);
  Stacks& stacks = matcher.stacks();
  const size_t base = stacks.mark();
  chain_sets_.clear();
  step_begin_.clear(), step_end_.clear(), step_complete_.clear(), step_next_.clear();
  chains_.clear();
  // The first class whose chain is determined decides its tokens; the walk skips them.
  std::shared_ptr<const TokenClassIndex> own;  // a class of the grammar's (kept for must_walk)
  Chain root{};
  const TokenClassIndex* chosen =
      token_classes_ ? take_class_tokens(matcher, vocab, at_start, mask, classes, own, root) : nullptr;
  const std::vector<uint8_t>* must_walk = chosen ? &chosen->must_walk : nullptr;
  last_shortcut_.reset();
  if (chosen) last_shortcut_ = chosen->token_class;
  // The walk. Along a path of whole class characters from the root, or from a node with a large
  // subtree where another chain of the class starts (pure_[d]: how many since; -1 off such a
  // path), the stacks are the chain's, so they are taken from it instead of computed.
  const size_t depths = static_cast<size_t>(trie.max_depth) + 1;
  const size_t walk_base = stacks.mark();
  begin_.assign(depths, 0);
  end_.assign(depths, 0);
  marks_.assign(depths, walk_base);
  pure_.assign(depths, -1);
  chain_at_.assign(depths, -1);
  sets_.assign(matcher.tops().begin(), matcher.tops().end());
  end_[0] = sets_.size();
  next_bytes_.resize(depths);
  next_bytes_[0] = next_bytes(stacks, sets_, 0, end_[0]);
  if (chosen) {
    chains_.push_back(root);
    pure_[0] = 0;
    chain_at_[0] = 0;
  }
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
    if (!contains(next_bytes_[d - 1], node.byte)) {
      k = node.subtree_end;  // no stack reads this byte (skipped without trying)
      continue;
    }
    // Back to the parent's state: drop what the previous sibling path added.
    stacks.rollback(marks_[d - 1]);
    sets_.resize(end_[d - 1]);
    begin_[d] = sets_.size();
    bool complete = false, from_chain = false;
    pure_[d] = -1;
    chain_at_[d] = -1;
    if (pure_[d - 1] >= 0 && node.byte < 0x80 && contains(chosen->ascii, node.byte)) {
      const Chain& ch = chains_[static_cast<size_t>(chain_at_[d - 1])];
      const size_t chars = static_cast<size_t>(pure_[d - 1]) + 1;
      if (chars <= ch.whole) {
        const size_t step = ch.first + chars;
        sets_.insert(sets_.end(), chain_sets_.begin() + static_cast<std::ptrdiff_t>(step_begin_[step]),
                     chain_sets_.begin() + static_cast<std::ptrdiff_t>(step_end_[step]));
        complete = step_complete_[step];
        pure_[d] = static_cast<int32_t>(chars);
        chain_at_[d] = chain_at_[d - 1];
        next_bytes_[d] = step_next_[step];
        from_chain = true;
      } else if (!ch.truncated) {
        k = node.subtree_end;  // more class characters than the state takes
        continue;
      }
    }
    if (!from_chain) complete = stacks.advance(sets_, begin_[d - 1], end_[d - 1], node.byte, sets_, begin_[d]);
    end_[d] = sets_.size();
    if (end_[d] == begin_[d] && !complete) {
      k = node.subtree_end;  // no token with this prefix can continue the text
      continue;
    }
    for (uint32_t t = node.tokens_begin; t < node.tokens_end; ++t) allow(mask, trie.tokens[t]);
    if (end_[d] == begin_[d]) {
      k = node.subtree_end;  // finished exactly here: nothing may follow
      continue;
    }
    if (!from_chain && node.subtree_end > k + 1) {
      // A large subtree below a character outside the class: a chain of its own, if determined.
      Chain local{};
      if (chosen && node.subtree_end - k > kLocalChainNodes &&
          class_chain(stacks, sets_.data() + begin_[d], end_[d] - begin_[d], complete, *chosen,
                      std::min<size_t>(kMaxClassChars, trie.max_depth - d), local, nullptr)) {
        chains_.push_back(local);
        chain_at_[d] = static_cast<int32_t>(chains_.size() - 1);
        pure_[d] = 0;
        next_bytes_[d] = step_next_[local.first];
      } else {
        next_bytes_[d] = next_bytes(stacks, sets_, begin_[d], end_[d]);
      }
    }
    marks_[d] = stacks.mark();
    ++k;
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
    masker_.compute(matcher_, *vocab_, at_start_, mask_, cache_.get());
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
