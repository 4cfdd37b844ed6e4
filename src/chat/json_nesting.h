#pragma once
// Nesting limit for JSON that reaches the chat code (conversation files, message fields, template
// values). nlohmann::json parses and frees a deep value without recursion, but copies, compares
// and dumps it recursively: a value must be checked with this before any of those.
namespace phinfer {

constexpr int kMaxJsonNesting = 256;

// True if j holds containers nested more than `levels` deep (a scalar: 0, [] or {}: 1). Recursion
// stops at `levels`, so checking a hostile value cannot itself overflow the stack.
template <class Json>
bool json_nests_deeper_than(const Json& j, int levels) {
  if (!j.is_array() && !j.is_object()) return false;
  if (levels <= 0) return true;
  for (const auto& child : j)
    if (json_nests_deeper_than(child, levels - 1)) return true;
  return false;
}

}  // namespace phinfer
