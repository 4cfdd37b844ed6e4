#pragma once
// Runtime values of the Jinja subset and the Python behaviour they must copy (str(), repr(),
// json.dumps, truthiness, ==, <), because chat templates are written against Python Jinja2 and
// the rendered text has to match it byte for byte.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat/json_nesting.h"

namespace phinfer::jinja {

// Ordered: Python dicts keep insertion order, and tojson / iteration must show keys in that order.
using Json = nlohmann::ordered_json;

// Raised by operations that fail at render time (type errors, undefined use, bad arguments). The
// evaluator catches it at the innermost expression and rethrows phinfer::Error with the position.
struct RuntimeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Value;

// Jinja's Undefined: what a missing variable, key or attribute evaluates to. It is falsy, renders
// as "" and iterates as empty; most other uses fail with `hint` ("'x' is undefined").
struct Undefined {
  std::string hint;
};

// A mutable object with attributes: namespace() (assignable with `set ns.x = ...`) and the loop
// variable (read-only). Held by shared_ptr, so copies alias, as Python references do.
//
// No reference cycles: plain data (Json) is immutable and copied by value, and an Object's
// attributes may hold plain data and functions but never another Object (store_attribute()
// refuses it). So no value can reach itself (`set ns.self = ns`), nor nest Objects deeper than
// one level, and reference counting frees everything a render made.
struct Object {
  std::string type_name;  // "Namespace" or "LoopContext", for messages
  bool assignable = false;
  std::map<std::string, Value> attrs;
};

// Arguments of a call, a filter or a test (the filter's / test's subject is not included).
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Something callable from a template: a global function, a bound method, a macro.
struct Callable {
  std::string name;
  std::function<Value(const CallArgs&)> fn;
};

// Copies of a Value share its plain data (immutable), so passing values around costs nothing;
// creating one from Json is charged to the render's work budget (see WorkBudget).
class Value {
 public:
  Value() : v_(Undefined{"value is undefined"}) {}
  Value(Json j);  // NOLINT: values are built from JSON everywhere
  Value(std::shared_ptr<Object> o) : v_(std::move(o)) {}
  Value(std::shared_ptr<Callable> c) : v_(std::move(c)) {}
  static Value undefined(std::string hint) {
    Value v;
    v.v_ = Undefined{std::move(hint)};
    return v;
  }

  bool is_undefined() const { return std::holds_alternative<Undefined>(v_); }
  bool is_json() const { return std::holds_alternative<std::shared_ptr<const Json>>(v_); }
  bool is_object() const { return std::holds_alternative<std::shared_ptr<Object>>(v_); }
  bool is_callable() const { return std::holds_alternative<std::shared_ptr<Callable>>(v_); }

  // Plain data (None, bool, numbers, strings, lists, dicts). Throws RuntimeError otherwise: for
  // Undefined with its hint, so "'x' is undefined" reaches the user.
  const Json& json() const;
  const Object& object() const { return *std::get<std::shared_ptr<Object>>(v_); }
  const std::shared_ptr<Object>& object_ptr() const { return std::get<std::shared_ptr<Object>>(v_); }
  const Callable& callable() const { return *std::get<std::shared_ptr<Callable>>(v_); }
  const std::string& undefined_hint() const { return std::get<Undefined>(v_).hint; }

  // Convenience predicates on the JSON kinds (false for non-JSON values).
  bool is_none() const { return is_json() && json().is_null(); }
  bool is_string() const { return is_json() && json().is_string(); }
  bool is_list() const { return is_json() && json().is_array(); }
  bool is_dict() const { return is_json() && json().is_object(); }
  bool is_bool() const { return is_json() && json().is_boolean(); }
  bool is_int() const { return is_json() && json().is_number_integer(); }
  bool is_number() const { return is_json() && (json().is_number() || json().is_boolean()); }
  const std::string& str() const { return json().get_ref<const std::string&>(); }

 private:
  std::variant<Undefined, std::shared_ptr<const Json>, std::shared_ptr<Object>, std::shared_ptr<Callable>> v_;
};

// Sets an Object's attribute; refuses an Object as the value (see Object: no cycles).
void store_attribute(Object& target, const std::string& name, Value value);

// ---- limits ---------------------------------------------------------------------------------
// Values a template builds are bounded, so that no template can exhaust memory or, through deep
// nesting, the stack of the recursive functions below.

constexpr size_t kMaxTextBytes = size_t{16} << 20;  // any string or list built while rendering
constexpr int kMaxValueDepth = kMaxJsonNesting;     // nesting of lists / dicts built by a template
// Bytes a render may build, copy or scan in all: bounds its time (to seconds), which the step
// limit alone does not (a step can copy a 16 MB string). Real templates use a few times the size
// of the messages, which rarely reaches a megabyte.
constexpr uint64_t kMaxWorkBytes = uint64_t{256} << 20;

void check_size(size_t bytes);      // throws RuntimeError above kMaxTextBytes
void check_nesting(const Json& j);  // throws RuntimeError if j is nested kMaxValueDepth deep
size_t approx_bytes(const Json& j);  // memory a value takes, roughly, for the size limit

// The work allowance of one render on this thread while it lives. Values (created from Json),
// iteration, output, UTF-8 decoding, comparisons and bound methods charge it as they build, copy
// or scan bytes; past kMaxWorkBytes charge_work() throws. Outside a render nothing is counted.
class WorkBudget {
 public:
  WorkBudget();
  ~WorkBudget();
  WorkBudget(const WorkBudget&) = delete;
  WorkBudget& operator=(const WorkBudget&) = delete;

 private:
  friend void charge_work(uint64_t bytes);
  uint64_t used_ = 0;
  WorkBudget* previous_;
};
void charge_work(uint64_t bytes);     // counts against the current render's budget, if any
// A value built during a render: charges its approx_bytes and holds it to kMaxTextBytes (values
// given to the render, built before it, are not held to it: a long conversation may exceed it).
void charge_value(const Json& value);
void charge_scan(const Json& a, const Json& b);  // a comparison of a and b

// ---- Python semantics -------------------------------------------------------------------------

std::string type_name(const Value& v);  // Python's type name: 'str', 'int', 'dict', 'NoneType', ...
std::string to_str(const Value& v);     // str(v); Undefined renders as ""
std::string repr(const Json& j);        // repr(v) of plain data
std::string format_float(double d);     // repr(float): shortest round-trip, Python's layout
bool truthy(const Value& v);
bool equal(const Value& a, const Value& b);  // Python ==, with 1 == 1.0 == True
int compare(const Value& a, const Value& b, const std::string& op);  // <0, 0, >0 for <,<=,>,>=
bool contains(const Value& container, const Value& item);  // Python `item in container`

// Iterates like Python's iter(): list items, dict keys, string characters; Undefined is empty.
std::vector<Json> iterate(const Value& v);

// Integer view of an int or bool (Python's bool is an int); throws for anything else.
int64_t as_int(const Value& v, const char* what);
double as_double(const Value& v, const char* what);

// json.dumps(v, ensure_ascii=..., indent=..., separators=..., sort_keys=...) byte for byte.
struct JsonStyle {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // nullopt: one line; else the text of one indent level
  std::string item_sep = ", ";
  std::string key_sep = ": ";
  bool sort_keys = false;
};
std::string dump_json(const Json& j, const JsonStyle& style);

// ---- Unicode helpers (Python strings index by code point) -------------------------------------

// Decodes UTF-8; an invalid byte b maps to U+DC00+b (Python's surrogateescape) so that encoding
// the result gives the original bytes back.
std::u32string decode_utf8(const std::string& s);
std::string encode_utf8(std::u32string_view s);
size_t utf8_length(const std::string& s);
bool is_py_space(char32_t c);  // Python str.isspace()
std::string py_strip(const std::string& s, const Value& chars, bool left, bool right);

}  // namespace phinfer::jinja
