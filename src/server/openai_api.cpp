#include "server/openai_api.h"

#include <cmath>
#include <set>

#include "phinfer/error.h"

namespace phinfer::server {

using nlohmann::json;

json ApiError::body() const {
  return {{"error",
           {{"message", what()},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

json parse_body(const std::string& text) {
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) throw ApiError(400, "the request body is not valid JSON", "", "invalid_json");
  if (!body.is_object())
    throw ApiError(400, std::string("the request body must be a JSON object, found ") + body.type_name(), "",
                   "invalid_json");
  return body;
}

namespace {

// Metadata a client may send that changes nothing in the answer.
const std::set<std::string> kIgnoredFields = {"user", "metadata", "store", "service_tier", "safety_identifier",
                                              "prompt_cache_key"};

void reject_unknown_fields(const json& body, const std::set<std::string>& supported) {
  for (const auto& [key, value] : body.items()) {
    if (supported.count(key) || kIgnoredFields.count(key)) continue;
    if (value.is_null()) continue;  // an explicit null asks for the default
    throw ApiError(400, "the field '" + key + "' is not supported by this server", key, "unsupported_parameter");
  }
}

// The field's value when present and not null; an ApiError naming it when the type is wrong.
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

[[noreturn]] void type_error(const char* name, const char* expected, const json& found) {
  throw ApiError(400, std::string("'") + name + "' must be " + expected + ", found " + found.type_name(), name,
                 "invalid_type");
}

std::optional<double> number(const json& body, const char* name, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) type_error(name, "a number", *v);
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    throw ApiError(400, std::string("'") + name + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                            "], found " + v->dump(),
                   name, "invalid_value");
  return x;
}

std::optional<int64_t> integer(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) type_error(name, "an integer", *v);
  // nlohmann keeps non-negative literals unsigned: compare those as unsigned (a huge one must not wrap).
  const bool out_of_range = v->is_number_unsigned()
                                ? v->get<uint64_t>() > static_cast<uint64_t>(hi) ||
                                      (lo > 0 && v->get<uint64_t>() < static_cast<uint64_t>(lo))
                                : v->get<int64_t>() < lo || v->get<int64_t>() > hi;
  if (out_of_range)
    throw ApiError(400, std::string("'") + name + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                            "], found " + v->dump(),
                   name, "invalid_value");
  return v->get<int64_t>();
}

std::optional<bool> boolean(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) type_error(name, "a boolean", *v);
  return v->get<bool>();
}

std::string required_string(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) throw ApiError(400, std::string("'") + name + "' is required", name, "missing_required_parameter");
  if (!v->is_string()) type_error(name, "a string", *v);
  return v->get<std::string>();
}

// The sampling fields every endpoint shares.
void parse_sampling(const json& body, ApiRequest& r, const ApiLimits& limits, const char* max_tokens_name) {
  r.model = required_string(body, "model");
  r.temperature = number(body, "temperature", 0, 2);
  r.top_p = number(body, "top_p", 0, 1);
  if (r.top_p && *r.top_p == 0) throw ApiError(400, "'top_p' must be > 0", "top_p", "invalid_value");
  if (auto s = integer(body, "seed", INT64_MIN, INT64_MAX)) r.seed = static_cast<uint64_t>(*s);
  r.max_tokens = integer(body, max_tokens_name, 0, limits.max_tokens);
  r.stream = boolean(body, "stream").value_or(false);
}

void parse_penalties_and_stop(const json& body, ApiRequest& r, const ApiLimits& limits) {
  r.presence_penalty = number(body, "presence_penalty", -2, 2).value_or(0);
  r.frequency_penalty = number(body, "frequency_penalty", -2, 2).value_or(0);
  r.n = static_cast<int>(integer(body, "n", 1, limits.max_n).value_or(1));
  if (const json* stop = field(body, "stop")) {
    if (stop->is_string()) {
      r.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      if (stop->size() > limits.max_stop)
        throw ApiError(400, "'stop' has " + std::to_string(stop->size()) + " strings; at most " +
                                std::to_string(limits.max_stop) + " are allowed",
                       "stop", "invalid_value");
      for (const auto& s : *stop) {
        if (!s.is_string()) type_error("stop", "a string or a list of strings", s);
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      type_error("stop", "a string or a list of strings", *stop);
    }
    for (const auto& s : r.stop)
      if (s.empty()) throw ApiError(400, "a stop string must not be empty", "stop", "invalid_value");
  }
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) type_error("stream_options", "an object", *so);
    reject_unknown_fields(*so, {"include_usage"});
    r.include_usage = boolean(*so, "include_usage").value_or(false);
  }
}

// Message content: a string, or an array of text parts ({"type": text_type, "text": ...}).
std::string message_content(const json& content, const std::set<std::string>& text_types) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) type_error("content", "a string or an array of text parts", content);
  std::string text;
  for (const auto& part : content) {
    if (!part.is_object()) type_error("content", "an array of objects", part);
    const std::string type = required_string(part, "type");
    if (!text_types.count(type))
      throw ApiError(400, "content parts of type '" + type + "' are not supported; only text", "content",
                     "unsupported_content");
    reject_unknown_fields(part, {"type", "text"});
    text += required_string(part, "text");
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& list, const char* name, const ApiLimits& limits,
                                        const std::set<std::string>& text_types) {
  if (!list.is_array()) type_error(name, "an array of messages", list);
  if (list.empty()) throw ApiError(400, std::string("'") + name + "' must not be empty", name, "invalid_value");
  if (list.size() > limits.max_messages)
    throw ApiError(400, std::string("'") + name + "' has " + std::to_string(list.size()) + " messages; at most " +
                            std::to_string(limits.max_messages) + " are allowed",
                   name, "invalid_value");
  std::vector<ChatMessage> messages;
  for (const auto& m : list) {
    if (!m.is_object()) type_error(name, "an array of objects", m);
    reject_unknown_fields(m, {"role", "content", "name", "type", "tool_calls", "tool_call_id"});
    if (const json* type = field(m, "type"); type && *type != "message")
      throw ApiError(400, "only items of type 'message' are supported", name, "unsupported_content");
    std::string role = required_string(m, "role");
    if (role == "developer") role = "system";  // OpenAI's newer name for the system role
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      throw ApiError(400, "message role '" + role + "' is not supported; use system, user, assistant or tool", name,
                     "invalid_value");
    const json* calls = field(m, "tool_calls");
    if (calls && role != "assistant")
      throw ApiError(400, "only assistant messages carry 'tool_calls'", name, "invalid_value");
    const json* content = field(m, "content");
    // An assistant turn that only called tools has no content.
    if (!content && !calls) throw ApiError(400, "every message needs 'content'", name, "missing_required_parameter");
    ChatMessage message{role, content ? message_content(*content, text_types) : std::string()};
    if (calls) {
      if (!calls->is_array()) type_error("tool_calls", "an array of tool calls", *calls);
      for (const auto& c : *calls) {
        if (!c.is_object()) type_error("tool_calls", "an array of objects", c);
        reject_unknown_fields(c, {"id", "type", "function"});
        const json* f = field(c, "function");
        if (!f || !f->is_object()) throw ApiError(400, "a tool call needs a 'function' object", "tool_calls", "invalid_value");
        reject_unknown_fields(*f, {"name", "arguments"});
        required_string(*f, "name");
        required_string(*f, "arguments");
      }
      message.extra["tool_calls"] = *calls;
    }
    messages.push_back(std::move(message));
  }
  return messages;
}

// {"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema", "strict", "description"}}.
std::optional<Grammar> parse_response_format(const json& format) {
  if (!format.is_object()) type_error("response_format", "an object", format);
  reject_unknown_fields(format, {"type", "json_schema"});
  const std::string type = required_string(format, "type");
  if (type == "text") return std::nullopt;
  if (type == "json_object") return Grammar::any_json_object();
  if (type != "json_schema")
    throw ApiError(400, "'response_format.type' must be text, json_object or json_schema, found '" + type + "'",
                   "response_format", "invalid_value");
  const json* spec = field(format, "json_schema");
  if (!spec) throw ApiError(400, "'json_schema' is required for response_format json_schema", "response_format",
                            "missing_required_parameter");
  if (!spec->is_object()) type_error("json_schema", "an object", *spec);
  reject_unknown_fields(*spec, {"name", "schema", "strict", "description"});
  required_string(*spec, "name");
  boolean(*spec, "strict");
  const json* schema = field(*spec, "schema");
  try {
    return Grammar::from_json_schema(schema ? schema->dump() : "{}", "response_format.json_schema.schema");
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "response_format", "invalid_value");
  }
}

// tools + tool_choice (+ parallel_tool_calls): what the model is offered and whether it must call.
void parse_tools(const json& body, ApiRequest& r) {
  const json* tools = field(body, "tools");
  const json* choice = field(body, "tool_choice");
  const bool parallel = boolean(body, "parallel_tool_calls").value_or(true);
  std::string mode = "auto", function;
  if (choice) {
    if (choice->is_string()) {
      mode = choice->get<std::string>();
      if (mode != "none" && mode != "auto" && mode != "required")
        throw ApiError(400, "'tool_choice' must be none, auto, required or a function, found '" + mode + "'",
                       "tool_choice", "invalid_value");
    } else if (choice->is_object()) {
      reject_unknown_fields(*choice, {"type", "function"});
      if (required_string(*choice, "type") != "function")
        throw ApiError(400, "'tool_choice.type' must be function", "tool_choice", "invalid_value");
      const json* f = field(*choice, "function");
      if (!f || !f->is_object()) throw ApiError(400, "'tool_choice.function' must be an object", "tool_choice", "invalid_value");
      reject_unknown_fields(*f, {"name"});
      mode = "function";
      function = required_string(*f, "name");
    } else {
      type_error("tool_choice", "a string or an object", *choice);
    }
  }
  if (!tools) {
    if (mode == "required" || mode == "function")
      throw ApiError(400, "'tool_choice' " + mode + " needs 'tools'", "tool_choice", "invalid_value");
    return;
  }
  ToolSet set;
  try {
    set = ToolSet::from_openai(*tools);
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "tools", "invalid_value");
  }
  if (mode == "none") return;  // the model answers in text and is not shown the tools
  if (mode == "function" && !set.offers(function))
    throw ApiError(400, "'tool_choice' names the function '" + function + "', which is not among the tools", "tool_choice",
                   "invalid_value");
  if (mode == "required" || mode == "function") {
    if (r.grammar)
      throw ApiError(400, "'response_format' and a required tool call cannot both constrain the answer", "tool_choice",
                     "invalid_value");
    try {
      r.grammar = set.call_grammar(function, parallel);
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "tools", "invalid_value");
    }
  }
  r.tools = std::move(set);
}

}  // namespace

ApiRequest parse_chat_request(const json& body, const ApiLimits& limits) {
  reject_unknown_fields(body, {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed",
                               "stop", "n", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
                               "stream", "stream_options", "response_format", "tools", "tool_choice",
                               "parallel_tool_calls"});
  ApiRequest r;
  r.endpoint = Endpoint::Chat;
  parse_sampling(body, r, limits, "max_tokens");
  if (auto m = integer(body, "max_completion_tokens", 0, limits.max_tokens)) r.max_tokens = m;
  parse_penalties_and_stop(body, r, limits);
  const json* messages = field(body, "messages");
  if (!messages) throw ApiError(400, "'messages' is required", "messages", "missing_required_parameter");
  r.messages = parse_messages(*messages, "messages", limits, {"text"});
  r.logprobs = boolean(body, "logprobs").value_or(false);
  r.top_logprobs = static_cast<int>(integer(body, "top_logprobs", 0, 20).value_or(0));
  if (const json* format = field(body, "response_format")) r.grammar = parse_response_format(*format);
  parse_tools(body, r);
  if (r.top_logprobs > 0 && !r.logprobs)
    throw ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs", "invalid_value");
  return r;
}

ApiRequest parse_completion_request(const json& body, const ApiLimits& limits) {
  reject_unknown_fields(body, {"model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "n",
                               "presence_penalty", "frequency_penalty", "logprobs", "echo", "stream",
                               "stream_options"});
  ApiRequest r;
  r.endpoint = Endpoint::Completions;
  parse_sampling(body, r, limits, "max_tokens");
  parse_penalties_and_stop(body, r, limits);
  const json* prompt = field(body, "prompt");
  if (!prompt) throw ApiError(400, "'prompt' is required", "prompt", "missing_required_parameter");
  if (prompt->is_string()) {
    r.prompts.push_back(prompt->get<std::string>());
  } else if (prompt->is_array() && !prompt->empty() && prompt->size() <= limits.max_prompts) {
    for (const auto& p : *prompt) {
      if (!p.is_string()) type_error("prompt", "a string or a list of strings", p);
      r.prompts.push_back(p.get<std::string>());
    }
  } else {
    throw ApiError(400, "'prompt' must be a string or a list of 1 to " + std::to_string(limits.max_prompts) + " strings",
                   "prompt", "invalid_value");
  }
  // Completions' logprobs is the number of alternatives per token (0..5), not a flag.
  if (auto lp = integer(body, "logprobs", 0, 5)) {
    r.logprobs = true;
    r.top_logprobs = static_cast<int>(*lp);
  }
  r.echo = boolean(body, "echo").value_or(false);
  return r;
}

ApiRequest parse_responses_request(const json& body, const ApiLimits& limits) {
  reject_unknown_fields(body, {"model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream"});
  ApiRequest r;
  r.endpoint = Endpoint::Responses;
  parse_sampling(body, r, limits, "max_output_tokens");
  if (const json* instructions = field(body, "instructions")) {
    if (!instructions->is_string()) type_error("instructions", "a string", *instructions);
    r.messages.push_back({"system", instructions->get<std::string>()});
  }
  const json* input = field(body, "input");
  if (!input) throw ApiError(400, "'input' is required", "input", "missing_required_parameter");
  if (input->is_string()) {
    r.messages.push_back({"user", input->get<std::string>()});
  } else {
    for (auto& m : parse_messages(*input, "input", limits, {"input_text", "output_text", "text"}))
      r.messages.push_back(std::move(m));
  }
  return r;
}

}  // namespace phinfer::server
