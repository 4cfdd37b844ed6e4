#pragma once
// GBNF, the grammar text form of llama.cpp (grammars/README.md there):
//   name ::= alternatives          rules; `root` is where a parse starts
//   "literal" [a-z\x41] [^"\\] .   literals, character classes (ranges, negation), any character
//   ( ... ) a | b                  groups and alternation
//   x* x+ x? x{m} x{m,} x{m,n}     repetition
//   # comment                      to the end of the line
// Escapes in literals and classes: \n \r \t \\ \" \[ \] \- \^ \/ \xHH \uHHHH \UHHHHHHHH.
// A rule may continue over several lines; it ends where the next `name ::=` begins.
#include <string>
#include <string_view>

#include "grammar/rules.h"

namespace phinfer::grammar {

// Throws phinfer::Error naming `source`, the line and column and what was expected.
Rules parse_gbnf(std::string_view text, const std::string& source = "grammar");

inline constexpr size_t kMaxGrammarBytes = 1u << 20;
inline constexpr int kMaxGroupNesting = 64;
inline constexpr int kMaxRepetition = 10000;

}  // namespace phinfer::grammar
