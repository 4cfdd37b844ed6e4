#pragma once
// HF pre-tokenizers: cut a normalized segment into the words that the model encodes separately.
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/json_view.h"

namespace phinfer::tok {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces each piece by its sub-pieces (empty pieces are dropped, as HF does).
  virtual void apply(std::vector<std::string>& pieces) const = 0;
};

// From the "pre_tokenizer" field; nullptr for JSON null (the whole segment is one word).
// `nesting`: how many Sequence levels enclose j (bounded by kMaxComponentNesting).
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const JsonView& j, int nesting = 0);

}  // namespace phinfer::tok
