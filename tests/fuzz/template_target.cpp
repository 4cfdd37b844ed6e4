// Chat templates: Jinja generated from the supported constructs (statements nested a few deep,
// expressions with filters, tests, methods, slices, calls, whitespace control), the real templates
// of ../shared with generated snippets spliced in, and byte edits of both; each rendered with random
// messages. Every template must parse or throw phinfer::Error, and every render must return
// (bounded output) or throw phinfer::Error.
#include "fuzz/mutate.h"
#include "fuzz/targets.h"
#include "phinfer/chat_template.h"
#include "phinfer/error.h"

namespace phinfer::fuzz {
namespace {

using nlohmann::json;

const std::vector<std::string> kNames = {"messages", "message", "m", "x", "y", "ns", "ns.v", "loop", "loop.index",
                                         "loop.first", "loop.last", "loop.length", "loop.previtem", "bos_token",
                                         "eos_token", "add_generation_prompt", "tools", "documents", "undefined_name",
                                         "message.role", "message.content", "message['content']", "messages[0]",
                                         "messages[-1]['role']", "message.tool_calls", "range"};
const std::vector<std::string> kFilters = {
    "trim", "length", "tojson", "tojson(indent=2)", "upper", "lower", "first", "last", "join(', ')", "default('d')",
    "default(none, true)", "map(attribute='role')", "select('defined')", "selectattr('role', 'equalto', 'user')",
    "rejectattr('role')", "list", "string", "int", "float", "items", "replace('a', 'b')", "indent(4)", "safe",
    "capitalize", "title", "round(2)", "abs", "unique", "sort", "reverse", "count", "sum", "dictsort", "batch(2)",
    "wordcount", "center(9)", "format(1)", "attr('role')", "escape", "e", "d", "truncate(3)", "xmlattr"};
const std::vector<std::string> kTests = {"defined", "undefined", "none", "string", "number", "mapping", "iterable",
                                         "sequence", "even", "odd", "divisibleby(3)", "eq(1)", "in([1])", "boolean",
                                         "true", "false", "callable", "sameas(none)", "lower", "upper", "integer"};
const std::vector<std::string> kMethods = {"strip()", "split(' ')", "startswith('<')", "endswith('>')", "items()",
                                           "keys()", "values()", "upper()", "replace('a','bb')", "get('role')",
                                           "get('x', 1)", "lstrip('<')", "rstrip()", "find('a')", "count('a')",
                                           "splitlines()", "append(1)", "pop()", "index('a')", "format(1)",
                                           "title()", "isdigit()", "update({'a': 1})", "setdefault('k', [])"};
const std::vector<std::string> kLiterals = {"0", "1", "-1", "2147483648", "9223372036854775807", "1e308", "0.5",
                                            "'<|user|>'", "\"\\n\"", "''", "'\\u00e9'", "true", "false", "none",
                                            "None", "[]", "[1, 2, 3]", "{}", "{'a': 1}", "(1,)", "()", "'abc' * 3"};
const std::vector<std::string> kBinops = {"+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", ">=", "in",
                                          "not in", "and", "or"};
const std::vector<std::string> kFragments = {
    "{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", "{{-", "-}}", "{%+", "|", ".", "[", "]", "(", ")", "'", "\"",
    "endif", "endfor", "else", "elif", "in", "not", "is", "loop", "set", "for", "if", "macro", "endmacro", "raw",
    "endraw", "include 'x'", "extends 'y'", "call", "filter", "recursive", "namespace(", "\\", "\n", "\xff"};

class Generator {
 public:
  Generator(Rng& rng, bool known_bugs) : rng_(rng), known_bugs_(known_bugs) {}

  std::string expr(int depth) {
    const uint64_t kinds = depth > 0 ? 14 : 3;
    const auto& r = [&](const std::vector<std::string>& v) -> const std::string& { return v[pick(rng_, v.size())]; };
    switch (rng_() % kinds) {
      case 0: {
        // Known bug 4 (tests/FUZZING.md): range(9223372036854775807) overflows int64 (UBSan).
        const std::string& lit = r(kLiterals);
        return !known_bugs_ && lit == "9223372036854775807" ? "2147483648" : lit;
      }
      case 1:
      case 2: return r(kNames);
      case 3: return expr(depth - 1) + " " + r(kBinops) + " " + expr(depth - 1);
      case 4: return expr(depth - 1) + " | " + r(kFilters);
      case 5: return expr(depth - 1) + " is " + (one_in(rng_, 3) ? "not " : "") + r(kTests);
      case 6: return "(" + expr(depth - 1) + ")." + r(kMethods);
      case 7: return expr(depth - 1) + "[" + expr(depth - 1) + "]";
      case 8: {
        static const char* const kSlices[] = {"[::-1]", "[1:]", "[:-1]", "[0:2]", "[::0]", "[-5:5:2]", "[::2]"};
        return "(" + expr(depth - 1) + ")" + kSlices[pick(rng_, std::size(kSlices))];
      }
      case 9: return "(" + expr(depth - 1) + " if " + expr(depth - 1) + " else " + expr(depth - 1) + ")";
      case 10: return "not " + expr(depth - 1);
      case 11: {
        static const char* const kCalls[] = {"range(", "raise_exception(", "namespace(v=", "dict(a=", "strftime_now(",
                                             "m(", "caller(", "lipsum(", "cycler("};
        return std::string(kCalls[pick(rng_, std::size(kCalls))]) + expr(depth - 1) + ")";
      }
      case 12: return "[" + expr(depth - 1) + ", " + expr(depth - 1) + "]";
      default: return "{" + expr(depth - 1) + ": " + expr(depth - 1) + "}";
    }
  }

  std::string body(int depth) {
    std::string out;
    for (size_t n = 1 + pick(rng_, 3); n > 0; --n) out += stmt(depth);
    return out;
  }

  std::string stmt(int depth) {
    const uint64_t kinds = depth > 0 ? 14 : 4;
    switch (rng_() % kinds) {
      case 0: {
        static const char* const kText[] = {"<|user|>\n", "<|end|>", " text ", "\n", "  ", "{", "}", "%"};
        return kText[pick(rng_, std::size(kText))];
      }
      case 1:
      case 2: return open("{{") + expr(3) + close("}}");
      case 3: return open("{#") + " comment " + close("#}");
      case 4:
      case 5: {
        std::string s = tag("if " + expr(2)) + body(depth - 1);
        if (one_in(rng_, 2)) s += tag("elif " + expr(2)) + body(depth - 1);
        if (one_in(rng_, 2)) s += tag("else") + body(depth - 1);
        return s + tag("endif");
      }
      case 6:
      case 7: {
        static const char* const kTargets[] = {"message", "x", "k, v", "(a, b)", "i"};
        std::string head = "for " + std::string(kTargets[pick(rng_, std::size(kTargets))]) + " in " + expr(2);
        if (one_in(rng_, 4)) head += " if " + expr(1);
        if (one_in(rng_, 10)) head += " recursive";
        std::string s = tag(head) + body(depth - 1);
        if (one_in(rng_, 3)) s += tag(one_in(rng_, 2) ? "break" : "continue");
        if (one_in(rng_, 4)) s += tag("else") + body(depth - 1);
        return s + tag("endfor");
      }
      case 8: {
        static const char* const kSetTargets[] = {"x", "y", "ns", "ns.v", "x, y", "messages"};
        if (one_in(rng_, 4)) return tag("set x") + body(depth - 1) + tag("endset");
        return tag(std::string("set ") + kSetTargets[pick(rng_, std::size(kSetTargets))] + " = " + expr(2));
      }
      case 9: return tag("set ns = namespace(v=" + expr(1) + ")");
      case 10:
        return tag("macro m(a, b=" + expr(1) + ")") + body(depth - 1) + tag("endmacro") + open("{{") + "m(" +
               expr(1) + ")" + close("}}");
      case 11: return tag("raw") + "{{ not parsed }}" + tag("endraw");
      case 12: return tag("generation") + body(depth - 1) + tag("endgeneration");
      default: {
        static const char* const kOther[] = {"include 'x'", "import 'x' as y", "extends 'base'", "call m()",
                                             "filter upper", "block b", "print " , "with a = 1", "do x"};
        return tag(std::string(kOther[pick(rng_, std::size(kOther))]) + (one_in(rng_, 2) ? expr(1) : ""));
      }
    }
  }

 private:
  std::string open(const char* o) {
    std::string s = o;
    return one_in(rng_, 3) ? s + (one_in(rng_, 4) ? "+ " : "- ") : s + " ";
  }
  std::string close(const char* c) { return one_in(rng_, 3) ? std::string(" -") + c : std::string(" ") + c; }
  std::string tag(const std::string& inner) { return open("{%") + inner + close("%}"); }

  Rng& rng_;
  bool known_bugs_;
};

// Random messages: the usual roles and some others, contents with template syntax and odd bytes,
// and extra fields (tool calls, nested objects).
json random_messages(Rng& rng) {
  static const char* const kRoles[] = {"system", "user", "assistant", "tool", "user", "assistant", "", "x"};
  static const char* const kContents[] = {"Hello!", "", "{{ 1 }}", "<|end|>", "\xff\xfe", "line\nline", "  ",
                                          "\xe2\x96\x81\xf0\x9f\x98\x80"};
  json messages = json::array();
  for (size_t n = pick(rng, 6); n > 0; --n) {
    json m = {{"role", kRoles[pick(rng, std::size(kRoles))]}, {"content", kContents[pick(rng, std::size(kContents))]}};
    if (one_in(rng, 4)) m["tool_calls"] = json::array({{{"name", "f"}, {"arguments", {{"a", 1}}}}});
    if (one_in(rng, 6)) m["x"] = edge_value(rng);
    messages.push_back(m);
  }
  return messages;
}

class TemplateHarness : public Harness {
 public:
  explicit TemplateHarness(const Context& ctx) : known_bugs_(ctx.with_known_bugs) {
    for (const char* name : {"phi3-mini-4k-instruct", "phi3.5-mini-instruct", "phi4-mini-instruct", "phi4-14b",
                             "phi4-mini-reasoning", "phi3-mini-128k-instruct-2024-07"}) {
      const auto path = ctx.shared_dir / "data" / name / "tokenizer_config.json";
      if (!std::filesystem::exists(path)) continue;
      json cfg = json::parse(read_file(path));
      if (cfg.contains("chat_template") && cfg["chat_template"].is_string()) seeds_.push_back(cfg["chat_template"]);
    }
    if (seeds_.empty()) throw std::runtime_error("no chat_template seeds under " + ctx.shared_dir.string());
  }

  Input generate(Rng& rng) override {
    Generator gen(rng, known_bugs_);
    std::string source;
    switch (rng() % 4) {
      case 0:
      case 1: source = gen.body(3); break;
      case 2: {  // a real template with a generated snippet spliced in
        source = seeds_[pick(rng, seeds_.size())];
        source.insert(pick(rng, source.size() + 1), gen.stmt(2));
        break;
      }
      default: source = seeds_[pick(rng, seeds_.size())]; break;
    }
    if (one_in(rng, 3)) mutate_bytes(source, rng, kFragments);
    json messages = random_messages(rng);
    return {{"template.jinja", source}, {"messages.json", messages.dump(-1, ' ', false, json::error_handler_t::replace)},
            {"add_generation_prompt", one_in(rng, 2) ? "1" : "0"}};
  }

  void run(const Input& input) override {
    const ChatTemplate tmpl(file(input, "template.jinja"));
    std::vector<ChatMessage> messages;
    for (const json& m : json::parse(file(input, "messages.json"))) {
      ChatMessage msg{m["role"].get<std::string>(), m["content"].get<std::string>()};
      for (auto it = m.begin(); it != m.end(); ++it)
        if (it.key() != "role" && it.key() != "content") msg.extra[it.key()] = it.value();
      messages.push_back(std::move(msg));
    }
    const std::string out = tmpl.render(messages, file(input, "add_generation_prompt") == "1", "<s>", "</s>");
    require(out.size() <= (size_t{256} << 20), "render gave " + std::to_string(out.size()) + " bytes");
  }

 private:
  bool known_bugs_;
  std::vector<std::string> seeds_;
};

}  // namespace

std::unique_ptr<Harness> make_template(const Context& ctx) { return std::make_unique<TemplateHarness>(ctx); }

}  // namespace phinfer::fuzz
