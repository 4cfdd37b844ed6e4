// Grammars: JSON schemas (structural edits of a suite of schemas) and GBNF text (byte edits of a
// suite of grammars) compiled into the byte-level grammar. An accepted grammar must never
// dead-end: walking it byte by byte (random acceptable bytes), every state either is a whole
// match or accepts some byte. At one state of each walk, the token mask on Phi-3's vocabulary
// with the token-class shortcut must equal the whole trie walk's.
#include <algorithm>
#include <numeric>

#include "fuzz/mutate.h"
#include "fuzz/targets.h"
#include "grammar/grammar_impl.h"
#include "grammar/matcher.h"
#include "grammar/token_mask.h"
#include "grammar/vocabulary.h"
#include "phinfer/error.h"
#include "phinfer/grammar.h"
#include "phinfer/tokenizer.h"

namespace phinfer::fuzz {
namespace {

using nlohmann::json;

const std::vector<std::string> kSchemaWords = {
    "type", "object", "array", "string", "integer", "number", "boolean", "null", "properties", "required",
    "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength", "format", "date", "date-time",
    "email", "uuid", "time", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "#/$defs/a", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "a", "b"};
const std::vector<std::string> kGbnfFragments = {"::=", "|", "(", ")", "*", "+", "?", "{", "}", "{0,9999}", "{3,}", "[",
                                                 "]", "[^", "\"", "\\", "\\x", "\\u", "#", "\n", "root", ".", "-",
                                                 "a ::= a", "\xff", "\xe2\x82"};

const char* kSchemaSeeds[] = {
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer","minimum":0,"maximum":130},"tags":{"type":"array","items":{"enum":["a","b"]},"maxItems":3}},"required":["name"]})",
    R"({"$defs":{"a":{"type":"object","properties":{"kids":{"type":"array","items":{"$ref":"#/$defs/a"}}}}},"$ref":"#/$defs/a"})",
    R"({"anyOf":[{"type":"integer","exclusiveMinimum":-5},{"type":"string","format":"date-time"},{"const":[1,{"x":null}]}]})",
    R"({"type":["number","null","boolean"]})",
    R"({"type":"object","additionalProperties":{"type":"string","format":"email"}})",
};
const char* kGbnfSeeds[] = {
    "root ::= \"[\" item (\",\" item){0,3} \"]\"\nitem ::= [0-9]+ | \"\\\"\" [^\"\\\\]* \"\\\"\"\n",
    "root ::= expr\nexpr ::= term ((\"+\" | \"-\") term)*\nterm ::= [0-9]{1,4} | \"(\" expr \")\"\n",
    "root ::= (\"yes\" | \"no\" | [α-ω€]{2}) \".\"? # comment\n",
};

class GrammarHarness : public Harness {
 public:
  explicit GrammarHarness(const Context& ctx) {
    const Tokenizer tok = Tokenizer::from_dir((ctx.shared_dir / "data" / "phi3-mini-4k-instruct").string());
    vocab_ = grammar::Vocabulary::build(tok, 32064);
  }

  Input generate(Rng& rng) override {
    if (one_in(rng, 2)) {
      json doc = json::parse(kSchemaSeeds[pick(rng, std::size(kSchemaSeeds))]);
      mutate_json(doc, rng, kSchemaWords);
      return {{"schema.json", doc.dump(-1, ' ', false, json::error_handler_t::replace)}};
    }
    std::string text = kGbnfSeeds[pick(rng, std::size(kGbnfSeeds))];
    mutate_bytes(text, rng, kGbnfFragments);
    return {{"grammar.gbnf", text}};
  }

  void run(const Input& input) override {
    const File& f = input.at(0);
    const Grammar g = f.name == "schema.json" ? Grammar::from_json_schema(f.bytes) : Grammar::from_gbnf(f.bytes);
    // Walk: at each step try the bytes in a fixed pseudo-random order; some byte or the end must fit.
    grammar::Matcher m(g.impl->rules);
    std::vector<int> order(256);
    std::iota(order.begin(), order.end(), 0);
    Rng rng(f.bytes.size());
    const auto check_at = static_cast<int>(pick(rng, 16));
    grammar::MaskCache classes(0);
    for (int step = 0; step < 48; ++step) {
      if (step == check_at) {
        grammar::TokenMasker fast, full;
        full.use_token_classes(false);
        grammar::TokenMask got, expect;
        fast.compute(m, *vocab_, step == 0, got, &classes);
        full.compute(m, *vocab_, step == 0, expect);
        require(got == expect, "the token-class mask differs from the trie walk's after " + std::to_string(step) +
                                   " bytes");
      }
      if (m.complete() && (!m.can_continue() || one_in(rng, 4))) return;
      std::shuffle(order.begin(), order.end(), rng);
      bool moved = false;
      for (int b : order)
        if (m.accept(std::string(1, static_cast<char>(b)))) {
          moved = true;
          break;
        }
      require(moved, "dead end after " + std::to_string(step) + " bytes of a grammar that accepted its input");
    }
  }

 private:
  std::shared_ptr<const grammar::Vocabulary> vocab_;
};

}  // namespace

std::unique_ptr<Harness> make_grammar(const Context& ctx) { return std::make_unique<GrammarHarness>(ctx); }

}  // namespace phinfer::fuzz
