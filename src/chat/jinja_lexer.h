#pragma once
// Lexer of the Jinja subset. It applies whitespace control while splitting the template, with
// the settings transformers uses (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False),
// so the parser only sees the text that will really be output.
#include <cstddef>
#include <string>
#include <vector>

namespace phinfer::jinja {

// The template text after Jinja's newline handling (\r\n and \r become \n, one trailing newline
// is dropped), with positions turned into "line L, column C" for error messages.
class Source {
 public:
  explicit Source(const std::string& raw);
  const std::string& text() const { return text_; }
  std::string where(size_t pos) const;
  // Throws phinfer::Error "chat template: <message> at line L, column C".
  [[noreturn]] void fail(size_t pos, const std::string& message) const;

 private:
  std::string text_;
};

enum class TokenType {
  Text,        // literal template text, already whitespace-controlled
  VarBegin,    // {{
  VarEnd,      // }}
  BlockBegin,  // {%
  BlockEnd,    // %}
  Name,        // identifiers and keywords (if, for, and, none, ...)
  String,      // value holds the decoded literal
  Integer,     // value holds the digits (underscores removed)
  Float,
  Operator,    // value holds the operator text: + - * / // % ** ~ == != < <= > >= = . : | , ( ) [ ] { }
  Eof,
};

struct Token {
  TokenType type;
  std::string value;
  size_t pos;  // byte offset in Source::text()
};

// Splits the template into tokens; comments and raw blocks are resolved here. Throws
// phinfer::Error for unclosed tags, comments and strings and for characters it does not know.
std::vector<Token> tokenize(const Source& source);

}  // namespace phinfer::jinja
