#pragma once
// Typed, path-aware access to a parsed JSON file: every failure becomes a phinfer::Error that names
// the file, the JSON path (e.g. "model.merges[3]") and what was expected, so a malformed
// tokenizer.json is reported instead of crashing.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "phinfer/error.h"

namespace phinfer::tok {

// Parses JSON text; `name` (a file name or description) prefixes the error. (Files are read with
// format::read_json_file, which words its errors the same way.)
nlohmann::json parse_json_text(const std::string& text, const std::string& name);

// Tokenizer components (normalizers, pre-tokenizers, post-processors, decoders) are read
// recursively through "Sequence": the nesting is checked before each level is entered, so that a
// hostile file cannot exhaust the stack. Real files nest one or two levels.
constexpr int kMaxComponentNesting = 32;

class JsonView;
// Fails (naming the file, the path, the limit and the nesting found) when a component is enclosed
// in more than kMaxComponentNesting Sequences (`nesting` counts them).
void check_component_nesting(const JsonView& component, int nesting);

class JsonView {
 public:
  JsonView(const nlohmann::json& j, std::shared_ptr<const std::string> file, std::string path)
      : j_(&j), file_(std::move(file)), path_(std::move(path)) {}
  static JsonView root(const nlohmann::json& j, const std::string& name) {
    return JsonView(j, std::make_shared<const std::string>(name), "");
  }

  const nlohmann::json& raw() const { return *j_; }
  const std::string& path() const { return path_; }
  bool is_null() const { return j_->is_null(); }
  bool is_string() const { return j_->is_string(); }
  bool is_object() const { return j_->is_object(); }
  bool is_array() const { return j_->is_array(); }

  // Required member of an object (absent => error; null is returned as is).
  JsonView at(std::string_view key) const;
  // Member, or a null value (with this member's path) when absent.
  JsonView get(std::string_view key) const;
  // Optional member: nullopt when absent or null.
  std::optional<JsonView> find(std::string_view key) const;
  JsonView operator[](size_t index) const;  // array element (bounds-checked)
  size_t size() const;                      // array or object size (must be one of those)

  std::string str() const;
  bool boolean() const;
  int64_t integer() const;
  int64_t integer_in(int64_t min, int64_t max) const;  // an integer within [min, max]
  double number() const;
  const nlohmann::json& object() const;  // checks it is an object

  std::string str_or(std::string_view key, std::string fallback) const;
  bool bool_or(std::string_view key, bool fallback) const;

  // "<file>: <path>: <what>" as a phinfer::Error.
  [[noreturn]] void fail(const std::string& what) const;
  void expect_object() const;
  void expect_array() const;

 private:
  std::string child_path(std::string_view key) const;
  const nlohmann::json* j_;
  std::shared_ptr<const std::string> file_;
  std::string path_;
};

}  // namespace phinfer::tok
