#pragma once
// Function calling (tools) for the Phi family: OpenAI-style function definitions put into the prompt
// the way the model was trained to read them, and the model's tool calls read back out of its text.
//
// Prompt. Phi-4-mini's chat template takes the tools as a JSON list in the system message's
// `tools` field and renders it between <|tool|> and <|/tool|>; the list is written as Phi-4-mini's
// model card shows it: [{"name", "description", "parameters": {PARAM: {"description", "type",
// "default", ...}}}] with Python's type names (str, int, float, bool, list, dict) and Python's JSON
// spacing. A model whose template does not read `tools` (Phi-3, Phi-3.5) gets the same list with a
// short instruction in its system message (or, where its template drops system messages, in the
// first user message), asking for the same call syntax. Tool results (role "tool") keep their role
// where the template renders it and become user messages where it does not.
//
// Output. A tool call is <|tool_call|>[{"name": ..., "arguments": {...}}]<|/tool_call|> (several
// calls in one list); `functools[...]` (which Phi-4-mini also writes) and {"type": "function",
// "function": {...}} items are read too, "arguments" may be an object or a JSON string of one. Text
// before the first call is the message's content. A call that names no offered function, or a block
// that is not such a list, is not a call: the text is returned unchanged as content.
//
// Constrained calls: call_grammar() gives a Grammar whose matches are exactly one call block to
// the offered functions, each call's arguments following that function's parameter schema.
//
// A ToolSet is immutable; it may be used from several threads at once.
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "phinfer/chat_template.h"
#include "phinfer/export.h"
#include "phinfer/grammar.h"

namespace phinfer {

class Pipeline;

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object, as text (OpenAI's shape)
};

struct ToolCallOutput {
  std::string content;          // the text that is not a call (the whole text when there is no call)
  std::vector<ToolCall> calls;  // empty: the model answered in text
};

class PHINFER_API ToolSet {
 public:
  // OpenAI's `tools` list: [{"type": "function", "function": {"name", "description", "parameters",
  // "strict"}}]. Throws phinfer::Error naming the entry and field (e.g. "tools[1].function.name")
  // for a wrong shape, a duplicate or invalid name, or parameters that are not an object schema.
  static ToolSet from_openai(const nlohmann::json& tools);

  size_t size() const { return names_.size(); }
  bool offers(std::string_view name) const;

  // The tools list as the model reads it (see above).
  const std::string& prompt_json() const { return prompt_json_; }

  // The conversation with the tools put where `pipeline`'s chat template reads them, and its
  // history prepared by history_messages. Throws phinfer::Error when the model has no chat template.
  std::vector<ChatMessage> prompt_messages(std::vector<ChatMessage> messages, const Pipeline& pipeline) const;

  // An earlier turn's calls (an "assistant" ChatMessage with OpenAI's `tool_calls` list in its
  // extra fields) written into its content in the model's syntax, and tool results (role "tool")
  // kept where `pipeline`'s template renders them, made user messages where it does not.
  static std::vector<ChatMessage> history_messages(std::vector<ChatMessage> messages, const Pipeline& pipeline);

  // A grammar whose matches are one call block: to `only_function` when it is not empty (it must be
  // offered), otherwise to any offered function; one call, or several when `parallel`. Throws
  // phinfer::Error naming the tool whose parameter schema the grammar engine does not support.
  Grammar call_grammar(const std::string& only_function = "", bool parallel = true) const;

  // The model's text split into content and calls (see above).
  ToolCallOutput parse_output(std::string_view text) const;

  // Calls written in the model's syntax (for an assistant turn that made them).
  static std::string calls_text(const std::vector<ToolCall>& calls);

 private:
  std::vector<std::string> names_;
  std::vector<nlohmann::json> parameters_;  // each function's parameter schema
  std::string prompt_json_;
};

}  // namespace phinfer
