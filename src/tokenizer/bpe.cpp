#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <queue>

#include "tokenizer/utf8.h"

namespace phinfer::tok {


std::unique_ptr<BpeModel> BpeModel::from_json(const JsonView& j) {
  auto m = std::make_unique<BpeModel>();
  m->load_vocab(j.at("vocab"));
  m->load_merges(j.at("merges"));
  m->fuse_unk_ = j.bool_or("fuse_unk", false);
  m->byte_fallback_ = j.bool_or("byte_fallback", false);
  m->ignore_merges_ = j.bool_or("ignore_merges", false);
  m->continuing_subword_prefix_ = j.str_or("continuing_subword_prefix", "");
  m->end_of_word_suffix_ = j.str_or("end_of_word_suffix", "");
  // "dropout" only randomizes training-time segmentation; inference ignores it.
  if (auto unk = j.find("unk_token")) {
    std::string name = unk->str();
    auto it = m->vocab_.find(name);
    if (it == m->vocab_.end()) unk->fail("unk_token \"" + name + "\" is not in the vocabulary");
    m->unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto it = m->vocab_.find(std::string_view(name));
    m->byte_ids_[b] = it == m->vocab_.end() ? -1 : it->second;
  }
  return m;
}

int64_t BpeModel::id_bound(size_t entries) {
  return std::min<int64_t>(2 * static_cast<int64_t>(std::min<size_t>(entries, INT32_MAX)) + 65536, INT32_MAX);
}

void BpeModel::load_vocab(const JsonView& vocab) {
  vocab.expect_object();
  vocab_.reserve(vocab.raw().size());
  const int64_t max_id = id_bound(vocab.raw().size());
  for (const auto& [token, id_json] : vocab.raw().items()) {
    if (!id_json.is_number_integer())
      vocab.at(token).fail(std::string("expected an integer id, found ") + id_json.type_name());
    int64_t id = id_json.get<int64_t>();
    if (id < 0 || id >= max_id)
      vocab.at(token).fail("id " + std::to_string(id) + " out of range for " +
                           std::to_string(vocab.raw().size()) + " entries");
    if (static_cast<size_t>(id) >= id_to_token_.size()) {
      id_to_token_.resize(id + 1);
      has_token_.resize(id + 1, false);
    }
    id_to_token_[id] = token;
    has_token_[id] = true;
    vocab_.emplace(token, static_cast<int32_t>(id));
  }
}

// Merges come as "left right" strings (older files) or ["left", "right"] pairs (newer ones).
void BpeModel::load_merges(const JsonView& merges) {
  merges.expect_array();
  const auto& list = merges.raw();
  merges_.reserve(list.size());
  auto lookup = [&](size_t i, std::string_view tok) {
    auto it = vocab_.find(tok);
    if (it == vocab_.end()) merges[i].fail("merge token \"" + std::string(tok) + "\" is not in the vocabulary");
    return it->second;
  };
  const size_t prefix_len = continuing_subword_prefix_.size();
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& e = list[i];
    std::string left, right;
    if (e.is_string()) {
      const auto& s = e.get_ref<const std::string&>();
      size_t space = s.find(' ');
      if (space == std::string::npos) merges[i].fail("expected \"left right\", found \"" + s + "\"");
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      left = e[0].get<std::string>();
      right = e[1].get<std::string>();
    } else {
      merges[i].fail("expected a \"left right\" string or a [left, right] pair");
    }
    // The merged token drops the right part's continuation prefix ("##").
    std::string merged = left + (right.compare(0, prefix_len, continuing_subword_prefix_) == 0
                                     ? right.substr(prefix_len)
                                     : right);
    int32_t a = lookup(i, left), b = lookup(i, right), m = lookup(i, merged);
    // Like HF, a repeated pair keeps the later rank.
    merges_.insert_or_assign(pair_key(a, b), Merge{static_cast<uint32_t>(i), m});
  }
}

const std::string* BpeModel::token(int32_t id) const {
  if (id < 0 || id >= id_limit() || !has_token_[id]) return nullptr;
  return &id_to_token_[id];
}

// One symbol per character; characters without an entry become their <0xNN> byte tokens
// (byte_fallback) or the unknown token (consecutive ones fused into one when fuse_unk is set).
std::vector<int32_t> BpeModel::initial_symbols(std::string_view word) const {
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  bool last_was_unk = false;
  std::string decorated;
  for (size_t i = 0; i < word.size();) {
    size_t n = char_length(static_cast<unsigned char>(word[i]));
    std::string_view ch = word.substr(i, n);
    const bool first = i == 0;
    i += n;
    const bool last = i >= word.size();
    if ((!first && !continuing_subword_prefix_.empty()) || (last && !end_of_word_suffix_.empty())) {
      decorated.assign(first ? "" : continuing_subword_prefix_);
      decorated.append(ch);
      if (last) decorated.append(end_of_word_suffix_);
      ch = decorated;
    }
    if (auto it = vocab_.find(ch); it != vocab_.end()) {
      symbols.push_back(it->second);
      last_was_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : ch) all = all && byte_ids_[b] >= 0;
      if (all) {
        for (unsigned char b : ch) symbols.push_back(byte_ids_[b]);
        last_was_unk = false;
        continue;
      }
    }
    if (unk_id_) {
      if (!(fuse_unk_ && last_was_unk)) symbols.push_back(*unk_id_);
      last_was_unk = true;
    }
    // Without an unknown token HF drops the character.
  }
  return symbols;
}

// Priority-queue merge over a doubly linked list of symbols: O(n log n) per word, so a whole
// 100 kB segment (Phi-3 has no pre-tokenizer) is still fast.
std::vector<int32_t> BpeModel::merge(std::vector<int32_t> ids) const {
  const int n = static_cast<int>(ids.size());
  if (n < 2) return ids;
  std::vector<int> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    uint32_t rank;
    int pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int left) {
    int right = next[left];
    if (right < 0) return;
    auto it = merges_.find(pair_key(ids[left], ids[right]));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.new_id});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);

  while (!queue.empty()) {
    Candidate c = queue.top();
    queue.pop();
    // Skip stale entries: the left symbol was absorbed, or its pair no longer gives this merge.
    if (!alive[c.pos] || next[c.pos] < 0) continue;
    int right = next[c.pos];
    auto it = merges_.find(pair_key(ids[c.pos], ids[right]));
    if (it == merges_.end() || it->second.new_id != c.new_id) continue;
    ids[c.pos] = c.new_id;
    alive[right] = false;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    if (prev[c.pos] >= 0) consider(prev[c.pos]);
    consider(c.pos);
  }
  std::vector<int32_t> out;
  for (int i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
  return out;
}

std::vector<int32_t> BpeModel::tokenize(std::string_view word) const {
  if (word.empty()) return {};
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) return {it->second};
  }
  const bool cacheable = word.size() <= kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) return it->second;
  }
  std::vector<int32_t> ids = merge(initial_symbols(word));
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();  // crude but bounded
    cache_.emplace(word, ids);
  }
  return ids;
}

}  // namespace phinfer::tok
