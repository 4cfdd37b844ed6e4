#include "grammar/json_schema.h"

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "phinfer/error.h"

namespace phinfer::grammar {
namespace {

using nlohmann::json;

// Rules every JSON grammar uses. White space: at most 8 characters wherever JSON allows it.
constexpr const char* kCommonRules = R"(ws ::= [ \t\n]{0,8}
json-char ::= [^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" json-hex-unit)
json-hex-unit ::= [0-9a-cA-CefEF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}
json-string ::= "\"" json-char* "\""
json-int ::= "-"? json-uint
json-uint ::= "0" | [1-9] [0-9]{0,15}
json-number ::= "-"? json-unumber
json-unumber ::= json-uint ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?
json-bool ::= "true" | "false"
json-null ::= "null"
json-value ::= json-object | json-array | json-string | json-number | json-bool | json-null
json-object ::= "{" ws (json-member ("," ws json-member)*)? "}"
json-member ::= json-string ws ":" ws json-value ws
json-array ::= "[" ws (json-value ws ("," ws json-value ws)*)? "]"
)";

// Keywords that only describe (no effect on validity).
const std::set<std::string> kAnnotations = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
                                            "deprecated", "readOnly", "writeOnly", "$defs", "definitions",
                                            "contentMediaType", "strict"};

// A GBNF literal of these bytes (quotes and escapes added).
std::string literal(const std::string& bytes) {
  static const char* hex = "0123456789ABCDEF";
  std::string out = "\"";
  for (unsigned char c : bytes) {
    if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
    else if (c < 0x20 || c == 0x7F) out += "\\x", out += hex[c >> 4], out += hex[c & 15];
    else out += static_cast<char>(c);
  }
  return out + "\"";
}

std::string digits_of(uint64_t v) { return std::to_string(v); }

// GBNF alternatives: "a | b | c".
std::string join_alternatives(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += " | ";
    out += p;
  }
  return out;
}

// Non-negative integers in [lo, hi] written without leading zeros, as a GBNF expression.
std::string same_length_range(const std::string& lo, const std::string& hi) {
  if (lo == hi) return literal(lo);
  if (lo.size() == 1) return std::string("[") + lo[0] + "-" + hi[0] + "]";
  if (lo[0] == hi[0]) return literal(lo.substr(0, 1)) + " (" + same_length_range(lo.substr(1), hi.substr(1)) + ")";
  const size_t rest = lo.size() - 1;
  std::vector<std::string> parts;
  char first_full = lo[0];
  if (lo.substr(1) != std::string(rest, '0')) {
    parts.push_back(literal(lo.substr(0, 1)) + " (" + same_length_range(lo.substr(1), std::string(rest, '9')) + ")");
    ++first_full;
  }
  char last_full = hi[0];
  const bool hi_partial = hi.substr(1) != std::string(rest, '9');
  if (hi_partial) --last_full;
  if (first_full <= last_full)
    parts.push_back(std::string("[") + first_full + "-" + last_full + "] [0-9]{" + std::to_string(rest) + "}");
  if (hi_partial) parts.push_back(literal(hi.substr(0, 1)) + " (" + same_length_range(std::string(rest, '0'), hi.substr(1)) + ")");
  return join_alternatives(parts);
}

std::string uint_range(uint64_t lo, uint64_t hi) {
  std::vector<std::string> parts;
  uint64_t start = lo;
  for (uint64_t len_max = 9; start <= hi; len_max = len_max * 10 + 9) {
    if (start > len_max) continue;
    const uint64_t end = std::min(hi, len_max);
    std::string part = "(";
    part += same_length_range(digits_of(start), digits_of(end));
    part += ")";
    parts.push_back(std::move(part));
    start = end + 1;
    if (len_max >= 999999999999999999ull) break;
  }
  return "(" + join_alternatives(parts) + ")";
}

constexpr int64_t kIntLimit = 9999999999999999;  // 16 digits, as json-uint

class SchemaCompiler {
 public:
  // `rule_prefix` keeps the rules of several schemas in one grammar apart.
  explicit SchemaCompiler(const json& root, std::string rule_prefix = "s-")
      : root_(root), rule_prefix_(std::move(rule_prefix)) {}

  // The schema's rules, its value being `root_rule`, without the common JSON rules.
  std::string compile_rules(const std::string& root_rule) {
    const std::string top = visit(root_, "", 0);
    std::string out = root_rule + " ::= " + top + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    throw Error("JSON schema at " + (path.empty() ? std::string("/") : path) + ": " + what);
  }

  std::string new_rule(const std::string& base, std::string body) {
    if (rules_.size() > 20000) fail("", "the schema makes more than 20000 grammar rules");
    std::string name;
    for (char c : base) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
    if (name.empty()) name = "schema";
    name = rule_prefix_ + name.substr(0, 40) + "-" + std::to_string(rules_.size());
    rules_.emplace_back(name, std::move(body));
    return name;
  }

  // Each alternative in parentheses (they may be alternations themselves).
  static std::string join_grouped(const std::vector<std::string>& alts) {
    std::vector<std::string> grouped;
    for (const auto& a : alts) grouped.push_back("(" + a + ")");
    return grouped.empty() ? "\"\"" : join_alternatives(grouped);
  }

  int64_t int_value(const json& v, const std::string& path, const char* key, bool round_up) const {
    if (!v.is_number()) fail(path, std::string("\"") + key + "\" must be a number, found " + v.type_name());
    const double d = v.get<double>();
    const double r = round_up ? std::ceil(d) : std::floor(d);
    if (!(r >= -static_cast<double>(kIntLimit) && r <= static_cast<double>(kIntLimit)))
      fail(path, std::string("\"") + key + "\" is outside the supported integer range (16 digits)");
    return static_cast<int64_t>(r);
  }

  int count_value(const json& s, const char* key, const std::string& path, int fallback) const {
    if (!s.contains(key)) return fallback;
    const json& v = s[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
      fail(path, std::string("\"") + key + "\" must be a non-negative integer");
    if (v.get<int64_t>() > 10000) fail(path, std::string("\"") + key + "\" above 10000 is not supported");
    return static_cast<int>(v.get<int64_t>());
  }

  std::string visit(const json& s, const std::string& path, int depth) {
    if (depth > kMaxSchemaDepth) fail(path, "schemas nested deeper than " + std::to_string(kMaxSchemaDepth));
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail(path, "the schema false matches nothing");
      return "json-value";
    }
    if (!s.is_object()) fail(path, std::string("expected a schema (an object or a boolean), found ") + s.type_name());
    static const std::set<std::string> unsupported = {
        "pattern", "patternProperties", "not", "if", "then", "else", "dependentRequired", "dependentSchemas",
        "dependencies", "multipleOf", "minProperties", "maxProperties", "contains", "minContains", "maxContains",
        "propertyNames", "unevaluatedProperties", "unevaluatedItems", "additionalItems", "prefixItems", "$dynamicRef",
        "$recursiveRef", "contentEncoding", "contentSchema"};
    for (const auto& [key, value] : s.items()) {
      if (unsupported.count(key)) fail(path, "\"" + key + "\" is not supported");
      if (key == "uniqueItems" && value == true) fail(path, "\"uniqueItems\" is not supported");
    }
    if (s.contains("$ref")) return ref(s, path, depth);
    for (const char* key : {"anyOf", "oneOf", "allOf"}) {
      if (!s.contains(key)) continue;
      const json& list = s[key];
      if (!list.is_array() || list.empty()) fail(path, std::string("\"") + key + "\" must be a non-empty array");
      for (const auto& [k, v] : s.items())
        if (k != key && !kAnnotations.count(k))
          fail(path, std::string("\"") + key + "\" together with \"" + k + "\" is not supported");
      if (std::string(key) == "allOf" && list.size() != 1)
        fail(path, "\"allOf\" with more than one schema is not supported");
      std::vector<std::string> alts;
      for (size_t i = 0; i < list.size(); ++i)
        alts.push_back(visit(list[i], path + "/" + key + "/" + std::to_string(i), depth + 1));
      return new_rule(path, join_grouped(alts));
    }
    if (s.contains("const")) return literal(s["const"].dump());
    if (s.contains("enum")) {
      const json& list = s["enum"];
      if (!list.is_array() || list.empty()) fail(path, "\"enum\" must be a non-empty array");
      if (list.size() > 10000) fail(path, "\"enum\" with more than 10000 values is not supported");
      std::vector<std::string> alts;
      for (const auto& v : list) alts.push_back(literal(v.dump()));
      return new_rule(path + "-enum", join_grouped(alts));
    }
    std::vector<std::string> types;
    if (s.contains("type")) {
      const json& t = s["type"];
      if (t.is_string()) types.push_back(t.get<std::string>());
      else if (t.is_array() && !t.empty())
        for (const auto& x : t) {
          if (!x.is_string()) fail(path, "\"type\" must be a string or a list of strings");
          types.push_back(x.get<std::string>());
        }
      else fail(path, "\"type\" must be a string or a non-empty list of strings");
    } else if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required")) {
      types.push_back("object");
    } else if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) {
      types.push_back("array");
    } else if (s.contains("minLength") || s.contains("maxLength") || s.contains("format")) {
      types.push_back("string");
    } else if (s.contains("minimum") || s.contains("maximum")) {
      types.push_back("number");
    } else {
      return "json-value";
    }
    std::vector<std::string> alts;
    for (const auto& t : types) alts.push_back(typed(s, t, path, depth));
    return alts.size() == 1 ? alts[0] : new_rule(path, join_grouped(alts));
  }

  std::string ref(const json& s, const std::string& path, int depth) {
    const json& r = s["$ref"];
    if (!r.is_string()) fail(path, "\"$ref\" must be a string");
    const std::string target = r.get<std::string>();
    std::string section, name;
    for (const char* prefix : {"#/$defs/", "#/definitions/"})
      if (target.starts_with(prefix)) section = std::string(prefix).substr(2, std::string(prefix).size() - 3),
                                      name = target.substr(std::string(prefix).size());
    if (section.empty() || name.empty() || name.find('/') != std::string::npos)
      fail(path, "\"$ref\" \"" + target + "\" is not supported (only #/$defs/NAME and #/definitions/NAME)");
    if (auto it = refs_.find(target); it != refs_.end()) return it->second;
    if (!root_.is_object() || !root_.contains(section) || !root_[section].is_object() || !root_[section].contains(name))
      fail(path, "\"$ref\" \"" + target + "\" names no definition");
    // Reserve the rule first, so a recursive reference finds it.
    const std::string rule = new_rule("def-" + name, "");
    const size_t index = rules_.size() - 1;
    refs_[target] = rule;
    std::string body = visit(root_[section][name], "/" + section + "/" + name, depth + 1);
    rules_[index].second = std::move(body);
    return rule;
  }

  std::string typed(const json& s, const std::string& type, const std::string& path, int depth) {
    if (type == "string") return string_rule(s, path);
    if (type == "integer") return integer_rule(s, path);
    if (type == "number") {
      if (s.contains("exclusiveMinimum") || s.contains("exclusiveMaximum") || s.contains("maximum"))
        fail(path, "bounds on \"number\" other than \"minimum\": 0 are not supported (use \"integer\" for bounded values)");
      if (s.contains("minimum")) {
        if (!s["minimum"].is_number() || s["minimum"].get<double>() != 0)
          fail(path, "\"minimum\" on a \"number\" is only supported as 0 (use \"integer\" for other bounds)");
        return "json-unumber";
      }
      return "json-number";
    }
    if (type == "boolean") return "json-bool";
    if (type == "null") return "json-null";
    if (type == "object") return object_rule(s, path, depth);
    if (type == "array") return array_rule(s, path, depth);
    fail(path, "unknown \"type\" \"" + type + "\"");
  }

  std::string string_rule(const json& s, const std::string& path) {
    const int min = count_value(s, "minLength", path, 0);
    const int max = count_value(s, "maxLength", path, -1);
    if (max >= 0 && max < min) fail(path, "\"maxLength\" is below \"minLength\"");
    if (s.contains("format")) {
      if (!s["format"].is_string()) fail(path, "\"format\" must be a string");
      const std::string f = s["format"].get<std::string>();
      if (s.contains("minLength") || s.contains("maxLength"))
        fail(path, "\"format\" together with \"minLength\"/\"maxLength\" is not supported");
      return "\"\\\"\" " + format_rule(f, path) + " \"\\\"\"";
    }
    if (min == 0 && max < 0) return "json-string";
    std::string rep = "json-char{" + std::to_string(min) + (max < 0 ? std::string(",") : "," + std::to_string(max)) + "}";
    if (max == min) rep = "json-char{" + std::to_string(min) + "}";
    return new_rule(path + "-string", "\"\\\"\" " + rep + " \"\\\"\"");
  }

  std::string format_rule(const std::string& f, const std::string& path) {
    auto shared = [&](const std::string& name, const std::string& body) {
      if (!formats_.count(name)) {
        formats_.insert(name);
        rules_.emplace_back(name, body);
      }
      return name;
    };
    auto date = [&] {
      return shared("fmt-date",
                    R"([1-9] [0-9]{3} "-" (("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]) | ("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30") | "02-" ("0" [1-9] | "1" [0-9] | "2" [0-8])))");
    };
    auto time = [&] {
      return shared("fmt-time",
                    R"(([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9]))");
    };
    if (f == "date") return date();
    if (f == "time") return time();
    if (f == "date-time") return shared("fmt-date-time", date() + " \"T\" " + time());
    if (f == "email")
      return shared("fmt-email", R"([a-zA-Z0-9_%+-] [a-zA-Z0-9._%+-]{0,31} "@" [a-zA-Z0-9] [a-zA-Z0-9-]{0,23} ("." [a-zA-Z] [a-zA-Z0-9-]{0,23}){1,3})");
    if (f == "uuid")
      return shared("fmt-uuid", R"([0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12})");
    fail(path, "format \"" + f + "\" is not supported (supported: date, time, date-time, email, uuid)");
  }

  std::string integer_rule(const json& s, const std::string& path) {
    std::optional<int64_t> lo, hi;
    auto tighten_lo = [&](int64_t v) { lo = lo ? std::max(*lo, v) : v; };
    auto tighten_hi = [&](int64_t v) { hi = hi ? std::min(*hi, v) : v; };
    if (s.contains("minimum")) tighten_lo(int_value(s["minimum"], path, "minimum", true));
    if (s.contains("maximum")) tighten_hi(int_value(s["maximum"], path, "maximum", false));
    for (const char* key : {"exclusiveMinimum", "exclusiveMaximum"})
      if (s.contains(key) && s[key].is_boolean()) fail(path, std::string("boolean \"") + key + "\" (draft 4) is not supported");
    if (s.contains("exclusiveMinimum")) tighten_lo(int_value(s["exclusiveMinimum"], path, "exclusiveMinimum", false) + 1);
    if (s.contains("exclusiveMaximum")) tighten_hi(int_value(s["exclusiveMaximum"], path, "exclusiveMaximum", true) - 1);
    if (!lo && !hi) return "json-int";
    const int64_t a = lo.value_or(-kIntLimit), b = hi.value_or(kIntLimit);
    if (a > b) fail(path, "no integer lies between the minimum and the maximum");
    std::vector<std::string> alts;
    if (a < 0) alts.push_back("\"-\" " + uint_range(b < 0 ? static_cast<uint64_t>(-b) : 1, static_cast<uint64_t>(-a)));
    if (b >= 0) alts.push_back(uint_range(static_cast<uint64_t>(std::max<int64_t>(a, 0)), static_cast<uint64_t>(b)));
    return new_rule(path + "-int", join_grouped(alts));
  }

  std::string object_rule(const json& s, const std::string& path, int depth) {
    const json empty = json::object();
    const json& props = s.contains("properties") ? s["properties"] : empty;
    if (!props.is_object()) fail(path, "\"properties\" must be an object");
    if (props.size() > 1000) fail(path, "more than 1000 properties are not supported");
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) fail(path, "\"required\" must be an array of names");
      for (const auto& r : s["required"]) {
        if (!r.is_string()) fail(path, "\"required\" must be an array of names");
        if (!props.contains(r.get<std::string>()))
          fail(path, "required property \"" + r.get<std::string>() + "\" is not in \"properties\" (not supported)");
        required.insert(r.get<std::string>());
      }
    }
    const json* additional = s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
    if (props.empty()) {
      if (additional && additional->is_boolean() && !additional->get<bool>()) return literal("{") + " ws " + literal("}");
      if (!additional || additional->is_boolean()) return "json-object";
      const std::string value = visit(*additional, path + "/additionalProperties", depth + 1);
      const std::string member = new_rule(path + "-entry", "json-string ws \":\" ws " + value + " ws");
      return new_rule(path + "-map", "\"{\" ws (" + member + " (\",\" ws " + member + ")*)? \"}\"");
    }
    if (additional && !(additional->is_boolean() && !additional->get<bool>()))
      fail(path, "\"additionalProperties\" other than false together with \"properties\" is not supported");
    // Properties in the schema's order (nlohmann keeps keys sorted; the order only affects
    // which texts are generated, every one of them is valid).
    std::vector<std::string> members;
    std::vector<bool> is_required;
    for (const auto& [name, sub] : props.items()) {
      const std::string value = visit(sub, path + "/properties/" + name, depth + 1);
      members.push_back(new_rule(path + "-" + name, literal(json(name).dump()) + " ws \":\" ws " + value + " ws"));
      is_required.push_back(required.count(name) > 0);
    }
    const size_t n = members.size();
    // rest[i]: the members from i on, after at least one was written (each behind a comma).
    std::vector<std::string> rest(n + 1);
    rest[n] = "\"\"";
    for (size_t i = n; i-- > 0;) {
      const std::string item = "\",\" ws " + members[i];
      rest[i] = new_rule(path + "-rest", (is_required[i] ? item : "(" + item + ")?") + " " + rest[i + 1]);
    }
    // first[i]: the members from i on, none written yet (optional ones may be skipped).
    std::string first = "\"\"";
    for (size_t i = n; i-- > 0;) {
      const std::string take = members[i] + " " + rest[i + 1];
      first = new_rule(path + "-first", is_required[i] ? take : take + " | " + first);
    }
    return new_rule(path + "-object", "\"{\" ws " + first + " \"}\"");
  }

  std::string array_rule(const json& s, const std::string& path, int depth) {
    const std::string item = s.contains("items") ? visit(s["items"], path + "/items", depth + 1) : "json-value";
    const int min = count_value(s, "minItems", path, 0);
    const int max = count_value(s, "maxItems", path, -1);
    if (max >= 0 && max < min) fail(path, "\"maxItems\" is below \"minItems\"");
    if (max == 0) return literal("[") + " ws " + literal("]");
    const std::string element = new_rule(path + "-item", item + " ws");
    const std::string more = "(\",\" ws " + element + ")";
    const int rest_min = std::max(min - 1, 0);
    const std::string reps =
        more + "{" + std::to_string(rest_min) + (max < 0 ? std::string(",") : "," + std::to_string(max - 1)) + "}";
    const std::string body = element + " " + reps;
    return new_rule(path + "-array", "\"[\" ws " + (min == 0 ? "(" + body + ")?" : body) + " \"]\"");
  }

  const json& root_;
  const std::string rule_prefix_;
  std::vector<std::pair<std::string, std::string>> rules_;
  std::map<std::string, std::string> refs_;
  std::set<std::string> formats_;
};

}  // namespace

std::string json_schema_to_gbnf(const json& schema, const std::string& root_rule) {
  if (schema.dump().size() > kMaxSchemaBytes)
    throw Error("JSON schema is larger than " + std::to_string(kMaxSchemaBytes) + " bytes");
  return SchemaCompiler(schema).compile_rules(root_rule) + kCommonRules;
}

std::string function_calls_gbnf(const std::vector<FunctionSchema>& functions, bool several, const std::string& open,
                                const std::string& close) {
  if (functions.empty()) throw Error("function calls: no functions to call");
  std::string rules, calls;
  size_t bytes = 0;
  for (size_t i = 0; i < functions.size(); ++i) {
    const FunctionSchema& f = functions[i];
    bytes += f.parameters.dump().size();
    if (bytes > kMaxSchemaBytes)
      throw Error("the functions' parameter schemas are larger than " + std::to_string(kMaxSchemaBytes) + " bytes");
    const std::string prefix = "f" + std::to_string(i) + "-";
    try {
      rules += SchemaCompiler(f.parameters, prefix).compile_rules(prefix + "arguments");
    } catch (const Error& e) {
      throw Error("function '" + f.name + "': parameters: " + e.what());
    }
    // {"name": NAME, "arguments": ARGS}: the name first, as the models write it.
    rules += prefix + "call ::= \"{\" ws " + literal("\"name\"") + " ws \":\" ws " + literal(json(f.name).dump()) +
             " ws \",\" ws " + literal("\"arguments\"") + " ws \":\" ws " + prefix + "arguments ws \"}\"\n";
    calls += (i ? " | " : "") + prefix + "call";
  }
  const std::string list = several ? "\"[\" ws call ws (\",\" ws call ws){0,15} \"]\"" : "\"[\" ws call ws \"]\"";
  return "root ::= " + literal(open) + " " + list + " " + literal(close) + "\ncall ::= " + calls + "\n" + rules +
         kCommonRules;
}

std::string any_json_object_gbnf() { return std::string("root ::= json-object\n") + kCommonRules; }

}  // namespace phinfer::grammar
