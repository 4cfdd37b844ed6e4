// Filters, tests, methods and globals. Each one follows the Jinja2 3.1 function of the same name
// (jinja2/filters.py, jinja2/tests.py) or the Python method it stands for; comments note where
// Jinja's behaviour is surprising and was kept on purpose.
#include "chat/jinja_builtins.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <initializer_list>
#include <unordered_map>

#include "chat/jinja_pystr.h"
#include "phinfer/error.h"

namespace phinfer::jinja {
namespace {

// Jinja's sandbox refuses bigger ranges (MAX_RANGE); it also bounds memory and time here.
constexpr int64_t kMaxRange = 100000;

// Binds call arguments to a Python-style parameter list: positional first, then keywords.
class Params {
 public:
  Params(const std::string& func, const CallArgs& args, std::initializer_list<const char*> names)
      : names_(names.begin(), names.end()), values_(names.size(), nullptr) {
    if (args.positional.size() > names_.size())
      throw RuntimeError(func + "() takes at most " + std::to_string(names_.size()) + " argument(s), " +
                         std::to_string(args.positional.size()) + " given");
    for (size_t i = 0; i < args.positional.size(); ++i) values_[i] = &args.positional[i];
    for (const auto& [key, value] : args.keyword) {
      auto it = std::find(names_.begin(), names_.end(), key);
      if (it == names_.end()) throw RuntimeError(func + "() got an unexpected keyword argument '" + key + "'");
      size_t i = static_cast<size_t>(it - names_.begin());
      if (values_[i]) throw RuntimeError(func + "() got multiple values for argument '" + key + "'");
      values_[i] = &value;
    }
  }
  bool has(size_t i) const { return values_[i] != nullptr && !values_[i]->is_none(); }
  const Value& get(size_t i, const Value& fallback) const { return values_[i] ? *values_[i] : fallback; }
  const Value& get(size_t i) const { return values_[i] ? *values_[i] : missing(); }

 private:
  static const Value& missing() {
    static const Value kMissing = Value::undefined("missing argument");
    return kMissing;
  }

  std::vector<std::string> names_;
  std::vector<const Value*> values_;
};

Value str_value(std::string s) { return Value(Json(std::move(s))); }
Value bool_value(bool b) { return Value(Json(b)); }
Value int_value(int64_t i) { return Value(Json(i)); }

// A list value from the JSON items, as the filters that return sequences produce.
Value list_value(std::vector<Json> items) {
  Json j = Json::array();
  for (auto& i : items) j.push_back(std::move(i));
  return Value(std::move(j));
}

const std::string& require_str(const Value& v, const char* what) {
  if (!v.is_string()) throw RuntimeError(std::string(what) + " must be a string, not " + type_name(v));
  return v.str();
}

// Plain data for storing in lists / dicts or for json.dumps.
Json to_json(const Value& v) {
  if (v.is_json()) return v.json();
  throw RuntimeError("Object of type " + type_name(v) + " is not JSON serializable");
}

// An indentation of n spaces (indent, tojson); absurd widths are errors, not huge allocations.
std::string spaces(int64_t n) {
  if (n > 4096) throw RuntimeError("indent width " + std::to_string(n) + " is too large");
  return std::string(static_cast<size_t>(std::max<int64_t>(n, 0)), ' ');
}

Value make_callable(std::string name, std::function<Value(const CallArgs&)> fn) {
  return Value(std::make_shared<Callable>(Callable{std::move(name), std::move(fn)}));
}

int64_t length_of(const Value& v) {
  if (v.is_undefined()) return 0;
  if (v.is_string()) return static_cast<int64_t>(utf8_length(v.str()));
  if (v.is_list() || v.is_dict()) return static_cast<int64_t>(v.json().size());
  throw RuntimeError("object of type '" + type_name(v) + "' has no len()");
}

// Jinja's attribute paths for filters' `attribute=` arguments: "a.b.0" is x['a']['b'][0].
Value attribute_path(const Value& v, const std::string& path) {
  Value cur = v;
  for (const std::string& part : pystr::split(path, std::string("."), -1)) {
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    cur = subscript(cur, numeric ? int_value(std::stoll(part)) : str_value(part));
  }
  return cur;
}

// ---- filters ----------------------------------------------------------------------------------

using FilterFn = Value (*)(const Value& v, const CallArgs& args);

Value f_abs(const Value& v, const CallArgs& args) {
  Params p("abs", args, {});
  if (v.is_json() && v.json().is_number_float()) return Value(Json(std::fabs(v.json().get<double>())));
  int64_t i = as_int(v, "abs() argument");
  if (i == INT64_MIN) throw RuntimeError("integer overflow");
  return int_value(i < 0 ? -i : i);
}

Value f_capitalize(const Value& v, const CallArgs& args) {
  Params p("capitalize", args, {});
  return str_value(pystr::capitalize(to_str(v)));
}

Value f_default(const Value& v, const CallArgs& args) {
  Params p("default", args, {"default_value", "boolean"});
  bool use_default = v.is_undefined() || (truthy(p.get(1, Value(Json(false)))) && !truthy(v));
  return use_default ? p.get(0, str_value("")) : v;
}

Value f_escape(const Value& v, const CallArgs& args) {
  Params p("escape", args, {});
  std::string out;
  for (char c : to_str(v)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return str_value(out);
}

Value f_first(const Value& v, const CallArgs& args) {
  Params p("first", args, {});
  std::vector<Json> items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return Value(items.front());
}

Value f_last(const Value& v, const CallArgs& args) {
  Params p("last", args, {});
  std::vector<Json> items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return Value(items.back());
}

// Python's float(str) and int(str, base): surrounding whitespace and '_' between digits allowed.
std::string without_digit_underscores(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    bool between_digits = i > 0 && i + 1 < s.size() && std::isalnum(static_cast<unsigned char>(s[i - 1])) &&
                          std::isalnum(static_cast<unsigned char>(s[i + 1]));
    if (s[i] != '_' || !between_digits) out += s[i];
  }
  return out;
}

std::optional<double> parse_py_float(const std::string& text) {
  std::string s = without_digit_underscores(py_strip(text, Value::undefined(""), true, true));
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) return std::nullopt;
  return d;
}

std::optional<int64_t> parse_py_int(const std::string& text, int base) {
  std::string s = without_digit_underscores(py_strip(text, Value::undefined(""), true, true));
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, base);
  if (s.empty() || end != s.c_str() + s.size() || errno != 0) return std::nullopt;
  return v;
}

Value f_float(const Value& v, const CallArgs& args) {
  Params p("float", args, {"default"});
  if (v.is_undefined()) v.json();  // Jinja lets UndefinedError through
  if (v.is_number()) return Value(Json(as_double(v, "float")));
  if (v.is_string())
    if (auto d = parse_py_float(v.str())) return Value(Json(*d));
  return p.get(0, Value(Json(0.0)));
}

// int(): Python's int() on strings (with base) and numbers (truncating), then int(float(s)),
// then the default.
Value f_int(const Value& v, const CallArgs& args) {
  Params p("int", args, {"default", "base"});
  Value fallback = p.get(0, int_value(0));
  if (v.is_undefined()) v.json();
  if (v.is_int() || v.is_bool()) return int_value(as_int(v, "int"));
  std::optional<double> d;
  if (v.is_number()) {
    d = as_double(v, "int");
  } else if (v.is_string()) {
    if (auto i = parse_py_int(v.str(), static_cast<int>(as_int(p.get(1, int_value(10)), "int base")))) return int_value(*i);
    d = parse_py_float(v.str());
  }
  if (!d || !std::isfinite(*d) || std::fabs(*d) > 9.2e18) return fallback;
  return int_value(static_cast<int64_t>(std::trunc(*d)));
}

Value f_indent(const Value& v, const CallArgs& args) {
  Params p("indent", args, {"width", "first", "blank"});
  if (v.is_undefined()) v.json();
  const std::string& text = require_str(v, "indent() input");
  Value width = p.get(0, int_value(4));
  std::string indentation = width.is_string() ? width.str() : spaces(as_int(width, "indent width"));
  bool first = truthy(p.get(1, bool_value(false)));
  bool blank = truthy(p.get(2, bool_value(false)));
  std::vector<std::string> lines = pystr::splitlines(text + "\n");
  check_size(text.size() + lines.size() * (indentation.size() + 1));
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += "\n";
    bool indent_it = i == 0 ? first : blank || !lines[i].empty();
    out += (indent_it ? indentation : "") + lines[i];
  }
  return str_value(out);
}

Value f_items(const Value& v, const CallArgs& args) {
  Params p("items", args, {});
  if (v.is_undefined()) return Value(Json::array());
  if (!v.is_dict()) throw RuntimeError("Can only get item pairs from a mapping.");
  Json out = Json::array();
  for (const auto& [k, val] : v.json().items()) out.push_back(Json::array({k, val}));
  return Value(std::move(out));
}

Value f_join(const Value& v, const CallArgs& args) {
  Params p("join", args, {"d", "attribute"});
  std::string sep = to_str(p.get(0, str_value("")));
  Value attr = p.get(1);
  std::vector<std::string> parts;
  size_t total = 0;
  for (const Json& item : iterate(v)) {
    parts.push_back(to_str(attr.is_string() ? attribute_path(Value(item), attr.str()) : Value(item)));
    total += parts.back().size() + sep.size();
    check_size(total);
  }
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return str_value(out);
}

Value f_length(const Value& v, const CallArgs& args) {
  Params p("length", args, {});
  return int_value(length_of(v));
}

Value f_list(const Value& v, const CallArgs& args) {
  Params p("list", args, {});
  return list_value(iterate(v));
}

Value f_lower(const Value& v, const CallArgs& args) {
  Params p("lower", args, {});
  return str_value(pystr::lower(to_str(v)));
}

Value f_upper(const Value& v, const CallArgs& args) {
  Params p("upper", args, {});
  return str_value(pystr::upper(to_str(v)));
}

// map(attribute='x', default=...) or map('filter', args...).
Value f_map(const Value& v, const CallArgs& args) {
  std::vector<Json> out;
  bool by_attribute = args.positional.empty();
  if (by_attribute) {
    Params p("map", args, {"attribute", "default"});
    std::string attr = require_str(p.get(0), "map attribute");
    for (const Json& item : iterate(v)) {
      Value got = attribute_path(Value(item), attr);
      if (got.is_undefined()) got = p.get(1, got);
      out.push_back(to_json(got));
    }
    return list_value(std::move(out));
  }
  std::string filter = require_str(args.positional[0], "map filter name");
  if (!has_filter(filter)) throw RuntimeError("no filter named '" + filter + "'");
  CallArgs rest{{args.positional.begin() + 1, args.positional.end()}, args.keyword};
  for (const Json& item : iterate(v)) out.push_back(to_json(apply_filter(filter, Value(item), rest)));
  return list_value(std::move(out));
}

// select / reject / selectattr / rejectattr share one implementation.
Value select_impl(const Value& v, const CallArgs& args, bool by_attribute, bool keep_matching) {
  size_t i = 0;
  std::string attr;
  if (by_attribute) {
    if (args.positional.empty()) throw RuntimeError("selectattr/rejectattr need an attribute name");
    attr = require_str(args.positional[i++], "attribute");
  }
  std::string test;
  if (i < args.positional.size()) test = require_str(args.positional[i++], "test name");
  if (!test.empty() && !has_test(test)) throw RuntimeError("no test named '" + test + "'");
  CallArgs rest{{args.positional.begin() + static_cast<std::ptrdiff_t>(i), args.positional.end()}, args.keyword};
  std::vector<Json> out;
  for (const Json& item : iterate(v)) {
    Value subject = by_attribute ? attribute_path(Value(item), attr) : Value(item);
    bool match = test.empty() ? truthy(subject) : apply_test(test, subject, rest);
    if (match == keep_matching) out.push_back(item);
  }
  return list_value(std::move(out));
}
Value f_select(const Value& v, const CallArgs& a) { return select_impl(v, a, false, true); }
Value f_reject(const Value& v, const CallArgs& a) { return select_impl(v, a, false, false); }
Value f_selectattr(const Value& v, const CallArgs& a) { return select_impl(v, a, true, true); }
Value f_rejectattr(const Value& v, const CallArgs& a) { return select_impl(v, a, true, false); }

Value f_replace(const Value& v, const CallArgs& args) {
  Params p("replace", args, {"old", "new", "count"});
  int64_t count = p.has(2) ? as_int(p.get(2), "replace count") : -1;
  return str_value(pystr::replace(to_str(v), to_str(p.get(0)), to_str(p.get(1)), count));
}

Value f_reverse(const Value& v, const CallArgs& args) {
  Params p("reverse", args, {});
  std::vector<Json> items = iterate(v);
  std::reverse(items.begin(), items.end());
  if (!v.is_string()) return list_value(std::move(items));
  std::string out;
  for (const Json& c : items) out += c.get<std::string>();
  return str_value(out);
}

// round(): Python's round() for 'common' (ties to even), or ceil / floor (which give floats).
Value f_round(const Value& v, const CallArgs& args) {
  Params p("round", args, {"precision", "method"});
  double x = as_double(v, "round() argument");
  double scale = std::pow(10.0, static_cast<double>(as_int(p.get(0, int_value(0)), "round precision")));
  std::string method = to_str(p.get(1, str_value("common")));
  double r;
  if (method == "common") r = std::nearbyint(x * scale) / scale;
  else if (method == "ceil") r = std::ceil(x * scale) / scale;
  else if (method == "floor") r = std::floor(x * scale) / scale;
  else throw RuntimeError("method must be common, ceil or floor");
  if ((v.is_int() || v.is_bool()) && method == "common") return int_value(as_int(v, "round"));  // stays an int
  return Value(Json(r));
}

Value f_safe(const Value& v, const CallArgs& args) {
  Params p("safe", args, {});
  return v;
}

// A sort key: the attribute if asked for, lower-cased strings unless case_sensitive.
Value sort_key(const Json& item, const Value& attribute, bool case_sensitive) {
  Value key = attribute.is_string() ? attribute_path(Value(item), attribute.str()) : Value(item);
  if (!case_sensitive && key.is_string()) return str_value(pystr::lower(key.str()));
  return key;
}

Value f_sort(const Value& v, const CallArgs& args) {
  Params p("sort", args, {"reverse", "case_sensitive", "attribute"});
  bool reverse = truthy(p.get(0, bool_value(false)));
  bool case_sensitive = truthy(p.get(1, bool_value(false)));
  Value attribute = p.get(2);
  std::vector<Json> items = iterate(v);
  std::stable_sort(items.begin(), items.end(), [&](const Json& a, const Json& b) {
    int c = compare(sort_key(a, attribute, case_sensitive), sort_key(b, attribute, case_sensitive), "<");
    return reverse ? c > 0 : c < 0;
  });
  return list_value(std::move(items));
}

Value f_unique(const Value& v, const CallArgs& args) {
  Params p("unique", args, {"case_sensitive", "attribute"});
  bool case_sensitive = truthy(p.get(0, bool_value(false)));
  Value attribute = p.get(1);
  std::vector<Json> out;
  std::vector<Value> seen;
  for (const Json& item : iterate(v)) {
    Value key = sort_key(item, attribute, case_sensitive);
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equal(s, key); })) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return list_value(std::move(out));
}

Value f_string(const Value& v, const CallArgs& args) {
  Params p("string", args, {});
  return str_value(to_str(v));
}

Value f_sum(const Value& v, const CallArgs& args) {
  Params p("sum", args, {"attribute", "start"});
  Value attribute = p.get(0);
  Value total = p.get(1, int_value(0));
  for (const Json& item : iterate(v)) {
    Value x = attribute.is_string() ? attribute_path(Value(item), attribute.str()) : Value(item);
    if (total.is_int() && x.is_int())
      total = int_value(as_int(total, "sum") + as_int(x, "sum"));
    else
      total = Value(Json(as_double(total, "sum") + as_double(x, "sum")));
  }
  return total;
}

// Jinja's title filter capitalizes each piece between runs of spaces, '-', and opening brackets.
Value f_title(const Value& v, const CallArgs& args) {
  Params p("title", args, {});
  std::u32string u = decode_utf8(to_str(v));
  std::string out;
  size_t i = 0;
  auto is_sep = [](char32_t c) { return is_py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<'; };
  while (i < u.size()) {
    size_t b = i;
    bool sep = is_sep(u[i]);
    while (i < u.size() && is_sep(u[i]) == sep) ++i;
    std::string piece = encode_utf8(std::u32string_view(u).substr(b, i - b));
    out += sep ? piece : pystr::capitalize(piece);
  }
  return str_value(out);
}

// transformers replaces Jinja's tojson: json.dumps(x, ensure_ascii=False, indent=None,
// separators=None, sort_keys=False), i.e. no HTML escaping and ", " / ": " separators.
Value f_tojson(const Value& v, const CallArgs& args) {
  Params p("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonStyle style;
  style.ensure_ascii = truthy(p.get(0, bool_value(false)));
  if (p.has(1)) {
    Value indent = p.get(1);
    style.indent = indent.is_string() ? indent.str() : spaces(as_int(indent, "indent"));
    style.item_sep = ",";  // json.dumps' default separators change when indenting
  }
  if (p.has(2)) {
    const Json& seps = p.get(2).json();
    if (!seps.is_array() || seps.size() != 2 || !seps[0].is_string() || !seps[1].is_string())
      throw RuntimeError("tojson separators must be a pair of strings");
    style.item_sep = seps[0].get<std::string>();
    style.key_sep = seps[1].get<std::string>();
  }
  style.sort_keys = truthy(p.get(3, bool_value(false)));
  return str_value(dump_json(to_json(v), style));
}

Value f_trim(const Value& v, const CallArgs& args) {
  Params p("trim", args, {"chars"});
  return str_value(py_strip(to_str(v), p.get(0), true, true));
}

Value f_attr(const Value& v, const CallArgs& args) {
  Params p("attr", args, {"name"});
  return get_attribute(v, require_str(p.get(0), "attr name"));
}

const std::unordered_map<std::string, FilterFn>& filters() {
  static const std::unordered_map<std::string, FilterFn> table = {
      {"abs", f_abs},         {"capitalize", f_capitalize}, {"count", f_length},
      {"d", f_default},       {"default", f_default},       {"e", f_escape},
      {"escape", f_escape},   {"first", f_first},           {"float", f_float},
      {"indent", f_indent},   {"int", f_int},               {"items", f_items},
      {"join", f_join},       {"last", f_last},             {"length", f_length},
      {"list", f_list},       {"lower", f_lower},           {"map", f_map},
      {"reject", f_reject},   {"rejectattr", f_rejectattr}, {"replace", f_replace},
      {"reverse", f_reverse}, {"round", f_round},           {"safe", f_safe},
      {"select", f_select},   {"selectattr", f_selectattr}, {"sort", f_sort},
      {"string", f_string},   {"sum", f_sum},               {"title", f_title},
      {"tojson", f_tojson},   {"trim", f_trim},             {"unique", f_unique},
      {"upper", f_upper},     {"attr", f_attr},
  };
  return table;
}

// ---- tests ------------------------------------------------------------------------------------

using TestFn = bool (*)(const Value& v, const CallArgs& args);

const Value& only_arg(const char* test, const CallArgs& args) {
  if (args.positional.size() != 1 || !args.keyword.empty())
    throw RuntimeError(std::string("test '") + test + "' takes exactly one argument");
  return args.positional[0];
}

// Python's `value % 2` (floored, floats allowed), which the odd / even tests compare.
double python_mod2(const Value& v) {
  if (v.is_int() || v.is_bool()) {
    int64_t m = as_int(v, "odd/even test") % 2;
    return static_cast<double>(m < 0 ? m + 2 : m);
  }
  double m = std::fmod(as_double(v, "odd/even test"), 2.0);
  return m < 0 ? m + 2.0 : m;
}

bool is_plain(const Value& v, Json::value_t t) { return v.is_json() && v.json().type() == t; }

const std::unordered_map<std::string, TestFn>& tests() {
  static const std::unordered_map<std::string, TestFn> table = {
      {"defined", [](const Value& v, const CallArgs&) { return !v.is_undefined(); }},
      {"undefined", [](const Value& v, const CallArgs&) { return v.is_undefined(); }},
      {"none", [](const Value& v, const CallArgs&) { return v.is_none(); }},
      {"boolean", [](const Value& v, const CallArgs&) { return v.is_bool(); }},
      {"true", [](const Value& v, const CallArgs&) { return v.is_bool() && v.json().get<bool>(); }},
      {"false", [](const Value& v, const CallArgs&) { return v.is_bool() && !v.json().get<bool>(); }},
      {"integer", [](const Value& v, const CallArgs&) { return v.is_int(); }},
      {"float", [](const Value& v, const CallArgs&) { return is_plain(v, Json::value_t::number_float); }},
      {"number", [](const Value& v, const CallArgs&) { return v.is_number(); }},  // bool is a Number
      {"string", [](const Value& v, const CallArgs&) { return v.is_string(); }},
      {"mapping", [](const Value& v, const CallArgs&) { return v.is_dict(); }},
      {"sequence",  // Undefined counts: it has __len__ and __getitem__
       [](const Value& v, const CallArgs&) { return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict(); }},
      {"iterable",
       [](const Value& v, const CallArgs&) { return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict(); }},
      {"callable", [](const Value& v, const CallArgs&) { return v.is_callable(); }},
      {"lower", [](const Value& v, const CallArgs&) { return pystr::is_lower(to_str(v)); }},
      {"upper", [](const Value& v, const CallArgs&) { return pystr::is_upper(to_str(v)); }},
      {"odd", [](const Value& v, const CallArgs&) { return python_mod2(v) == 1.0; }},
      {"even", [](const Value& v, const CallArgs&) { return python_mod2(v) == 0.0; }},
      {"divisibleby",
       [](const Value& v, const CallArgs& a) {
         int64_t d = as_int(only_arg("divisibleby", a), "divisibleby argument");
         if (d == 0) throw RuntimeError("integer division or modulo by zero");
         return as_int(v, "divisibleby test") % d == 0;
       }},
      {"sameas",
       [](const Value& v, const CallArgs& a) {
         const Value& o = only_arg("sameas", a);  // Python `is`: identity for objects, value for singletons
         if (v.is_object() || o.is_object()) return v.is_object() && o.is_object() && v.object_ptr() == o.object_ptr();
         return v.is_json() && o.is_json() && v.json().type() == o.json().type() && equal(v, o);
       }},
      {"in", [](const Value& v, const CallArgs& a) { return contains(only_arg("in", a), v); }},
      {"eq", [](const Value& v, const CallArgs& a) { return equal(v, only_arg("eq", a)); }},
      {"ne", [](const Value& v, const CallArgs& a) { return !equal(v, only_arg("ne", a)); }},
      {"lt", [](const Value& v, const CallArgs& a) { return compare(v, only_arg("lt", a), "<") < 0; }},
      {"le", [](const Value& v, const CallArgs& a) { return compare(v, only_arg("le", a), "<=") <= 0; }},
      {"gt", [](const Value& v, const CallArgs& a) { return compare(v, only_arg("gt", a), ">") > 0; }},
      {"ge", [](const Value& v, const CallArgs& a) { return compare(v, only_arg("ge", a), ">=") >= 0; }},
  };
  return table;
}

// Jinja's aliases of the comparison tests.
const std::unordered_map<std::string, std::string>& test_aliases() {
  static const std::unordered_map<std::string, std::string> table = {
      {"==", "eq"}, {"equalto", "eq"}, {"!=", "ne"},        {"<", "lt"}, {"lessthan", "lt"},
      {"<=", "le"}, {">", "gt"},       {"greaterthan", "gt"}, {">=", "ge"}};
  return table;
}

const std::string& canonical_test(const std::string& name) {
  auto it = test_aliases().find(name);
  return it == test_aliases().end() ? name : it->second;
}

// ---- methods ----------------------------------------------------------------------------------

Value string_method(const std::string& s, const std::string& name) {
  using Fn = std::function<Value(const CallArgs&)>;
  Fn fn;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool left = name != "rstrip", right = name != "lstrip";
    fn = [s, name, left, right](const CallArgs& a) {
      Params p(name, a, {"chars"});
      return str_value(py_strip(s, p.get(0), left, right));
    };
  } else if (name == "split") {
    fn = [s](const CallArgs& a) {
      Params p("split", a, {"sep", "maxsplit"});
      std::optional<std::string> sep;
      if (p.has(0)) sep = require_str(p.get(0), "split separator");
      std::vector<Json> parts;
      for (auto& part : pystr::split(s, sep, p.has(1) ? as_int(p.get(1), "maxsplit") : -1)) parts.emplace_back(part);
      return list_value(std::move(parts));
    };
  } else if (name == "splitlines") {
    fn = [s](const CallArgs& a) {
      Params p("splitlines", a, {});
      std::vector<Json> parts;
      for (auto& part : pystr::splitlines(s)) parts.emplace_back(part);
      return list_value(std::move(parts));
    };
  } else if (name == "startswith" || name == "endswith") {
    bool start = name == "startswith";
    fn = [s, name, start](const CallArgs& a) {
      Params p(name, a, {"prefix"});
      const Value& what = p.get(0);
      std::vector<Json> options = what.is_list() ? iterate(what) : std::vector<Json>{Json(require_str(what, name.c_str()))};
      for (const Json& o : options) {
        if (!o.is_string()) throw RuntimeError(name + " arg must be str or a tuple of str, not " + type_name(Value(o)));
        const std::string& x = o.get_ref<const std::string&>();
        bool hit = x.size() <= s.size() && (start ? s.compare(0, x.size(), x) == 0
                                                   : s.compare(s.size() - x.size(), x.size(), x) == 0);
        if (hit) return bool_value(true);
      }
      return bool_value(false);
    };
  } else if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    fn = [s, name](const CallArgs& a) {
      Params p(name, a, {});
      if (name == "upper") return str_value(pystr::upper(s));
      if (name == "lower") return str_value(pystr::lower(s));
      if (name == "title") return str_value(pystr::title(s));
      return str_value(pystr::capitalize(s));
    };
  } else if (name == "replace") {
    fn = [s](const CallArgs& a) {
      Params p("replace", a, {"old", "new", "count"});
      int64_t count = p.has(2) ? as_int(p.get(2), "replace count") : -1;
      return str_value(pystr::replace(s, require_str(p.get(0), "replace old"), require_str(p.get(1), "replace new"), count));
    };
  } else if (name == "find" || name == "rfind") {
    bool right = name == "rfind";
    fn = [s, name, right](const CallArgs& a) {
      Params p(name, a, {"sub"});
      return int_value(pystr::find(s, require_str(p.get(0), "find argument"), right));
    };
  } else if (name == "count") {
    fn = [s](const CallArgs& a) {
      Params p("count", a, {"sub"});
      return int_value(pystr::count(s, require_str(p.get(0), "count argument")));
    };
  } else if (name == "join") {
    fn = [s](const CallArgs& a) {
      Params p("join", a, {"iterable"});
      std::string out;
      bool first = true;
      for (const Json& item : iterate(p.get(0))) {
        if (!item.is_string()) throw RuntimeError("sequence item: expected str instance, " + type_name(Value(item)) + " found");
        out += (first ? "" : s) + item.get<std::string>();
        check_size(out.size());
        first = false;
      }
      return str_value(out);
    };
  } else if (name == "isspace" || name == "isdigit" || name == "islower" || name == "isupper") {
    fn = [s, name](const CallArgs& a) {
      Params p(name, a, {});
      std::u32string u = decode_utf8(s);
      if (name == "islower") return bool_value(pystr::is_lower(s));
      if (name == "isupper") return bool_value(pystr::is_upper(s));
      bool digit = name == "isdigit";
      return bool_value(!u.empty() && std::all_of(u.begin(), u.end(), [digit](char32_t c) {
        return digit ? c >= '0' && c <= '9' : is_py_space(c);
      }));
    };
  } else {
    return Value::undefined("'str object' has no attribute '" + name + "'");
  }
  return make_callable("str." + name, std::move(fn));
}

Value dict_method(const Json& d, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    return make_callable("dict." + name, [d, name](const CallArgs& a) {
      Params p(name, a, {});
      Json out = Json::array();
      for (const auto& [k, v] : d.items())
        out.push_back(name == "items" ? Json::array({k, v}) : name == "keys" ? Json(k) : v);
      return Value(std::move(out));
    });
  }
  if (name == "get") {
    return make_callable("dict.get", [d](const CallArgs& a) {
      Params p("get", a, {"key", "default"});
      Value key = p.get(0);
      if (key.is_string()) {
        auto it = d.find(key.str());
        if (it != d.end()) return Value(*it);
      }
      return p.get(1, Value(Json(nullptr)));
    });
  }
  return Value::undefined("'dict object' has no attribute '" + name + "'");
}

Value list_method(const Json& list, const std::string& name) {
  if (name != "count" && name != "index") return Value::undefined("'list object' has no attribute '" + name + "'");
  return make_callable("list." + name, [list, name](const CallArgs& a) {
    Params p(name, a, {"value"});
    int64_t count = 0;
    for (size_t i = 0; i < list.size(); ++i) {
      if (!equal(Value(list[i]), p.get(0))) continue;
      if (name == "index") return int_value(static_cast<int64_t>(i));
      ++count;
    }
    if (name == "index") throw RuntimeError(to_str(p.get(0)) + " is not in list");
    return int_value(count);
  });
}

// Methods that would change a list or dict: the immutable sandbox transformers uses refuses them.
bool is_mutating_method(const std::string& name) {
  static const char* kNames[] = {"append", "extend", "insert", "pop",    "remove",     "clear",  "sort",
                                 "reverse", "update", "setdefault", "popitem", "__setitem__"};
  return std::any_of(std::begin(kNames), std::end(kNames), [&](const char* n) { return name == n; });
}

}  // namespace

// ---- public entry points ------------------------------------------------------------------------

bool has_filter(const std::string& name) { return filters().count(name) > 0; }
bool has_test(const std::string& name) { return tests().count(canonical_test(name)) > 0; }

Value apply_filter(const std::string& name, const Value& subject, const CallArgs& args) {
  auto it = filters().find(name);
  if (it == filters().end()) throw RuntimeError("no filter named '" + name + "'");
  return it->second(subject, args);
}

bool apply_test(const std::string& name, const Value& subject, const CallArgs& args) {
  auto it = tests().find(canonical_test(name));
  if (it == tests().end()) throw RuntimeError("no test named '" + name + "'");
  return it->second(subject, args);
}

Value get_method(const Value& receiver, const std::string& name) {
  if ((receiver.is_list() || receiver.is_dict()) && is_mutating_method(name))
    return make_callable(name, [name, t = type_name(receiver)](const CallArgs&) -> Value {
      throw RuntimeError("'" + t + "." + name + "' is not allowed: the template sandbox is immutable");
    });
  if (receiver.is_json()) charge_work(approx_bytes(receiver.json()));  // the bound method holds a copy of it
  if (receiver.is_string()) return string_method(receiver.str(), name);
  if (receiver.is_dict()) return dict_method(receiver.json(), name);
  if (receiver.is_list()) return list_method(receiver.json(), name);
  return Value::undefined("'" + type_name(receiver) + " object' has no attribute '" + name + "'");
}

Value get_attribute(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) obj.json();  // throws "'x' is undefined"
  if (!name.empty() && name[0] == '_') return Value::undefined("access to attribute '" + name + "' is unsafe");
  if (obj.is_object()) {
    const auto& attrs = obj.object().attrs;
    auto it = attrs.find(name);
    if (it != attrs.end()) return it->second;
    return Value::undefined("'" + obj.object().type_name + " object' has no attribute '" + name + "'");
  }
  Value method = get_method(obj, name);
  if (!method.is_undefined() || !obj.is_dict()) return method;
  auto it = obj.json().find(name);
  if (it != obj.json().end()) return Value(*it);
  return Value::undefined("'dict object' has no attribute '" + name + "'");
}

Value subscript(const Value& obj, const Value& key) {
  if (obj.is_undefined()) obj.json();
  if (obj.is_object()) return key.is_string() ? get_attribute(obj, key.str()) : Value::undefined("no such item");
  if (!obj.is_json()) return Value::undefined("'" + type_name(obj) + "' object is not subscriptable");
  const Json& j = obj.json();
  std::string missing = "'" + type_name(obj) + " object' has no element " + (key.is_json() ? repr(key.json()) : "?");
  if (j.is_object()) {
    if (key.is_string()) {
      auto it = j.find(key.str());
      if (it != j.end()) return Value(*it);
      return Value::undefined("'dict object' has no attribute '" + key.str() + "'");
    }
    return Value::undefined(missing);
  }
  if ((j.is_array() || j.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = as_int(key, "index");
    std::u32string chars;
    if (j.is_string()) chars = decode_utf8(j.get_ref<const std::string&>());
    int64_t n = static_cast<int64_t>(j.is_array() ? j.size() : chars.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined(missing);
    if (j.is_array()) return Value(j[static_cast<size_t>(i)]);
    return str_value(encode_utf8(std::u32string(1, chars[static_cast<size_t>(i)])));
  }
  if (key.is_string()) return get_method(obj, key.str());  // Jinja falls back to getattr
  return Value::undefined(missing);
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  // Jinja compiles slices to a plain Python subscript, so misuse raises instead of giving Undefined.
  if (obj.is_undefined()) obj.json();
  if (obj.is_dict()) throw RuntimeError("unhashable type: 'slice'");
  if (!obj.is_list() && !obj.is_string()) throw RuntimeError("'" + type_name(obj) + "' object is not subscriptable");
  auto opt_int = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    return as_int(v, what);
  };
  int64_t st = opt_int(step, "slice step").value_or(1);
  if (st == 0) throw RuntimeError("slice step cannot be zero");
  // A string is sliced by code point, without a JSON node per character.
  std::u32string chars;
  std::vector<Json> items;
  if (obj.is_string())
    chars = decode_utf8(obj.str());
  else
    items = iterate(obj);
  const int64_t n = static_cast<int64_t>(obj.is_string() ? chars.size() : items.size());
  // CPython's PySlice_AdjustIndices.
  auto adjust = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) {
      x += n;
      if (x < 0) x = st < 0 ? -1 : 0;
    } else if (x >= n) {
      x = st < 0 ? n - 1 : n;
    }
    return x;
  };
  int64_t b = adjust(opt_int(start, "slice start"), st < 0 ? n - 1 : 0);
  int64_t e = adjust(opt_int(stop, "slice stop"), st < 0 ? -1 : n);
  std::vector<Json> out;
  std::u32string out_chars;
  for (int64_t i = b; st > 0 ? i < e : i > e;) {
    if (obj.is_list())
      out.push_back(items[static_cast<size_t>(i)]);
    else
      out_chars.push_back(chars[static_cast<size_t>(i)]);
    if (__builtin_add_overflow(i, st, &i)) break;  // a huge step jumps past the end
  }
  if (obj.is_list()) return list_value(std::move(out));
  return str_value(encode_utf8(out_chars));
}

Value get_global_function(const std::string& name) {
  if (name == "range") {
    return make_callable("range", [](const CallArgs& a) {
      if (!a.keyword.empty() || a.positional.empty() || a.positional.size() > 3)
        throw RuntimeError("range expects 1 to 3 integer arguments");
      int64_t start = 0, stop, step = 1;
      if (a.positional.size() == 1) {
        stop = as_int(a.positional[0], "range argument");
      } else {
        start = as_int(a.positional[0], "range argument");
        stop = as_int(a.positional[1], "range argument");
        if (a.positional.size() == 3) step = as_int(a.positional[2], "range argument");
      }
      if (step == 0) throw RuntimeError("range() arg 3 must not be zero");
      // In 128 bits: range(9223372036854775807) must not overflow on the way to "too big".
      const __int128 lo = start, hi = stop, st = step;
      const __int128 wide = st > 0 ? (hi > lo ? (hi - lo + st - 1) / st : 0) : (lo > hi ? (lo - hi - st - 1) / -st : 0);
      if (wide > kMaxRange)
        throw RuntimeError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (" +
                           std::to_string(kMaxRange) + ").");
      const auto count = static_cast<int64_t>(wide);
      if (count > kMaxRange)
        throw RuntimeError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (" +
                           std::to_string(kMaxRange) + ").");
      Json out = Json::array();
      for (int64_t i = 0; i < count; ++i) out.push_back(start + i * step);
      return Value(std::move(out));
    });
  }
  if (name == "namespace") {
    return make_callable("namespace", [](const CallArgs& a) {
      auto ns = std::make_shared<Object>();
      ns->type_name = "Namespace";
      ns->assignable = true;
      if (a.positional.size() > 1) throw RuntimeError("namespace() takes at most one positional argument");
      if (!a.positional.empty()) {
        if (!a.positional[0].is_dict()) throw RuntimeError("namespace() positional argument must be a mapping");
        for (const auto& [k, v] : a.positional[0].json().items()) store_attribute(*ns, k, Value(v));
      }
      for (const auto& [k, v] : a.keyword) store_attribute(*ns, k, v);
      return Value(ns);
    });
  }
  if (name == "dict") {
    return make_callable("dict", [](const CallArgs& a) {
      if (!a.positional.empty()) throw RuntimeError("dict() in templates takes keyword arguments only");
      Json out = Json::object();
      for (const auto& [k, v] : a.keyword) {
        check_nesting(to_json(v));
        out[k] = to_json(v);
      }
      return Value(std::move(out));
    });
  }
  if (name == "raise_exception") {
    // transformers' helper: the template's own error message, shown to the user as it is.
    return make_callable("raise_exception", [](const CallArgs& a) -> Value {
      Params p("raise_exception", a, {"message"});
      throw Error(to_str(p.get(0)));
    });
  }
  if (name == "strftime_now") {
    return make_callable("strftime_now", [](const CallArgs& a) {
      Params p("strftime_now", a, {"format"});
      const std::string& fmt = require_str(p.get(0), "strftime_now format");
      std::time_t now = std::time(nullptr);
      std::tm local{};
      localtime_r(&now, &local);
      std::string buf(256 + fmt.size() * 8, '\0');
      size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &local);
      if (n == 0 && !fmt.empty()) throw RuntimeError("strftime_now: format produced no output");
      buf.resize(n);
      return str_value(buf);
    });
  }
  return Value::undefined("'" + name + "' is undefined");
}

}  // namespace phinfer::jinja
