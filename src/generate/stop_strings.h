#pragma once
// Stop strings matched across token boundaries: text is released only once it can no longer be
// the start of a stop string, so the stop text itself is never streamed.
#include <string>
#include <vector>

namespace phinfer::generate {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Feeds newly decoded text; returns the text that is now safe to release.
  std::string push(const std::string& text);
  // End of generation: releases what was held back (no stop string can complete any more).
  std::string flush();
  bool matched() const { return matched_; }
  // All text before the stop string (or all text so far).
  const std::string& text() const { return text_; }

 private:
  std::vector<std::string> stops_;
  std::string text_;       // everything pushed, cut at the stop string once matched
  size_t released_ = 0;    // bytes of text_ already returned
  bool matched_ = false;
};

}  // namespace phinfer::generate
