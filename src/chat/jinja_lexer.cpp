// Mirrors jinja2/lexer.py: the same precedence of tag ends over operators, the same
// lstrip_blocks rule (only at a line start, only spaces before the tag) and the same trim_blocks
// rule (one newline after a block or comment tag).
#include "chat/jinja_lexer.h"

#include <cstring>

#include "chat/jinja_value.h"
#include "phinfer/error.h"

namespace phinfer::jinja {

Source::Source(const std::string& raw) {
  text_.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\r') {
      text_ += '\n';
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    } else {
      text_ += raw[i];
    }
  }
  if (!text_.empty() && text_.back() == '\n') text_.pop_back();
}

std::string Source::where(size_t pos) const {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos && i < text_.size(); ++i) {
    if (text_[i] == '\n') {
      ++line;
      col = 1;
    } else if ((static_cast<unsigned char>(text_[i]) & 0xC0) != 0x80) {
      ++col;  // count code points, not UTF-8 continuation bytes
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

void Source::fail(size_t pos, const std::string& message) const {
  throw Error("chat template: " + message + " at " + where(pos));
}

namespace {

constexpr size_t npos = std::string::npos;

// Operators, longest first so that "//" wins over "/".
constexpr const char* kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%",
                                      "~",  "[",  "]",  "(",  ")",  "{",  "}", ">", "<", "=", ".",
                                      ":",  "|",  ",",  ";"};

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  explicit Lexer(const Source& src) : src_(src), s_(src.text()) {}

  std::vector<Token> run() {
    while (pos_ < s_.size()) {
      size_t tag = find_tag_start(pos_);
      if (tag == npos) {
        emit_text(s_.substr(pos_), pos_);
        break;
      }
      char kind = s_[tag + 1];  // '{', '%' or '#'
      char sign = tag + 2 < s_.size() && (s_[tag + 2] == '-' || s_[tag + 2] == '+') ? s_[tag + 2] : 0;
      size_t raw_body = kind == '%' ? match_raw_begin(tag) : npos;
      emit_text(strip_before_tag(pos_, tag, kind != '{', sign), pos_);
      if (kind == '#')
        lex_comment(tag, sign);
      else if (raw_body != npos)
        lex_raw(tag, raw_body);
      else
        lex_tag(tag, kind, sign);
    }
    out_.push_back({TokenType::Eof, "", s_.size()});
    return std::move(out_);
  }

 private:
  // Byte length of the Python whitespace character at p (0 if there is none).
  size_t space_at(size_t p) const {
    if (p >= s_.size()) return 0;
    auto b = static_cast<unsigned char>(s_[p]);
    if (b < 0x80) return is_py_space(b) ? 1 : 0;
    size_t len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    std::u32string cp = decode_utf8(s_.substr(p, len));
    return cp.size() == 1 && is_py_space(cp[0]) ? len : 0;
  }
  size_t skip_space(size_t p) const {
    while (size_t n = space_at(p)) p += n;
    return p;
  }
  bool at(size_t p, const char* lit) const { return s_.compare(p, std::strlen(lit), lit) == 0; }

  size_t find_tag_start(size_t from) const {
    for (size_t p = s_.find('{', from); p != npos; p = s_.find('{', p + 1))
      if (p + 1 < s_.size() && (s_[p + 1] == '{' || s_[p + 1] == '%' || s_[p + 1] == '#')) return p;
    return npos;
  }

  void emit_text(std::string text, size_t pos) {
    if (!text.empty()) out_.push_back({TokenType::Text, std::move(text), pos});
  }

  // Whitespace control of the text s_[begin, end) before a tag: `{%-` strips all trailing
  // whitespace; lstrip_blocks removes spaces between a line start and a block or comment tag
  // (not after `{%+`, not before `{{`). "Line start" includes the position right after a tag
  // that ended with a newline, which is what jinja's line_starting flag tracks.
  std::string strip_before_tag(size_t begin, size_t end, bool is_block_or_comment, char sign) const {
    std::string text = s_.substr(begin, end - begin);
    if (sign == '-') return py_strip(text, Value::undefined(""), false, true);
    if (sign == '+' || !is_block_or_comment) return text;
    size_t line_pos = text.rfind('\n');
    line_pos = line_pos == npos ? 0 : line_pos + 1;
    bool only_space_before_tag = line_pos < text.size() && skip_space(begin + line_pos) == end;
    if ((line_pos > 0 || line_starting_) && only_space_before_tag) text.resize(line_pos);
    return text;
  }

  // After a tag end: `-` strips all following whitespace; otherwise a block or comment end
  // (trim_blocks) eats one newline, unless it was written `+%}`. Returns the new position.
  size_t finish_tag(size_t end_pos, char sign, bool trims_newline) {
    size_t p = end_pos;
    if (sign == '-')
      p = skip_space(p);
    else if (sign != '+' && trims_newline && p < s_.size() && s_[p] == '\n')
      ++p;
    line_starting_ = p > 0 && s_[p - 1] == '\n' && p != end_pos;
    return p;
  }

  // `{% raw %}` (with optional -/+ signs); returns the position where the raw text starts.
  size_t match_raw_begin(size_t tag) const {
    size_t p = skip_space(tag + 2 + (s_[tag + 2] == '-' || s_[tag + 2] == '+'));
    if (!at(p, "raw") || (p + 3 < s_.size() && is_name_char(s_[p + 3]))) return npos;
    p = skip_space(p + 3);
    if (at(p, "-%}")) return skip_space(p + 3);
    if (at(p, "%}")) return p + 2;
    return npos;
  }

  void lex_raw(size_t tag, size_t body) {
    // Raw text runs to the first `{% endraw %}`, whose own signs control the whitespace around it.
    for (size_t p = s_.find("{%", body); p != npos; p = s_.find("{%", p + 1)) {
      char sign = s_[p + 2] == '-' || s_[p + 2] == '+' ? s_[p + 2] : 0;
      size_t q = skip_space(p + 2 + (sign ? 1 : 0));
      if (!at(q, "endraw")) continue;
      q = skip_space(q + 6);
      char end_sign = at(q, "-%}") ? '-' : at(q, "+%}") ? '+' : 0;
      if (end_sign) ++q;
      if (!at(q, "%}")) continue;
      line_starting_ = body > 0 && s_[body - 1] == '\n';
      emit_text(strip_before_tag(body, p, true, sign), body);
      pos_ = finish_tag(q + 2, end_sign, true);
      return;
    }
    src_.fail(tag, "missing end of raw directive (no {% endraw %})");
  }

  void lex_comment(size_t tag, char sign) {
    size_t body = tag + 2 + (sign ? 1 : 0);
    size_t end = s_.find("#}", body);
    if (end == npos) src_.fail(tag, "unclosed comment (missing '#}')");
    char end_sign = end > body && (s_[end - 1] == '-' || s_[end - 1] == '+') ? s_[end - 1] : 0;
    pos_ = finish_tag(end + 2, end_sign, true);
  }

  void lex_tag(size_t tag, char kind, char sign) {
    const bool is_block = kind == '%';
    out_.push_back({is_block ? TokenType::BlockBegin : TokenType::VarBegin, "", tag});
    std::string brackets;  // expected closers; tag ends are not recognised inside brackets
    size_t p = tag + 2 + (sign ? 1 : 0);
    const char* opener = is_block ? "'{%'" : "'{{'";
    while (true) {
      p = skip_space(p);
      if (p >= s_.size()) src_.fail(tag, std::string("unclosed tag ") + opener + " (missing its end)");
      if (brackets.empty()) {
        const char* end = is_block ? "%}" : "}}";
        char end_sign = 0;
        size_t q = p;
        if ((s_[p] == '-' || (is_block && s_[p] == '+')) && at(p + 1, end)) end_sign = s_[q++];
        if (at(q, end)) {
          out_.push_back({is_block ? TokenType::BlockEnd : TokenType::VarEnd, "", p});
          pos_ = finish_tag(q + 2, end_sign, is_block);
          return;
        }
      }
      char c = s_[p];
      if (c == '\'' || c == '"') {
        p = lex_string(p);
      } else if (is_digit(c)) {
        p = lex_number(p);
      } else if (is_name_start(c)) {
        size_t b = p;
        while (p < s_.size() && is_name_char(s_[p])) ++p;
        out_.push_back({TokenType::Name, s_.substr(b, p - b), b});
      } else {
        p = lex_operator(p, brackets);
      }
    }
  }

  size_t lex_operator(size_t p, std::string& brackets) {
    for (const char* op : kOperators) {
      if (!at(p, op)) continue;
      char c = op[0];
      if (op[1] == 0 && (c == '(' || c == '[' || c == '{')) {
        brackets.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
      } else if (op[1] == 0 && (c == ')' || c == ']' || c == '}')) {
        if (brackets.empty()) src_.fail(p, std::string("unexpected '") + c + "'");
        if (brackets.back() != c)
          src_.fail(p, std::string("unexpected '") + c + "', expected '" + brackets.back() + "'");
        brackets.pop_back();
      }
      out_.push_back({TokenType::Operator, op, p});
      return p + std::strlen(op);
    }
    src_.fail(p, "unexpected character '" + s_.substr(p, 1) + "'");
  }

  // Integers and floats in Python syntax (underscores allowed between digits).
  size_t lex_number(size_t p) {
    size_t b = p;
    auto digits = [&](size_t& q) {
      size_t start = q;
      while (q < s_.size() && (is_digit(s_[q]) || (s_[q] == '_' && q + 1 < s_.size() && is_digit(s_[q + 1]) && q > start)))
        ++q;
      return q > start;
    };
    if (s_[p] == '0' && p + 1 < s_.size() && std::strchr("bBoOxX", s_[p + 1]))
      src_.fail(p, "binary, octal and hex literals are not supported");
    digits(p);
    // As in jinja's float regex, digits right after a '.' are an integer: x.1.2 is x[1][2].
    const bool after_dot = b > 0 && s_[b - 1] == '.';
    bool is_float = false;
    if (!after_dot && p + 1 < s_.size() && s_[p] == '.' && is_digit(s_[p + 1])) {
      ++p;
      digits(p);
      is_float = true;
    }
    if (!after_dot && p < s_.size() && (s_[p] == 'e' || s_[p] == 'E')) {
      size_t q = p + 1;
      if (q < s_.size() && (s_[q] == '+' || s_[q] == '-')) ++q;
      if (digits(q)) {
        p = q;
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = b; i < p; ++i)
      if (s_[i] != '_') text += s_[i];
    out_.push_back({is_float ? TokenType::Float : TokenType::Integer, text, b});
    return p;
  }

  // A quoted literal with Python's escapes (what jinja gets from "unicode-escape" decoding).
  size_t lex_string(size_t p) {
    const char quote = s_[p];
    size_t b = p++;
    std::string out;
    while (true) {
      if (p >= s_.size()) src_.fail(b, "unterminated string literal");
      char c = s_[p];
      if (c == quote) break;
      if (c != '\\') {
        out += c;
        ++p;
        continue;
      }
      if (p + 1 >= s_.size()) src_.fail(b, "unterminated string literal");
      char e = s_[p + 1];
      p += 2;
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x':
        case 'u':
        case 'U': {
          size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (size_t k = 0; k < n; ++k, ++p) {
            int digit = p < s_.size() ? hex_value(s_[p]) : -1;
            if (digit < 0) src_.fail(b, std::string("truncated \\") + e + " escape in string literal");
            cp = cp * 16 + static_cast<char32_t>(digit);
          }
          if (cp > 0x10FFFF) src_.fail(b, "illegal Unicode character in string literal");
          out += encode_utf8(std::u32string(1, cp));
          break;
        }
        default:
          if (e >= '0' && e <= '7') {  // up to three octal digits
            char32_t cp = e - '0';
            for (int k = 0; k < 2 && p < s_.size() && s_[p] >= '0' && s_[p] <= '7'; ++k, ++p)
              cp = cp * 8 + (s_[p] - '0');
            out += encode_utf8(std::u32string(1, cp));
          } else {  // unknown escapes stay as written, as in Python
            out += '\\';
            out += e;
          }
      }
    }
    out_.push_back({TokenType::String, std::move(out), b});
    return p + 1;
  }

  const Source& src_;
  const std::string& s_;
  size_t pos_ = 0;
  bool line_starting_ = true;  // the previous tag's end consumed a newline (or we are at the start)
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> tokenize(const Source& source) { return Lexer(source).run(); }

}  // namespace phinfer::jinja
