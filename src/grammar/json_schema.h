#pragma once
// JSON Schema to GBNF, for output that parses and validates against the schema.
//
// Supported: type (object, array, string, number, integer, boolean, null, or a list of these),
// properties + required (properties come in the schema's order; optional ones may be left out),
// additionalProperties (false/absent with properties; a schema without properties: a map), enum,
// const, items + minItems/maxItems, minLength/maxLength, format (date, time, date-time, email,
// uuid), integer minimum/maximum/exclusiveMinimum/exclusiveMaximum, number minimum 0, anyOf,
// oneOf (its branches should not overlap: the grammar does not check that only one matches),
// allOf with one schema, $ref to #/$defs/... or #/definitions/... (recursion allowed), and {} /
// true for any value. Annotations (title, description, default, examples, $schema, $id, ...) are
// ignored. Any other validation keyword is an error naming it.
//
// The output is compact JSON with at most 8 white-space characters where JSON allows them;
// numbers have at most 16 integer digits, 16 fraction digits and a 2-digit exponent.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace phinfer::grammar {

inline constexpr int kMaxSchemaDepth = 64;
inline constexpr size_t kMaxSchemaBytes = 1u << 20;

// Throws phinfer::Error "JSON schema at /path: ..." for unsupported or invalid schemas. The schema's
// value is the rule `root_rule` (another name lets a grammar embed it, e.g. between fixed texts).
std::string json_schema_to_gbnf(const nlohmann::json& schema, const std::string& root_rule = "root");
// A list of function calls [{"name": NAME, "arguments": ARGS}, ...] between the texts `open` and
// `close`: each NAME one of the functions', its ARGS following that function's parameter schema;
// one call, or up to 16 when `several`. Throws phinfer::Error naming the function whose schema is
// not supported.
struct FunctionSchema {
  std::string name;
  nlohmann::json parameters;
};
std::string function_calls_gbnf(const std::vector<FunctionSchema>& functions, bool several, const std::string& open,
                                const std::string& close);
// Any JSON object (nested values of every kind).
std::string any_json_object_gbnf();

}  // namespace phinfer::grammar
