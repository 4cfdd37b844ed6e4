#include "chat/jinja_pystr.h"

#include <algorithm>
#include <cstdint>

#include "chat/jinja_value.h"

namespace phinfer::jinja::pystr {
namespace {

// Latin Extended-A alternates upper/lower case pairs, with the upper case on even code points in
// two ranges and on odd ones in two others.
bool latin_ext_a_upper(char32_t c) {
  if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c % 2 == 0;
  if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return c % 2 == 1;
  return false;
}

char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (latin_ext_a_upper(c)) return c + 1;
  if (c == 0x178) return 0xFF;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

char32_t to_upper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c == 0xB5) return 0x39C;
  if (c > 0x100 && latin_ext_a_upper(c - 1) && c <= 0x17E) return c - 1;
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
  if (c == 0x3C2) return 0x3A3;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 37;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 63;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}

bool is_cased(char32_t c) { return to_lower(c) != c || to_upper(c) != c; }

template <typename F>
std::string map_chars(const std::string& s, F f) {
  std::u32string u = decode_utf8(s);
  for (char32_t& c : u) c = f(c);
  return encode_utf8(u);
}

}  // namespace

std::string lower(const std::string& s) { return map_chars(s, to_lower); }
std::string upper(const std::string& s) { return map_chars(s, to_upper); }

std::string capitalize(const std::string& s) {
  std::u32string u = decode_utf8(s);
  for (size_t i = 0; i < u.size(); ++i) u[i] = i == 0 ? to_upper(u[i]) : to_lower(u[i]);
  return encode_utf8(u);
}

std::string title(const std::string& s) {
  std::u32string u = decode_utf8(s);
  bool previous_cased = false;
  for (char32_t& c : u) {
    bool cased = is_cased(c);
    c = previous_cased ? to_lower(c) : to_upper(c);
    previous_cased = cased;
  }
  return encode_utf8(u);
}

namespace {

// str.islower() / str.isupper(): some cased character, and none of the other case.
bool only_case(const std::string& s, bool upper_case) {
  bool any = false;
  for (char32_t c : decode_utf8(s)) {
    bool lower_char = to_upper(c) != c, upper_char = to_lower(c) != c;
    if (upper_case ? lower_char : upper_char) return false;
    any = any || (upper_case ? upper_char : lower_char);
  }
  return any;
}

}  // namespace

bool is_lower(const std::string& s) { return only_case(s, false); }
bool is_upper(const std::string& s) { return only_case(s, true); }

std::vector<std::string> split(const std::string& s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) throw RuntimeError("empty separator");
    size_t start = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      size_t at = s.find(*sep, start);
      if (at == std::string::npos) break;
      out.push_back(s.substr(start, at - start));
      start = at + sep->size();
    }
    out.push_back(s.substr(start));
    return out;
  }
  // Whitespace runs separate words; leading and trailing whitespace gives no empty words, and
  // after maxsplit splits the rest is kept as it is, minus its leading whitespace.
  std::u32string u = decode_utf8(s);
  size_t i = 0;
  while (true) {
    while (i < u.size() && is_py_space(u[i])) ++i;
    if (i == u.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      out.push_back(encode_utf8(std::u32string_view(u).substr(i)));
      break;
    }
    size_t b = i;
    while (i < u.size() && !is_py_space(u[i])) ++i;
    out.push_back(encode_utf8(std::u32string_view(u).substr(b, i - b)));
  }
  return out;
}

std::vector<std::string> splitlines(const std::string& s) {
  std::u32string u = decode_utf8(s);
  std::vector<std::string> out;
  size_t b = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    char32_t c = u[i];
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) ||
               c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) continue;
    out.push_back(encode_utf8(std::u32string_view(u).substr(b, i - b)));
    if (c == '\r' && i + 1 < u.size() && u[i + 1] == '\n') ++i;
    b = i + 1;
  }
  if (b < u.size()) out.push_back(encode_utf8(std::u32string_view(u).substr(b)));
  return out;
}

std::string replace(const std::string& s, const std::string& old, const std::string& repl, int64_t count) {
  // Bound the result before building it: at most one replacement per character (plus one).
  size_t max_replacements = (old.empty() ? utf8_length(s) : s.size() / old.size()) + 1;
  if (count >= 0) max_replacements = std::min(max_replacements, static_cast<size_t>(count));
  if (!repl.empty() && max_replacements > kMaxTextBytes / repl.size()) check_size(SIZE_MAX);
  check_size(s.size() + max_replacements * repl.size());
  std::string out;
  int64_t done = 0;
  if (old.empty()) {  // Python inserts the replacement before every character and at the end
    std::u32string u = decode_utf8(s);
    for (char32_t c : u) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      out += encode_utf8(std::u32string(1, c));
    }
    if (count < 0 || done < count) out += repl;
    return out;
  }
  size_t start = 0;
  while (count < 0 || done < count) {
    size_t at = s.find(old, start);
    if (at == std::string::npos) break;
    out.append(s, start, at - start);
    out += repl;
    start = at + old.size();
    ++done;
  }
  out.append(s, start, std::string::npos);
  return out;
}

int64_t find(const std::string& s, const std::string& sub, bool from_right) {
  size_t at = from_right ? s.rfind(sub) : s.find(sub);
  if (at == std::string::npos) return -1;
  return static_cast<int64_t>(utf8_length(s.substr(0, at)));
}

int64_t count(const std::string& s, const std::string& sub) {
  if (sub.empty()) return static_cast<int64_t>(utf8_length(s)) + 1;
  int64_t n = 0;
  for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
  return n;
}

}  // namespace phinfer::jinja::pystr
