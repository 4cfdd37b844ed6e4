#pragma once
// HF normalizers: rewrite a text segment before pre-tokenization. Only the kinds the supported
// tokenizers declare are implemented; others are rejected by name at load time, and new ones
// (NFC, Lowercase, ...) slot in as further Normalizer subclasses in make_normalizer().
#include <memory>
#include <string>

#include "tokenizer/json_view.h"

namespace phinfer::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string text) const = 0;
};

// From the "normalizer" field; nullptr for JSON null (no normalization).
// `nesting`: how many Sequence levels enclose j (bounded by kMaxComponentNesting).
std::unique_ptr<Normalizer> make_normalizer(const JsonView& j, int nesting = 0);

}  // namespace phinfer::tok
