// Tools into the prompt, calls out of the text (see include/phinfer/tools.h).
#include <algorithm>
#include <set>

#include "chat/jinja_value.h"
#include "chat/json_nesting.h"
#include "grammar/json_schema.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"
#include "phinfer/tools.h"

namespace phinfer {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

constexpr size_t kMaxTools = 128;
constexpr int kMaxToolNesting = 64;  // a parameter schema deeper than this is not a real tool
constexpr const char* kCallOpen = "<|tool_call|>";
constexpr const char* kCallClose = "<|/tool_call|>";

// Python's json.dumps with its defaults (", " and ": ", ensure_ascii), which is how Phi-4-mini's
// model card writes the tools list; the chat goldens hold it byte for byte. Callers check the
// nesting first (kMaxToolNesting, kMaxJsonNesting): dump_json recurses.
std::string python_json(const ordered_json& j) {
  jinja::JsonStyle style;
  style.ensure_ascii = true;
  return jinja::dump_json(j, style);
}

std::string python_type_name(const std::string& json_type) {
  static const std::pair<const char*, const char*> kNames[] = {
      {"string", "str"}, {"integer", "int"}, {"number", "float"}, {"boolean", "bool"},
      {"array", "list"}, {"object", "dict"}, {"null", "None"}};
  for (const auto& [from, to] : kNames)
    if (json_type == from) return to;
  return json_type;
}

// One parameter as the model card writes it: description, type (Python's name), default, then the
// schema's other keywords (enum, items, ...) as they are.
ordered_json trained_parameter(const json& schema) {
  ordered_json p = ordered_json::object();
  if (!schema.is_object()) return p;
  if (auto it = schema.find("description"); it != schema.end()) p["description"] = *it;
  if (auto it = schema.find("type"); it != schema.end()) {
    if (it->is_string()) {
      p["type"] = python_type_name(it->get<std::string>());
    } else if (it->is_array()) {
      ordered_json names = ordered_json::array();
      for (const auto& t : *it) names.push_back(t.is_string() ? ordered_json(python_type_name(t.get<std::string>())) : ordered_json(t));
      p["type"] = names;
    }
  }
  if (auto it = schema.find("default"); it != schema.end()) p["default"] = *it;
  for (const auto& [key, value] : schema.items())
    if (key != "description" && key != "type" && key != "default") p[key] = value;
  return p;
}

bool valid_function_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// How a chat template treats what the tools need, found by rendering small probes (a template is
// code: reading what it does beats matching its text).
struct TemplateReads {
  bool tools_field = false;     // message.tools of a system message (Phi-4-mini)
  bool system_content = false;  // system messages at all (some Phi-3 templates drop them)
  bool tool_role = false;       // messages of role "tool"
};

TemplateReads probe_template(const Pipeline& pipeline) {
  static const std::string kMark = "phinfer-probe-7f3a";
  auto shows = [&](std::vector<ChatMessage> messages) {
    try {
      return pipeline.render_chat(messages, true).find(kMark) != std::string::npos;
    } catch (const Error&) {
      return false;  // a template that refuses the probe does not read it
    }
  };
  TemplateReads r;
  r.tools_field = shows({{"system", "You are a helpful assistant.", json{{"tools", kMark}}}, {"user", "Hello"}});
  r.system_content = shows({{"system", kMark}, {"user", "Hello"}});
  r.tool_role = shows({{"user", "Hello"}, {"assistant", "Hi"}, {"tool", kMark}});
  return r;
}

// The calls in one block's JSON: a list of {"name", "arguments"} (or {"type": "function",
// "function": {...}}) items, or one such item. False when it is not that shape.
bool read_calls(const json& block, const ToolSet& tools, std::vector<ToolCall>& calls) {
  const json items = block.is_array() ? block : json::array({block});
  if (items.empty()) return false;
  for (const json& raw : items) {
    if (!raw.is_object()) return false;
    const json* item = &raw;
    if (auto f = raw.find("function"); f != raw.end() && f->is_object()) item = &*f;
    auto name = item->find("name");
    if (name == item->end() || !name->is_string() || !tools.offers(name->get<std::string>())) return false;
    auto args = item->find("arguments");
    if (args == item->end()) args = item->find("parameters");
    json arguments = json::object();
    if (args != item->end()) {
      if (args->is_string()) {
        arguments = json::parse(args->get<std::string>(), nullptr, false);
        if (arguments.is_discarded()) return false;
      } else {
        arguments = *args;
      }
    }
    if (!arguments.is_object()) return false;
    calls.push_back({name->get<std::string>(), arguments.dump()});
  }
  return true;
}

// Earlier calls of the assistant, written back as the model wrote them; tool results in a form the
// template shows.
void history_in_place(std::vector<ChatMessage>& messages, const TemplateReads& reads) {
  for (ChatMessage& m : messages) {
    if (m.role == "assistant" && m.extra.is_object() && m.extra.contains("tool_calls")) {
      std::vector<ToolCall> calls;
      const json& list = m.extra["tool_calls"];
      if (!list.is_array()) throw Error("an assistant message's tool_calls must be a list");
      for (const json& c : list) {
        const json& f = c.is_object() && c.contains("function") ? c["function"] : c;
        if (!f.is_object() || !f.contains("name") || !f["name"].is_string())
          throw Error("an assistant message's tool call needs a function name");
        const json args = f.value("arguments", json("{}"));
        calls.push_back({f["name"].get<std::string>(), args.is_string() ? args.get<std::string>() : args.dump()});
      }
      m.content += ToolSet::calls_text(calls);
      m.extra.erase("tool_calls");
    } else if (m.role == "tool" && !reads.tool_role) {
      m = ChatMessage{"user", "Result of the tool call: " + m.content, json::object()};
    }
  }
}

}  // namespace

ToolSet ToolSet::from_openai(const json& tools) {
  if (!tools.is_array()) throw Error(std::string("tools must be a list, found ") + tools.type_name());
  if (tools.empty()) throw Error("tools must not be empty");
  if (tools.size() > kMaxTools)
    throw Error("tools has " + std::to_string(tools.size()) + " entries; at most " + std::to_string(kMaxTools) + " are supported");
  if (json_nests_deeper_than(tools, kMaxToolNesting))
    throw Error("tools are nested more than " + std::to_string(kMaxToolNesting) + " levels deep");
  ToolSet set;
  ordered_json list = ordered_json::array();
  std::set<std::string> seen;
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string where = "tools[" + std::to_string(i) + "]";
    const json& t = tools[i];
    if (!t.is_object()) throw Error(where + " must be an object, found " + std::string(t.type_name()));
    if (auto type = t.find("type"); type == t.end() || *type != "function")
      throw Error(where + ".type must be \"function\"" +
                  (type == t.end() ? std::string(", found none") : ", found " + type->dump()));
    auto f = t.find("function");
    if (f == t.end() || !f->is_object()) throw Error(where + ".function must be an object");
    auto name = f->find("name");
    if (name == f->end() || !name->is_string() || !valid_function_name(name->get<std::string>()))
      throw Error(where + ".function.name must be 1 to 64 letters, digits, '_' or '-'" +
                  (name == f->end() ? std::string(", found none") : ", found " + name->dump()));
    if (!seen.insert(name->get<std::string>()).second)
      throw Error(where + ".function.name: \"" + name->get<std::string>() + "\" is given twice");
    json parameters = json{{"type", "object"}};
    if (auto p = f->find("parameters"); p != f->end() && !p->is_null()) {
      if (!p->is_object()) throw Error(where + ".function.parameters must be a JSON schema object, found " + std::string(p->type_name()));
      if (auto type = p->find("type"); type != p->end() && *type != "object")
        throw Error(where + ".function.parameters must describe an object, found type " + type->dump());
      parameters = *p;
      if (!parameters.contains("type")) parameters["type"] = "object";
    }
    ordered_json entry = ordered_json::object();
    entry["name"] = name->get<std::string>();
    if (auto d = f->find("description"); d != f->end() && !d->is_null()) {
      if (!d->is_string()) throw Error(where + ".function.description must be a string");
      entry["description"] = *d;
    }
    ordered_json params = ordered_json::object();
    if (auto props = parameters.find("properties"); props != parameters.end() && props->is_object())
      for (const auto& [key, value] : props->items()) params[key] = trained_parameter(value);
    entry["parameters"] = params;
    list.push_back(std::move(entry));
    set.names_.push_back(name->get<std::string>());
    set.parameters_.push_back(std::move(parameters));
  }
  set.prompt_json_ = python_json(list);
  return set;
}

bool ToolSet::offers(std::string_view name) const {
  return std::find(names_.begin(), names_.end(), name) != names_.end();
}

std::vector<ChatMessage> ToolSet::history_messages(std::vector<ChatMessage> messages, const Pipeline& pipeline) {
  const TemplateReads reads = probe_template(pipeline);
  history_in_place(messages, reads);
  return messages;
}

std::vector<ChatMessage> ToolSet::prompt_messages(std::vector<ChatMessage> messages, const Pipeline& pipeline) const {
  const TemplateReads reads = probe_template(pipeline);
  history_in_place(messages, reads);
  auto system = std::find_if(messages.begin(), messages.end(), [](const ChatMessage& m) { return m.role == "system"; });
  if (reads.tools_field) {
    if (system == messages.end())
      system = messages.insert(messages.begin(), ChatMessage{"system", "You are a helpful assistant with some tools.", json::object()});
    if (!system->extra.is_object()) system->extra = json::object();
    system->extra["tools"] = prompt_json_;
    return messages;
  }
  const std::string instructions =
      "You can call these functions (tools):\n" + prompt_json_ +
      "\nTo call one or more of them, answer with only " + kCallOpen +
      "[{\"name\": \"FUNCTION\", \"arguments\": {\"ARGUMENT\": VALUE}}]" + kCallClose + "; otherwise answer normally.";
  if (reads.system_content) {
    if (system == messages.end())
      messages.insert(messages.begin(), ChatMessage{"system", instructions, json::object()});
    else
      system->content += (system->content.empty() ? "" : "\n\n") + instructions;
    return messages;
  }
  auto user = std::find_if(messages.begin(), messages.end(), [](const ChatMessage& m) { return m.role == "user"; });
  if (user == messages.end()) throw Error("the conversation has no user message to give the tools to");
  user->content = instructions + "\n\n" + user->content;
  return messages;
}

Grammar ToolSet::call_grammar(const std::string& only_function, bool parallel) const {
  std::vector<grammar::FunctionSchema> functions;
  for (size_t i = 0; i < names_.size(); ++i)
    if (only_function.empty() || names_[i] == only_function) functions.push_back({names_[i], parameters_[i]});
  if (functions.empty()) throw Error("the function '" + only_function + "' is not among the tools");
  return Grammar::from_gbnf(grammar::function_calls_gbnf(functions, parallel, kCallOpen, kCallClose), "tool calls");
}

ToolCallOutput ToolSet::parse_output(std::string_view text) const {
  ToolCallOutput out;
  out.content = std::string(text);
  // The first block decides: <|tool_call|>JSON<|/tool_call|> (more blocks may follow), or functools[...].
  const size_t open = text.find(kCallOpen);
  const size_t functools = text.find("functools[");
  std::vector<ToolCall> calls;
  std::string content;
  if (open != std::string_view::npos && (functools == std::string_view::npos || open < functools)) {
    content = std::string(text.substr(0, open));
    size_t at = open;
    while (at != std::string_view::npos) {
      const size_t body = at + std::char_traits<char>::length(kCallOpen);
      const size_t close = text.find(kCallClose, body);
      if (close == std::string_view::npos) return out;  // unfinished (e.g. cut by max_new_tokens)
      const json block = json::parse(text.substr(body, close - body), nullptr, false);
      if (block.is_discarded() || json_nests_deeper_than(block, kMaxJsonNesting) || !read_calls(block, *this, calls)) return out;
      const size_t next = close + std::char_traits<char>::length(kCallClose);
      at = text.find(kCallOpen, next);
      const std::string_view between = text.substr(next, at == std::string_view::npos ? std::string_view::npos : at - next);
      if (between.find_first_not_of(" \t\r\n") != std::string_view::npos) return out;  // text after the calls
    }
  } else if (functools != std::string_view::npos) {
    content = std::string(text.substr(0, functools));
    const std::string_view rest = text.substr(functools + 9);  // from the '['
    const size_t end = rest.rfind(']');
    if (end == std::string_view::npos) return out;
    if (rest.substr(end + 1).find_first_not_of(" \t\r\n") != std::string_view::npos) return out;
    const json block = json::parse(rest.substr(0, end + 1), nullptr, false);
    if (block.is_discarded() || json_nests_deeper_than(block, kMaxJsonNesting) || !read_calls(block, *this, calls)) return out;
  } else {
    return out;
  }
  // Models put a space or newline before their calls; it is not content.
  while (!content.empty() && (content.back() == ' ' || content.back() == '\n' || content.back() == '\t' || content.back() == '\r'))
    content.pop_back();
  out.content = std::move(content);
  out.calls = std::move(calls);
  return out;
}

std::string ToolSet::calls_text(const std::vector<ToolCall>& calls) {
  ordered_json list = ordered_json::array();
  for (const ToolCall& c : calls) {
    ordered_json item = ordered_json::object();
    item["name"] = c.name;
    ordered_json args = ordered_json::parse(c.arguments, nullptr, false);
    if (args.is_discarded() || json_nests_deeper_than(args, kMaxJsonNesting)) args = c.arguments;  // kept as the string it was
    item["arguments"] = std::move(args);
    list.push_back(std::move(item));
  }
  return kCallOpen + python_json(list) + kCallClose;
}

}  // namespace phinfer
