// Python behaviour of template values. Each function names the Python operation it copies; the
// exact text matters because the rendered prompt is tokenized and must match transformers.
#include "chat/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace phinfer::jinja {

Value::Value(Json j) {
  charge_value(j);
  v_ = std::make_shared<const Json>(std::move(j));
}

const Json& Value::json() const {
  if (const auto* j = std::get_if<std::shared_ptr<const Json>>(&v_)) return **j;
  if (const auto* u = std::get_if<Undefined>(&v_)) throw RuntimeError(u->hint);
  throw RuntimeError("expected plain data, got " + type_name(*this));
}

std::string type_name(const Value& v) {
  if (v.is_undefined()) return "Undefined";
  if (v.is_object()) return v.object().type_name;
  if (v.is_callable()) return "function";
  const Json& j = v.json();
  switch (j.type()) {
    case Json::value_t::null: return "NoneType";
    case Json::value_t::boolean: return "bool";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "int";
    case Json::value_t::number_float: return "float";
    case Json::value_t::string: return "str";
    case Json::value_t::array: return "list";
    case Json::value_t::object: return "dict";
    default: return "unknown";
  }
}

// ---- limits -----------------------------------------------------------------------------------

void check_size(size_t bytes) {
  if (bytes > kMaxTextBytes)
    throw RuntimeError("value too large: over " + std::to_string(kMaxTextBytes) + " bytes");
}

namespace {
thread_local WorkBudget* current_budget = nullptr;
}  // namespace

WorkBudget::WorkBudget() : previous_(current_budget) { current_budget = this; }
WorkBudget::~WorkBudget() { current_budget = previous_; }

void charge_work(uint64_t bytes) {
  WorkBudget* budget = current_budget;
  if (!budget) return;
  budget->used_ += bytes;
  if (budget->used_ > kMaxWorkBytes)
    throw RuntimeError("template did too much work: it built, copied or scanned more than " +
                       std::to_string(kMaxWorkBytes) + " bytes");
}

void charge_value(const Json& value) {
  if (!current_budget) return;
  const size_t bytes = approx_bytes(value);
  check_size(bytes);
  charge_work(bytes);
}

// A comparison scans at most the smaller operand.
void charge_scan(const Json& a, const Json& b) {
  if (current_budget) charge_work(std::min(approx_bytes(a), approx_bytes(b)));
}

void store_attribute(Object& target, const std::string& name, Value value) {
  if (value.is_object())
    throw RuntimeError("cannot store a " + value.object().type_name + " in an attribute of a " + target.type_name +
                       ": template values never hold namespaces or loop objects, which keeps them free of cycles");
  target.attrs[name] = std::move(value);
}

void check_nesting(const Json& j) {
  if (json_nests_deeper_than(j, kMaxValueDepth - 1))
    throw RuntimeError("value nested too deeply (limit " + std::to_string(kMaxValueDepth) + " levels)");
}

namespace {
constexpr size_t kNode = 16;  // what one JSON node costs, roughly, besides its text
}  // namespace

size_t approx_bytes(const Json& j) {
  if (j.is_string()) return kNode + j.get_ref<const std::string&>().size();
  if (j.is_array()) {
    size_t n = kNode;
    for (const auto& e : j) n += approx_bytes(e);
    return n;
  }
  if (j.is_object()) {
    size_t n = kNode;
    for (const auto& [k, v] : j.items()) n += kNode + k.size() + approx_bytes(v);
    return n;
  }
  return kNode;
}

// ---- Unicode ----------------------------------------------------------------------------------

std::u32string decode_utf8(const std::string& s) {
  charge_work(uint64_t{4} * s.size());
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto b0 = static_cast<unsigned char>(s[i]);
    int len = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
    char32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      auto b = static_cast<unsigned char>(s[i + k]);
      ok = (b & 0xC0) == 0x80;
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && cp >= kMin[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.push_back(cp);
      i += len;
    } else {
      out.push_back(0xDC00 + b0);  // surrogateescape: keeps the byte, round-trips on encode
      ++i;
    }
  }
  return out;
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : s) {
    if (cp >= 0xDC80 && cp <= 0xDCFF) {
      out.push_back(static_cast<char>(cp - 0xDC00));
    } else if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

size_t utf8_length(const std::string& s) { return decode_utf8(s).size(); }

bool is_py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string py_strip(const std::string& s, const Value& chars, bool left, bool right) {
  std::u32string u = decode_utf8(s);
  std::u32string set;
  bool whitespace = chars.is_undefined() || chars.is_none();
  if (!whitespace) {
    if (!chars.is_string()) throw RuntimeError("strip arg must be None or str");
    set = decode_utf8(chars.str());
  }
  auto strip_it = [&](char32_t c) {
    return whitespace ? is_py_space(c) : set.find(c) != std::u32string::npos;
  };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip_it(u[b])) ++b;
  if (right)
    while (e > b && strip_it(u[e - 1])) --e;
  return encode_utf8(std::u32string_view(u).substr(b, e - b));
}

// ---- str() / repr() ---------------------------------------------------------------------------

std::string format_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then Python's layout: exponent form when the decimal point
  // would sit more than 16 places right or 4 places left (repr(1e16) == '1e+16').
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  size_t epos = sci.find('e');
  std::string digits = sci.substr(0, epos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  int exp10 = std::stoi(sci.substr(epos + 1));
  int decpt = exp10 + 1;
  int nd = static_cast<int>(digits.size());
  std::string out;
  if (decpt <= -4 || decpt > 16) {
    out = digits.substr(0, 1);
    if (nd > 1) out += "." + digits.substr(1);
    int e = decpt - 1;
    char ebuf[16];
    std::snprintf(ebuf, sizeof ebuf, "e%c%02d", e < 0 ? '-' : '+', std::abs(e));
    out += ebuf;
  } else if (decpt <= 0) {
    out = "0." + std::string(-decpt, '0') + digits;
  } else if (decpt >= nd) {
    out = digits + std::string(decpt - nd, '0') + ".0";
  } else {
    out = digits.substr(0, decpt) + "." + digits.substr(decpt);
  }
  return sign + out;
}

namespace {

// Python's str.isprintable(), approximately: control, format, separator (other than ' '),
// private-use and surrogate code points. Unassigned code points are not known here.
bool is_printable(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if ((c >= 0x600 && c <= 0x605) || c == 0x61C || c == 0x6DD || c == 0x70F || c == 0x180E) return false;
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F)) return false;
  if ((c >= 0x205F && c <= 0x206F) || c == 0x3000 || (c >= 0xD800 && c <= 0xF8FF)) return false;
  if (c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB) || (c >= 0xFFFE && c <= 0xFFFF)) return false;
  if (c == 0xE0001 || (c >= 0xE0020 && c <= 0xE007F) || c >= 0xF0000) return false;
  return true;
}

std::string hex_escape(char32_t c) {
  char buf[16];
  if (c < 0x100)
    std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
  else if (c < 0x10000)
    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
  else
    std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(c));
  return buf;
}

std::string repr_string(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  std::u32string u = decode_utf8(s);
  std::string out(1, quote);
  for (char32_t c : u) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (!is_printable(c)) {
      out += hex_escape(c);
    } else {
      out += encode_utf8(std::u32string(1, c));
    }
  }
  out += quote;
  return out;
}

}  // namespace

std::string repr(const Json& j) {
  switch (j.type()) {
    case Json::value_t::string: return repr_string(j.get_ref<const std::string&>());
    case Json::value_t::array: {
      std::string out = "[";
      for (size_t i = 0; i < j.size(); ++i) out += (i ? ", " : "") + repr(j[i]);
      return out + "]";
    }
    case Json::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, v] : j.items()) {
        out += (first ? "" : ", ") + repr_string(k) + ": " + repr(v);
        first = false;
      }
      return out + "}";
    }
    default: return to_str(Value(j));
  }
}

std::string to_str(const Value& v) {
  if (v.is_undefined()) return "";
  if (v.is_object()) return "<" + v.object().type_name + ">";
  if (v.is_callable()) return "<function " + v.callable().name + ">";
  const Json& j = v.json();
  switch (j.type()) {
    case Json::value_t::null: return "None";
    case Json::value_t::boolean: return j.get<bool>() ? "True" : "False";
    case Json::value_t::number_integer: return std::to_string(j.get<int64_t>());
    case Json::value_t::number_unsigned: return std::to_string(j.get<uint64_t>());
    case Json::value_t::number_float: return format_float(j.get<double>());
    case Json::value_t::string: return j.get<std::string>();
    default: return repr(j);
  }
}

// ---- truthiness, equality, ordering -----------------------------------------------------------

bool truthy(const Value& v) {
  if (v.is_undefined()) return false;
  if (!v.is_json()) return true;
  const Json& j = v.json();
  switch (j.type()) {
    case Json::value_t::null: return false;
    case Json::value_t::boolean: return j.get<bool>();
    case Json::value_t::number_integer: return j.get<int64_t>() != 0;
    case Json::value_t::number_unsigned: return j.get<uint64_t>() != 0;
    case Json::value_t::number_float: return j.get<double>() != 0.0;
    case Json::value_t::string: return !j.get_ref<const std::string&>().empty();  // json::empty() is false for strings
    case Json::value_t::array:
    case Json::value_t::object: return !j.empty();
    default: return true;
  }
}

namespace {

bool is_numeric(const Json& j) { return j.is_number() || j.is_boolean(); }
bool is_integral(const Json& j) { return j.is_number_integer() || j.is_boolean(); }
int64_t integral(const Json& j) { return j.is_boolean() ? (j.get<bool>() ? 1 : 0) : j.get<int64_t>(); }
double numeric(const Json& j) { return j.is_boolean() ? (j.get<bool>() ? 1.0 : 0.0) : j.get<double>(); }

bool json_equal(const Json& a, const Json& b) {
  if (is_numeric(a) && is_numeric(b)) {
    if (is_integral(a) && is_integral(b)) return integral(a) == integral(b);
    return numeric(a) == numeric(b);
  }
  if (a.type() != b.type()) return false;
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!json_equal(a[i], b[i])) return false;
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (const auto& [k, v] : a.items()) {
      auto it = b.find(k);
      if (it == b.end() || !json_equal(v, *it)) return false;
    }
    return true;
  }
  return a == b;
}

// Three-way comparison for Python's ordering operators; throws for types Python cannot order.
int json_compare(const Json& a, const Json& b, const std::string& op) {
  if (is_numeric(a) && is_numeric(b)) {
    if (is_integral(a) && is_integral(b)) {
      int64_t x = integral(a), y = integral(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    double x = numeric(a), y = numeric(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    int c = a.get_ref<const std::string&>().compare(b.get_ref<const std::string&>());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_array() && b.is_array()) {
    for (size_t i = 0; i < a.size() && i < b.size(); ++i)
      if (!json_equal(a[i], b[i])) return json_compare(a[i], b[i], op);
    return a.size() < b.size() ? -1 : a.size() > b.size() ? 1 : 0;
  }
  throw RuntimeError("'" + op + "' not supported between instances of '" + type_name(Value(a)) +
                     "' and '" + type_name(Value(b)) + "'");
}

}  // namespace

bool equal(const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined()) return a.is_undefined() && b.is_undefined();
  if (a.is_object() && b.is_object()) return a.object_ptr() == b.object_ptr();
  if (a.is_json() && b.is_json()) {
    charge_scan(a.json(), b.json());
    return json_equal(a.json(), b.json());
  }
  return false;
}

int compare(const Value& a, const Value& b, const std::string& op) {
  if (!a.is_json() || !b.is_json()) {
    if (a.is_undefined()) a.json();  // throws with the undefined hint
    if (b.is_undefined()) b.json();
    throw RuntimeError("'" + op + "' not supported between instances of '" + type_name(a) +
                       "' and '" + type_name(b) + "'");
  }
  charge_scan(a.json(), b.json());
  return json_compare(a.json(), b.json(), op);
}

bool contains(const Value& container, const Value& item) {
  if (container.is_undefined()) return false;  // Undefined iterates as empty
  if (!container.is_json())
    throw RuntimeError("argument of type '" + type_name(container) + "' is not iterable");
  const Json& c = container.json();
  if (c.is_string()) {
    if (!item.is_string())
      throw RuntimeError("'in <string>' requires string as left operand, not " + type_name(item));
    charge_work(c.get_ref<const std::string&>().size());
    return c.get_ref<const std::string&>().find(item.str()) != std::string::npos;
  }
  if (c.is_array()) {
    for (const auto& e : c)
      if (equal(Value(e), item)) return true;
    return false;
  }
  if (c.is_object()) return item.is_string() && c.contains(item.str());
  throw RuntimeError("argument of type '" + type_name(container) + "' is not iterable");
}

std::vector<Json> iterate(const Value& v) {
  if (v.is_undefined()) return {};
  if (!v.is_json()) throw RuntimeError("'" + type_name(v) + "' object is not iterable");
  const Json& j = v.json();
  if (!j.is_string()) charge_work(approx_bytes(j));  // the copy below (a string: decode_utf8 charges)
  std::vector<Json> out;
  if (j.is_array()) {
    out.assign(j.begin(), j.end());
  } else if (j.is_object()) {
    for (const auto& [k, _] : j.items()) out.emplace_back(k);
  } else if (j.is_string()) {
    const std::u32string chars = decode_utf8(j.get_ref<const std::string&>());
    charge_work(kNode * chars.size());  // one string node per character
    for (char32_t c : chars) out.emplace_back(encode_utf8(std::u32string(1, c)));
  } else {
    throw RuntimeError("'" + type_name(v) + "' object is not iterable");
  }
  return out;
}

int64_t as_int(const Value& v, const char* what) {
  if (v.is_json() && is_integral(v.json())) return integral(v.json());
  throw RuntimeError(std::string(what) + " must be an integer, not " + type_name(v));
}

double as_double(const Value& v, const char* what) {
  if (v.is_json() && is_numeric(v.json())) return numeric(v.json());
  throw RuntimeError(std::string(what) + " must be a number, not " + type_name(v));
}

// ---- json.dumps -------------------------------------------------------------------------------

namespace {

void dump_string(const std::string& s, bool ensure_ascii, std::string& out) {
  out += '"';
  auto escape = [&](char32_t c) {
    switch (c) {
      case '"': out += "\\\""; return;
      case '\\': out += "\\\\"; return;
      case '\n': out += "\\n"; return;
      case '\r': out += "\\r"; return;
      case '\t': out += "\\t"; return;
      case '\b': out += "\\b"; return;
      case '\f': out += "\\f"; return;
      default: break;
    }
    char buf[16];
    if (c >= 0x10000) {  // UTF-16 surrogate pair, as Python writes it
      char32_t v = c - 0x10000;
      std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                    static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
    } else {
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
    }
    out += buf;
  };
  if (ensure_ascii) {
    for (char32_t c : decode_utf8(s)) {
      if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
        out += static_cast<char>(c);
      else
        escape(c);
    }
  } else {
    for (char ch : s) {  // non-ASCII bytes pass through unchanged
      auto c = static_cast<unsigned char>(ch);
      if (c < 0x20 || c == '"' || c == '\\')
        escape(c);
      else
        out += ch;
    }
  }
  out += '"';
}

void dump(const Json& j, const JsonStyle& style, int level, std::string& out) {
  auto newline = [&](int lvl) {
    out += '\n';
    for (int i = 0; i < lvl; ++i) out += *style.indent;
    check_size(out.size());  // indentation can multiply the size of a big value
  };
  switch (j.type()) {
    case Json::value_t::null: out += "null"; return;
    case Json::value_t::boolean: out += j.get<bool>() ? "true" : "false"; return;
    case Json::value_t::number_integer: out += std::to_string(j.get<int64_t>()); return;
    case Json::value_t::number_unsigned: out += std::to_string(j.get<uint64_t>()); return;
    case Json::value_t::number_float: {
      double d = j.get<double>();
      if (std::isnan(d)) out += "NaN";
      else if (std::isinf(d)) out += d < 0 ? "-Infinity" : "Infinity";
      else out += format_float(d);
      return;
    }
    case Json::value_t::string: dump_string(j.get_ref<const std::string&>(), style.ensure_ascii, out); return;
    case Json::value_t::array:
    case Json::value_t::object: {
      bool is_obj = j.is_object();
      if (j.empty()) {
        out += is_obj ? "{}" : "[]";
        return;
      }
      out += is_obj ? '{' : '[';
      std::vector<std::pair<std::string, const Json*>> entries;
      if (is_obj) {
        for (const auto& [k, v] : j.items()) entries.emplace_back(k, &v);
        if (style.sort_keys)
          std::stable_sort(entries.begin(), entries.end(),
                           [](const auto& a, const auto& b) { return a.first < b.first; });
      } else {
        for (const auto& v : j) entries.emplace_back("", &v);
      }
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += style.item_sep;
        if (style.indent) newline(level + 1);
        if (is_obj) {
          dump_string(entries[i].first, style.ensure_ascii, out);
          out += style.key_sep;
        }
        dump(*entries[i].second, style, level + 1, out);
      }
      if (style.indent) newline(level);
      out += is_obj ? '}' : ']';
      return;
    }
    default: throw RuntimeError("value is not JSON serializable");
  }
}

}  // namespace

std::string dump_json(const Json& j, const JsonStyle& style) {
  std::string out;
  dump(j, style, 0, out);
  return out;
}

}  // namespace phinfer::jinja
