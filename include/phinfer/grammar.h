#pragma once
// Constrained generation: a Grammar in GenerationConfig makes every generated text match it.
// At each step the tokens that cannot continue a match are masked before sampling (greedy and
// sampling alike), and the end-of-sequence token is allowed only where the text is a whole match.
// A generation that reaches max_new_tokens first ends with finish_reason "length" (its text is
// then an unfinished match).
//
// A Grammar is immutable and cheap to copy; one may serve many generations at once, from any
// thread (it caches token masks by parse state, shared by all of them). Making a grammar whose
// GBNF text equals one of the 8 made most recently returns that one, caches included (a server
// answering many requests with the same schema or tools computes their masks once).
#include <memory>
#include <string>
#include <string_view>

#include "phinfer/export.h"

namespace phinfer {

class PHINFER_API Grammar {
 public:
  // GBNF (llama.cpp's grammar form; see src/grammar/gbnf.h). Throws phinfer::Error with the
  // line and column of a syntax error, or naming the rule that is undefined, left-recursive or
  // can never finish. `source` names the grammar in messages (e.g. its file).
  static Grammar from_gbnf(std::string_view text, const std::string& source = "grammar");
  // A JSON Schema (text). Throws phinfer::Error naming an unsupported keyword or format and where
  // it is (see src/grammar/json_schema.h for what is supported).
  static Grammar from_json_schema(std::string_view schema, const std::string& source = "JSON schema");
  // Any JSON object.
  static Grammar any_json_object();

  // The grammar in GBNF (for a schema: the grammar made from it).
  const std::string& gbnf() const;

  struct PHINFER_HIDDEN Impl;
  std::shared_ptr<const Impl> impl;
};

}  // namespace phinfer
