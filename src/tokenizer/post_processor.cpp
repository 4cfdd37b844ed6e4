#include "tokenizer/post_processor.h"

#include <cstdint>
#include <string>

namespace phinfer::tok {

namespace {

// The single-sequence template as a list of pieces: fixed ids, or the sequence itself (empty).
class TemplateProcessor final : public PostProcessor {
 public:
  explicit TemplateProcessor(std::vector<std::optional<std::vector<int32_t>>> pieces)
      : pieces_(std::move(pieces)) {}
  std::vector<int32_t> process(std::vector<int32_t> ids) const override {
    std::vector<int32_t> out;
    out.reserve(ids.size() + pieces_.size());
    for (const auto& p : pieces_) {
      if (p)
        out.insert(out.end(), p->begin(), p->end());
      else
        out.insert(out.end(), ids.begin(), ids.end());
    }
    return out;
  }

 private:
  std::vector<std::optional<std::vector<int32_t>>> pieces_;
};

class SequenceProcessor final : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> steps)
      : steps_(std::move(steps)) {}
  std::vector<int32_t> process(std::vector<int32_t> ids) const override {
    for (const auto& s : steps_) ids = s->process(std::move(ids));
    return ids;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

// ByteLevel only trims offsets, which this tokenizer does not report: ids pass unchanged.
class IdentityProcessor final : public PostProcessor {
 public:
  std::vector<int32_t> process(std::vector<int32_t> ids) const override { return ids; }
};

std::unique_ptr<PostProcessor> make_template(const JsonView& j) {
  JsonView single = j.at("single");
  std::optional<JsonView> specials = j.find("special_tokens");
  std::vector<std::optional<std::vector<int32_t>>> pieces;
  for (size_t i = 0; i < single.size(); ++i) {
    JsonView item = single[i];
    if (auto seq = item.find("Sequence")) {
      if (seq->at("id").str() != "A") seq->at("id").fail("the single template can only use sequence A");
      pieces.emplace_back(std::nullopt);
    } else if (auto sp = item.find("SpecialToken")) {
      std::string name = sp->at("id").str();
      if (!specials || !specials->raw().contains(name))
        sp->at("id").fail("\"" + name + "\" is not listed in special_tokens");
      JsonView ids_json = specials->at(name).at("ids");
      std::vector<int32_t> ids;
      for (size_t k = 0; k < ids_json.size(); ++k) ids.push_back(static_cast<int32_t>(ids_json[k].integer_in(0, INT32_MAX)));
      pieces.emplace_back(std::move(ids));
    } else {
      item.fail("expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
  }
  return std::make_unique<TemplateProcessor>(std::move(pieces));
}

// Bert/Roberta processors: cls + sequence + sep, each given as [token, id].
std::unique_ptr<PostProcessor> make_cls_sep(const JsonView& j) {
  auto id_of = [](const JsonView& pair) {
    if (pair.size() != 2) pair.fail("expected [token, id]");
    return std::vector<int32_t>{static_cast<int32_t>(pair[1].integer_in(0, INT32_MAX))};
  };
  std::vector<std::optional<std::vector<int32_t>>> pieces;
  pieces.emplace_back(id_of(j.at("cls")));
  pieces.emplace_back(std::nullopt);
  pieces.emplace_back(id_of(j.at("sep")));
  return std::make_unique<TemplateProcessor>(std::move(pieces));
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const JsonView& j, int nesting) {
  if (j.is_null()) return nullptr;
  check_component_nesting(j, nesting);
  const std::string type = j.at("type").str();
  if (type == "TemplateProcessing") return make_template(j);
  if (type == "BertProcessing" || type == "RobertaProcessing") return make_cls_sep(j);
  if (type == "ByteLevel") return std::make_unique<IdentityProcessor>();
  if (type == "Sequence") {
    JsonView list = j.at("processors");
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (size_t i = 0; i < list.size(); ++i)
      if (auto p = make_post_processor(list[i], nesting + 1)) steps.push_back(std::move(p));
    return std::make_unique<SequenceProcessor>(std::move(steps));
  }
  j.at("type").fail("unsupported post_processor type \"" + type + "\"");
}

}  // namespace phinfer::tok
