#include "grammar/rules.h"

#include <algorithm>

#include "phinfer/error.h"

namespace phinfer::grammar {

uint32_t RuleBuilder::rule(const std::string& name) {
  auto it = by_name_.find(name);
  if (it != by_name_.end()) return it->second;
  if (names_.size() >= kMaxRules) throw Error("grammar has more than " + std::to_string(kMaxRules) + " rules");
  const auto id = static_cast<uint32_t>(names_.size());
  names_.push_back(name);
  by_name_[name] = id;
  alts_.emplace_back();
  defined_.push_back(false);
  return id;
}

uint32_t RuleBuilder::fresh_rule(const std::string& base) {
  // '#' cannot appear in a GBNF rule name, so a made-up name never clashes with a written one.
  std::string name;
  for (size_t n = names_.size(); name.empty() || by_name_.count(name); ++n) name = base + "#" + std::to_string(n);
  return rule(name);
}

uint32_t RuleBuilder::byte_set(const ByteSet& set) {
  auto [it, added] = set_ids_.emplace(set, static_cast<uint32_t>(sets_.size()));
  if (added) sets_.push_back(set);
  return it->second;
}

void RuleBuilder::add_alternative(uint32_t rule, std::vector<Symbol> symbols) {
  symbols_ += symbols.size() + 1;
  if (symbols_ > kMaxElements)
    throw Error("grammar is too large: more than " + std::to_string(kMaxElements) + " symbols");
  defined_[rule] = true;
  alts_[rule].push_back(std::move(symbols));
}

void RuleBuilder::append_literal(std::vector<Symbol>& out, const std::string& bytes) {
  for (unsigned char c : bytes) {
    ByteSet s{};
    insert(s, c);
    out.push_back({false, byte_set(s)});
  }
}

namespace {

int utf8_length(char32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }

std::array<uint8_t, 4> utf8_bytes(char32_t c, int n) {
  std::array<uint8_t, 4> b{};
  if (n == 1) {
    b[0] = static_cast<uint8_t>(c);
  } else {
    static constexpr uint8_t lead[] = {0, 0, 0xC0, 0xE0, 0xF0};
    for (int i = n - 1; i > 0; --i, c >>= 6) b[i] = static_cast<uint8_t>(0x80 | (c & 0x3F));
    b[0] = static_cast<uint8_t>(lead[n] | c);
  }
  return b;
}

// Splits [lo, hi] (no surrogates inside, one encoded length) into runs whose UTF-8 encodings are
// products of byte ranges (the utf8-ranges construction used by RE2 and Rust's regex).
void utf8_sequences(char32_t lo, char32_t hi, std::vector<std::vector<std::pair<uint8_t, uint8_t>>>& out) {
  for (char32_t bound : {char32_t{0x7F}, char32_t{0x7FF}, char32_t{0xFFFF}})
    if (lo <= bound && hi > bound) {
      utf8_sequences(lo, bound, out);
      utf8_sequences(bound + 1, hi, out);
      return;
    }
  const int n = utf8_length(lo);
  for (int i = 1; i < n; ++i) {
    const char32_t m = (char32_t{1} << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_sequences(lo, lo | m, out);
        utf8_sequences((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        utf8_sequences(lo, (hi & ~m) - 1, out);
        utf8_sequences(hi & ~m, hi, out);
        return;
      }
    }
  }
  const auto a = utf8_bytes(lo, n), b = utf8_bytes(hi, n);
  std::vector<std::pair<uint8_t, uint8_t>> seq;
  for (int i = 0; i < n; ++i) seq.emplace_back(a[i], b[i]);
  out.push_back(std::move(seq));
}

}  // namespace

Symbol RuleBuilder::char_class(const std::vector<std::pair<char32_t, char32_t>>& ranges_in) {
  // Normalize: sorted, merged, surrogates and values past U+10FFFF removed (not valid UTF-8).
  std::vector<std::pair<char32_t, char32_t>> ranges;
  for (auto [lo, hi] : ranges_in) {
    hi = std::min<char32_t>(hi, 0x10FFFF);
    if (lo > hi) continue;
    if (lo < 0xD800 && hi >= 0xD800) {
      if (hi > 0xDFFF) ranges.emplace_back(0xE000, hi);
      hi = 0xD7FF;
    } else if (lo >= 0xD800 && lo <= 0xDFFF) {
      if (hi <= 0xDFFF) continue;
      lo = 0xE000;
    }
    ranges.emplace_back(lo, hi);
  }
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<char32_t, char32_t>> merged;
  for (auto r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second + 1) merged.back().second = std::max(merged.back().second, r.second);
    else merged.push_back(r);
  }
  if (auto it = classes_.find(merged); it != classes_.end()) return it->second;
  ByteSet ascii{};
  bool has_ascii = false, has_multi = false;
  std::vector<std::vector<std::pair<uint8_t, uint8_t>>> seqs;
  for (auto [lo, hi] : merged) {
    for (char32_t c = lo; c <= std::min<char32_t>(hi, 0x7F); ++c) insert(ascii, static_cast<uint8_t>(c)), has_ascii = true;
    if (hi >= 0x80) {
      utf8_sequences(std::max<char32_t>(lo, 0x80), hi, seqs);
      has_multi = true;
    }
  }
  Symbol result{};
  if (!has_multi) {
    // An empty class is a byte set with no members: the rule checks reject it as unmatchable.
    result = {false, byte_set(ascii)};
  } else {
    const uint32_t r = fresh_rule("char-class");
    if (has_ascii) add_alternative(r, {{false, byte_set(ascii)}});
    for (const auto& seq : seqs) {
      std::vector<Symbol> alt;
      for (auto [a, b] : seq) {
        ByteSet s{};
        for (unsigned v = a; v <= b; ++v) insert(s, static_cast<uint8_t>(v));
        alt.push_back({false, byte_set(s)});
      }
      add_alternative(r, std::move(alt));
    }
    result = {true, r};
  }
  classes_.emplace(std::move(merged), result);
  return result;
}

Rules RuleBuilder::build(const std::string& root_name, const std::string& source) const {
  auto fail = [&](const std::string& what) -> Error { return Error(source + ": " + what); };
  auto root_it = by_name_.find(root_name);
  if (root_it == by_name_.end() || !defined_[root_it->second]) throw fail("no rule named '" + root_name + "'");
  const size_t n = names_.size();
  // Reachable rules from the root; each must be defined.
  std::vector<bool> reachable(n, false);
  std::vector<uint32_t> todo{root_it->second};
  reachable[root_it->second] = true;
  while (!todo.empty()) {
    const uint32_t r = todo.back();
    todo.pop_back();
    if (!defined_[r]) throw fail("rule '" + names_[r] + "' is used but never defined");
    for (const auto& alt : alts_[r])
      for (const Symbol& s : alt)
        if (s.is_rule && !reachable[s.value]) reachable[s.value] = true, todo.push_back(s.value);
  }
  auto empty_set = [&](const Symbol& s) { return !s.is_rule && sets_[s.value] == ByteSet{}; };
  // Nullable and productive (can match some finite text) rules, by fixed point.
  std::vector<bool> nullable(n, false), productive(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      for (const auto& alt : alts_[r]) {
        bool all_null = true, all_prod = true;
        for (const Symbol& s : alt) {
          if (s.is_rule) {
            all_null = all_null && nullable[s.value];
            all_prod = all_prod && productive[s.value];
          } else {
            all_null = false;
            all_prod = all_prod && !empty_set(s);
          }
        }
        if (all_null && !nullable[r]) nullable[r] = changed = true;
        if (all_prod && !productive[r]) productive[r] = changed = true;
      }
    }
  }
  for (size_t r = 0; r < n; ++r) {
    if (!reachable[r]) continue;
    if (!productive[r]) throw fail("rule '" + names_[r] + "' can never finish: it matches no finite text");
    for (const auto& alt : alts_[r])
      for (const Symbol& s : alt)
        if (empty_set(s)) throw fail("rule '" + names_[r] + "' has a character class that matches nothing");
  }
  // Left recursion: an edge r -> s when s can come first in r (after nullable symbols); a cycle
  // would make the parser expand forever without reading a byte.
  std::vector<std::vector<uint32_t>> first(n);
  for (size_t r = 0; r < n; ++r)
    for (const auto& alt : alts_[r])
      for (const Symbol& s : alt) {
        if (!s.is_rule) break;
        first[r].push_back(s.value);
        if (!nullable[s.value]) break;
      }
  std::vector<uint8_t> color(n, 0);  // 0 new, 1 on the path, 2 done
  for (size_t start = 0; start < n; ++start) {
    if (!reachable[start] || color[start]) continue;
    std::vector<std::pair<uint32_t, size_t>> path{{static_cast<uint32_t>(start), 0}};
    color[start] = 1;
    while (!path.empty()) {
      auto& [r, i] = path.back();
      if (i == first[r].size()) {
        color[r] = 2;
        path.pop_back();
        continue;
      }
      const uint32_t s = first[r][i++];
      if (color[s] == 1)
        throw fail("rule '" + names_[s] +
                   "' is left-recursive (it can start with itself, directly, through other rules or through a "
                   "repetition of something that matches empty text)");
      if (color[s] == 0) color[s] = 1, path.emplace_back(s, 0);
    }
  }
  Rules out;
  out.byte_sets = sets_;
  out.rule_names = names_;
  out.root = root_it->second;
  out.elements.reserve(symbols_);
  for (size_t r = 0; r < n; ++r) {
    out.rule_first_alt.push_back(static_cast<uint32_t>(out.alternatives.size()));
    if (!reachable[r]) continue;
    for (const auto& alt : alts_[r]) {
      out.alternatives.push_back(static_cast<uint32_t>(out.elements.size()));
      for (const Symbol& s : alt) out.elements.push_back({s.is_rule ? ElementKind::Rule : ElementKind::Bytes, s.value});
      out.elements.push_back({ElementKind::End, static_cast<uint32_t>(r)});
    }
  }
  out.rule_first_alt.push_back(static_cast<uint32_t>(out.alternatives.size()));
  return out;
}

}  // namespace phinfer::grammar
