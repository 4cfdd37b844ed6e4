#include "tokenizer/json_view.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace phinfer::tok {

nlohmann::json parse_json_text(const std::string& text, const std::string& name) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(name + ": malformed JSON: " + e.what());
  }
}

namespace {
std::string type_name(const nlohmann::json& j) { return j.type_name(); }

// Nesting depth of a JSON value, walked with an explicit stack (the value may be nested far deeper
// than the call stack allows).
size_t json_depth(const nlohmann::json& root) {
  size_t deepest = 0;
  std::vector<std::pair<const nlohmann::json*, size_t>> pending{{&root, 1}};
  while (!pending.empty()) {
    auto [j, depth] = pending.back();
    pending.pop_back();
    deepest = std::max(deepest, depth);
    if (j->is_array() || j->is_object())
      for (const auto& child : *j) pending.emplace_back(&child, depth + 1);
  }
  return deepest;
}
}  // namespace

void check_component_nesting(const JsonView& component, int nesting) {
  if (nesting <= kMaxComponentNesting) return;
  component.fail("components nested more than " + std::to_string(kMaxComponentNesting) +
                 " Sequence levels deep (the limit); this one holds JSON nested " +
                 std::to_string(json_depth(component.raw())) + " levels more");
}

void JsonView::fail(const std::string& what) const {
  throw Error(*file_ + ": " + (path_.empty() ? std::string("(top level)") : path_) + ": " + what);
}

void JsonView::expect_object() const {
  if (!j_->is_object()) fail("expected an object, found " + type_name(*j_));
}

void JsonView::expect_array() const {
  if (!j_->is_array()) fail("expected an array, found " + type_name(*j_));
}

std::string JsonView::child_path(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

JsonView JsonView::at(std::string_view key) const {
  expect_object();
  auto it = j_->find(key);
  if (it == j_->end()) fail("missing field \"" + std::string(key) + "\"");
  return JsonView(*it, file_, child_path(key));
}

JsonView JsonView::get(std::string_view key) const {
  static const nlohmann::json null_json;
  expect_object();
  auto it = j_->find(key);
  return JsonView(it == j_->end() ? null_json : *it, file_, child_path(key));
}

std::optional<JsonView> JsonView::find(std::string_view key) const {
  expect_object();
  auto it = j_->find(key);
  if (it == j_->end() || it->is_null()) return std::nullopt;
  return JsonView(*it, file_, child_path(key));
}

JsonView JsonView::operator[](size_t index) const {
  expect_array();
  if (index >= j_->size()) fail("index " + std::to_string(index) + " out of range");
  return JsonView((*j_)[index], file_, path_ + "[" + std::to_string(index) + "]");
}

size_t JsonView::size() const {
  if (!j_->is_array() && !j_->is_object())
    fail("expected an array or object, found " + type_name(*j_));
  return j_->size();
}

std::string JsonView::str() const {
  if (!j_->is_string()) fail("expected a string, found " + type_name(*j_));
  return j_->get<std::string>();
}

bool JsonView::boolean() const {
  if (!j_->is_boolean()) fail("expected a boolean, found " + type_name(*j_));
  return j_->get<bool>();
}

int64_t JsonView::integer() const {
  if (!j_->is_number_integer()) fail("expected an integer, found " + type_name(*j_));
  return j_->get<int64_t>();
}

int64_t JsonView::integer_in(int64_t min, int64_t max) const {
  int64_t v = integer();
  if (v < min || v > max)
    fail("expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "], found " +
         std::to_string(v));
  return v;
}

double JsonView::number() const {
  if (!j_->is_number()) fail("expected a number, found " + type_name(*j_));
  return j_->get<double>();
}

const nlohmann::json& JsonView::object() const {
  expect_object();
  return *j_;
}

std::string JsonView::str_or(std::string_view key, std::string fallback) const {
  auto v = find(key);
  return v ? v->str() : std::move(fallback);
}

bool JsonView::bool_or(std::string_view key, bool fallback) const {
  auto v = find(key);
  return v ? v->boolean() : fallback;
}

}  // namespace phinfer::tok
