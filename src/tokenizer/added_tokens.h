#pragma once
// Added tokens (<s>, <|user|>, ...): found in the text before anything else runs, longest match
// first at the leftmost position, with HF's lstrip / rstrip / single_word rules.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_view.h"
#include "tokenizer/regex.h"

namespace phinfer::tok {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;  // only match when not inside a word
  bool lstrip = false;       // swallow white space before the token
  bool rstrip = false;       // swallow white space after the token
  bool normalized = false;   // matched in normalized text instead of the raw text
  bool special = false;      // dropped by decode(skip_special_tokens = true)

  // Ids must lie in [0, id_bound).
  static AddedToken from_json(const JsonView& j, int64_t id_bound);
};

class AddedTokenMatcher {
 public:
  struct Entry {
    std::string pattern;  // what is searched for (the content, normalized for normalized tokens)
    const AddedToken* token;
  };
  explicit AddedTokenMatcher(std::vector<Entry> entries = {});

  struct Piece {
    std::string_view text;     // for a token: the matched span including stripped white space
    const AddedToken* token;   // nullptr for ordinary text
  };
  // Cuts text into ordinary text and added tokens; ordinary pieces are never empty.
  std::vector<Piece> split(std::string_view text) const;
  bool empty() const { return entries_.empty(); }

 private:
  struct Match {
    size_t begin, end;
    const AddedToken* token;
  };
  bool find(std::string_view text, size_t from, Match& m) const;
  bool is_word_boundary(std::string_view text, size_t begin, size_t end) const;

  std::vector<Entry> entries_;
  std::vector<std::vector<size_t>> by_first_byte_;  // entry indices, longest pattern first
  Regex word_char_{"\\w"};
};

}  // namespace phinfer::tok
