#pragma once
// Built-in filters, tests, methods and global functions, with the behaviour of Jinja2 3.1 and of
// the Python methods they stand for, plus transformers' additions (tojson without HTML escaping,
// raise_exception, strftime_now).
#include <string>

#include "chat/jinja_value.h"

namespace phinfer::jinja {

bool has_filter(const std::string& name);
bool has_test(const std::string& name);

// `subject | name(args)`; throws RuntimeError for bad arguments.
Value apply_filter(const std::string& name, const Value& subject, const CallArgs& args);
// `subject is name(args)`.
bool apply_test(const std::string& name, const Value& subject, const CallArgs& args);

// `receiver.name`, looked up as a Python method (str.strip, dict.items, ...). Returns Undefined
// (with a hint) when there is no such method.
Value get_method(const Value& receiver, const std::string& name);

// Global functions visible to every template: range, namespace, dict, raise_exception,
// strftime_now. Returns Undefined for other names.
Value get_global_function(const std::string& name);

// `obj.name` as Jinja resolves it: a Python method of the value first, then a dict key
// (message.content), then Undefined. Names starting with '_' are hidden (Jinja's sandbox).
Value get_attribute(const Value& obj, const std::string& name);

// Python's subscript: `obj[key]` for lists, strings (negative indices wrap) and dicts; Undefined
// when missing. Slicing with Python semantics (step may be negative).
Value subscript(const Value& obj, const Value& key);
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

}  // namespace phinfer::jinja
