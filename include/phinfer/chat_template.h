#pragma once
// Chat formatting by evaluating the model's own Jinja chat_template (a subset interpreter).
//
// Supported: text with Jinja2's whitespace control ({%- -%} {{- -}} {#- -#}, trim_blocks and
// lstrip_blocks as transformers sets them, {%+ +%}), comments, {% raw %}; statements if / elif /
// else, for (tuple targets, `if` filter, else, loop.* variables, break / continue), set (names,
// tuples, namespace attributes, set blocks), macro, print and transformers' generation block;
// Python expressions (literals, lists, dicts, tuples, subscripts, slices, attributes, calls with
// keyword arguments, arithmetic, ~, comparisons, in, and / or / not, inline if); the common Jinja
// filters and tests and the Python str / dict methods chat templates use; the globals range,
// namespace, dict, raise_exception and strftime_now. Undefined values behave like Jinja's
// Undefined. Anything else (include, import, extends, call, filter blocks, recursive loops,
// '%' string formatting, ...) is an Error naming the construct and its line and column.
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phinfer/export.h"

namespace phinfer {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", "tool", ...
  std::string content;
  // Other fields (e.g. "tools"), visible to the template as message.<field>. Nested objects reach
  // the template with their keys sorted (nlohmann::json does not keep insertion order).
  nlohmann::json extra = nlohmann::json::object();
};

class PHINFER_API ChatTemplate {
 public:
  // Parses the template once; throws phinfer::Error naming the construct it cannot handle.
  explicit ChatTemplate(const std::string& source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Renders like transformers' apply_chat_template(tokenize=False) (trim_blocks, lstrip_blocks).
  // The template sees messages, add_generation_prompt, bos_token, eos_token, and tools and
  // documents as None. Throws phinfer::Error for template errors (raise_exception(msg) gives msg
  // as the message). Loops, recursion and output size are bounded. Safe to call concurrently.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     const std::string& bos_token, const std::string& eos_token) const;

  struct PHINFER_HIDDEN Impl;
 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace phinfer
