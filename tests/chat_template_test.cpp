// Tests of the chat-template engine: the model templates against the golden renderings
// (transformers' apply_chat_template), and the Jinja subset feature by feature. The expected
// strings of the ChatTemplateJinja cases were produced by Python Jinja2 3.1 configured like
// transformers (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols).
#include "phinfer/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "phinfer/error.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using phinfer::ChatMessage;
using phinfer::ChatTemplate;

// bos_token / eos_token in tokenizer_config.json are strings or AddedToken objects {"content": ...}.
std::string token_text(const json& token) {
  if (token.is_string()) return token.get<std::string>();
  if (token.is_object() && token.contains("content")) return token.at("content").get<std::string>();
  return "";
}

// A golden line's messages: role and content, every other field goes to ChatMessage::extra.
std::vector<ChatMessage> to_messages(const json& list) {
  std::vector<ChatMessage> out;
  for (const auto& m : list) {
    ChatMessage msg{m.at("role").get<std::string>(), m.at("content").get<std::string>()};
    for (const auto& [key, value] : m.items())
      if (key != "role" && key != "content") msg.extra[key] = value;
    out.push_back(std::move(msg));
  }
  return out;
}

struct ModelTemplate {
  ChatTemplate tpl;
  std::string bos, eos;
};

// The chat_template of data/<folder>/tokenizer_config.json, or of <folder>/chat_template.jinja.
ModelTemplate load_model_template(const std::string& folder) {
  json config = phinfer::test::read_json(phinfer::test::shared_path("data/" + folder + "/tokenizer_config.json"));
  std::string source;
  if (config.contains("chat_template") && config.at("chat_template").is_string()) {
    source = config.at("chat_template").get<std::string>();
  } else {
    std::ifstream f(phinfer::test::shared_path("data/" + folder + "/chat_template.jinja"));
    source.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  return {ChatTemplate(source), token_text(config.value("bos_token", json())), token_text(config.value("eos_token", json()))};
}

// ---- golden renderings ----------------------------------------------------------------------

class ChatTemplateGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateGolden, RendersEveryConversationExactly) {
  const std::string folder = GetParam();
  ModelTemplate model = load_model_template(folder);
  auto lines = phinfer::test::read_jsonl(phinfer::test::shared_path("golden/chat/" + folder + ".jsonl"));
  ASSERT_GE(lines.size(), 6u);
  size_t matched = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const json& line = lines[i];
    std::string got = model.tpl.render(to_messages(line.at("messages")), line.at("add_generation_prompt").get<bool>(),
                                       model.bos, model.eos);
    EXPECT_EQ(got, line.at("rendered").get<std::string>()) << folder << " line " << i + 1;
    matched += got == line.at("rendered").get<std::string>();
  }
  EXPECT_EQ(matched, lines.size()) << folder;
}

INSTANTIATE_TEST_SUITE_P(ChatTemplate, ChatTemplateGolden,
                         ::testing::Values("phi3-mini-4k-instruct", "phi3-mini-128k-instruct-2024-04",
                                           "phi3-mini-128k-instruct-2024-07", "phi3.5-mini-instruct",
                                           "phi4-mini-instruct"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (c == '-' || c == '.') c = '_';
                           return name;
                         });

// Templates without golden files: they must render every golden conversation, with and without
// the generation prompt; one conversation is checked against Python Jinja2's output.
TEST(ChatTemplateModels, Phi4AndPhi4MiniReasoningRender) {
  auto conversations = phinfer::test::read_jsonl(phinfer::test::shared_path("golden/chat/phi4-mini-instruct.jsonl"));
  ASSERT_EQ(conversations.size(), 7u);
  for (const char* folder : {"phi4-14b", "phi4-mini-reasoning"}) {
    ModelTemplate model = load_model_template(folder);
    for (const auto& line : conversations)
      for (bool add_generation_prompt : {true, false})
        EXPECT_NO_THROW(model.tpl.render(to_messages(line.at("messages")), add_generation_prompt, model.bos, model.eos))
            << folder;
  }

  ModelTemplate phi4 = load_model_template("phi4-14b");
  EXPECT_EQ(phi4.tpl.render(to_messages(conversations[0].at("messages")), true, phi4.bos, phi4.eos),
            "<|im_start|>system<|im_sep|>You are a helpful assistant.<|im_end|>"
            "<|im_start|>user<|im_sep|>What is the capital of France?<|im_end|><|im_start|>assistant<|im_sep|>");

  ModelTemplate reasoning = load_model_template("phi4-mini-reasoning");
  const json& tools_line = conversations[6].at("messages");
  EXPECT_EQ(reasoning.tpl.render(to_messages(tools_line), true, reasoning.bos, reasoning.eos),
            "<|system|>Your name is Phi, an AI math expert developed by Microsoft. " +
                tools_line[0].at("content").get<std::string>() + "<|tool|>" +
                tools_line[0].at("tools").get<std::string>() + "<|/tool|><|end|><|user|>" +
                tools_line[1].at("content").get<std::string>() + "<|end|><|assistant|>");
}

// ---- the Jinja subset, case by case -----------------------------------------------------------

// The conversation the cases below see as `messages` (bos_token "<s>", eos_token "</s>").
std::vector<ChatMessage> sample_messages() {
  return {{"system", "  Be brief.  "},
          {"user", "Hi, Ünïcödé 😊"},
          {"assistant", "Hello!\nHow can I help?"},
          {"user", "Weather?", json{{"tools", "[\"get_weather\"]"}}}};
}

std::string render(const std::string& source, bool add_generation_prompt = true) {
  return ChatTemplate(source).render(sample_messages(), add_generation_prompt, "<s>", "</s>");
}

void expect_renders(const std::vector<std::pair<std::string, std::string>>& cases) {
  for (const auto& [source, expected] : cases) {
    try {
      EXPECT_EQ(render(source), expected) << "template: " << source;
    } catch (const phinfer::Error& e) {
      ADD_FAILURE() << "template: " << source << "\nthrew: " << e.what();
    }
  }
}

// The phinfer::Error message of rendering `source` ("" if it renders).
std::string error_of(const std::string& source) {
  try {
    render(source);
  } catch (const phinfer::Error& e) {
    return e.what();
  }
  return "";
}

TEST(ChatTemplateJinja, WhitespaceControl) {
  expect_renders({
      {"a  {{- 'b' -}}  c",
       "abc"},
      {"a {%- if true %} b{% endif -%} \n c",
       "a bc"},
      {"x {#- comment -#} y",
       "xy"},
      {"1\n  {{- '2' }}\n",
       "12"},
  });
}

TEST(ChatTemplateJinja, TrimBlocksAndLstripBlocks) {
  expect_renders({
      {"{% if true %}\nline\n{% endif %}\nafter",
       "line\nafter"},
      {"<ul>\n  {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n  {% endfor %}\n</ul>\n",
       "<ul>\n    <li>1</li>\n    <li>2</li>\n</ul>"},
      {"  {{ 'var' }}  {% if true %}kept spaces before var{% endif %}",
       "  var  kept spaces before var"},
      {"text  {% if true %}not at line start{% endif %}",
       "text  not at line start"},
      {"{%+ if true %}  plus keeps{% endif +%}\nnext",
       "  plus keeps\nnext"},
      {"{# comment #}\n  {# indented comment #}\nz",
       "z"},
      {"{% raw %}{{ not a var }}{% endraw %}",
       "{{ not a var }}"},
      {"one\r\ntwo\r\n{% if true %}\r\nthree\r\n{% endif %}\r\n",
       "one\ntwo\nthree\n"},
  });
}

TEST(ChatTemplateJinja, LoopVariables) {
  expect_renders({
      {"{% for m in messages %}{{ loop.index }}/{{ loop.length }} {{ loop.index0 }} {{ loop.revindex }} {{ loop.first }} {{ loop.last }} {{ m.role }}\n{% endfor %}",
       "1/4 0 4 True False system\n2/4 1 3 False False user\n3/4 2 2 False False assistant\n4/4 3 1 False True user\n"},
      {"{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}>{{ m.role }}>{{ loop.nextitem.role if loop.nextitem is defined else '-' }} {% endfor %}",
       "->system>user system>user>assistant user>assistant>user assistant>user>- "},
      {"{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.role }} {% endfor %}",
       "1:user 2:assistant 3:user "},
      {"{% for x in [] %}x{% else %}empty{% endfor %}",
       "empty"},
      {"{% for i in range(6) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}",
       "023"},
      {"{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in {'c': 3} | items %}{{ k }}{{ v }}{% endfor %}",
       "a=1;b=2;c3"},
      {"{% for row in [[1, 2], [3]] %}{% for x in row %}{{ loop.index }}{{ x }} {% endfor %}| {% endfor %}",
       "11 22 | 13 | "},
      {"{% for i in range(3) %}{{ loop.cycle('odd', 'even') }} {% endfor %}",
       "odd even odd "},
  });
}

TEST(ChatTemplateJinja, SetAndNamespace) {
  expect_renders({
      {"{% set x = 1 %}{% for m in messages %}{% set x = x + 1 %}{% endfor %}{{ x }}",
       "1"},
      {"{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}",
       "2"},
      {"{% set ns = namespace(found=false, count=0) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.found = true %}{% set ns.count = ns.count + 1 %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.count }}",
       "True 2"},
      {"{% set a, b = 'x', 'y' %}{{ b }}{{ a }}",
       "yx"},
      {"{% set block %}[{{ messages | length }}]{% endset %}{{ block }}{{ block }}",
       "[4][4]"},
      {"{% if messages[0].role == 'system' %}{% set system = messages[0].content %}{% set rest = messages[1:] %}{% else %}{% set system = '' %}{% set rest = messages %}{% endif %}{{ system | trim }}|{{ rest | length }}",
       "Be brief.|3"},
  });
}

TEST(ChatTemplateJinja, Filters) {
  expect_renders({
      {"{{ messages[0].content | trim }}|{{ '  x  ' | trim }}|{{ 'xxhixx' | trim('x') }}",
       "Be brief.|x|hi"},
      {"{{ messages | length }}|{{ 'Ünï' | length }}|{{ {'a': 1} | length }}|{{ missing | length }}",
       "4|3|1|0"},
      {"{{ 'abc' | upper }}|{{ 'ÀÉÎ Straße' | lower }}|{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}",
       "ABC|àéî straße|Hello World|Hello"},
      {"{{ missing | default('fallback') }}|{{ '' | default('empty', true) }}|{{ none | default('kept') }}|{{ missing | d('short') }}",
       "fallback|empty|None|short"},
      {"{{ ['a', 'b', 'c'] | join(', ') }}|{{ messages | map(attribute='role') | join('/') }}",
       "a, b, c|system/user/assistant/user"},
      {"{{ 'a-b-c' | replace('-', '+') }}|{{ 'a-b-c' | replace('-', '', 1) }}",
       "a+b+c|ab-c"},
      {"{{ [3, 1, 2] | first }}|{{ [3, 1, 2] | last }}|{{ 'xyz' | first }}|{{ [] | first }}",
       "3|2|x|"},
      {"{% for k, v in {'x': 1, 'y': [2]} | items %}{{ k }}:{{ v }} {% endfor %}",
       "x:1 y:[2] "},
      {"{{ 42 | string }}|{{ '7' | int + 1 }}|{{ '3.9' | int }}|{{ 'abc' | int }}|{{ 'abc' | int(5) }}|{{ 2.7 | int }}|{{ '2.5' | float }}",
       "42|8|3|0|5|2|2.5"},
      {"{{ [3, 1, 2] | sort | list }}|{{ [1, 2, 1] | unique | list }}|{{ [1, 2, 3] | sum }}|{{ [1, 2, 3] | reverse | list }}|{{ -3 | abs }}|{{ 2.5 | round }}",
       "[1, 2, 3]|[1, 2]|6|[3, 2, 1]|3|2.0"},
      {"{{ messages | selectattr('role', 'equalto', 'user') | list | length }}|{{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | list }}|{{ [0, 1, '', 'a'] | select | list }}",
       "2|['system', 'assistant']|[1, 'a']"},
      {"{{ 'line1\nline2' | indent(2) }}|{{ 'a\n\nb' | indent(2, first=true, blank=true) }}",
       "line1\n  line2|  a\n  \n  b"},
      {"{{ '<b>&' | e }}|{{ '<b>' | safe }}",
       "&lt;b&gt;&amp;|<b>"},
  });
}

TEST(ChatTemplateJinja, ToJson) {
  expect_renders({
      {"{{ messages[1] | tojson }}",
       "{\"role\": \"user\", \"content\": \"Hi, Ünïcödé 😊\"}"},
      {"{{ {'text': 'quote \" backslash \\\\ newline \n tab \t é 😊', 'n': [1, 2.5, -0.0, 1e-07, 1e16, none, true]} | tojson }}",
       "{\"text\": \"quote \\\" backslash \\\\ newline \\n tab \\t é 😊\", \"n\": [1, 2.5, -0.0, 1e-07, 1e+16, null, true]}"},
      {"{{ {'b': 1, 'a': [1, {'c': 2}]} | tojson(indent=2) }}",
       "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    {\n      \"c\": 2\n    }\n  ]\n}"},
      {"{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ 'é' | tojson(ensure_ascii=true) }}|{{ [1, 2] | tojson(separators=(',', ':')) }}",
       "{\"a\": 2, \"b\": 1}|\"\\u00e9\"|[1,2]"},
      {"{{ [] | tojson(indent=4) }}{{ {} | tojson }}",
       "[]{}"},
  });
}

TEST(ChatTemplateJinja, Tests) {
  expect_renders({
      {"{{ x is defined }} {{ x is undefined }} {{ messages is defined }} {{ none is none }} {{ 'a' is none }}",
       "False True True True False"},
      {"{{ 'a' is string }} {{ 1 is string }} {{ 1 is number }} {{ 1.5 is float }} {{ 1 is integer }} {{ true is boolean }} {{ {} is mapping }} {{ [] is mapping }} {{ [] is sequence }} {{ [] is iterable }}",
       "True False True True True True True False True True"},
      {"{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 2 is in [1, 2] }} {{ 1 is eq 1 }} {{ 2 is gt 1 }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ none is sameas none }}",
       "True True True True True True True True True"},
      {"{{ messages[3].tools is not none }} {{ 'tools' in messages[3] }} {{ 'tools' in messages[0] }} {{ messages[0].tools is defined }}",
       "True True False False"},
      {"{{ tools is none }} {{ documents is none }} {{ 2.0 is even }} {{ -3 is odd }}",
       "True True True True"},
  });
}

TEST(ChatTemplateJinja, Expressions) {
  expect_renders({
      {"{{ 'a' ~ 1 ~ none ~ true ~ 2.0 }}|{{ 'a' + 'b' }}|{{ [1] + [2] }}|{{ 'ab' * 3 }}",
       "a1NoneTrue2.0|ab|[1, 2]|ababab"},
      {"{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}|{{ 1.5 + 1 }}|{{ -(3) }}",
       "7|9|3|-4|1|2|3.5|1024|2.5|-3"},
      {"{{ 1 < 2 < 3 }}|{{ 1 == 1.0 }}|{{ 'b' > 'a' }}|{{ [1, 2] < [1, 3] }}|{{ 'at' in 'cat' }}|{{ 3 not in [1] }}|{{ not true }}|{{ true and false or 'x' }}|{{ '' or 'default' }}",
       "True|True|True|True|True|True|False|x|default"},
      {"{{ 'yes' if messages else 'no' }}|{{ 'shown' if false }}|{{ 1 if none is none else 2 }}|{{ 'a' if 0 else 'b' if 0 else 'c' }}",
       "yes||1|c"},
      {"{{ messages[0]['role'] }}|{{ messages[0].role }}|{{ messages[-1]['content'] }}|{{ messages[9] }}|{{ {'a': {'b': 'c'}}.a.b }}",
       "system|system|Weather?||c"},
      {"{{ 'abcdef'[1:3] }}|{{ 'abcdef'[::-1] }}|{{ 'abcdef'[-2:] }}|{{ [1, 2, 3, 4][1::2] }}|{{ 'Ünïcödé'[1] }}|{{ 'Ünïcödé'[:3] }}",
       "bc|fedcba|ef|[2, 4]|n|Ünï"},
      {"{{ messages[0].content.strip() }}|{{ '  a  '.lstrip() }}|{{ '  a  '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ '  a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}",
       "Be brief.|a  |  a|['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']"},
      {"{{ 'hello'.startswith('he') }}|{{ 'hello'.endswith(('x', 'lo')) }}|{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}|{{ 'a-b'.replace('-', '+') }}|{{ '/'.join(['a', 'b']) }}|{{ 'abc'.find('c') }}",
       "True|True|HIhi|a+b|a/b|2"},
      {"{{ [1, 2, 1].count(1) }}|{{ ['a', 'b'].index('b') }}|{{ {'k': 'v'}.get('k') }}|{{ {'k': 'v'}.get('z', 'd') }}|{{ {'k': 'v'}.keys() | list }}|{{ {'k': 'v'}.values() | list }}",
       "2|1|v|d|['k']|['v']"},
      {"{{ [1, 'a', none, true, 1.5, {'k': [2]}] }}|{{ {'a': \"it's\"} }}|{{ 0.1 + 0.2 }}|{{ 1e20 }}|{{ 1e-05 }}|{{ 100.0 }}|{{ 3.0 * 2 }}",
       "[1, 'a', None, True, 1.5, {'k': [2]}]|{'a': \"it's\"}|0.30000000000000004|1e+20|1e-05|100.0|6.0"},
      {"{{ '\\u00e9\\x41\\101 \\'q\\' \\\"d\\\"' }}|{{ 'a' 'b' }}|{{ \"it's\" }}",
       "éAA 'q' \"d\"|ab|it's"},
      {"{{ range(3) | list }}|{{ range(1, 7, 2) | list }}|{{ range(5, 0, -2) | list }}|{{ namespace(a=1).a }}|{{ dict(x=1) }}",
       "[0, 1, 2]|[1, 3, 5]|[5, 3, 1]|1|{'x': 1}"},
  });
}

TEST(ChatTemplateJinja, Macros) {
  expect_renders({
      {"{% macro fmt(m, sep=': ') %}{{ m.role }}{{ sep }}{{ m.content | trim }}{% endmacro %}{% for m in messages[:2] %}{{ fmt(m) }}|{{ fmt(m, sep='=') }}\n{% endfor %}",
       "system: Be brief.|system=Be brief.\nuser: Hi, Ünïcödé 😊|user=Hi, Ünïcödé 😊\n"},
      {"{% macro greet(name) %}Hello {{ name }}{{ suffix }}!{% endmacro %}{% set suffix = '?' %}{{ greet('you') }}|{{ greet() }}",
       "Hello you?!|Hello ?!"},
  });
}
TEST(ChatTemplateJinja, AddGenerationPromptAndSpecialTokens) {
  const std::string source =
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% else %}{{ eos_token }}{% endif %}";
  EXPECT_EQ(render(source, true), "<s><system><user><assistant><user><assistant>");
  EXPECT_EQ(render(source, false), "<s><system><user><assistant><user></s>");
}

TEST(ChatTemplateJinja, ExtraMessageFieldsReachTheTemplate) {
  std::vector<ChatMessage> messages = {
      {"assistant", "",
       json{{"tool_calls", json::array({{{"type", "function"},
                                         {"function", {{"name", "get_weather"}, {"arguments", {{"city", "Paris"}}}}}}})}}}};
  ChatTemplate tpl(
      "{% for m in messages %}{% for call in m.tool_calls %}{{ call.function.name }}"
      "{{ call.function.arguments | tojson }}{% endfor %}{{ m.missing is defined }}{% endfor %}");
  EXPECT_EQ(tpl.render(messages, true, "", ""), "get_weather{\"city\": \"Paris\"}False");
}

TEST(ChatTemplateJinja, UndefinedIsFalsyAndEmpty) {
  EXPECT_EQ(render("[{{ nothing }}]{% if nothing %}yes{% else %}no{% endif %}{% for x in nothing %}x{% endfor %}"),
            "[]no");
  EXPECT_EQ(render("{{ messages[0].missing }}|{{ messages[0]['missing'] is defined }}"), "|False");
}

TEST(ChatTemplateJinja, RaiseExceptionThrowsTheTemplatesMessage) {
  const std::string source =
      "{% for m in messages %}{% if m.role == 'assistant' %}"
      "{{ raise_exception('Conversation roles must alternate, got ' + m.role) }}{% endif %}{% endfor %}";
  try {
    render(source);
    FAIL() << "expected phinfer::Error";
  } catch (const phinfer::Error& e) {
    EXPECT_STREQ(e.what(), "Conversation roles must alternate, got assistant");
  }
}

TEST(ChatTemplateJinja, UnsupportedConstructsNameThemselvesAndTheirPosition) {
  EXPECT_NE(error_of("ok\n  {% include 'other.jinja' %}").find("unsupported tag 'include' at line 2, column 6"),
            std::string::npos);
  EXPECT_NE(error_of("{% for x in messages recursive %}{% endfor %}").find("recursive loops at line 1"),
            std::string::npos);
  EXPECT_NE(error_of("{{ messages | nosuchfilter }}").find("unknown filter 'nosuchfilter' at line 1, column 15"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 1 is nosuchtest }}").find("unknown test 'nosuchtest'"), std::string::npos);
  EXPECT_NE(error_of("{% frobnicate %}").find("unknown tag 'frobnicate' at line 1, column 4"), std::string::npos);
  EXPECT_NE(error_of("{{ '%s' % 1 }}").find("string formatting"), std::string::npos);
  // A template that is parsed but then misused at render time still says where.
  EXPECT_NE(error_of("line\n{{ nothing.attr }}").find("'nothing' is undefined at line 2"), std::string::npos);
  EXPECT_NE(error_of("{{ 1 + 'a' }}").find("unsupported operand type(s) for +: 'int' and 'str'"),
            std::string::npos);
}

TEST(ChatTemplateJinja, MalformedTemplatesGiveClearErrors) {
  EXPECT_NE(error_of("abc {{ messages").find("unclosed tag '{{' (missing its end) at line 1, column 5"),
            std::string::npos);
  EXPECT_NE(error_of("{% if true %}never closed").find("unclosed 'if' block (missing {% elif %} or {% else %} or "
                                                       "{% endif %}) at line 1, column 4"),
            std::string::npos);
  EXPECT_NE(error_of("{% for m in messages %}{% endif %}").find("unknown tag 'endif'"), std::string::npos);
  EXPECT_NE(error_of("{# never closed").find("unclosed comment"), std::string::npos);
  EXPECT_NE(error_of("{{ 'never closed }}").find("unterminated string"), std::string::npos);
  EXPECT_NE(error_of("{{ (1 + 2 }}").find("unexpected '}'"), std::string::npos);
  EXPECT_NE(error_of("{% break %}").find("'break' outside of a loop"), std::string::npos);
  EXPECT_NE(error_of("{{ }}").find("expected an expression"), std::string::npos);
  // Errors are raised when the template is loaded, not first when it renders.
  EXPECT_THROW(ChatTemplate("{% if %}"), phinfer::Error);
}

TEST(ChatTemplateJinja, RunawayTemplatesAreStopped) {
  EXPECT_NE(error_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
                .find("loop iterations"),
            std::string::npos);
  EXPECT_NE(error_of("{{ range(1000000000) | length }}").find("Range too big"), std::string::npos);
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("nested deeper"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 'ab' * 100000000 }}").find("value too large"), std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace(s='x' * 1000000) %}{% for i in range(100) %}"
                     "{% set ns.s = ns.s ~ ns.s %}{% endfor %}")
                .find("value too large"),
            std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}")
                .find("nested too deeply"),
            std::string::npos);
  EXPECT_NE(error_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").find("nested too deeply"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 9223372036854775807 + 1 }}").find("integer overflow"), std::string::npos);
}

TEST(ChatTemplateJinja, MovedTemplateStillRenders) {
  ChatTemplate a("{{ messages | length }}");
  ChatTemplate b = std::move(a);
  EXPECT_EQ(b.render(sample_messages(), true, "", ""), "4");
}

}  // namespace
