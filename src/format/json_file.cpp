#include "format/json_file.h"

#include <fstream>
#include <sstream>

#include "phinfer/error.h"

namespace phinfer::format {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for 1e999
    throw Error(path.string() + ": malformed JSON: " + e.what());
  }
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
