#pragma once
// Chat formatting by evaluating the model's own Jinja chat_template (a subset interpreter).
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace phinfer {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", "tool", ...
  std::string content;
  nlohmann::json extra = nlohmann::json::object();  // other fields (e.g. "tools"), passed through
};

class ChatTemplate {
 public:
  // Parses the template once; throws phinfer::Error naming the construct it cannot handle.
  explicit ChatTemplate(const std::string& source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Renders like transformers' apply_chat_template(tokenize=False) (trim_blocks, lstrip_blocks).
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     const std::string& bos_token, const std::string& eos_token) const;

  struct Impl;
 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace phinfer
