#pragma once
// The "pattern" of HF Replace / Split components: {"String": "..."} (literal) or {"Regex": "..."}.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_view.h"
#include "tokenizer/regex.h"

namespace phinfer::tok {

class Pattern {
 public:
  static Pattern from_json(const JsonView& j);
  static Pattern literal(std::string text) { return Pattern(std::move(text), std::nullopt); }
  static Pattern regex(std::string_view pattern) { return Pattern("", Regex(pattern)); }

  // Non-overlapping matches, left to right.
  std::vector<Span> find_all(std::string_view text) const;
  std::string replace_all(std::string_view text, std::string_view replacement) const;

 private:
  Pattern(std::string literal, std::optional<Regex> regex)
      : literal_(std::move(literal)), regex_(std::move(regex)) {}
  std::string literal_;         // used when regex_ is empty; plain search is much faster
  std::optional<Regex> regex_;
};

}  // namespace phinfer::tok
