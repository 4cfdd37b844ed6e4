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
  return v;
}

const std::string& Vocabulary::bytes(int32_t id, bool at_start) const {
  static const std::string none;
  if (id < 0 || id >= mask_size_) return none;
  return (at_start && start_differs_ ? start_bytes_ : bytes_)[static_cast<size_t>(id)];
}

}  // namespace phinfer::grammar
