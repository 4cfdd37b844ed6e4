#include "generate/stop_strings.h"

#include <algorithm>

namespace phinfer::generate {

std::string StopStringMatcher::push(const std::string& text) {
  if (matched_) return "";
  text_ += text;
  if (stops_.empty()) {
    std::string out = text_.substr(released_);
    released_ = text_.size();
    return out;
  }
  // Earliest complete match; only the region that could contain a new one needs searching.
  size_t longest = 0;
  for (const auto& s : stops_) longest = std::max(longest, s.size());
  const size_t from = released_ >= longest ? released_ - longest + 1 : 0;
  size_t best = std::string::npos;
  for (const auto& s : stops_) best = std::min(best, text_.find(s, from));
  if (best != std::string::npos) {
    matched_ = true;
    text_.resize(best);
    std::string out = best > released_ ? text_.substr(released_) : "";
    released_ = text_.size();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_)
    for (size_t k = std::min(s.size() - 1, text_.size()); k > hold; --k)
      if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  const size_t safe = std::max(released_, text_.size() - hold);
  std::string out = text_.substr(released_, safe - released_);
  released_ = safe;
  return out;
}

std::string StopStringMatcher::flush() {
  if (matched_) return "";
  std::string out = text_.substr(released_);
  released_ = text_.size();
  return out;
}

}  // namespace phinfer::generate
