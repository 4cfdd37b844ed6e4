#include "tokenizer/pattern.h"

namespace phinfer::tok {

Pattern Pattern::from_json(const JsonView& j) {
  j.expect_object();
  if (auto s = j.find("String")) {
    std::string text = s->str();
    if (text.empty()) s->fail("empty pattern");
    return Pattern(std::move(text), std::nullopt);
  }
  if (auto r = j.find("Regex")) {
    std::string pattern = r->str();
    try {
      return Pattern("", Regex(pattern));
    } catch (const Error& e) {
      r->fail(e.what());
    }
  }
  j.fail("expected {\"String\": ...} or {\"Regex\": ...}");
}

std::vector<Span> Pattern::find_all(std::string_view text) const {
  if (regex_) return regex_->find_all(text);
  std::vector<Span> spans;
  for (size_t pos = text.find(literal_); pos != std::string_view::npos;
       pos = text.find(literal_, pos + literal_.size()))
    spans.push_back({pos, pos + literal_.size()});
  return spans;
}

std::string Pattern::replace_all(std::string_view text, std::string_view replacement) const {
  std::string out;
  out.reserve(text.size());
  size_t last = 0;
  for (const Span& m : find_all(text)) {
    out.append(text.substr(last, m.begin - last));
    out.append(replacement);
    last = m.end;
  }
  out.append(text.substr(last));
  return out;
}

}  // namespace phinfer::tok
