// Tool calls: OpenAI function definitions rendered into Phi-4-mini's prompt exactly as its chat
// golden (transformers' rendering of the model card's example), the Phi-3 fallback, calls parsed
// out of model text (well-formed, malformed, several), earlier calls written back, and constrained
// calls sampled from a random-weight model that always parse and name offered functions.
#include <gtest/gtest.h>

#include <fstream>

#include "phinfer/error.h"
#include "phinfer/pipeline.h"
#include "phinfer/tools.h"
#include "test_util.h"

namespace phinfer {
namespace {

using nlohmann::json;

// The model card's tool, as an app would give it through the OpenAI API.
json weather_tools() {
  return json::parse(R"([{"type": "function", "function": {
      "name": "get_weather_updates",
      "description": "Fetches weather updates for a given city using the RapidAPI Weather API.",
      "parameters": {"type": "object", "properties": {"city": {
          "type": "string", "description": "The name of the city for which to retrieve weather information.",
          "default": "London"}}, "required": ["city"]}}}])");
}

json tool_golden_line() {
  std::ifstream in(test::shared_path("golden/chat/phi4-mini-instruct.jsonl"));
  std::string line;
  while (std::getline(in, line))
    if (line.find("\"tools\"") != std::string::npos) return json::parse(line);
  ADD_FAILURE() << "no tool line in the Phi-4-mini chat golden";
  return json::object();
}

TEST(ToolCalls, Phi4MiniPromptEqualsTheTemplateGolden) {
  const json golden = tool_golden_line();
  const ToolSet tools = ToolSet::from_openai(weather_tools());
  EXPECT_EQ(tools.prompt_json(), golden["messages"][0]["tools"].get<std::string>());
  // phi4-tiny-synth carries Phi-4-mini's tokenizer and chat template.
  const Pipeline p = Pipeline::load(test::shared_path("models/phi4-tiny-synth"));
  std::vector<ChatMessage> messages = {{"system", golden["messages"][0]["content"].get<std::string>()},
                                       {"user", golden["messages"][1]["content"].get<std::string>()}};
  const auto prompt = tools.prompt_messages(messages, p);
  EXPECT_EQ(p.render_chat(prompt), golden["rendered"].get<std::string>());
  EXPECT_EQ(p.encode_chat(prompt), golden["ids"].get<std::vector<int32_t>>());
  // Without a system message the model card's is added.
  const auto no_system = tools.prompt_messages({messages[1]}, p);
  EXPECT_EQ(p.render_chat(no_system).rfind("<|system|>You are a helpful assistant with some tools.<|tool|>[", 0), 0u);
}

TEST(ToolCalls, Phi3GetsTheToolsAsInstructions) {
  const ToolSet tools = ToolSet::from_openai(weather_tools());
  const Pipeline p = Pipeline::load(test::shared_path("models/phi3-tiny-mha"));
  const std::string text = p.render_chat(tools.prompt_messages({{"user", "Weather in Paris?"}}, p));
  EXPECT_NE(text.find(tools.prompt_json()), std::string::npos) << text;
  EXPECT_NE(text.find("<|tool_call|>[{\"name\": \"FUNCTION\""), std::string::npos) << text;
  EXPECT_NE(text.find("Weather in Paris?"), std::string::npos);
  // A tool result the Phi-3 template would drop becomes a user message; an earlier call is written back.
  json calls = json::parse(R"([{"id": "call_1", "type": "function",
                                "function": {"name": "get_weather_updates", "arguments": "{\"city\": \"Paris\"}"}}])");
  std::vector<ChatMessage> history = {{"user", "Weather in Paris?"}, {"assistant", "", json{{"tool_calls", calls}}},
                                      {"tool", "18 C, sunny"}};
  const std::string again = p.render_chat(ToolSet::history_messages(history, p));
  EXPECT_NE(again.find("<|tool_call|>[{\"name\": \"get_weather_updates\", \"arguments\": {\"city\": \"Paris\"}}]<|/tool_call|>"),
            std::string::npos) << again;
  EXPECT_NE(again.find("Result of the tool call: 18 C, sunny"), std::string::npos) << again;
}

TEST(ToolCalls, Phi4KeepsToolResultsInItsToolRole) {
  const Pipeline p = Pipeline::load(test::shared_path("models/phi4-tiny-synth"));
  const std::string text = p.render_chat(ToolSet::history_messages({{"user", "Hi"}, {"tool", "42"}}, p));
  EXPECT_NE(text.find("<|tool|>42<|end|>"), std::string::npos) << text;
}

TEST(ToolCalls, ParsesCalls) {
  const ToolSet tools = ToolSet::from_openai(json::parse(R"([
      {"type": "function", "function": {"name": "add", "parameters": {"type": "object",
          "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}},
      {"type": "function", "function": {"name": "now"}}])"));
  auto out = tools.parse_output(R"(<|tool_call|>[{"name": "add", "arguments": {"a": 1, "b": 2}}]<|/tool_call|>)");
  ASSERT_EQ(out.calls.size(), 1u);
  EXPECT_EQ(out.calls[0].name, "add");
  EXPECT_EQ(json::parse(out.calls[0].arguments), json({{"a", 1}, {"b", 2}}));
  EXPECT_EQ(out.content, "");
  // Several calls, in one list and in two blocks; arguments as a JSON string; the OpenAI item shape.
  out = tools.parse_output("Let me check. <|tool_call|>[{\"name\": \"now\", \"arguments\": {}}, "
                           "{\"type\": \"function\", \"function\": {\"name\": \"add\", \"arguments\": \"{\\\"a\\\": 3, \\\"b\\\": 4}\"}}]"
                           "<|/tool_call|>\n<|tool_call|>{\"name\": \"now\"}<|/tool_call|>");
  ASSERT_EQ(out.calls.size(), 3u);
  EXPECT_EQ(out.content, "Let me check.");
  EXPECT_EQ(out.calls[1].name, "add");
  EXPECT_EQ(json::parse(out.calls[1].arguments)["b"], 4);
  EXPECT_EQ(out.calls[2].arguments, "{}");
  // functools[...], as Phi-4-mini also writes.
  out = tools.parse_output(R"(functools[{"name": "add", "arguments": {"a": 5, "b": 6}}])");
  ASSERT_EQ(out.calls.size(), 1u);
  EXPECT_EQ(json::parse(out.calls[0].arguments)["a"], 5);
  // Not calls: the text stays content.
  for (const char* text : {"<|tool_call|>[{\"name\": \"add\", \"arguments\": {\"a\": 1}",           // unfinished
                           "<|tool_call|>[{\"name\": \"delete_all\", \"arguments\": {}}]<|/tool_call|>",  // not offered
                           "<|tool_call|>not json<|/tool_call|>",
                           "<|tool_call|>[]<|/tool_call|>",
                           "<|tool_call|>[{\"name\": \"add\", \"arguments\": [1, 2]}]<|/tool_call|>",
                           "<|tool_call|>[{\"name\": \"now\"}]<|/tool_call|> and then some text",
                           "plain answer"}) {
    out = tools.parse_output(text);
    EXPECT_TRUE(out.calls.empty()) << text;
    EXPECT_EQ(out.content, text);
  }
  // A hostile block nested far too deep is text, not a crash.
  std::string deep = "<|tool_call|>" + std::string(100000, '[') + std::string(100000, ']') + "<|/tool_call|>";
  EXPECT_TRUE(tools.parse_output(deep).calls.empty());
}

TEST(ToolCalls, BadDefinitionsNameTheField) {
  auto message = [](const char* tools) {
    try {
      ToolSet::from_openai(json::parse(tools));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(R"({"type": "function"})").find("tools must be a list"), std::string::npos);
  EXPECT_NE(message(R"([{"type": "retrieval"}])").find("tools[0].type"), std::string::npos);
  EXPECT_NE(message(R"([{"type": "function", "function": {"name": "a b"}}])").find("tools[0].function.name"), std::string::npos);
  EXPECT_NE(message(R"([{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}])")
                .find("tools[1].function.name: \"f\" is given twice"), std::string::npos);
  EXPECT_NE(message(R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}])")
                .find("tools[0].function.parameters must describe an object"), std::string::npos);
  const ToolSet t = ToolSet::from_openai(json::parse(
      R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"s": {"type": "string", "pattern": "^a"}}}}}])"));
  try {
    t.call_grammar();
    ADD_FAILURE() << "a pattern was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("function 'f'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("pattern"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.call_grammar("g"), Error);
}

// Constrained calls sampled from random weights, on both tokenizer kinds: every output is one
// call block to an offered function whose arguments carry the required fields with the right types.
TEST(ToolCalls, ConstrainedCallsAlwaysParse) {
  const json defs = json::parse(R"([
      {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
          "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}},
          "required": ["city", "unit"], "additionalProperties": false}}},
      {"type": "function", "function": {"name": "add", "parameters": {"type": "object",
          "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99}, "b": {"type": "integer", "minimum": 0, "maximum": 99}},
          "required": ["a", "b"], "additionalProperties": false}}}])");
  const ToolSet tools = ToolSet::from_openai(defs);
  for (const char* model : {"models/phi4-tiny-synth", "models/phi3-tiny-mha"}) {
    const Pipeline p = Pipeline::load(test::shared_path(model));
    const auto prompt = p.encode_chat(tools.prompt_messages({{"user", "What is 2 + 3?"}}, p));
    for (const std::string only : {"", "add"}) {
      for (uint64_t seed = 1; seed <= 6; ++seed) {
        GenerationConfig c;
        c.do_sample = true;
        c.temperature = 1.0;
        c.seed = seed;
        c.max_new_tokens = 200;
        c.grammar = tools.call_grammar(only, /*parallel=*/false);
        const GenerationResult r = p.generate(prompt, c);
        ASSERT_EQ(r.finish_reason, "eos") << model << " " << r.text;
        const ToolCallOutput out = tools.parse_output(r.text);
        ASSERT_EQ(out.calls.size(), 1u) << model << ": " << r.text;
        const json args = json::parse(out.calls[0].arguments);
        if (out.calls[0].name == "add") {
          EXPECT_TRUE(args["a"].is_number_integer() && args["b"].is_number_integer()) << r.text;
        } else {
          EXPECT_EQ(only, "") << r.text;
          EXPECT_TRUE(args["city"].is_string() && (args["unit"] == "c" || args["unit"] == "f")) << r.text;
        }
      }
    }
  }
}

}  // namespace
}  // namespace phinfer
