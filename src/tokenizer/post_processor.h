#pragma once
// HF post-processors: what encode(add_special_tokens = true) wraps around the ids of one sequence.
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "tokenizer/json_view.h"

namespace phinfer::tok {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual std::vector<int32_t> process(std::vector<int32_t> ids) const = 0;
};

// From the "post_processor" field; nullptr for JSON null (nothing is added).
// `nesting`: how many Sequence levels enclose j (bounded by kMaxComponentNesting).
std::unique_ptr<PostProcessor> make_post_processor(const JsonView& j, int nesting = 0);

}  // namespace phinfer::tok
