#include "tokenizer/pre_tokenizer.h"

#include <string_view>

#include "tokenizer/byte_level.h"
#include "tokenizer/pattern.h"

namespace phinfer::tok {

namespace {

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

SplitBehavior parse_behavior(const JsonView& j) {
  const std::string s = j.str();
  if (s == "Removed") return SplitBehavior::Removed;
  if (s == "Isolated") return SplitBehavior::Isolated;
  if (s == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (s == "Contiguous") return SplitBehavior::Contiguous;
  j.fail("unknown split behavior \"" + s + "\"");
}

struct Segment {
  Span span;
  bool is_match;  // for Removed: drop it
};

// HF NormalizedString::split: the text as alternating non-match / match segments, then merged
// or dropped according to the behavior.
std::vector<Segment> split_segments(const Pattern& pattern, bool invert, SplitBehavior behavior,
                                    std::string_view text) {
  std::vector<Segment> segs;
  size_t prev = 0;
  for (const Span& m : pattern.find_all(text)) {
    if (m.begin > prev) segs.push_back({{prev, m.begin}, invert});
    segs.push_back({m, !invert});
    prev = m.end;
  }
  if (prev < text.size()) segs.push_back({{prev, text.size()}, invert});

  std::vector<Segment> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::Removed:
      return segs;
    case SplitBehavior::Isolated:
      for (auto& s : segs) out.push_back({s.span, false});
      return out;
    case SplitBehavior::Contiguous:
      for (auto& s : segs) {
        if (s.is_match == previous_match && !out.empty())
          out.back().span.end = s.span.end;
        else
          out.push_back({s.span, false});
        previous_match = s.is_match;
      }
      return out;
    case SplitBehavior::MergedWithPrevious:
      for (auto& s : segs) {
        if (s.is_match && !previous_match && !out.empty())
          out.back().span.end = s.span.end;
        else
          out.push_back({s.span, false});
        previous_match = s.is_match;
      }
      return out;
    case SplitBehavior::MergedWithNext:
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty())
          out.back().span.begin = it->span.begin;
        else
          out.push_back({it->span, false});
        previous_match = it->is_match;
      }
      return {out.rbegin(), out.rend()};
  }
  return out;
}

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  void apply(std::vector<std::string>& pieces) const override {
    std::vector<std::string> out;
    for (const std::string& piece : pieces) {
      for (const Segment& s : split_segments(pattern_, invert_, behavior_, piece)) {
        if (!s.is_match && s.span.end > s.span.begin)
          out.emplace_back(piece, s.span.begin, s.span.end - s.span.begin);
      }
    }
    pieces = std::move(out);
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

// GPT-2 byte-level: optional prefix space, optional split with the GPT-2 regex, then every byte
// becomes its stand-in character.
class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}

  void apply(std::vector<std::string>& pieces) const override {
    static const SplitPreTokenizer gpt2(
        Pattern::regex("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
                       "\\s+(?!\\S)|\\s+"),
        SplitBehavior::Isolated, false);
    if (add_prefix_space_) {
      for (auto& p : pieces)
        if (!p.empty() && p[0] != ' ') p.insert(p.begin(), ' ');
    }
    if (use_regex_) gpt2.apply(pieces);
    const ByteLevelTable& table = ByteLevelTable::get();
    for (auto& p : pieces) p = table.encode(p);
  }

 private:
  bool add_prefix_space_, use_regex_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void apply(std::vector<std::string>& pieces) const override {
    for (const auto& s : steps_) s->apply(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const JsonView& j, int nesting) {
  if (j.is_null()) return nullptr;
  check_component_nesting(j, nesting);
  const std::string type = j.at("type").str();
  if (type == "Sequence") {
    JsonView list = j.at("pretokenizers");
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      if (auto p = make_pre_tokenizer(list[i], nesting + 1)) steps.push_back(std::move(p));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "Split")
    return std::make_unique<SplitPreTokenizer>(Pattern::from_json(j.at("pattern")),
                                               parse_behavior(j.at("behavior")),
                                               j.bool_or("invert", false));
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(j.bool_or("add_prefix_space", true),
                                                   j.bool_or("use_regex", true));
  j.at("type").fail("unsupported pre_tokenizer type \"" + type + "\"");
}

}  // namespace phinfer::tok
