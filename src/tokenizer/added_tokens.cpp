#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace phinfer::tok {

AddedToken AddedToken::from_json(const JsonView& j, int64_t id_bound) {
  AddedToken t;
  t.id = static_cast<int32_t>(j.at("id").integer_in(0, id_bound - 1));
  t.content = j.at("content").str();
  if (t.content.empty()) j.at("content").fail("empty added token");
  t.single_word = j.bool_or("single_word", false);
  t.lstrip = j.bool_or("lstrip", false);
  t.rstrip = j.bool_or("rstrip", false);
  t.normalized = j.bool_or("normalized", false);
  t.special = j.bool_or("special", false);
  return t;
}

AddedTokenMatcher::AddedTokenMatcher(std::vector<Entry> entries)
    : entries_(std::move(entries)), by_first_byte_(256) {
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].pattern.empty()) continue;
    by_first_byte_[static_cast<unsigned char>(entries_[i].pattern[0])].push_back(i);
  }
  for (auto& list : by_first_byte_)
    std::stable_sort(list.begin(), list.end(), [&](size_t a, size_t b) {
      return entries_[a].pattern.size() > entries_[b].pattern.size();
    });
}

// Leftmost match, longest at that position (aho-corasick LeftmostLongest, as HF uses).
bool AddedTokenMatcher::find(std::string_view text, size_t from, Match& m) const {
  for (size_t i = from; i < text.size(); ++i) {
    for (size_t e : by_first_byte_[static_cast<unsigned char>(text[i])]) {
      const std::string& p = entries_[e].pattern;
      if (text.compare(i, p.size(), p) == 0) {
        m = {i, i + p.size(), entries_[e].token};
        return true;
      }
    }
  }
  return false;
}

// single_word: the characters on both sides of the match must not be word characters (\w).
bool AddedTokenMatcher::is_word_boundary(std::string_view text, size_t begin, size_t end) const {
  if (begin > 0) {
    size_t start = begin - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    if (word_char_.matches_at_start(text.substr(start, begin - start))) return false;
  }
  if (end < text.size()) {
    size_t n = char_length(static_cast<unsigned char>(text[end]));
    if (word_char_.matches_at_start(text.substr(end, n))) return false;
  }
  return true;
}

std::vector<AddedTokenMatcher::Piece> AddedTokenMatcher::split(std::string_view text) const {
  std::vector<Piece> pieces;
  size_t done = 0;  // text before this offset has been emitted
  size_t search = 0;
  Match m;
  while (!entries_.empty() && find(text, search, m)) {
    search = m.end;
    if (m.token->single_word && !is_word_boundary(text, m.begin, m.end)) continue;
    size_t begin = m.begin, end = m.end;
    if (m.token->lstrip) begin -= trailing_white_space(text.substr(done, begin - done));
    if (m.token->rstrip) end += leading_white_space(text.substr(end));
    if (begin > done) pieces.push_back({text.substr(done, begin - done), nullptr});
    pieces.push_back({text.substr(begin, end - begin), m.token});
    done = search = end;
  }
  if (done < text.size()) pieces.push_back({text.substr(done), nullptr});
  return pieces;
}

}  // namespace phinfer::tok
