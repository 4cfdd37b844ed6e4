// The server's request bodies (server/openai_api.h): chat completions, completions and responses
// made from the fields the API documents, edited structurally (wrong types, edge numbers, deep
// nesting, unknown fields) and as bytes, then parsed and validated as `phinfer serve` does. A
// refusal must be an OpenAI-style error with a 4xx status and a message (the harness turns it into
// a phinfer::Error); an accepted request must respect the limits, and its messages must render with
// a real chat template (Phi-3-mini's) as the server would. The HTTP framing itself is cpp-httplib's,
// driven with malformed requests by the server's load test (tests/server/).
#include "fuzz/mutate.h"
#include "fuzz/targets.h"
#include "phinfer/chat_template.h"
#include "phinfer/error.h"
#include "server/openai_api.h"

namespace phinfer::fuzz {
namespace {

using nlohmann::json;

const std::vector<std::string> kWords = {
    "model",       "messages",   "role",        "content",     "system",       "user",          "assistant",
    "developer",   "tool",       "text",        "type",        "input_text",   "max_tokens",    "max_completion_tokens",
    "temperature", "top_p",      "seed",        "stop",        "n",            "presence_penalty", "frequency_penalty",
    "logprobs",    "top_logprobs", "stream",    "stream_options", "include_usage", "prompt",     "echo",
    "input",       "instructions", "max_output_tokens", "user", "metadata",    "tools",         "response_format",
    "tool_choice", "parallel_tool_calls", "tool_calls", "tool_call_id", "function", "arguments", "parameters",
    "required",    "auto",       "none",        "properties",  "<|tool_call|>", "<|end|>",     "<|user|>",   "{{ x }}",     ""};

// OpenAI tools, a tool_choice, and a conversation that already called one.
void add_tools(json& b, Rng& rng) {
  json tools = json::array();
  for (size_t n = 1 + pick(rng, 3); n > 0; --n) {
    json params = {{"type", "object"},
                   {"properties", {{"a", {{"type", "integer"}, {"maximum", 9}}}, {"s", {{"type", "string"}, {"maxLength", 4}}}}},
                   {"required", json::array({"a"})}};
    tools.push_back({{"type", "function"},
                     {"function", {{"name", "f" + std::to_string(n)}, {"description", "does f"}, {"parameters", params}}}});
  }
  b["tools"] = tools;
  static const char* const kChoices[] = {"auto", "none", "required"};
  if (one_in(rng, 2)) b["tool_choice"] = kChoices[pick(rng, 3)];
  else if (one_in(rng, 2)) b["tool_choice"] = {{"type", "function"}, {"function", {{"name", "f1"}}}};
  if (one_in(rng, 3)) b["parallel_tool_calls"] = one_in(rng, 2);
  if (one_in(rng, 2)) {
    b["messages"].push_back({{"role", "assistant"}, {"content", nullptr},
                             {"tool_calls", json::array({{{"id", "call_1"}, {"type", "function"},
                                                          {"function", {{"name", "f1"}, {"arguments", "{\"a\": 1}"}}}}})}});
    b["messages"].push_back({{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "3"}});
  }
}

json random_messages(Rng& rng) {
  static const char* const kRoles[] = {"system", "user", "assistant", "developer", "user", "user"};
  json messages = json::array();
  for (size_t n = 1 + pick(rng, 5); n > 0; --n) {
    json content;
    if (one_in(rng, 4)) {
      content = json::array();
      for (size_t k = 1 + pick(rng, 3); k > 0; --k) content.push_back({{"type", "text"}, {"text", kWords[pick(rng, kWords.size())]}});
    } else {
      content = kWords[pick(rng, kWords.size())] + " " + kWords[pick(rng, kWords.size())];
    }
    messages.push_back({{"role", kRoles[pick(rng, std::size(kRoles))]}, {"content", content}});
  }
  return messages;
}

// A valid body of the endpoint, with a random subset of its optional fields.
json valid_body(Rng& rng, server::Endpoint endpoint) {
  json b = {{"model", "m"}};
  switch (endpoint) {
    case server::Endpoint::Chat:
      b["messages"] = random_messages(rng);
      if (one_in(rng, 3)) add_tools(b, rng);
      break;
    case server::Endpoint::Completions:
      b["prompt"] = one_in(rng, 2) ? json("Once upon a time") : json::array({"a", "b c"});
      if (one_in(rng, 3)) b["echo"] = true;
      break;
    case server::Endpoint::Responses:
      b["input"] = one_in(rng, 2) ? json("hello") : random_messages(rng);
      if (one_in(rng, 3)) b["instructions"] = "be brief";
      break;
  }
  if (one_in(rng, 2)) b[endpoint == server::Endpoint::Responses ? "max_output_tokens" : "max_tokens"] = 1 + pick(rng, 64);
  if (one_in(rng, 2)) b["temperature"] = static_cast<double>(pick(rng, 200)) / 100.0;
  if (one_in(rng, 3)) b["top_p"] = static_cast<double>(pick(rng, 100) + 1) / 100.0;
  if (one_in(rng, 3)) b["seed"] = pick(rng, 1000);
  if (endpoint != server::Endpoint::Responses) {
    if (one_in(rng, 3)) b["stop"] = one_in(rng, 2) ? json("\n") : json::array({"a", "bc"});
    if (one_in(rng, 3)) b["n"] = 1 + pick(rng, 4);
    if (one_in(rng, 3)) b["presence_penalty"] = 0.5;
    if (one_in(rng, 3)) b["frequency_penalty"] = -0.5;
    if (one_in(rng, 3)) b["logprobs"] = endpoint == server::Endpoint::Chat ? json(true) : json(2);
    if (endpoint == server::Endpoint::Chat && b.value("logprobs", false) == true && one_in(rng, 2)) b["top_logprobs"] = 3;
  }
  if (one_in(rng, 2)) {
    b["stream"] = true;
    if (endpoint != server::Endpoint::Responses && one_in(rng, 2)) b["stream_options"] = {{"include_usage", true}};
  }
  if (one_in(rng, 5)) b["user"] = "someone";
  return b;
}

class OpenAiRequestHarness : public Harness {
 public:
  explicit OpenAiRequestHarness(const Context& ctx) {
    const json config = json::parse(read_file(ctx.shared_dir / "data" / "phi3-mini-4k-instruct" / "tokenizer_config.json"));
    template_ = std::make_unique<ChatTemplate>(config.at("chat_template").get<std::string>());
    limits_.max_messages = 16;
    limits_.max_tokens = 512;
    limits_.max_n = 4;
    limits_.max_stop = 4;
    limits_.max_prompts = 4;
  }

  Input generate(Rng& rng) override {
    const auto endpoint = static_cast<server::Endpoint>(pick(rng, 3));
    json body = valid_body(rng, endpoint);
    if (!one_in(rng, 4)) mutate_json(body, rng, kWords);
    std::string text = body.dump(one_in(rng, 3) ? 1 : -1, ' ', false, json::error_handler_t::replace);
    if (one_in(rng, 10) && body.is_object()) {  // a field nested deep, spliced in as text
      const size_t depth = pick(rng, 3000);
      std::string open, close;
      for (size_t d = 0; d < depth; ++d) {
        const bool array = one_in(rng, 2);
        open += array ? "[" : "{\"a\":";
        close.insert(close.begin(), array ? ']' : '}');
      }
      text.insert(text.rfind('}'), (body.empty() ? "\"" : ",\"") + kWords[pick(rng, kWords.size())] + "\":" + open + "1" + close);
    }
    if (one_in(rng, 4)) mutate_bytes(text, rng, kWords);
    static const char* const kEndpoints[] = {"chat", "completions", "responses"};
    return {{"body.json", text}, {"endpoint", kEndpoints[static_cast<int>(endpoint)]}};
  }

  void run(const Input& input) override {
    const std::string& endpoint = file(input, "endpoint");
    server::ApiRequest r;
    try {
      const json body = server::parse_body(file(input, "body.json"));
      if (endpoint == "chat") r = server::parse_chat_request(body, limits_);
      else if (endpoint == "completions") r = server::parse_completion_request(body, limits_);
      else r = server::parse_responses_request(body, limits_);
    } catch (const server::ApiError& e) {
      require(e.status >= 400 && e.status < 500, "a bad request answered with status " + std::to_string(e.status));
      require(std::string(e.what()).size() > 0 && std::string(e.what()).size() < 4096, "an error message of " +
                                                                                          std::to_string(std::string(e.what()).size()) + " bytes");
      const json shape = e.body();
      require(shape.contains("error") && shape["error"].contains("message") && shape["error"].contains("type"),
              "an error body without OpenAI's shape: " + brief(shape.dump()));
      throw Error(std::string("refused: ") + e.what());
    }
    require(r.n >= 1 && r.n <= limits_.max_n, "n = " + std::to_string(r.n) + " accepted");
    require(!r.max_tokens || (*r.max_tokens >= 0 && *r.max_tokens <= limits_.max_tokens), "max_tokens out of bounds accepted");
    require(r.stop.size() <= limits_.max_stop, "too many stop strings accepted");
    require(r.messages.size() <= limits_.max_messages + 1, "too many messages accepted");  // + instructions
    require(r.prompts.size() <= limits_.max_prompts, "too many prompts accepted");
    require(!r.temperature || (*r.temperature >= 0 && *r.temperature <= 2), "temperature out of [0, 2] accepted");
    require(!r.top_p || (*r.top_p > 0 && *r.top_p <= 1), "top_p out of (0, 1] accepted");
    require(r.top_logprobs >= 0 && r.top_logprobs <= 20, "top_logprobs out of [0, 20] accepted");
    require(r.presence_penalty >= -2 && r.presence_penalty <= 2 && r.frequency_penalty >= -2 && r.frequency_penalty <= 2,
            "a penalty out of [-2, 2] accepted");
    if (endpoint == "completions") require(!r.prompts.empty(), "a completion without a prompt accepted");
    else require(!r.messages.empty(), "a chat without messages accepted");
    if (!r.messages.empty()) (void)template_->render(r.messages, true, "<s>", "<|endoftext|>");
    if (r.tools) {
      require(r.tools->size() > 0 && !r.tools->prompt_json().empty(), "accepted tools with an empty list");
      // Calls read back from the text that writes them are the same calls.
      std::vector<ToolCall> calls;
      for (const auto& m : r.messages)
        if (m.extra.contains("tool_calls"))
          for (const auto& c : m.extra["tool_calls"])
            if (r.tools->offers(c["function"]["name"].get<std::string>()))
              calls.push_back({c["function"]["name"].get<std::string>(), c["function"]["arguments"].get<std::string>()});
      const ToolCallOutput out = r.tools->parse_output(ToolSet::calls_text(calls));
      for (size_t k = 0; k < out.calls.size() && k < calls.size(); ++k)
        require(out.calls[k].name == calls[k].name, "a call read back under another name");
    }
  }

 private:
  std::unique_ptr<ChatTemplate> template_;
  server::ApiLimits limits_;
};

}  // namespace

std::unique_ptr<Harness> make_openai_request(const Context& ctx) { return std::make_unique<OpenAiRequestHarness>(ctx); }

}  // namespace phinfer::fuzz
