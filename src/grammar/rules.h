#pragma once
// The grammar representation every input form compiles to: a context-free grammar over BYTES.
// Characters (GBNF literals and classes, JSON string characters) are lowered to their UTF-8 byte
// sequences, so a token that ends inside a multi-byte character, or spans several symbols, is
// matched byte by byte like any other.
//
// Layout (like llama.cpp's grammar): every alternative of every rule is a run of elements in one
// array, ended by an End element; a parse position is an index into that array.
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace phinfer::grammar {

// A set of bytes, bit b of word b/64.
using ByteSet = std::array<uint64_t, 4>;
inline bool contains(const ByteSet& s, uint8_t b) { return (s[b >> 6] >> (b & 63)) & 1; }
inline void insert(ByteSet& s, uint8_t b) { s[b >> 6] |= uint64_t{1} << (b & 63); }

enum class ElementKind : uint8_t { Bytes, Rule, End, Char };

struct Element {
  ElementKind kind;
  uint32_t value;  // Bytes: index into byte_sets; Rule: rule id; End: the rule it ends; Char: char_classes
};

// A character class with members past ASCII: one element whose UTF-8 bytes are matched one at a
// time, with the character read so far as a sub-state (one parse, where a rule of byte sequences
// would be one per UTF-8 length and lead byte).
struct CharClass {
  std::vector<std::pair<char32_t, char32_t>> ranges;  // sorted, disjoint, no surrogates
  ByteSet first{};                                    // bytes that can begin a member
};
inline constexpr uint32_t kCharFail = 0xFFFFFFFF;
inline constexpr uint32_t kCharDone = 0xFFFFFFFE;
// Reads one byte of a character: kCharFail, kCharDone (a member complete) or the new sub-state
// (never 0; 0 is the state before the first byte).
uint32_t step_char(const CharClass& c, uint32_t sub, uint8_t byte);
// The class of these code point ranges (sorted, disjoint, no surrogates, at most U+10FFFF).
CharClass make_char_class(std::vector<std::pair<char32_t, char32_t>> ranges);
// Whether some member of c lies in [lo, hi]; whether all of [lo, hi] are members.
bool intersects(const CharClass& c, char32_t lo, char32_t hi);
bool covers(const CharClass& c, char32_t lo, char32_t hi);

struct Rules {
  std::vector<Element> elements;
  std::vector<ByteSet> byte_sets;
  std::vector<CharClass> char_classes;
  std::vector<uint32_t> alternatives;     // first element of each alternative, rule by rule
  std::vector<uint32_t> rule_first_alt;   // rule r: alternatives[rule_first_alt[r] .. rule_first_alt[r+1])
  std::vector<std::string> rule_names;
  uint32_t root = 0;
};

// Limits that keep hostile grammars and schemas bounded.
inline constexpr size_t kMaxElements = 1u << 21;   // elements of a compiled grammar
inline constexpr size_t kMaxRules = 1u << 18;

// One symbol of an alternative while a grammar is being built.
struct Symbol {
  bool is_rule;
  uint32_t value;  // byte set id, rule id or char class id
  bool is_char_class = false;
};

// Collects rules and checks them into a Rules: every referenced rule is defined, no rule is
// left-recursive (the parser would loop), and every rule reachable from the root can finish (so a
// parse can always be completed: the matcher never dead-ends).
class RuleBuilder {
 public:
  // The id of a rule by name, declaring it if new (defined later by add_alternative).
  uint32_t rule(const std::string& name);
  // A new rule with a name made unique from `base` (groups, repetitions, character classes).
  uint32_t fresh_rule(const std::string& base);
  uint32_t byte_set(const ByteSet& set);
  void add_alternative(uint32_t rule, std::vector<Symbol> symbols);
  bool defined(uint32_t rule) const { return defined_[rule]; }
  size_t symbol_count() const { return symbols_; }
  // Throws phinfer::Error (prefixed with `source`) for the problems above.
  Rules build(const std::string& root_name, const std::string& source) const;

  // The symbol for code point [lo, hi] ranges (a character class): Bytes when all ASCII, else a
  // CharClass (shared between equal classes).
  Symbol char_class(const std::vector<std::pair<char32_t, char32_t>>& ranges);
  // One symbol per byte.
  void append_literal(std::vector<Symbol>& out, const std::string& bytes);

 private:
  std::vector<std::string> names_;
  std::map<std::string, uint32_t> by_name_;
  std::vector<std::vector<std::vector<Symbol>>> alts_;
  std::vector<bool> defined_;
  std::vector<ByteSet> sets_;
  std::map<ByteSet, uint32_t> set_ids_;
  std::map<std::vector<std::pair<char32_t, char32_t>>, Symbol> classes_;
  std::vector<CharClass> char_classes_;
  size_t symbols_ = 0;
};

}  // namespace phinfer::grammar
