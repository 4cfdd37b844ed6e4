// Recursive descent over the token list. Function names follow jinja2/parser.py so the two can be
// compared rule by rule; precedence from loosest to tightest: if-else, or, and, not, comparisons
// (in, ==, <, ...), + -, ~, * / // %, **, unary - +, then postfix (.attr [item] (call)) and
// filters / tests.
#include "chat/jinja_parser.h"

#include <cerrno>
#include <algorithm>
#include <cstdlib>
#include <initializer_list>

#include "chat/jinja_builtins.h"

namespace phinfer::jinja {
namespace {

// Nesting bound for expressions and blocks: deeper templates are rejected instead of
// overflowing the stack.
constexpr int kMaxDepth = 200;

// Tags Jinja has but this subset does not implement; they get a clearer message than unknown tags.
constexpr const char* kUnsupportedTags[] = {"include", "import",   "from", "extends", "block",
                                            "call",    "filter",   "with", "autoescape", "do",
                                            "trans",   "pluralize"};

using Names = std::initializer_list<const char*>;

ExprPtr make_expr(ExprKind kind, size_t pos) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->pos = pos;
  return e;
}

StmtPtr make_stmt(StmtKind kind, size_t pos) {
  auto s = std::make_unique<Stmt>();
  s->kind = kind;
  s->pos = pos;
  return s;
}

std::string describe(const Token& t) {
  switch (t.type) {
    case TokenType::Text: return "template text";
    case TokenType::VarBegin: return "'{{'";
    case TokenType::VarEnd: return "end of print statement '}}'";
    case TokenType::BlockBegin: return "'{%'";
    case TokenType::BlockEnd: return "end of statement block '%}'";
    case TokenType::String: return "string literal";
    case TokenType::Eof: return "end of template";
    default: return "'" + t.value + "'";
  }
}

class Parser {
 public:
  Parser(const Source& src, const std::vector<Token>& tokens) : src_(src), toks_(tokens) {}

  Body parse_template() {
    Body body = subparse({});
    if (cur().type != TokenType::Eof) fail("unexpected " + describe(cur()));
    return body;
  }

 private:
  // ---- token stream ----
  const Token& cur() const { return toks_[i_]; }
  const Token& peek() const { return toks_[i_ + 1 < toks_.size() ? i_ + 1 : i_]; }
  const Token& next() {
    const Token& t = toks_[i_];
    if (i_ + 1 < toks_.size()) ++i_;
    return t;
  }
  bool is_op(const char* op) const { return cur().type == TokenType::Operator && cur().value == op; }
  bool is_name(const char* kw) const { return cur().type == TokenType::Name && cur().value == kw; }
  bool is_any_name(Names kws) const {
    for (const char* kw : kws)
      if (is_name(kw)) return true;
    return false;
  }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* kw) {
    if (!is_name(kw)) return false;
    next();
    return true;
  }
  [[noreturn]] void fail(const std::string& msg) const { src_.fail(cur().pos, msg); }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail(std::string("expected '") + op + "', got " + describe(cur()));
  }
  std::string expect_name() {
    if (cur().type != TokenType::Name) fail("expected a name, got " + describe(cur()));
    return next().value;
  }
  void expect(TokenType type, const char* what) {
    if (cur().type != type) fail(std::string("expected ") + what + ", got " + describe(cur()));
    next();
  }

  // Guards recursion depth; one per nested expression or block.
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxDepth) p.fail("template nested too deeply (limit " + std::to_string(kMaxDepth) + ")");
    }
    ~DepthGuard() { --p.depth_; }
  };

  // ---- statements ----

  // Parses until a `{% name %}` with name in end_tags (left as the current token) or the end.
  Body subparse(Names end_tags) {
    DepthGuard guard(*this);
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == TokenType::Eof) return body;
      if (t.type == TokenType::Text) {
        auto s = make_stmt(StmtKind::Text, t.pos);
        s->text = t.value;
        body.push_back(std::move(s));
        next();
      } else if (t.type == TokenType::VarBegin) {
        next();
        auto s = make_stmt(StmtKind::Output, t.pos);
        s->expr = parse_tuple(false, true, {});
        expect(TokenType::VarEnd, "'}}'");
        body.push_back(std::move(s));
      } else if (t.type == TokenType::BlockBegin) {
        next();
        if (is_any_name(end_tags)) return body;
        body.push_back(parse_statement());
        expect(TokenType::BlockEnd, "end of statement '%}'");
      } else {
        fail("unexpected " + describe(t));
      }
    }
  }

  // The body of a block statement, up to one of end_tags, which is left as the current token.
  // `opener` names the block and its position for the "unclosed" message.
  Body parse_statements(Names end_tags, const std::string& opener, size_t opener_pos) {
    skip_op(":");
    expect(TokenType::BlockEnd, "end of statement '%}'");
    open_blocks_.push_back({opener, opener_pos});
    Body body = subparse(end_tags);
    open_blocks_.pop_back();
    if (cur().type == TokenType::Eof) {
      std::string wanted;
      for (const char* t : end_tags) wanted += std::string(wanted.empty() ? "" : " or ") + "{% " + t + " %}";
      src_.fail(opener_pos, "unclosed '" + opener + "' block (missing " + wanted + ")");
    }
    return body;
  }

  StmtPtr parse_statement() {
    if (cur().type != TokenType::Name) fail("tag name expected, got " + describe(cur()));
    const std::string tag = cur().value;
    const size_t pos = cur().pos;
    if (tag == "if") return parse_if();
    if (tag == "for") return parse_for();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "print") {
      next();
      auto s = make_stmt(StmtKind::Output, pos);
      s->expr = parse_tuple(false, true, {});
      return s;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) fail("'" + tag + "' outside of a loop");
      next();
      return make_stmt(tag == "break" ? StmtKind::Break : StmtKind::Continue, pos);
    }
    if (tag == "generation") {  // transformers' AssistantTracker tag: marks assistant text only
      next();
      auto s = make_stmt(StmtKind::Scope, pos);
      s->body = parse_statements({"endgeneration"}, tag, pos);
      next();
      return s;
    }
    for (const char* unsupported : kUnsupportedTags)
      if (tag == unsupported) fail("unsupported tag '" + tag + "'");
    std::string msg = "unknown tag '" + tag + "'";
    if (!open_blocks_.empty())
      msg += " (the innermost open block is '" + open_blocks_.back().first + "' at " +
             src_.where(open_blocks_.back().second) + ")";
    fail(msg);
  }

  StmtPtr parse_if() {
    auto s = make_stmt(StmtKind::If, cur().pos);
    next();
    while (true) {
      ExprPtr cond = parse_tuple(false, false, {});
      Body body = parse_statements({"elif", "else", "endif"}, "if", s->pos);
      s->branches.emplace_back(std::move(cond), std::move(body));
      std::string tok = next().value;
      if (tok == "elif") continue;
      if (tok == "else") {
        s->else_body = parse_statements({"endif"}, "if", s->pos);
        next();
      }
      return s;
    }
  }

  StmtPtr parse_for() {
    auto s = make_stmt(StmtKind::For, cur().pos);
    next();
    s->target = parse_assign_target(false, {"in"});
    if (!skip_name("in")) fail("expected 'in', got " + describe(cur()));
    s->expr = parse_tuple(false, false, {"recursive"});
    if (skip_name("if")) s->filter = parse_expression(true);
    if (is_name("recursive")) fail("unsupported construct: recursive loops");
    ++loop_depth_;
    s->body = parse_statements({"endfor", "else"}, "for", s->pos);
    --loop_depth_;
    if (next().value == "else") {
      s->else_body = parse_statements({"endfor"}, "for", s->pos);
      next();
    }
    return s;
  }

  StmtPtr parse_set() {
    size_t pos = cur().pos;
    next();
    ExprPtr target = parse_assign_target(true, {});
    if (skip_op("=")) {
      auto s = make_stmt(StmtKind::Set, pos);
      s->target = std::move(target);
      s->expr = parse_tuple(false, true, {});
      return s;
    }
    if (is_op("|")) fail("unsupported construct: filter on a set block");
    if (target->kind == ExprKind::Tuple) src_.fail(target->pos, "a set block needs a single name");
    auto s = make_stmt(StmtKind::SetBlock, pos);
    s->target = std::move(target);
    s->body = parse_statements({"endset"}, "set", pos);
    next();
    return s;
  }

  StmtPtr parse_macro() {
    auto s = make_stmt(StmtKind::Macro, cur().pos);
    next();
    s->name = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      if (!s->params.empty()) expect_op(",");
      s->params.push_back(expect_name());
      if (skip_op("="))
        s->defaults.push_back(parse_expression(true));
      else if (!s->defaults.empty())
        fail("non-default argument follows default argument");
    }
    expect_op(")");
    int saved_loops = loop_depth_;
    loop_depth_ = 0;  // break/continue cannot leave a macro
    s->body = parse_statements({"endmacro"}, "macro", s->pos);
    loop_depth_ = saved_loops;
    next();
    return s;
  }

  // A name, `ns.attr` (for set) or a tuple of names, as the target of for / set.
  ExprPtr parse_assign_target(bool with_namespace, Names extra_end) {
    ExprPtr target = parse_tuple(true, true, extra_end, false, with_namespace);
    auto check = [&](const Expr& e) {
      bool ok = e.kind == ExprKind::Name || (e.kind == ExprKind::GetAttr && with_namespace);
      if (!ok) src_.fail(e.pos, "cannot assign to this expression");
    };
    if (target->kind == ExprKind::Tuple)
      for (const auto& c : target->children) check(*c);
    else
      check(*target);
    return target;
  }

  // ---- expressions ----

  bool is_tuple_end(Names extra_end) const {
    if (cur().type == TokenType::VarEnd || cur().type == TokenType::BlockEnd || is_op(")")) return true;
    return is_any_name(extra_end);
  }

  // Comma-separated expressions; a single one without a trailing comma is returned as itself.
  // `simplified` parses only names / literals (assignment targets).
  ExprPtr parse_tuple(bool simplified, bool with_condexpr, Names extra_end,
                      bool explicit_parentheses = false, bool with_namespace = false) {
    size_t pos = cur().pos;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      items.push_back(simplified ? parse_primary(with_namespace) : parse_expression(with_condexpr));
      if (is_op(","))
        is_tuple = true;
      else
        break;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) fail("expected an expression, got " + describe(cur()));
    }
    auto t = make_expr(ExprKind::Tuple, pos);
    for (auto& item : items) adopt(*t, std::move(item));
    return t;
  }

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard guard(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    DepthGuard guard(*this);  // `a if b else c if d else ...` recurses here
    ExprPtr expr = parse_or();
    while (is_name("if")) {
      size_t pos = next().pos;
      auto c = make_expr(ExprKind::CondExpr, pos);
      adopt(*c, std::move(expr));
      adopt(*c, parse_or());
      adopt(*c, skip_name("else") ? parse_condexpr() : nullptr);
      expr = std::move(c);
    }
    return expr;
  }

  ExprPtr binary(const std::string& op, size_t pos, ExprPtr left, ExprPtr right) {
    auto b = make_expr(ExprKind::Binary, pos);
    b->name = op;
    adopt(*b, std::move(left));
    adopt(*b, std::move(right));
    return b;
  }

  // One left-associative precedence level: `operand` results joined by any of `ops` (keywords
  // such as "or" when keyword_ops, else operator tokens).
  template <typename Operand>
  ExprPtr parse_left_assoc(Names ops, bool keyword_ops, Operand operand) {
    ExprPtr left = operand();
    while (true) {
      const char* found = nullptr;
      for (const char* op : ops)
        if (keyword_ops ? is_name(op) : is_op(op)) found = op;
      if (!found) return left;
      size_t pos = next().pos;
      left = binary(found, pos, std::move(left), operand());
    }
  }

  ExprPtr parse_or() { return parse_left_assoc({"or"}, true, [this] { return parse_and(); }); }
  ExprPtr parse_and() { return parse_left_assoc({"and"}, true, [this] { return parse_not(); }); }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      auto u = make_expr(ExprKind::Unary, next().pos);
      u->name = "not";
      adopt(*u, parse_not());
      return u;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    size_t pos = cur().pos;
    ExprPtr first = parse_math1();
    std::vector<std::string> ops;
    std::vector<ExprPtr> operands;
    while (true) {
      if (cur().type == TokenType::Operator &&
          (is_op("==") || is_op("!=") || is_op("<") || is_op("<=") || is_op(">") || is_op(">="))) {
        ops.push_back(next().value);
      } else if (is_name("in")) {
        next();
        ops.push_back("in");
      } else if (is_name("not") && peek().type == TokenType::Name && peek().value == "in") {
        next();
        next();
        ops.push_back("not in");
      } else {
        break;
      }
      operands.push_back(parse_math1());
    }
    if (ops.empty()) return first;
    auto c = make_expr(ExprKind::Compare, pos);
    adopt(*c, std::move(first));
    for (auto& o : operands) adopt(*c, std::move(o));
    c->ops = std::move(ops);
    return c;
  }

  ExprPtr parse_math1() { return parse_left_assoc({"+", "-"}, false, [this] { return parse_concat(); }); }
  ExprPtr parse_concat() { return parse_left_assoc({"~"}, false, [this] { return parse_math2(); }); }
  ExprPtr parse_math2() {
    return parse_left_assoc({"*", "/", "//", "%"}, false, [this] { return parse_pow(); });
  }
  ExprPtr parse_pow() { return parse_left_assoc({"**"}, false, [this] { return parse_unary(true); }); }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const Token& op = next();
      node = make_expr(ExprKind::Unary, op.pos);
      node->name = op.value;
      adopt(*node, parse_unary(false));
    } else {
      node = parse_primary(false);
    }
    node = parse_postfix(std::move(node));
    return with_filter ? parse_filter_expr(std::move(node)) : std::move(node);
  }

  ExprPtr parse_primary(bool with_namespace) {
    const Token& t = cur();
    switch (t.type) {
      case TokenType::Name: {
        next();
        if (t.value == "true" || t.value == "True" || t.value == "false" || t.value == "False")
          return constant(Json(t.value == "true" || t.value == "True"), t.pos);
        if (t.value == "none" || t.value == "None") return constant(Json(nullptr), t.pos);
        auto n = make_expr(ExprKind::Name, t.pos);
        n->name = t.value;
        if (with_namespace && is_op(".")) {  // `set ns.attr = ...`
          next();
          auto a = make_expr(ExprKind::GetAttr, t.pos);
          a->name = expect_name();
          adopt(*a, std::move(n));
          return a;
        }
        return n;
      }
      case TokenType::String: {
        std::string s;
        while (cur().type == TokenType::String) s += next().value;  // "a" "b" is "ab"
        return constant(Json(s), t.pos);
      }
      case TokenType::Integer: {
        next();
        errno = 0;
        long long v = std::strtoll(t.value.c_str(), nullptr, 10);
        if (errno == ERANGE) src_.fail(t.pos, "integer literal too large");
        return constant(Json(static_cast<int64_t>(v)), t.pos);
      }
      case TokenType::Float:
        next();
        return constant(Json(std::strtod(t.value.c_str(), nullptr)), t.pos);
      case TokenType::Operator:
        if (t.value == "(") {
          next();
          ExprPtr e = parse_tuple(false, true, {}, true);
          expect_op(")");
          return e;
        }
        if (t.value == "[") return parse_list();
        if (t.value == "{") return parse_dict();
        break;
      default: break;
    }
    fail("unexpected " + describe(t));
  }

  // Attaches a child (null for an omitted slice part or else branch), keeping `depth` the
  // height of the tree. Long operator chains (a + b + c ...) deepen the tree without deepening
  // the parser's recursion, so this is what keeps evaluating and freeing it within the stack.
  void adopt(Expr& parent, ExprPtr child) {
    if (child) grow(parent, *child);
    parent.children.push_back(std::move(child));
  }
  void grow(Expr& parent, const Expr& child) {
    parent.depth = std::max(parent.depth, child.depth + 1);
    if (parent.depth > kMaxDepth)
      src_.fail(parent.pos, "expression nested too deeply (limit " + std::to_string(kMaxDepth) + ")");
  }

  ExprPtr constant(Json v, size_t pos) {
    auto c = make_expr(ExprKind::Const, pos);
    c->value = std::move(v);
    return c;
  }

  ExprPtr parse_list() {
    auto l = make_expr(ExprKind::List, next().pos);
    while (!is_op("]")) {
      if (!l->children.empty()) expect_op(",");
      if (is_op("]")) break;
      adopt(*l, parse_expression(true));
    }
    expect_op("]");
    return l;
  }

  ExprPtr parse_dict() {
    auto d = make_expr(ExprKind::Dict, next().pos);
    while (!is_op("}")) {
      if (!d->children.empty()) expect_op(",");
      if (is_op("}")) break;
      adopt(*d, parse_expression(true));
      expect_op(":");
      adopt(*d, parse_expression(true));
    }
    expect_op("}");
    return d;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".") || is_op("["))
        node = parse_subscript(std::move(node));
      else if (is_op("("))
        node = parse_call(std::move(node));
      else
        return node;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|"))
        node = parse_filter(std::move(node));
      else if (is_name("is"))
        node = parse_test(std::move(node));
      else if (is_op("("))
        node = parse_call(std::move(node));
      else
        return node;
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const Token& t = next();
    if (t.value == ".") {
      const Token& attr = next();
      if (attr.type == TokenType::Name) {
        auto a = make_expr(ExprKind::GetAttr, t.pos);
        a->name = attr.value;
        adopt(*a, std::move(node));
        return a;
      }
      if (attr.type != TokenType::Integer) src_.fail(attr.pos, "expected a name or number after '.'");
      auto g = make_expr(ExprKind::GetItem, t.pos);
      adopt(*g, std::move(node));
      adopt(*g, constant(Json(std::strtoll(attr.value.c_str(), nullptr, 10)), attr.pos));
      return g;
    }
    // '[': an index or a slice. (Jinja also allows x[a, b], a tuple key; no chat template needs it.)
    ExprPtr sub = parse_subscribed(std::move(node), t.pos);
    if (is_op(",")) fail("unsupported construct: tuple subscript");
    expect_op("]");
    return sub;
  }

  ExprPtr parse_subscribed(ExprPtr node, size_t pos) {
    ExprPtr start;
    if (!is_op(":")) {
      start = parse_expression(true);
      if (!is_op(":")) {
        auto g = make_expr(ExprKind::GetItem, pos);
        adopt(*g, std::move(node));
        adopt(*g, std::move(start));
        return g;
      }
    }
    next();  // the first ':'
    auto s = make_expr(ExprKind::Slice, pos);
    adopt(*s, std::move(node));
    adopt(*s, std::move(start));
    adopt(*s, is_op(":") || is_op("]") || is_op(",") ? nullptr : parse_expression(true));
    ExprPtr step;
    if (skip_op(":") && !is_op("]") && !is_op(",")) step = parse_expression(true);
    adopt(*s, std::move(step));
    return s;
  }

  // `(args, name=value)` into node->children (after the callee / subject) and node->kwargs.
  void parse_call_args(Expr& node) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) {
        expect_op(",");
        if (is_op(")")) break;  // trailing comma
      }
      first = false;
      if (is_op("*") || is_op("**")) fail("unsupported construct: *args / **kwargs in a call");
      if (cur().type == TokenType::Name && peek().type == TokenType::Operator && peek().value == "=") {
        std::string key = next().value;
        next();
        ExprPtr value = parse_expression(true);
        grow(node, *value);
        node.kwargs.emplace_back(key, std::move(value));
      } else {
        if (!node.kwargs.empty()) fail("positional argument follows keyword argument");
        adopt(node, parse_expression(true));
      }
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = make_expr(ExprKind::Call, cur().pos);
    adopt(*c, std::move(callee));
    parse_call_args(*c);
    return c;
  }

  ExprPtr parse_filter(ExprPtr subject) {
    while (is_op("|")) {
      next();
      const Token& name = cur();
      std::string filter = expect_name();
      if (is_op(".")) fail("unsupported construct: dotted filter name");
      if (!has_filter(filter)) src_.fail(name.pos, "unknown filter '" + filter + "'");
      auto f = make_expr(ExprKind::Filter, name.pos);
      f->name = filter;
      adopt(*f, std::move(subject));
      if (is_op("(")) parse_call_args(*f);
      subject = std::move(f);
    }
    return subject;
  }

  ExprPtr parse_test(ExprPtr subject) {
    size_t pos = next().pos;  // 'is'
    bool negated = skip_name("not");
    const Token& name = cur();
    std::string test = expect_name();
    if (is_op(".")) fail("unsupported construct: dotted test name");
    if (!has_test(test)) src_.fail(name.pos, "unknown test '" + test + "'");
    auto t = make_expr(ExprKind::Test, pos);
    t->name = test;
    adopt(*t, std::move(subject));
    if (is_op("(")) {
      parse_call_args(*t);
    } else if ((cur().type == TokenType::Name || cur().type == TokenType::String ||
                cur().type == TokenType::Integer || cur().type == TokenType::Float || is_op("[") ||
                is_op("{")) &&
               !is_any_name({"else", "or", "and"})) {
      // One argument without parentheses: `x is divisibleby 3`, `x is sameas none`.
      if (is_name("is")) fail("cannot chain multiple tests with 'is'");
      adopt(*t, parse_postfix(parse_primary(false)));
    }
    if (!negated) return t;
    auto n = make_expr(ExprKind::Unary, pos);
    n->name = "not";
    adopt(*n, std::move(t));
    return n;
  }

  const Source& src_;
  const std::vector<Token>& toks_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<std::pair<std::string, size_t>> open_blocks_;  // for "unclosed" / "unknown tag" messages
};

}  // namespace

Body parse(const Source& source, const std::vector<Token>& tokens) {
  return Parser(source, tokens).parse_template();
}

}  // namespace phinfer::jinja
