#include "grammar/vocabulary.h"

#include <algorithm>
#include <atomic>

#include "phinfer/error.h"

namespace phinfer::grammar {
namespace {

TokenTrie build_trie(const std::vector<std::string>& bytes) {
  std::vector<int32_t> order;
  for (size_t id = 0; id < bytes.size(); ++id)
    if (!bytes[id].empty() && bytes[id].size() <= kMaxTokenBytes) order.push_back(static_cast<int32_t>(id));
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    const auto& x = bytes[static_cast<size_t>(a)];
    const auto& y = bytes[static_cast<size_t>(b)];
    return x != y ? x < y : a < b;
  });
  TokenTrie t;
  t.tokens = order;
  std::vector<uint32_t> path;  // open nodes, one per depth
  const std::string* prev = nullptr;
  for (size_t i = 0; i < order.size(); ++i) {
    const std::string& b = bytes[static_cast<size_t>(order[i])];
    size_t common = 0;
    if (prev) {
      const size_t m = std::min(prev->size(), b.size());
      while (common < m && (*prev)[common] == b[common]) ++common;
    }
    // Close the nodes below the shared prefix; open one per new byte.
    while (path.size() > common) {
      t.nodes[path.back()].subtree_end = static_cast<uint32_t>(t.nodes.size());
      path.pop_back();
    }
    for (size_t d = common; d < b.size(); ++d) {
      path.push_back(static_cast<uint32_t>(t.nodes.size()));
      t.nodes.push_back({0, static_cast<uint32_t>(i), static_cast<uint32_t>(i), static_cast<uint16_t>(d + 1),
                         static_cast<uint8_t>(b[d])});
    }
    t.nodes[path.back()].tokens_end = static_cast<uint32_t>(i + 1);
    t.max_depth = std::max<uint16_t>(t.max_depth, static_cast<uint16_t>(b.size()));
    prev = &b;
  }
  while (!path.empty()) {
    t.nodes[path.back()].subtree_end = static_cast<uint32_t>(t.nodes.size());
    path.pop_back();
  }
  return t;
}

std::atomic<uint64_t> next_serial{1};

std::vector<std::pair<char32_t, char32_t>> class_ranges(TokenClass c) {
  switch (c) {
    case TokenClass::JsonStringChar: return {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0xD7FF}, {0xE000, 0x10FFFF}};
    case TokenClass::JsonStringAscii: return {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x7F}};
    case TokenClass::AsciiAlnum: return {{0x30, 0x39}, {0x41, 0x5A}, {0x61, 0x7A}};
    case TokenClass::OfGrammar: break;
  }
  return {};
}

// A token's bytes read as characters of the class, with the grammar's own UTF-8 reader: the
// number of whole characters, and whether the bytes end inside one more. False when some byte
// does not continue a member (then the token is not of the class).
bool read_as_class(const CharClass& members, const std::string& bytes, size_t& whole, bool& partial) {
  whole = 0;
  uint32_t sub = 0;
  for (unsigned char b : bytes) {
    sub = step_char(members, sub, b);
    if (sub == kCharFail) return false;
    if (sub == kCharDone) ++whole, sub = 0;
  }
  partial = sub != 0;
  return true;
}

TokenClassIndex build_class_index(TokenClass c, CharClass members, const TokenTrie& trie,
                            const std::vector<std::string>& bytes, size_t mask_words) {
  TokenClassIndex x;
  x.token_class = c;
  x.members = std::move(members);
  for (unsigned b = 0; b < 0x80; ++b)
    if (contains(x.members.first, static_cast<uint8_t>(b))) insert(x.ascii, static_cast<uint8_t>(b));
  x.has_non_ascii = !x.members.ranges.empty() && x.members.ranges.back().second >= 0x80;
  // Tokens in trie order, so a subtree's tokens are one run of `outside`.
  std::vector<uint32_t> outside(trie.tokens.size() + 1, 0);  // prefix counts of tokens not of the class
  std::vector<std::vector<int32_t>> exact(kMaxClassChars + 1);
  for (size_t i = 0; i < trie.tokens.size(); ++i) {
    const int32_t id = trie.tokens[i];
    const std::string& b = bytes[static_cast<size_t>(id)];
    size_t whole = 0;
    bool partial = false;
    const bool in = read_as_class(x.members, b, whole, partial) && whole <= kMaxClassChars &&
                    (partial ? x.has_non_ascii : whole > 0);
    outside[i + 1] = outside[i] + (in ? 0 : 1);
    if (!in) continue;
    if (partial) {
      if (x.partial.size() <= whole) x.partial.resize(whole + 1);
      x.partial[whole].push_back(id);
    } else {
      exact[whole].push_back(id);
    }
  }
  size_t longest = 0;
  for (size_t k = 1; k <= kMaxClassChars; ++k)
    if (!exact[k].empty()) longest = k;
  x.up_to.assign(longest + 1, TokenMask(mask_words, 0));
  for (size_t k = 1; k <= longest; ++k) {
    x.up_to[k] = x.up_to[k - 1];
    for (int32_t id : exact[k]) allow(x.up_to[k], id);
  }
  x.must_walk.resize(trie.nodes.size());
  for (size_t k = 0; k < trie.nodes.size(); ++k) {
    const size_t end = trie.nodes[k].subtree_end;
    const size_t first = trie.nodes[k].tokens_begin;
    const size_t last = end < trie.nodes.size() ? trie.nodes[end].tokens_begin : trie.tokens.size();
    x.must_walk[k] = outside[last] != outside[first];
  }
  return x;
}

}  // namespace

std::shared_ptr<const Vocabulary> Vocabulary::build(const Tokenizer& tok, int32_t mask_size) {
  auto v = std::make_shared<Vocabulary>();
  v->mask_size_ = mask_size;
  v->serial_ = next_serial++;
  const int32_t n = std::min(mask_size, tok.vocab_size());
  v->bytes_.assign(static_cast<size_t>(mask_size), {});
  v->start_bytes_.assign(static_cast<size_t>(mask_size), {});
  for (int32_t id = 0; id < n; ++id) {
    if (tok.is_special(id)) continue;
    try {
      v->bytes_[static_cast<size_t>(id)] = tok.token_bytes(id, false);
      v->start_bytes_[static_cast<size_t>(id)] = tok.token_bytes(id, true);
    } catch (const Error&) {
      continue;  // an id the tokenizer does not define (a hole in its ids)
    }
    v->start_differs_ |= v->start_bytes_[static_cast<size_t>(id)] != v->bytes_[static_cast<size_t>(id)];
  }
  v->trie_ = build_trie(v->bytes_);
  if (v->start_differs_) v->start_trie_ = build_trie(v->start_bytes_);
  else v->start_bytes_.clear();
  for (size_t c = 0; c < kTokenClasses; ++c) {
    const auto cls = static_cast<TokenClass>(c);
    const CharClass members = make_char_class(class_ranges(cls));
    v->trie_.classes[c] = build_class_index(cls, members, v->trie_, v->bytes_, v->mask_words());
    if (v->start_differs_)
      v->start_trie_.classes[c] = build_class_index(cls, members, v->start_trie_, v->start_bytes_, v->mask_words());
  }
  return v;
}

TokenClassIndex Vocabulary::index_class(const CharClass& members, bool at_start) const {
  const bool start = at_start && start_differs_;
  return build_class_index(TokenClass::OfGrammar, members, start ? start_trie_ : trie_, start ? start_bytes_ : bytes_,
                              mask_words());
}

const std::string& Vocabulary::bytes(int32_t id, bool at_start) const {
  static const std::string none;
  if (id < 0 || id >= mask_size_) return none;
  return (at_start && start_differs_ ? start_bytes_ : bytes_)[static_cast<size_t>(id)];
}

}  // namespace phinfer::grammar
