#pragma once
// The OpenAI request bodies `phinfer serve` accepts, parsed and validated strictly (no HTTP here, so
// the rules are unit-tested on their own). A field the server does not support is an error, never
// silently ignored; only metadata (`user`, `metadata`, `store`, ...) passes unread.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phinfer/chat_template.h"
#include "phinfer/grammar.h"
#include "phinfer/tools.h"

namespace phinfer::server {

// An error answered in OpenAI's shape: {"error":{"message","type","param","code"}}.
struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status, std::string message, std::string param = {}, std::string code = {},
           std::string type = "invalid_request_error")
      : std::runtime_error(std::move(message)), status(status), type(std::move(type)), param(std::move(param)),
        code(std::move(code)) {}
  nlohmann::json body() const;
};

struct ApiLimits {
  size_t max_messages = 1024;
  int64_t max_tokens = 4096;   // most tokens one choice may ask for (and the default when it asks none)
  int max_n = 16;
  size_t max_stop = 16;
  size_t max_prompts = 64;     // completions: prompts in one list
};

enum class Endpoint { Chat, Completions, Responses };

// What every endpoint boils down to: prompts (messages or text), sampling and the answer's shape.
struct ApiRequest {
  Endpoint endpoint = Endpoint::Chat;
  std::string model;
  std::vector<ChatMessage> messages;  // chat, responses
  std::vector<std::string> prompts;   // completions
  int n = 1;
  std::optional<int64_t> max_tokens;
  std::optional<double> temperature, top_p;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  double presence_penalty = 0, frequency_penalty = 0;
  bool logprobs = false;
  int top_logprobs = 0;
  bool stream = false, include_usage = false, echo = false;
  // chat response_format json_object / json_schema (strict or not, the output always follows it),
  // or tool_choice required / a named function (the output is a call, its arguments following the
  // function's parameters).
  std::optional<Grammar> grammar;
  // chat tools: offered unless tool_choice is none; the answer's calls are read from its text.
  std::optional<ToolSet> tools;
  bool tool_calls_enabled() const { return tools.has_value(); }
};

ApiRequest parse_chat_request(const nlohmann::json& body, const ApiLimits& limits);
ApiRequest parse_completion_request(const nlohmann::json& body, const ApiLimits& limits);
ApiRequest parse_responses_request(const nlohmann::json& body, const ApiLimits& limits);
// Parses a request body as JSON; an ApiError naming the problem when it is not a JSON object.
nlohmann::json parse_body(const std::string& text);

}  // namespace phinfer::server
