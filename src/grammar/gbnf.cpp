#include "grammar/gbnf.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "phinfer/error.h"
#include "tokenizer/utf8.h"

namespace phinfer::grammar {
namespace {

class GbnfParser {
 public:
  GbnfParser(std::string_view text, const std::string& source) : s_(text), source_(source) {}

  Rules parse() {
    if (s_.size() > kMaxGrammarBytes)
      throw Error(source_ + ": the grammar is " + std::to_string(s_.size()) + " bytes; at most " +
                  std::to_string(kMaxGrammarBytes) + " are accepted");
    skip_space();
    if (at_end()) throw fail("expected a rule (name ::= ...), found an empty grammar");
    while (!at_end()) {
      const size_t name_at = i_;
      const std::string name = parse_name();
      skip_space();
      if (!s_.substr(i_).starts_with("::=")) throw fail("expected '::=' after the rule name '" + name + "'");
      i_ += 3;
      const uint32_t r = b_.rule(name);
      if (b_.defined(r)) {
        i_ = name_at;
        throw fail("rule '" + name + "' is defined twice");
      }
      parse_alternatives(r, 0);
      if (!at_end() && !at_rule_start()) throw fail(s_[i_] == ')' ? "unmatched ')'" : "expected a new rule (name ::= ...)");
    }
    return b_.build("root", source_);
  }

 private:
  Error fail(const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < i_ && k < s_.size(); ++k) {
      if (s_[k] == '\n') ++line, col = 1;
      else ++col;
    }
    return Error(source_ + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + what);
  }
  bool at_end() const { return i_ >= s_.size(); }
  static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  }
  void skip_space() {
    while (!at_end()) {
      if (s_[i_] == '#') {
        while (!at_end() && s_[i_] != '\n') ++i_;
      } else if (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r') {
        ++i_;
      } else {
        break;
      }
    }
  }
  std::string parse_name() {
    const size_t start = i_;
    while (!at_end() && name_char(s_[i_])) ++i_;
    if (i_ == start) throw fail("expected a rule name (letters, digits, '-', '_')");
    return std::string(s_.substr(start, i_ - start));
  }
  // True when a `name ::=` starts at the current position (the end of the rule before it).
  bool at_rule_start() const {
    size_t k = i_;
    while (k < s_.size() && name_char(s_[k])) ++k;
    if (k == i_) return false;
    while (k < s_.size() && (s_[k] == ' ' || s_[k] == '\t' || s_[k] == '\n' || s_[k] == '\r')) ++k;
    return s_.substr(k).starts_with("::=");
  }

  void parse_alternatives(uint32_t rule, int depth) {
    if (depth > kMaxGroupNesting) throw fail("groups nested deeper than " + std::to_string(kMaxGroupNesting));
    for (;;) {
      b_.add_alternative(rule, parse_sequence(depth));
      if (!at_end() && s_[i_] == '|') {
        ++i_;
        continue;
      }
      return;
    }
  }

  std::vector<Symbol> parse_sequence(int depth) {
    std::vector<Symbol> seq;
    for (;;) {
      skip_space();
      if (at_end() || s_[i_] == '|' || s_[i_] == ')' || at_rule_start()) return seq;
      std::vector<Symbol> item = parse_primary(depth);
      skip_space();
      while (!at_end() && (s_[i_] == '*' || s_[i_] == '+' || s_[i_] == '?' || s_[i_] == '{')) {
        item = parse_repetition(item);
        skip_space();
      }
      seq.insert(seq.end(), item.begin(), item.end());
    }
  }

  std::vector<Symbol> parse_primary(int depth) {
    const char c = s_[i_];
    if (c == '"') {
      ++i_;
      std::string bytes;
      while (!at_end() && s_[i_] != '"') tok::append_utf8(bytes, parse_char());
      if (at_end()) throw fail("unterminated string literal");
      ++i_;
      std::vector<Symbol> out;
      b_.append_literal(out, bytes);
      return out;
    }
    if (c == '[') return {parse_class()};
    if (c == '.') {
      ++i_;
      return {b_.char_class({{0, 0x10FFFF}})};
    }
    if (c == '(') {
      ++i_;
      const uint32_t group = b_.fresh_rule("group");
      parse_alternatives(group, depth + 1);
      if (at_end() || s_[i_] != ')') throw fail("expected ')' to close the group");
      ++i_;
      return {{true, group}};
    }
    if (name_char(c)) return {{true, b_.rule(parse_name())}};
    throw fail(std::string("unexpected '") + c + "'");
  }

  Symbol parse_class() {
    ++i_;  // '['
    bool negated = false;
    if (!at_end() && s_[i_] == '^') negated = true, ++i_;
    std::vector<std::pair<char32_t, char32_t>> ranges;
    while (!at_end() && s_[i_] != ']') {
      const char32_t lo = parse_char();
      char32_t hi = lo;
      if (i_ + 1 < s_.size() && s_[i_] == '-' && s_[i_ + 1] != ']') {
        ++i_;
        hi = parse_char();
        if (hi < lo) throw fail("character range is reversed (its end comes before its start)");
      }
      ranges.emplace_back(lo, hi);
    }
    if (at_end()) throw fail("unterminated character class (expected ']')");
    ++i_;
    if (negated) {
      std::sort(ranges.begin(), ranges.end());
      std::vector<std::pair<char32_t, char32_t>> inverse;
      char32_t next = 0;
      for (auto [lo, hi] : ranges) {
        if (lo > next) inverse.emplace_back(next, lo - 1);
        next = std::max<char32_t>(next, hi + 1);
      }
      if (next <= 0x10FFFF) inverse.emplace_back(next, 0x10FFFF);
      ranges = std::move(inverse);
    }
    return b_.char_class(ranges);
  }

  // One character of a literal or class: an escape or a UTF-8 encoded code point.
  char32_t parse_char() {
    if (s_[i_] != '\\') {
      const size_t n = tok::valid_sequence_length(s_, i_);
      if (n == 0) throw fail("invalid UTF-8 in the grammar");
      const char32_t cp = tok::decode_at(s_, i_);
      i_ += n;
      return cp;
    }
    ++i_;
    if (at_end()) throw fail("unfinished escape at the end of the grammar");
    const char e = s_[i_++];
    switch (e) {
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case '\\': case '"': case '[': case ']': case '-': case '^': case '/': return static_cast<char32_t>(e);
      case 'x': return parse_hex(2);
      case 'u': return parse_hex(4);
      case 'U': return parse_hex(8);
      default:
        --i_;
        throw fail(std::string("unknown escape '\\") + e + "'");
    }
  }
  char32_t parse_hex(int digits) {
    char32_t v = 0;
    for (int k = 0; k < digits; ++k) {
      if (at_end()) throw fail("expected " + std::to_string(digits) + " hex digits");
      const char c = s_[i_];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) throw fail("expected " + std::to_string(digits) + " hex digits");
      v = v * 16 + static_cast<char32_t>(d);
      ++i_;
    }
    if (v > 0x10FFFF) throw fail("code point past U+10FFFF");
    return v;
  }

  int parse_count() {
    skip_space();
    const size_t start = i_;
    long v = 0;
    while (!at_end() && s_[i_] >= '0' && s_[i_] <= '9') {
      v = v * 10 + (s_[i_++] - '0');
      if (v > kMaxRepetition) throw fail("repetition count above " + std::to_string(kMaxRepetition));
    }
    if (i_ == start) throw fail("expected a number in the repetition {m,n}");
    skip_space();
    return static_cast<int>(v);
  }

  std::vector<Symbol> parse_repetition(const std::vector<Symbol>& item) {
    const char c = s_[i_++];
    int min = 0, max = -1;
    if (c == '+') min = 1;
    else if (c == '?') max = 1;
    else if (c == '{') {
      min = parse_count();
      max = min;
      if (!at_end() && s_[i_] == ',') {
        ++i_;
        skip_space();
        max = !at_end() && s_[i_] == '}' ? -1 : parse_count();
      }
      if (at_end() || s_[i_] != '}') throw fail("expected '}' to close the repetition");
      ++i_;
      if (max >= 0 && max < min) throw fail("repetition {m,n} has n < m");
    }
    return repeat(b_, item, min, max);
  }

  std::string_view s_;
  const std::string& source_;
  size_t i_ = 0;
  RuleBuilder b_;

 public:
  static std::vector<Symbol> repeat(RuleBuilder& b, const std::vector<Symbol>& item, int min, int max) {
    Symbol x = item.size() == 1 ? item[0] : Symbol{true, b.fresh_rule("group")};
    if (item.size() != 1) b.add_alternative(x.value, item);
    std::vector<Symbol> out;
    for (int k = 0; k < min; ++k) out.push_back(x);
    if (max < 0) {
      const uint32_t star = b.fresh_rule("star");
      b.add_alternative(star, {x, {true, star}});
      b.add_alternative(star, {});
      out.push_back({true, star});
    } else if (max > min) {
      // x{0,n} as (x (x (...)?)?)?: n - m nested optional rules, each taking one more x.
      std::optional<uint32_t> inner;
      for (int k = min; k < max; ++k) {
        const uint32_t opt = b.fresh_rule("opt");
        std::vector<Symbol> alt{x};
        if (inner) alt.push_back({true, *inner});
        b.add_alternative(opt, std::move(alt));
        b.add_alternative(opt, {});
        inner = opt;
      }
      out.push_back({true, *inner});
    }
    if (out.size() > kMaxElements) throw Error("grammar is too large");
    return out;
  }
};

}  // namespace

Rules parse_gbnf(std::string_view text, const std::string& source) { return GbnfParser(text, source).parse(); }

}  // namespace phinfer::grammar
