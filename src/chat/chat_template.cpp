// ChatTemplate: the public face of the Jinja subset interpreter in this folder. The template is
// lexed and parsed once; render() supplies the variables transformers' apply_chat_template does.
#include "phinfer/chat_template.h"

#include <new>

#include "chat/jinja_eval.h"
#include "chat/jinja_parser.h"
#include "phinfer/error.h"

namespace phinfer {

struct ChatTemplate::Impl {
  explicit Impl(const std::string& text) : source(text), body(jinja::parse(source, jinja::tokenize(source))) {}
  jinja::Source source;
  jinja::Body body;
};

ChatTemplate::ChatTemplate(const std::string& source) : impl_(std::make_unique<Impl>(source)) {}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

namespace {

// A message as the dict transformers passes: {"role", "content", extra fields...}, so that
// `'tools' in message` and message.tools work for fields given in ChatMessage::extra.
jinja::Json message_dict(const ChatMessage& m, size_t index) {
  jinja::Json msg = {{"role", m.role}, {"content", m.content}};
  if (!m.extra.is_null() && !m.extra.is_object())
    throw Error("chat message " + std::to_string(index) + ": extra fields must be a JSON object, got " +
                std::string(m.extra.type_name()));
  // The evaluator's recursive walks rely on bounded nesting, and so does the copy below: checked
  // first. The message dict nests exactly as deep as its extra fields.
  if (json_nests_deeper_than(m.extra, jinja::kMaxValueDepth - 1))
    throw Error("chat message " + std::to_string(index) + ": extra fields nested more than " +
                std::to_string(jinja::kMaxValueDepth - 1) + " levels deep (the limit)");
  if (m.extra.is_object())
    for (const auto& [key, value] : m.extra.items())
      if (key != "role" && key != "content") msg[key] = jinja::Json::parse(value.dump());
  return msg;
}

}  // namespace

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 const std::string& bos_token, const std::string& eos_token) const {
  jinja::Json list = jinja::Json::array();
  for (size_t i = 0; i < messages.size(); ++i) list.push_back(message_dict(messages[i], i));
  try {
    // transformers also passes tools=None and documents=None when none are given.
    return jinja::render(impl_->source, impl_->body,
                         {{"messages", jinja::Value(std::move(list))},
                          {"add_generation_prompt", jinja::Value(jinja::Json(add_generation_prompt))},
                          {"bos_token", jinja::Value(jinja::Json(bos_token))},
                          {"eos_token", jinja::Value(jinja::Json(eos_token))},
                          {"tools", jinja::Value(jinja::Json(nullptr))},
                          {"documents", jinja::Value(jinja::Json(nullptr))}});
  } catch (const std::bad_alloc&) {  // last resort; the size limits should make it unreachable
    throw Error("chat template: out of memory while rendering");
  }
}

}  // namespace phinfer
