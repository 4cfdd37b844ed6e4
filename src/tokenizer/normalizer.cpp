#include "tokenizer/normalizer.h"

#include <vector>

#include "tokenizer/pattern.h"
#include "tokenizer/utf8.h"

namespace phinfer::tok {

namespace {

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  std::string normalize(std::string text) const override {
    for (const auto& s : steps_) text = s->normalize(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

// Adds a prefix to non-empty text (HF skips empty segments, so "" stays "").
class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string normalize(std::string text) const override {
    return text.empty() ? text : prefix_ + text;
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::string normalize(std::string text) const override {
    return pattern_.replace_all(text, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

// Removes Unicode white space at either end.
class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string text) const override {
    if (right_) text.resize(text.size() - trailing_white_space(text));
    if (left_) text.erase(0, leading_white_space(text));
    return text;
  }

 private:
  bool left_, right_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const JsonView& j, int nesting) {
  if (j.is_null()) return nullptr;
  check_component_nesting(j, nesting);
  const std::string type = j.at("type").str();
  if (type == "Sequence") {
    JsonView list = j.at("normalizers");
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      if (auto n = make_normalizer(list[i], nesting + 1)) steps.push_back(std::move(n));
    }
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(j.at("prepend").str());
  if (type == "Replace")
    return std::make_unique<ReplaceNormalizer>(Pattern::from_json(j.at("pattern")),
                                               j.at("content").str());
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(j.bool_or("strip_left", true),
                                             j.bool_or("strip_right", true));
  j.at("type").fail("unsupported normalizer type \"" + type + "\"");
}

}  // namespace phinfer::tok
