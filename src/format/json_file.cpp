#include "format/json_file.h"

#include "format/file_io.h"
#include "phinfer/error.h"

namespace phinfer::format {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  const std::string text = read_whole_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for 1e999
    throw Error(path.string() + ": malformed JSON: " + e.what());
  }
}

std::optional<int64_t> json_integer(const nlohmann::json& v, int64_t lo, int64_t hi) {
  // Unsigned first: get<int64_t>() of 2^64 - 1 would wrap to -1.
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (hi < 0 || u > static_cast<uint64_t>(hi) || (lo > 0 && u < static_cast<uint64_t>(lo))) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (!v.is_number_integer()) return std::nullopt;
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) return std::nullopt;
  return x;
}

namespace {

constexpr int kBriefDepth = 3;

// Appends a rendering of v to out, stopping once out is longer than limit.
void brief(const nlohmann::json& v, int depth, size_t limit, std::string& out) {
  if (out.size() > limit) return;
  if (v.is_array()) {
    if (depth >= kBriefDepth) {
      out += v.empty() ? "[]" : "[...]";
      return;
    }
    out += '[';
    bool first = true;
    for (const auto& e : v) {
      if (out.size() > limit) return;
      if (!first) out += ", ";
      first = false;
      brief(e, depth + 1, limit, out);
    }
    out += ']';
  } else if (v.is_object()) {
    if (depth >= kBriefDepth) {
      out += v.empty() ? "{}" : "{...}";
      return;
    }
    out += '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (out.size() > limit) return;
      if (!first) out += ", ";
      first = false;
      out += nlohmann::json(it.key()).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      out += ": ";
      brief(*it, depth + 1, limit, out);
    }
    out += '}';
  } else {
    // Scalars: a long string is cut below; replace keeps invalid UTF-8 from throwing.
    out += v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

}  // namespace

std::string json_brief(const nlohmann::json& value, size_t max_chars) {
  std::string out;
  brief(value, 0, max_chars, out);
  if (out.size() > max_chars) out = out.substr(0, max_chars > 3 ? max_chars - 3 : 0) + "...";
  return out;
}

}  // namespace phinfer::format
