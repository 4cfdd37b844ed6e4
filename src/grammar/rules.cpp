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
// The first range of c ending at or after lo (ranges are disjoint and sorted, so ends are sorted too).
auto first_ending_at_or_after(const CharClass& c, char32_t lo) {
  return std::lower_bound(c.ranges.begin(), c.ranges.end(), lo,
                          [](const std::pair<char32_t, char32_t>& r, char32_t v) { return r.second < v; });
}
}  // namespace

bool intersects(const CharClass& c, char32_t lo, char32_t hi) {
  auto it = first_ending_at_or_after(c, lo);
  return it != c.ranges.end() && it->first <= hi;
}

bool covers(const CharClass& c, char32_t lo, char32_t hi) {
  auto it = first_ending_at_or_after(c, lo);
  return it != c.ranges.end() && it->first <= lo && it->second >= hi;
}

namespace {

constexpr char32_t kMinOfLength[5] = {0, 0, 0x80, 0x800, 0x10000};


// Sub-state: the bits read so far (v), the sequence length (n) and the continuation bytes still
// to come (k >= 1, so a sub-state is never 0).
uint32_t encode_sub(uint32_t v, uint32_t n, uint32_t k) { return (v << 5) | (n << 2) | k; }

// Whether some member of c starts with the bits v of an n-byte sequence with k bytes to come.
uint32_t viable(const CharClass& c, uint32_t v, uint32_t n, uint32_t k) {
  const char32_t lo = std::max<char32_t>(v << (6 * k), kMinOfLength[n]);
  const char32_t hi = std::min<char32_t>((v << (6 * k)) + ((char32_t{1} << (6 * k)) - 1), 0x10FFFF);
  return lo <= hi && intersects(c, lo, hi) ? encode_sub(v, n, k) : kCharFail;
}

}  // namespace

uint32_t step_char(const CharClass& c, uint32_t sub, uint8_t b) {
  if (sub == 0) {
    if (!contains(c.first, b)) return kCharFail;
    if (b < 0x80) return kCharDone;
    const uint32_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    return encode_sub(b & (0x7Fu >> n), n, n - 1);
  }
  if ((b & 0xC0) != 0x80) return kCharFail;
  const uint32_t n = (sub >> 2) & 7, k = (sub & 3) - 1, v = ((sub >> 5) << 6) | (b & 0x3F);
  if (k == 0) return v >= kMinOfLength[n] && intersects(c, v, v) ? kCharDone : kCharFail;
  return viable(c, v, n, k);
}

CharClass make_char_class(std::vector<std::pair<char32_t, char32_t>> ranges) {
  CharClass c;
  c.ranges = std::move(ranges);
  for (unsigned b = 0; b < 0x80; ++b)
    if (intersects(c, b, b)) insert(c.first, static_cast<uint8_t>(b));
  for (unsigned b = 0xC2; b <= 0xF4; ++b) {
    const uint32_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    if (viable(c, b & (0x7Fu >> n), n, n - 1) != kCharFail) insert(c.first, static_cast<uint8_t>(b));
  }
  return c;
}

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
  Symbol result{};
  if (merged.empty() || merged.back().second < 0x80) {
    // All ASCII: one byte set (an empty class is a set with no members: the rule checks reject it).
    ByteSet ascii{};
    for (auto [lo, hi] : merged)
      for (char32_t c = lo; c <= hi; ++c) insert(ascii, static_cast<uint8_t>(c));
    result = {false, byte_set(ascii)};
  } else {
    result = {false, static_cast<uint32_t>(char_classes_.size()), true};
    char_classes_.push_back(make_char_class(merged));
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
  auto empty_set = [&](const Symbol& s) { return !s.is_rule && !s.is_char_class && sets_[s.value] == ByteSet{}; };
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
  out.char_classes = char_classes_;
  out.rule_names = names_;
  out.root = root_it->second;
  out.elements.reserve(symbols_);
  for (size_t r = 0; r < n; ++r) {
    out.rule_first_alt.push_back(static_cast<uint32_t>(out.alternatives.size()));
    if (!reachable[r]) continue;
    for (const auto& alt : alts_[r]) {
      out.alternatives.push_back(static_cast<uint32_t>(out.elements.size()));
      for (const Symbol& s : alt)
        out.elements.push_back(
            {s.is_rule ? ElementKind::Rule : s.is_char_class ? ElementKind::Char : ElementKind::Bytes, s.value});
      out.elements.push_back({ElementKind::End, static_cast<uint32_t>(r)});
    }
  }
  out.rule_first_alt.push_back(static_cast<uint32_t>(out.alternatives.size()));
  return out;
}

}  // namespace phinfer::grammar
