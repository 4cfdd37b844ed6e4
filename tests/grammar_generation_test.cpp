// Constrained generation end to end: random-weight golden models sample under JSON schemas
// through the Engine (many requests in one batch, each with its own parse state), and every
// output is checked by an independent validator (python-jsonschema, tests/grammar/
// validate_json_outputs.py). Also Pipeline::generate (greedy), max_new_tokens ending early
// ("length"), errors, and the CLI flags --json-schema, --grammar and --json-object.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sys/wait.h>

#include "phinfer/engine.h"
#include "phinfer/error.h"
#include "phinfer/grammar.h"
#include "phinfer/pipeline.h"
#include "test_util.h"

namespace phinfer {
namespace {

// Bounded schemas (every string, array and number has a maximum size), so each generation ends
// well within max_new_tokens whatever a random model samples.
const char* kSchemas[] = {
    R"({"type":"object","properties":{
        "name":{"type":"string","minLength":1,"maxLength":12},
        "age":{"type":"integer","minimum":0,"maximum":130},
        "email":{"type":"string","format":"email"},
        "tags":{"type":"array","items":{"enum":["a","b","ü"]},"maxItems":3}},
      "required":["name","age"],"additionalProperties":false})",
    R"({"type":"object","properties":{
        "id":{"type":"string","format":"uuid"},
        "date":{"type":"string","format":"date"},
        "items":{"type":"array","minItems":1,"maxItems":3,"items":{"type":"object","properties":{
            "sku":{"enum":["A-1","B-2","C-3"]},"qty":{"type":"integer","minimum":1,"maximum":99}},
            "required":["sku","qty"]}},
        "status":{"enum":["new","paid","sent"]},
        "note":{"anyOf":[{"type":"string","maxLength":8},{"type":"null"}]}},
      "required":["id","items","status"]})",
    R"({"$defs":{"point":{"type":"object","properties":{
          "x":{"type":"integer","minimum":-100,"maximum":100},"y":{"type":"integer","exclusiveMinimum":-3,"maximum":2000}},
          "required":["x","y"]}},
      "type":"object","properties":{"from":{"$ref":"#/$defs/point"},"to":{"$ref":"#/$defs/point"}},
      "required":["from","to"]})",
    R"({"oneOf":[{"type":"integer","minimum":0,"maximum":9},{"type":"string","maxLength":5},{"type":"boolean"}]})",
    R"({"type":"array","items":{"type":"number"},"minItems":1,"maxItems":4})",
    R"({"type":"object","properties":{"kind":{"const":"event"},"level":{"enum":["low","high",3,null]},
        "ok":{"type":"boolean"},"when":{"type":"string","format":"date-time"}},
      "required":["kind","level","ok","when"]})",
    R"({"type":"object","properties":{"title":{"type":"string","minLength":3,"maxLength":10},
        "score":{"type":["number","null"],"minimum":0}},"required":["title"]})",
};

struct Suite {
  nlohmann::json cases = nlohmann::json::array();
  int generations = 0, length_finishes = 0;
};

// `per_schema` sampled generations of each schema on one model, all in one Engine.
void generate_suite(const std::filesystem::path& model, int per_schema, Suite& suite) {
  Pipeline pipe = Pipeline::load(model);
  Engine engine(pipe);
  const std::vector<int32_t> prompt = pipe.tokenizer().encode("Answer in JSON:", true);
  std::vector<std::pair<size_t, Engine::RequestId>> ids;
  const size_t first_case = suite.cases.size();
  for (const char* text : kSchemas) {
    const Grammar g = Grammar::from_json_schema(text);
    suite.cases.push_back({{"schema", nlohmann::json::parse(text)}, {"outputs", nlohmann::json::array()}});
    for (int i = 0; i < per_schema; ++i) {
      GenerationConfig gc;
      gc.grammar = g;
      gc.do_sample = true;
      gc.seed = 1000 + static_cast<uint64_t>(ids.size());
      gc.max_new_tokens = 600;
      ids.emplace_back(suite.cases.size() - 1, engine.add_request(prompt, gc));
    }
  }
  while (engine.step()) {
  }
  for (auto [c, id] : ids) {
    auto r = engine.take_result(id);
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->error, "");
    if (r->finish_reason != "eos") ++suite.length_finishes;
    suite.cases[c]["outputs"].push_back(r->text);
    ++suite.generations;
  }
  EXPECT_GT(suite.cases.size(), first_case);
}

// Runs the independent validator over {"cases": [...]}; its exit status and report.
std::pair<int, std::string> validate(const nlohmann::json& cases) {
  const auto dir = test::temp_dir("grammar_generation");
  const auto file = dir / "outputs.json";
  std::ofstream(file) << nlohmann::json{{"cases", cases}}.dump();
  const std::string cmd = "python3 " + test::shell_quote(std::string(PHINFER_SOURCE_DIR) + "/tests/grammar/validate_json_outputs.py") +
                          " " + test::shell_quote(file.string()) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {-1, "cannot run " + cmd};
  std::string report;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) report.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, report};
}

TEST(GrammarGeneration, TheValidatorRejectsWhatTheSchemaForbids) {
  const nlohmann::json cases = nlohmann::json::array(
      {{{"schema", nlohmann::json::parse(kSchemas[0])},
        {"outputs", {R"({"name":"ok","age":3})", R"({"name":"","age":3})", R"({"name":"x","age":131})", "{\"name\""}}},
       {{"schema", nlohmann::json::parse(kSchemas[1])},
        {"outputs", {R"({"id":"not-a-uuid","items":[{"sku":"A-1","qty":1}],"status":"new"})",
                     R"({"id":"123e4567-e89b-12d3-a456-426614174000","date":"2024-02-30","items":[{"sku":"A-1","qty":1}],"status":"new"})"}}}});
  const auto [status, report] = validate(cases);
  EXPECT_EQ(status, 1) << report;
  EXPECT_NE(report.find("1 of 6 outputs valid"), std::string::npos) << report;
}

TEST(GrammarGeneration, ThousandSampledOutputsValidateOnBothTokenizers) {
  Suite suite;
  generate_suite(test::shared_path("models/phi3-tiny-mha"), 120, suite);      // byte-fallback SentencePiece
  generate_suite(test::shared_path("models/phi4-tiny-synth"), 24, suite);     // 200k byte-level BPE
  ASSERT_GE(suite.generations, 1000);
  EXPECT_EQ(suite.length_finishes, 0) << "every bounded output should end with the grammar";
  const auto [status, report] = validate(suite.cases);
  EXPECT_EQ(status, 0) << report;
  EXPECT_NE(report.find(std::to_string(suite.generations) + " of " + std::to_string(suite.generations) + " outputs valid"),
            std::string::npos)
      << report;
}

TEST(GrammarGeneration, GreedyThroughPipelineAndLengthWhenCutShort) {
  Pipeline pipe = Pipeline::load(test::shared_path("models/phi3-tiny-mha"));
  GenerationConfig gc;
  gc.grammar = Grammar::from_gbnf(R"(root ::= "[" item ("," item){2} "]"
item ::= [0-9] | "\"" [a-zé]{1,3} "\"")");
  gc.max_new_tokens = 64;
  const GenerationResult r = pipe.generate("List:", gc);
  EXPECT_EQ(r.finish_reason, "eos");
  auto parsed = nlohmann::json::parse(r.text);
  ASSERT_TRUE(parsed.is_array());
  EXPECT_EQ(parsed.size(), 3u);
  // The same request again is the same text (greedy), from the mask cache this time; speculative
  // drafts are not taken under a grammar, so asking for them changes nothing.
  EXPECT_EQ(pipe.generate("List:", gc).text, r.text);
  gc.draft_tokens = 4;
  EXPECT_EQ(pipe.generate("List:", gc).text, r.text);
  gc.draft_tokens = 0;
  // Cut short: "length", and the text is a prefix of a match.
  gc.max_new_tokens = 2;
  const GenerationResult cut = pipe.generate("List:", gc);
  EXPECT_EQ(cut.finish_reason, "length");
  EXPECT_EQ(cut.output_ids.size(), 2u);
  EXPECT_TRUE(cut.text.starts_with("["));
  // A grammar cannot be combined with ignore_eos.
  gc.ignore_eos = true;
  EXPECT_THROW(pipe.generate("List:", gc), Error);
}

struct CliResult {
  int status = -1;
  std::string out, err;
};

CliResult run_cli(const std::string& args, const std::string& stdin_text = "") {
  static int counter = 0;
  const auto dir = test::temp_dir("grammar_cli");
  const std::string tag = std::to_string(counter++);
  std::ofstream(dir / ("in" + tag)) << stdin_text;
  const std::string cmd = std::string(PHINFER_CLI_PATH) + " " + args + " <" + (dir / ("in" + tag)).string() + " 2>" +
                          (dir / ("err" + tag)).string();
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = test::read_file(dir / ("err" + tag));
  return r;
}

TEST(GrammarGeneration, CliFlagsOnGenerateAndChat) {
  const auto dir = test::temp_dir("grammar_cli_files");
  const std::string model = test::shell_quote(test::shared_path("models/phi4-tiny-synth").string());
  const auto schema = dir / "schema.json";
  std::ofstream(schema) << kSchemas[2];
  auto r = run_cli("generate -m " + model + " -p Point: --do-sample --seed 3 --json-schema " +
                   test::shell_quote(schema.string()) + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["finish_reason"], "eos");
  const auto value = nlohmann::json::parse(out["text"].get<std::string>());
  EXPECT_TRUE(value.contains("from") && value.contains("to")) << value;

  const auto gbnf = dir / "yesno.gbnf";
  std::ofstream(gbnf) << "root ::= (\"yes\" | \"no\") \".\"\n";
  r = run_cli("generate -m " + model + " -p Well --grammar " + test::shell_quote(gbnf.string()));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out == "yes.\n" || r.out == "no.\n") << r.out;

  const std::string chat_model = test::shell_quote(test::shared_path("models/phi3-tiny-mha").string());
  r = run_cli("chat -m " + chat_model + " --json-object --max-new-tokens 400 --do-sample --seed 5 --temperature 0.3",
              "Give me an object\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.front(), '{') << r.out;

  // Errors name the file and the position or the feature.
  std::ofstream(gbnf) << "root ::= \"a\" | (\n";
  r = run_cli("generate -m " + model + " -p x --grammar " + test::shell_quote(gbnf.string()));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find(gbnf.string() + ":2:1: expected ')' to close the group"), std::string::npos) << r.err;
  std::ofstream(schema) << R"({"type":"string","pattern":"^a"})";
  r = run_cli("generate -m " + model + " -p x --json-schema " + test::shell_quote(schema.string()));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("\"pattern\" is not supported"), std::string::npos) << r.err;
  r = run_cli("generate -m " + model + " -p x --json-object --grammar " + test::shell_quote(gbnf.string()));
  EXPECT_NE(r.status, 0);
}

}  // namespace
}  // namespace phinfer
