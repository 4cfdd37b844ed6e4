// The grammar engine without a model: GBNF parsing and its errors, JSON-schema compilation and
// its errors, the byte-level matcher (UTF-8, white space, integer ranges), and the token mask on
// both tokenizer kinds (Phi-3's byte-fallback vocabulary and Phi-4-mini's 200k byte-level BPE):
// the trie walk gives exactly the brute-force mask, and random walks over allowed tokens never
// dead-end.
#include <gtest/gtest.h>

#include <random>

#include "grammar/gbnf.h"
#include "grammar/grammar_impl.h"
#include "grammar/json_schema.h"
#include "grammar/matcher.h"
#include "grammar/token_mask.h"
#include "grammar/vocabulary.h"
#include "phinfer/error.h"
#include "phinfer/grammar.h"
#include "phinfer/tokenizer.h"
#include "test_util.h"

namespace phinfer {
namespace {

using grammar::Matcher;

bool matches(const Grammar& g, std::string_view text) {
  Matcher m(g.impl->rules);
  return m.accept(text) && m.complete();
}
bool is_prefix(const Grammar& g, std::string_view text) {
  Matcher m(g.impl->rules);
  return m.accept(text);
}
Grammar gbnf(std::string_view text) { return Grammar::from_gbnf(text); }
Grammar schema(std::string_view text) { return Grammar::from_json_schema(text); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Gbnf, LiteralsClassesGroupsAndRepetition) {
  const Grammar g = gbnf(R"(
# a comment
root ::= greeting (" " name){1,3} "!"?
greeting ::= "hi" | "hello"   # trailing comment
name ::= [A-Z] [a-z]*
)");
  EXPECT_TRUE(matches(g, "hi Ann"));
  EXPECT_TRUE(matches(g, "hello Ann Bo Cy!"));
  EXPECT_FALSE(matches(g, "hello Ann Bo Cy Di"));  // {1,3}
  EXPECT_FALSE(matches(g, "hi"));
  EXPECT_FALSE(matches(g, "hi ann"));
  EXPECT_TRUE(is_prefix(g, "hel"));
  EXPECT_FALSE(is_prefix(g, "hex"));
}

TEST(Gbnf, EscapesAnyCharacterAndUnicodeClasses) {
  const Grammar g = gbnf(R"(root ::= "\x41\u00e9\n" [^a-z\]] . [α-ω]+ "\"")");
  EXPECT_TRUE(matches(g, "Aé\nZ€βγ\""));
  EXPECT_TRUE(matches(g, "Aé\nZ😀ω\""));
  EXPECT_FALSE(matches(g, "Aé\nbxω\""));   // [^a-z\]]
  EXPECT_FALSE(matches(g, "Aé\nZxa\""));   // [α-ω]
  // Byte by byte: a multi-byte character may be split anywhere (a token can end inside it).
  Matcher m(g.impl->rules);
  for (char c : std::string("Aé\nZ\xE2\x82")) ASSERT_TRUE(m.accept(std::string(1, c)));
  EXPECT_FALSE(m.accept("\x41"));  // not a continuation byte
  EXPECT_TRUE(m.accept("\xAC"));   // € complete
  // Invalid UTF-8 is never accepted by a class, even a negated one.
  EXPECT_FALSE(is_prefix(gbnf("root ::= [^a]"), "\xC0\x80"));
  EXPECT_FALSE(is_prefix(gbnf("root ::= [^a]"), "\xED\xA0\x80"));  // a surrogate
}

TEST(Gbnf, SyntaxErrorsGiveLineAndColumn) {
  EXPECT_EQ(error_of([] { gbnf("root ::= \"a\"\nfoo = \"b\""); }), "grammar:2:5: unexpected '='");
  EXPECT_EQ(error_of([] { gbnf("root ::= [a-z"); }), "grammar:1:14: unterminated character class (expected ']')");
  EXPECT_EQ(error_of([] { gbnf("root ::= \"abc"); }), "grammar:1:14: unterminated string literal");
  EXPECT_EQ(error_of([] { gbnf("root ::= ( \"a\" "); }), "grammar:1:16: expected ')' to close the group");
  EXPECT_EQ(error_of([] { gbnf("root ::= \"a\"{3,1}"); }), "grammar:1:18: repetition {m,n} has n < m");
  EXPECT_EQ(error_of([] { gbnf("root ::= [z-a]"); }), "grammar:1:14: character range is reversed (its end comes before its start)");
  EXPECT_EQ(error_of([] { gbnf("root ::= \"\\q\""); }), "grammar:1:12: unknown escape '\\q'");
  EXPECT_EQ(error_of([] { gbnf("root ::= \"a\"\nroot ::= \"b\""); }), "grammar:2:1: rule 'root' is defined twice");
  EXPECT_EQ(error_of([] { gbnf("root ::= a )"); }), "grammar:1:12: unmatched ')'");
  EXPECT_EQ(error_of([] { gbnf(""); }), "grammar:1:1: expected a rule (name ::= ...), found an empty grammar");
}

TEST(Gbnf, RuleErrorsNameTheRule) {
  EXPECT_EQ(error_of([] { gbnf("start ::= \"a\""); }), "grammar: no rule named 'root'");
  EXPECT_EQ(error_of([] { gbnf("root ::= item"); }), "grammar: rule 'item' is used but never defined");
  EXPECT_NE(error_of([] { gbnf("root ::= root \"a\" | \"b\""); }).find("rule 'root' is left-recursive"), std::string::npos);
  EXPECT_NE(error_of([] { gbnf("root ::= x\nx ::= y? x \"a\" | \"b\"\ny ::= \"c\""); }).find("left-recursive"),
            std::string::npos);
  EXPECT_NE(error_of([] { gbnf("root ::= (\"a\"?)*"); }).find("left-recursive"), std::string::npos);
  EXPECT_EQ(error_of([] { gbnf("root ::= \"a\" root"); }), "grammar: rule 'root' can never finish: it matches no finite text");
}

TEST(Gbnf, HostileInputsAreBounded) {
  std::string deep = "root ::= ";
  for (int i = 0; i < 100; ++i) deep += "(";
  EXPECT_NE(error_of([&] { gbnf(deep); }).find("nested deeper than 64"), std::string::npos);
  EXPECT_NE(error_of([] { gbnf("root ::= \"a\"{99999}"); }).find("above 10000"), std::string::npos);
  EXPECT_NE(error_of([] { gbnf(std::string(2u << 20, ' ')); }).find("at most"), std::string::npos);
  // Exponentially ambiguous: many parses of one text are cut off with an error, never a hang.
  // (after n a's, one parse per number of "c"s still owed: n + 1 stacks)
  const Grammar amb = gbnf("root ::= \"a\" root | \"a\" root \"c\" | \"\"");
  Matcher m(amb.impl->rules);
  EXPECT_NE(error_of([&] { m.accept(std::string(300, 'a')); }).find("too ambiguous"), std::string::npos);
  // Deep right nesting stops at the stack limit.
  const Grammar nest = gbnf("root ::= \"(\" root \")\" | \"x\"");
  Matcher n(nest.impl->rules);
  EXPECT_NE(error_of([&] { n.accept(std::string(5000, '(')); }).find("deep"), std::string::npos);
}

TEST(JsonSchema, ObjectsWithRequiredAndOptionalProperties) {
  const Grammar g = schema(R"({"type":"object","properties":{
      "a":{"type":"integer"},"b":{"type":"string","maxLength":3},"c":{"type":"boolean"}},
      "required":["b"],"additionalProperties":false})");
  EXPECT_TRUE(matches(g, R"({"b":"xyz"})"));
  EXPECT_TRUE(matches(g, R"({"a":-12,"b":"","c":true})"));
  EXPECT_TRUE(matches(g, R"({"a":0,"b":"x"})"));
  EXPECT_TRUE(matches(g, R"({"b":"x","c":false})"));
  EXPECT_FALSE(matches(g, R"({"a":1})"));            // b required
  EXPECT_FALSE(matches(g, R"({"b":"wxyz"})"));       // maxLength
  EXPECT_FALSE(matches(g, R"({"b":"x","d":1})"));    // no other properties
  EXPECT_FALSE(matches(g, R"({"b":"x",})"));
  EXPECT_FALSE(matches(g, R"({"a":01,"b":"x"})"));   // no leading zeros
}

TEST(JsonSchema, WhiteSpaceIsBoundedAndOnlyWhereJsonAllowsIt) {
  const Grammar g = schema(R"({"type":"object","properties":{"k":{"type":"array","items":{"type":"null"}}},"required":["k"]})");
  EXPECT_TRUE(matches(g, "{\"k\":[null,null]}"));
  EXPECT_TRUE(matches(g, "{\n  \"k\" : [ null , null ]\n}"));
  EXPECT_TRUE(matches(g, "{\t\"k\":[]}"));
  EXPECT_FALSE(matches(g, "{\"k\":[nu ll]}"));
  EXPECT_FALSE(matches(g, " {\"k\":[]}"));                        // the text starts with the value
  EXPECT_FALSE(matches(g, "{\"k\":[" + std::string(9, ' ') + "]}"));  // at most 8
  EXPECT_FALSE(matches(g, "{\"k\":[]}\n"));                        // and ends with it
}

TEST(JsonSchema, StringsEscapesAndLengthInCodePoints) {
  const Grammar g = schema(R"({"type":"string","minLength":2,"maxLength":3})");
  EXPECT_TRUE(matches(g, R"("ab")"));
  EXPECT_TRUE(matches(g, "\"é€😀\""));          // 3 code points, 9 bytes
  EXPECT_TRUE(matches(g, R"("a\n\u00e9")"));
  EXPECT_FALSE(matches(g, R"("a")"));
  EXPECT_FALSE(matches(g, R"("abcd")"));
  EXPECT_FALSE(matches(g, "\"a\nb\""));          // raw control character
  EXPECT_FALSE(matches(g, R"("a\ud83d")"));      // surrogate escapes (would change the length)
  EXPECT_FALSE(matches(g, R"("a\x")"));
}

TEST(JsonSchema, FormatsEnumsConstAnyOfAndRefs) {
  const Grammar date = schema(R"({"type":"string","format":"date"})");
  EXPECT_TRUE(matches(date, R"("2024-02-28")"));
  EXPECT_TRUE(matches(date, R"("1999-12-31")"));
  EXPECT_FALSE(matches(date, R"("2024-02-30")"));
  EXPECT_FALSE(matches(date, R"("2024-13-01")"));
  EXPECT_TRUE(matches(schema(R"({"format":"date-time"})"), R"("2024-05-06T07:08:09.5+02:00")"));
  EXPECT_TRUE(matches(schema(R"({"format":"uuid"})"), R"("123e4567-e89b-12d3-a456-426614174000")"));
  EXPECT_TRUE(matches(schema(R"({"format":"email"})"), R"("a.b+c@example.co.uk")"));
  EXPECT_FALSE(matches(schema(R"({"format":"email"})"), R"("no-at-sign")"));
  const Grammar e = schema(R"({"enum":["red",1,null,{"x":[true]}]})");
  EXPECT_TRUE(matches(e, R"("red")"));
  EXPECT_TRUE(matches(e, R"({"x":[true]})"));
  EXPECT_FALSE(matches(e, R"("blue")"));
  EXPECT_TRUE(matches(schema(R"({"const":"only"})"), R"("only")"));
  const Grammar any = schema(R"({"anyOf":[{"type":"integer"},{"type":"array","items":{"$ref":"#/$defs/t"},"maxItems":2}],
      "$defs":{"t":{"type":"object","properties":{"kids":{"type":"array","items":{"$ref":"#/$defs/t"}}}}}})");
  EXPECT_TRUE(matches(any, "42"));
  EXPECT_TRUE(matches(any, R"([{"kids":[{"kids":[]},{}]},{}])"));
  EXPECT_FALSE(matches(any, R"([{},{},{}])"));
  EXPECT_TRUE(matches(schema(R"({"type":["string","null"]})"), "null"));
  EXPECT_TRUE(matches(schema("{}"), R"([1,{"a":"b"},null])"));
}

TEST(JsonSchema, IntegerBoundsAreExact) {
  const std::pair<const char*, std::pair<long, long>> cases[] = {
      {R"({"type":"integer","minimum":-123,"maximum":4567})", {-123, 4567}},
      {R"({"type":"integer","minimum":10,"maximum":99})", {10, 99}},
      {R"({"type":"integer","exclusiveMinimum":-1,"exclusiveMaximum":1000})", {0, 999}},
      {R"({"type":"integer","minimum":-5000,"maximum":-77})", {-5000, -77}},
      {R"({"type":"integer","minimum":0,"maximum":0})", {0, 0}},
      {R"({"type":"integer","minimum":2.5,"maximum":7.9})", {3, 7}},
  };
  for (const auto& [text, range] : cases) {
    const Grammar g = schema(text);
    for (long v = -6000; v <= 6000; ++v)
      ASSERT_EQ(matches(g, std::to_string(v)), v >= range.first && v <= range.second) << text << " " << v;
    EXPECT_FALSE(matches(g, "-0"));
    EXPECT_FALSE(matches(g, "007"));
  }
  const Grammar lower = schema(R"({"type":"integer","minimum":50})");
  EXPECT_TRUE(matches(lower, "50"));
  EXPECT_TRUE(matches(lower, "1234567890123"));
  EXPECT_FALSE(matches(lower, "49"));
  EXPECT_FALSE(matches(lower, "-60"));
}

TEST(JsonSchema, ArraysCountItems) {
  const Grammar g = schema(R"({"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3})");
  EXPECT_FALSE(matches(g, "[1]"));
  EXPECT_TRUE(matches(g, "[1,2]"));
  EXPECT_TRUE(matches(g, "[1, 2, 3]"));
  EXPECT_FALSE(matches(g, "[1,2,3,4]"));
  EXPECT_TRUE(matches(schema(R"({"type":"array","maxItems":0})"), "[]"));
}

TEST(JsonSchema, UnsupportedFeaturesAreNamed) {
  auto err = [](const char* text) { return error_of([&] { schema(text); }); };
  EXPECT_EQ(err(R"({"type":"object","patternProperties":{"^a":{}}})"),
            "JSON schema: JSON schema at /: \"patternProperties\" is not supported");
  EXPECT_EQ(err(R"({"properties":{"p":{"type":"string","pattern":"^a+$"}}})"),
            "JSON schema: JSON schema at /properties/p: \"pattern\" is not supported");
  EXPECT_NE(err(R"({"type":"string","format":"uri"})").find("format \"uri\" is not supported"), std::string::npos);
  EXPECT_NE(err(R"({"allOf":[{},{}]})").find("\"allOf\" with more than one schema is not supported"), std::string::npos);
  EXPECT_NE(err(R"({"$ref":"http://x/y"})").find("is not supported (only #/$defs/NAME"), std::string::npos);
  EXPECT_NE(err(R"({"$ref":"#/$defs/missing"})").find("names no definition"), std::string::npos);
  EXPECT_NE(err(R"({"type":"number","maximum":3})").find("not supported"), std::string::npos);
  EXPECT_NE(err(R"({"type":"integer","minimum":5,"maximum":4})").find("no integer lies"), std::string::npos);
  EXPECT_NE(err(R"({"type":"strng"})").find("unknown \"type\" \"strng\""), std::string::npos);
  EXPECT_NE(err("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(err(R"({"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"})").find("can never finish"), std::string::npos);
  std::string deep = "{}";
  for (int i = 0; i < 100; ++i) deep = R"({"type":"array","items":)" + deep + "}";
  EXPECT_NE(err(deep.c_str()).find("nested deeper than 64"), std::string::npos);
}

// The grammars made most recently are reused for the same text (their mask caches with them);
// older ones are made anew.
TEST(JsonSchema, RecentGrammarsAreReusedForTheSameText) {
  const std::string a = R"({"type":"object","properties":{"reused":{"type":"string"}}})";
  const Grammar first = schema(a);
  const Grammar again = schema(a);
  EXPECT_EQ(first.impl.get(), again.impl.get());
  EXPECT_EQ(Grammar::from_gbnf(first.gbnf()).impl.get(), first.impl.get());  // same GBNF text
  EXPECT_NE(schema(R"({"type":"object","properties":{"other":{"type":"string"}}})").impl.get(), first.impl.get());
  for (int i = 0; i < 8; ++i) schema(R"({"enum":[)" + std::to_string(i) + "]}");
  const Grammar later = schema(a);
  EXPECT_NE(later.impl.get(), first.impl.get());  // pushed out by 8 newer ones: made anew
  EXPECT_EQ(later.gbnf(), first.gbnf());
}

TEST(JsonSchema, AnyJsonObject) {
  const Grammar g = Grammar::any_json_object();
  EXPECT_TRUE(matches(g, R"({"a":[1,2.5e-3,{"b":null}],"c":"\u00e9\"","d":{}})"));
  EXPECT_FALSE(matches(g, "[1]"));
  EXPECT_FALSE(matches(g, R"({"a":})"));
  EXPECT_FALSE(matches(g, R"({'a':1})"));
}

// --- token masks on the real vocabularies --------------------------------------------------

struct Vocab {
  Tokenizer tok;
  std::shared_ptr<const grammar::Vocabulary> vocab;
};
const Vocab& phi3() {
  static const Vocab v = [] {
    Tokenizer t = Tokenizer::from_dir(test::shared_path("data/phi3-mini-4k-instruct"));
    auto voc = grammar::Vocabulary::build(t, 32064);
    return Vocab{std::move(t), voc};
  }();
  return v;
}
const Vocab& phi4() {
  static const Vocab v = [] {
    Tokenizer t = Tokenizer::from_dir(test::shared_path("data/phi4-mini-instruct"));
    auto voc = grammar::Vocabulary::build(t, 200064);
    return Vocab{std::move(t), voc};
  }();
  return v;
}

bool bit(std::span<const uint64_t> mask, int32_t id) { return (mask[static_cast<size_t>(id) / 64] >> (id % 64)) & 1; }

// Whether the matcher accepts these bytes, trying them on a copy of its stacks.
bool accepts_bytes(Matcher& m, const std::string& bytes) {
  grammar::Stacks& st = m.stacks();
  const size_t mark = st.mark();
  std::vector<int32_t> cur(m.tops().begin(), m.tops().end()), next;
  bool complete = false;
  for (unsigned char b : bytes) {
    next.clear();
    complete = st.advance(cur, 0, cur.size(), b, next, 0);
    if (next.empty() && !complete) {
      st.rollback(mark);
      return false;
    }
    cur.swap(next);
  }
  st.rollback(mark);
  return true;
}

void expect_mask_is_brute_force(const Vocab& v, const Grammar& g, const std::string& prefix, bool at_start) {
  Matcher m(g.impl->rules);
  ASSERT_TRUE(m.accept(prefix)) << prefix;
  grammar::TokenMasker masker;
  grammar::TokenMask mask;
  masker.compute(m, *v.vocab, at_start, mask);
  size_t allowed = 0;
  for (int32_t id = 0; id < v.vocab->mask_size(); ++id) {
    const std::string& bytes = v.vocab->bytes(id, at_start);
    const bool expect = !bytes.empty() && accepts_bytes(m, bytes);
    ASSERT_EQ(bit(mask, id), expect) << "token " << id << " '" << bytes << "' after '" << prefix << "'";
    allowed += expect;
  }
  EXPECT_GT(allowed, 0u) << prefix;
}

const char* kPersonSchema = R"({"type":"object","properties":{
    "name":{"type":"string","minLength":1,"maxLength":12},
    "age":{"type":"integer","minimum":0,"maximum":130},
    "email":{"type":"string","format":"email"},
    "tags":{"type":"array","items":{"enum":["a","b","ü"]},"maxItems":3}},
    "required":["name","age"]})";

TEST(TokenMask, TrieWalkEqualsBruteForceOnBothVocabularies) {
  const Grammar person = schema(kPersonSchema);
  const Grammar unicode = gbnf(R"(root ::= "«" [€-₿]+ "»" [ \n]?)");
  for (const Vocab* v : {&phi3(), &phi4()}) {
    for (const char* prefix : {"", "{", "{\"age\":1", "{\"age\":12,\"email\":\"x@", "{\"age\":1,\"name\":\"a",
                               "{\"age\":1,\"name\":\"ab\",\"tags\":[\"\xC3"})
      expect_mask_is_brute_force(*v, person, prefix, std::string(prefix).empty());
    expect_mask_is_brute_force(*v, unicode, "", true);
    expect_mask_is_brute_force(*v, unicode, "\xC2\xAB\xE2", false);  // inside « and inside €
    expect_mask_is_brute_force(*v, Grammar::any_json_object(), "{\"a\":[", false);
  }
}

TEST(TokenMask, ByteFallbackTokensAndTheLeadingSpaceOfPhi3) {
  const Vocab& v = phi3();
  const Grammar g = gbnf(R"(root ::= "{" " "? "€")");
  grammar::ConstrainedDecoding first(g.impl->rules, v.vocab, g.impl->cache_for(*v.vocab), {32000});
  auto mask = first.allowed();
  // At the start "▁{" decodes to "{" (the decoder strips the leading space).
  EXPECT_TRUE(bit(mask, *v.tok.token_to_id("▁{")));
  EXPECT_TRUE(bit(mask, *v.tok.token_to_id("{")));
  EXPECT_FALSE(bit(mask, *v.tok.token_to_id("<0x20>")));  // would decode to "" at the start
  EXPECT_FALSE(bit(mask, 32000));                          // <|endoftext|>: not yet
  first.accept(*v.tok.token_to_id("{"));
  mask = first.allowed();
  EXPECT_TRUE(bit(mask, *v.tok.token_to_id("▁")));
  EXPECT_TRUE(bit(mask, *v.tok.token_to_id("<0xE2>")));  // the first byte of "€"
  EXPECT_FALSE(bit(mask, *v.tok.token_to_id("▁{")));
  first.accept(*v.tok.token_to_id("<0xE2>"));
  first.accept(*v.tok.token_to_id("<0x82>"));
  mask = first.allowed();
  EXPECT_TRUE(bit(mask, *v.tok.token_to_id("<0xAC>")));
  EXPECT_FALSE(bit(mask, *v.tok.token_to_id("<0xAD>")));
  first.accept(*v.tok.token_to_id("<0xAC>"));
  EXPECT_TRUE(first.complete());
  mask = first.allowed();
  EXPECT_TRUE(bit(mask, 32000));
  size_t n = 0;
  for (uint64_t w : mask) n += static_cast<size_t>(__builtin_popcountll(w));
  EXPECT_EQ(n, 1u);  // only the end
  EXPECT_THROW(first.accept(*v.tok.token_to_id("a")), Error);
}

TEST(TokenMask, TokensSpanningSeveralSymbolsOnPhi4) {
  const Vocab& v = phi4();
  const Grammar g = schema(R"({"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]})");
  grammar::ConstrainedDecoding c(g.impl->rules, v.vocab, g.impl->cache_for(*v.vocab), {199999});
  auto mask = c.allowed();
  const auto open = v.tok.encode("{\"", false);
  ASSERT_EQ(open.size(), 1u);  // one token: "{" and the key's quote
  EXPECT_TRUE(bit(mask, open[0]));
  c.accept(open[0]);
  for (int32_t id : v.tok.encode("id\":", false)) {
    ASSERT_TRUE(bit(c.allowed(), id)) << id;
    c.accept(id);
  }
  EXPECT_FALSE(c.complete());
}

// Random walks over allowed tokens: a mask is never empty, and bounded schemas always end.
// The token-class shortcut (tokens of one character class decided by their character count, the
// trie walked only elsewhere, chains of the class restarted below other characters, the grammar's
// own character sets indexed on first use) gives exactly the full walk's mask, state after state,
// on both vocabularies and on grammars where the class is read whole, in part, or inside bounded,
// exact and unbounded repetitions; and it is taken where it matters (inside strings, formats).
TEST(TokenMask, TokenClassShortcutEqualsTheFullWalk) {
  const char* grammars[] = {
      // JSON strings: bounded, exact, unbounded, with a minimum; an enum; an integer.
      R"({"type":"object","properties":{"a":{"type":"string","maxLength":5},"b":{"type":"string","minLength":2,"maxLength":2},
          "c":{"type":"string"},"d":{"type":"string","minLength":3,"maxLength":30},"e":{"enum":["x\"y","ü€"]},
          "f":{"type":"integer","minimum":-5,"maximum":99999}},"required":["a","b","c","d","e","f"]})",
      // Formats (ASCII classes) and nested arrays of strings.
      R"({"type":"array","items":{"type":"object","properties":{"m":{"format":"email"},"u":{"format":"uuid"},
          "t":{"type":"array","items":{"type":"string","maxLength":3},"maxItems":3}},"required":["m","u","t"]},"maxItems":2})",
      nullptr,  // GBNF grammars below
  };
  const char* gbnf_texts[] = {
      // Letters and digits of several lengths, then an ASCII class that holds only part of them.
      R"(root ::= [a-zA-Z0-9]{2,7} "-" [a-z]+ "." [0-9a-f]{0,4} ";")",
      // A class with non-ASCII members, a partly overlapping one, and text that may end anywhere.
      R"(root ::= "«" [^"\\\x00-\x1F]{0,9} "»" [a-zé€]* ("!" | [0-9]{1,3})?)",
      // Alternatives that read the same class differently (one stops early).
      R"(root ::= ([a-z]{1,3} | [a-z0-9]{1,5}) " " ([^"\\\x00-\x1F] | "\"")* "\"")",
  };
  std::vector<Grammar> gs;
  for (const char* t : grammars)
    if (t) gs.push_back(schema(t));
  for (const char* t : gbnf_texts) gs.push_back(gbnf(t));
  gs.push_back(Grammar::any_json_object());
  for (const Vocab* v : {&phi3(), &phi4()}) {
    size_t states = 0, shortcuts = 0, string_shortcuts = 0, grammar_shortcuts = 0;
    for (const Grammar& g : gs) {
      std::mt19937 rng(11);
      grammar::MaskCache classes(0);  // the grammar's class indexes (no masks kept)
      for (int walk = 0; walk < 4; ++walk) {
        Matcher m(g.impl->rules);
        grammar::TokenMasker fast, full;
        full.use_token_classes(false);
        grammar::TokenMask got, expect;
        bool at_start = true;
        for (int step = 0; step < 40; ++step) {
          fast.compute(m, *v->vocab, at_start, got, &classes);
          full.compute(m, *v->vocab, at_start, expect);
          ASSERT_EQ(got, expect) << "state " << step << " of walk " << walk << " of " << g.gbnf();
          ++states;
          if (fast.last_shortcut()) ++shortcuts;
          if (fast.last_shortcut() == grammar::TokenClass::JsonStringChar) ++string_shortcuts;
          if (fast.last_shortcut() == grammar::TokenClass::OfGrammar) ++grammar_shortcuts;
          std::vector<int32_t> ids;
          for (int32_t id = 0; id < v->vocab->mask_size(); ++id)
            if (bit(got, id)) ids.push_back(id);
          if (ids.empty()) break;  // the text is complete: nothing may follow
          // Short tokens most of the time, so walks reach every part of the grammar.
          int32_t pick = ids[rng() % ids.size()];
          for (int k = 0; k < 2; ++k) {
            const int32_t other = ids[rng() % ids.size()];
            if (v->vocab->bytes(other, at_start).size() < v->vocab->bytes(pick, at_start).size()) pick = other;
          }
          ASSERT_TRUE(m.accept(v->vocab->bytes(pick, at_start)));
          at_start = false;
        }
      }
    }
    // The shortcut is not a no-op: it decided most states, many of them inside JSON strings.
    EXPECT_GT(shortcuts * 2, states) << shortcuts << " of " << states;
    EXPECT_GT(string_shortcuts * 10, states) << string_shortcuts << " of " << states;
    EXPECT_GT(grammar_shortcuts * 20, states) << grammar_shortcuts << " of " << states;
  }
}

TEST(TokenMask, RandomWalksNeverDeadEnd) {
  const char* schemas[] = {
      kPersonSchema,
      R"({"type":"array","items":{"type":"object","properties":{"d":{"format":"date"},"u":{"format":"uuid"}},"required":["d"]},"maxItems":2})",
      R"({"anyOf":[{"type":"integer","minimum":-20,"maximum":20},{"type":"string","maxLength":4},{"type":"null"}]})",
  };
  for (const Vocab* v : {&phi3(), &phi4()}) {
    for (const char* text : schemas) {
      const Grammar g = schema(text);
      std::mt19937 rng(7);
      int ended = 0;
      for (int walk = 0; walk < 20; ++walk) {
        const int32_t eos = v == &phi3() ? 32000 : 199999;
        grammar::ConstrainedDecoding c(g.impl->rules, v->vocab, g.impl->cache_for(*v->vocab), {eos});
        for (int step = 0; step < 400; ++step) {
          auto mask = c.allowed();
          std::vector<int32_t> ids;
          for (int32_t id = 0; id < v->vocab->mask_size(); ++id)
            if (bit(mask, id)) ids.push_back(id);
          ASSERT_FALSE(ids.empty()) << "dead end in " << text;
          // Prefer the end and short tokens so walks finish: pick the shortest of three draws.
          int32_t pick = ids[rng() % ids.size()];
          for (int k = 0; k < 2; ++k) {
            const int32_t other = ids[rng() % ids.size()];
            if (v->vocab->bytes(other, false).size() < v->vocab->bytes(pick, false).size()) pick = other;
          }
          if (bit(mask, eos)) pick = eos;
          if (pick == eos) {
            ++ended;
            break;
          }
          c.accept(pick);
        }
      }
      EXPECT_EQ(ended, 20) << text;
    }
  }
}

}  // namespace
}  // namespace phinfer
