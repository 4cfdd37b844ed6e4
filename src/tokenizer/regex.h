#pragma once
// A compiled PCRE2 pattern in UTF + UCP mode (so \s, \w, \p{L} are Unicode-aware, like the
// Oniguruma / fancy-regex patterns of Hugging Face tokenizers), JIT-compiled when available.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace phinfer::tok {

struct Span {
  size_t begin = 0;
  size_t end = 0;
};

class Regex {
 public:
  // Throws phinfer::Error (with the PCRE2 message and offset) if the pattern does not compile.
  explicit Regex(std::string_view pattern);
  // A literal string (HF "String" patterns), escaped into a regex.
  static Regex literal(std::string_view text);

  // Non-overlapping matches, left to right, in valid UTF-8 text. An empty match advances the
  // search by one character, as Rust's find_iter does.
  std::vector<Span> find_all(std::string_view text) const;
  // Does the pattern match a prefix of text (anchored at 0)?
  bool matches_at_start(std::string_view text) const;

 private:
  struct Code;
  std::shared_ptr<const Code> code_;  // immutable after construction, shared by copies
};

}  // namespace phinfer::tok
