// Tree-walking evaluator. Runtime failures inside builtins are RuntimeError; eval() turns the
// innermost one into phinfer::Error with that expression's line and column.
#include "chat/jinja_eval.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "chat/jinja_builtins.h"
#include "phinfer/error.h"

namespace phinfer::jinja {
namespace {

// Limits that keep a hostile or buggy template from running away.
constexpr int64_t kMaxSteps = 1'000'000;        // loop iterations + macro calls per render
constexpr int kMaxCallDepth = 100;              // nested macro calls
constexpr int kMaxNesting = 2000;               // nested exec / eval frames, bounds stack use

// Variables of one scope; lookups fall back to the enclosing scope. A scope holds few names (a
// loop body: the loop variable and `loop`), so a flat list is cheaper than a hash map.
struct Scope {
  const Scope* parent = nullptr;
  std::vector<std::pair<std::string, Value>> vars;

  void set(const std::string& name, Value value) {
    for (auto& [n, v] : vars)
      if (n == name) {
        v = std::move(value);
        return;
      }
    vars.emplace_back(name, std::move(value));
  }

  const Value* find(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent)
      for (const auto& [n, v] : s->vars)
        if (n == name) return &v;
    return nullptr;
  }
};

enum class Flow { Normal, Break, Continue };

// An element of a list or dict literal: plain data, not nested too deeply to wrap once more.
Json to_json_checked(const Value& v, const char* where) {
  if (v.is_undefined()) v.json();  // "'x' is undefined"
  if (!v.is_json()) throw RuntimeError(std::string("cannot store a ") + type_name(v) + " in a " + where);
  check_nesting(v.json());
  return v.json();
}

// ---- Python arithmetic ----

bool is_integral(const Value& v) { return v.is_int() || v.is_bool(); }

[[noreturn]] void bad_operands(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) a.json();
  if (b.is_undefined()) b.json();
  throw RuntimeError("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" +
                     type_name(b) + "'");
}

// + - * on Python ints that fit in 64 bits; a result that would not is an error, not a wrap.
int64_t int_op(char op, int64_t a, int64_t b) {
  int64_t r = 0;
  bool overflow = op == '+' ? __builtin_add_overflow(a, b, &r)
                  : op == '-' ? __builtin_sub_overflow(a, b, &r)
                              : __builtin_mul_overflow(a, b, &r);
  if (overflow) throw RuntimeError("integer overflow");
  return r;
}

// str * n and list * n; the result size is checked before anything is built.
Value repeat(const Value& seq, int64_t times) {
  const bool empty = seq.is_string() ? seq.str().empty() : seq.json().empty();
  if (times <= 0 || empty) return Value(seq.is_string() ? Json("") : Json::array());
  const size_t unit = seq.is_string() ? seq.str().size() : approx_bytes(seq.json());
  if (unit > kMaxTextBytes / static_cast<uint64_t>(times)) check_size(SIZE_MAX);
  if (seq.is_string()) {
    std::string out;
    for (int64_t i = 0; i < times; ++i) out += seq.str();
    return Value(Json(out));
  }
  Json out = Json::array();
  for (int64_t i = 0; i < times; ++i)
    for (const auto& e : seq.json()) out.push_back(e);
  return Value(std::move(out));
}

Value arithmetic(const std::string& op, const Value& a, const Value& b) {
  const bool ints = is_integral(a) && is_integral(b);
  const bool nums = a.is_number() && b.is_number();
  if (op == "+") {
    if (ints) return Value(Json(int_op('+', as_int(a, "+"), as_int(b, "+"))));
    if (nums) return Value(Json(as_double(a, "+") + as_double(b, "+")));
    if (a.is_string() && b.is_string()) {
      check_size(a.str().size() + b.str().size());
      return Value(Json(a.str() + b.str()));
    }
    if (a.is_list() && b.is_list()) {
      check_size(approx_bytes(a.json()) + approx_bytes(b.json()));
      Json out = a.json();
      for (const auto& e : b.json()) out.push_back(e);
      return Value(std::move(out));
    }
  } else if (op == "-") {
    if (ints) return Value(Json(int_op('-', as_int(a, "-"), as_int(b, "-"))));
    if (nums) return Value(Json(as_double(a, "-") - as_double(b, "-")));
  } else if (op == "*") {
    if (ints) return Value(Json(int_op('*', as_int(a, "*"), as_int(b, "*"))));
    if (nums) return Value(Json(as_double(a, "*") * as_double(b, "*")));
    if ((a.is_string() || a.is_list()) && is_integral(b)) return repeat(a, as_int(b, "*"));
    if ((b.is_string() || b.is_list()) && is_integral(a)) return repeat(b, as_int(a, "*"));
  } else if (op == "/") {
    if (nums) {
      double d = as_double(b, "/");
      if (d == 0) throw RuntimeError("division by zero");
      return Value(Json(as_double(a, "/") / d));
    }
  } else if (op == "//" || op == "%") {
    if (ints) {
      int64_t x = as_int(a, op.c_str()), y = as_int(b, op.c_str());
      if (y == 0) throw RuntimeError("integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) throw RuntimeError("integer overflow");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {  // Python floors toward negative infinity
        --q;
        m += y;
      }
      return Value(Json(op == "//" ? q : m));
    }
    if (nums) {
      double x = as_double(a, op.c_str()), y = as_double(b, op.c_str());
      if (y == 0) throw RuntimeError("float division by zero");
      if (op == "//") return Value(Json(std::floor(x / y)));
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0))) m += y;
      return Value(Json(m));
    }
    if (op == "%" && a.is_string()) throw RuntimeError("unsupported construct: string formatting with '%'");
  } else if (op == "**") {
    if (ints && as_int(b, "**") >= 0) {
      int64_t base = as_int(a, "**"), exp = as_int(b, "**");
      if (base == 0 || base == 1) return Value(Json(exp == 0 ? 1 : base));
      if (base == -1) return Value(Json(exp % 2 ? -1 : 1));
      int64_t r = 1;  // |base| >= 2: overflows within 64 steps
      for (; exp > 0; --exp) r = int_op('*', r, base);
      return Value(Json(r));
    }
    if (nums) return Value(Json(std::pow(as_double(a, "**"), as_double(b, "**"))));
  }
  bad_operands(op, a, b);
}

bool compare_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return equal(a, b);
  if (op == "!=") return !equal(a, b);
  if (op == "in") return contains(b, a);
  if (op == "not in") return !contains(b, a);
  int c = compare(a, b, op);
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  return c >= 0;
}

// ---- the renderer ----

class Renderer {
 public:
  explicit Renderer(const Source& src) : src_(src) {}

  std::string run(const Body& body, const std::vector<std::pair<std::string, Value>>& variables) {
    WorkBudget budget;
    for (const auto& [name, value] : variables) root_.set(name, value);
    std::string out;
    exec(body, root_, out);
    return out;
  }

 private:
  Flow exec(const Body& body, Scope& scope, std::string& out) {
    for (const auto& stmt : body) {
      Flow flow;
      try {
        NestingGuard guard(nesting_);
        flow = exec_stmt(*stmt, scope, out);
      } catch (const RuntimeError& e) {
        src_.fail(stmt->pos, e.what());
      }
      if (flow != Flow::Normal) return flow;
    }
    return Flow::Normal;
  }

  Flow exec_stmt(const Stmt& s, Scope& scope, std::string& out) {
    switch (s.kind) {
      case StmtKind::Text:
        charge_work(s.text.size());
        out += s.text;
        check_size(out.size());
        return Flow::Normal;
      case StmtKind::Output: {
        const std::string text = to_str(eval(*s.expr, scope));
        charge_work(text.size());
        out += text;
        check_size(out.size());
        return Flow::Normal;
      }
      case StmtKind::If:
        for (const auto& [cond, body] : s.branches)
          if (truthy(eval(*cond, scope))) return exec(body, scope, out);
        return exec(s.else_body, scope, out);
      case StmtKind::For: return exec_for(s, scope, out);
      case StmtKind::Set: assign(*s.target, eval(*s.expr, scope), scope); return Flow::Normal;
      case StmtKind::SetBlock: {
        Scope inner{&scope, {}};
        std::string captured;
        exec(s.body, inner, captured);
        assign(*s.target, Value(Json(captured)), scope);
        return Flow::Normal;
      }
      case StmtKind::Scope: {
        Scope inner{&scope, {}};
        return exec(s.body, inner, out);
      }
      case StmtKind::Macro: scope.set(s.name, make_macro(s)); return Flow::Normal;
      case StmtKind::Break: return Flow::Break;
      case StmtKind::Continue: return Flow::Continue;
    }
    return Flow::Normal;
  }

  void count_step() {
    if (++steps_ > kMaxSteps)
      throw RuntimeError("template ran more than " + std::to_string(kMaxSteps) + " loop iterations / macro calls");
  }

  // Binds a for / set target: a name, a tuple of names (unpacking) or a namespace attribute.
  void assign(const Expr& target, const Value& value, Scope& scope) {
    if (target.kind == ExprKind::Name) {
      scope.set(target.name, value);
    } else if (target.kind == ExprKind::Tuple) {
      std::vector<Json> items = iterate(value);
      size_t n = target.children.size();
      if (items.size() != n)
        throw RuntimeError(items.size() > n ? "too many values to unpack (expected " + std::to_string(n) + ")"
                                            : "not enough values to unpack (expected " + std::to_string(n) +
                                                  ", got " + std::to_string(items.size()) + ")");
      for (size_t i = 0; i < n; ++i) assign(*target.children[i], Value(items[i]), scope);
    } else {  // GetAttr on a name: `set ns.attr = value`
      const std::string& ns_name = target.children[0]->name;
      const Value* ns = scope.find(ns_name);
      if (!ns || !ns->is_object() || !ns->object().assignable)
        throw RuntimeError("cannot assign attribute on non-namespace object '" + ns_name + "'");
      store_attribute(*ns->object_ptr(), target.name, value);
    }
  }

  Flow exec_for(const Stmt& s, Scope& scope, std::string& out) {
    Value iterable = eval(*s.expr, scope);
    if (!iterable.is_json() && !iterable.is_undefined())
      throw RuntimeError("'" + type_name(iterable) + "' object is not iterable");
    std::vector<Json> items = iterate(iterable);
    if (s.filter) {  // `for x in xs if cond`: filtered before loop.length etc. are known
      std::vector<Json> kept;
      for (auto& item : items) {
        count_step();
        Scope probe{&scope, {}};
        assign(*s.target, Value(item), probe);
        if (truthy(eval(*s.filter, probe))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {  // a break / continue in the else block belongs to an outer loop
      Scope inner{&scope, {}};
      return exec(s.else_body, inner, out);
    }
    // One loop object per loop, updated in place each iteration, as Jinja's LoopContext is.
    auto loop = make_loop(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      count_step();
      update_loop(*loop, items, i);
      Scope inner{&scope, {}};  // a fresh scope per iteration: sets inside do not leak out
      assign(*s.target, Value(items[i]), inner);
      inner.set("loop", Value(loop));
      if (exec(s.body, inner, out) == Flow::Break) break;
    }
    return Flow::Normal;
  }

  static std::shared_ptr<Object> make_loop(size_t length) {
    auto loop = std::make_shared<Object>();
    loop->type_name = "LoopContext";
    loop->attrs["length"] = Value(Json(length));
    loop->attrs["depth"] = Value(Json(1));
    loop->attrs["depth0"] = Value(Json(0));
    // loop.cycle(a, b, ...) picks by the current index; it reads it from the loop object.
    std::weak_ptr<Object> weak = loop;
    loop->attrs["cycle"] = Value(std::make_shared<Callable>(Callable{"loop.cycle", [weak](const CallArgs& args) {
      auto self = weak.lock();
      if (!self || args.positional.empty()) throw RuntimeError("no items for cycling given");
      size_t i = static_cast<size_t>(as_int(self->attrs.at("index0"), "loop.index0"));
      return args.positional[i % args.positional.size()];
    }}));
    return loop;
  }

  static void update_loop(Object& loop, const std::vector<Json>& items, size_t i) {
    const int64_t n = static_cast<int64_t>(items.size()), k = static_cast<int64_t>(i);
    auto& a = loop.attrs;
    a["index"] = Value(Json(k + 1));
    a["index0"] = Value(Json(k));
    a["revindex"] = Value(Json(n - k));
    a["revindex0"] = Value(Json(n - k - 1));
    a["first"] = Value(Json(k == 0));
    a["last"] = Value(Json(k == n - 1));
    if (k > 0) a["previtem"] = Value(items[i - 1]);
    if (k + 1 < n)
      a["nextitem"] = Value(items[i + 1]);
    else
      a.erase("nextitem");
  }

  // A macro runs in a scope of its own above the template's top level (Jinja macros do not see
  // the caller's loop variables) and returns its output as a string.
  Value make_macro(const Stmt& m) {
    return Value(std::make_shared<Callable>(Callable{m.name, [this, &m](const CallArgs& args) {
      count_step();
      if (call_depth_ >= kMaxCallDepth)
        throw RuntimeError("macro calls nested deeper than " + std::to_string(kMaxCallDepth));
      // The depth counts from here: a default argument that calls the macro again is a nested call too.
      struct DepthGuard {
        int& depth;
        ~DepthGuard() { --depth; }
      } guard{++call_depth_};
      if (args.positional.size() > m.params.size())
        throw RuntimeError("macro '" + m.name + "' takes not more than " + std::to_string(m.params.size()) +
                           " argument(s)");
      Scope scope{&root_, {}};
      std::vector<bool> bound(m.params.size(), false);
      for (size_t i = 0; i < args.positional.size(); ++i) {
        scope.set(m.params[i], args.positional[i]);
        bound[i] = true;
      }
      for (const auto& [key, value] : args.keyword) {
        auto it = std::find(m.params.begin(), m.params.end(), key);
        if (it == m.params.end()) throw RuntimeError("macro '" + m.name + "' has no argument named '" + key + "'");
        scope.set(key, value);
        bound[static_cast<size_t>(it - m.params.begin())] = true;
      }
      const size_t first_default = m.params.size() - m.defaults.size();
      for (size_t i = 0; i < m.params.size(); ++i) {
        if (bound[i]) continue;
        scope.set(m.params[i], i >= first_default ? eval(*m.defaults[i - first_default], scope)
                                                  : Value::undefined("'" + m.params[i] + "' is undefined"));
      }
      std::string out;
      exec(m.body, scope, out);
      return Value(Json(out));
    }}));
  }

  // ---- expressions ----

  Value eval(const Expr& e, const Scope& scope) {
    try {
      NestingGuard guard(nesting_);
      return eval_inner(e, scope);
    } catch (const RuntimeError& err) {
      src_.fail(e.pos, err.what());
    } catch (const nlohmann::json::exception& err) {  // a type slip in a builtin: report, never crash
      src_.fail(e.pos, std::string("internal value error: ") + err.what());
    } catch (const std::logic_error& err) {  // e.g. std::length_error from a huge string
      src_.fail(e.pos, std::string("internal error: ") + err.what());
    }
  }

  Value eval_inner(const Expr& e, const Scope& scope) {
    switch (e.kind) {
      case ExprKind::Const: return Value(e.value);
      case ExprKind::Name: {
        if (const Value* v = scope.find(e.name)) return *v;
        return get_global_function(e.name);  // Undefined "'name' is undefined" if there is none
      }
      case ExprKind::List:
      case ExprKind::Tuple: {
        Json out = Json::array();
        for (const auto& c : e.children) out.push_back(to_json_checked(eval(*c, scope), "list"));
        return Value(std::move(out));
      }
      case ExprKind::Dict: {
        Json out = Json::object();
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          Value key = eval(*e.children[i], scope);
          if (!key.is_string()) throw RuntimeError("dict keys must be strings, not " + type_name(key));
          out[key.str()] = to_json_checked(eval(*e.children[i + 1], scope), "dict");
        }
        return Value(std::move(out));
      }
      case ExprKind::GetAttr: return get_attribute(eval(*e.children[0], scope), e.name);
      case ExprKind::GetItem: return subscript(eval(*e.children[0], scope), eval(*e.children[1], scope));
      case ExprKind::Slice: {
        auto part = [&](size_t i) { return e.children[i] ? eval(*e.children[i], scope) : Value(Json(nullptr)); };
        return slice(eval(*e.children[0], scope), part(1), part(2), part(3));
      }
      case ExprKind::Call: {
        Value callee = eval(*e.children[0], scope);
        CallArgs args = eval_args(e, scope);
        if (callee.is_undefined()) callee.json();  // "'name' is undefined"
        if (!callee.is_callable()) throw RuntimeError("'" + type_name(callee) + "' object is not callable");
        return callee.callable().fn(args);
      }
      case ExprKind::Filter: return apply_filter(e.name, eval(*e.children[0], scope), eval_args(e, scope));
      case ExprKind::Test: return Value(Json(apply_test(e.name, eval(*e.children[0], scope), eval_args(e, scope))));
      case ExprKind::Unary: {
        Value v = eval(*e.children[0], scope);
        if (e.name == "not") return Value(Json(!truthy(v)));
        if (e.name == "-") {
          if (v.is_json() && v.json().is_number_float()) return Value(Json(-v.json().get<double>()));  // keeps -0.0
          return arithmetic("-", Value(Json(0)), v);
        }
        if (!v.is_number()) bad_operands("unary +", v, v);
        return v;
      }
      case ExprKind::Binary: {
        Value left = eval(*e.children[0], scope);
        // and / or short-circuit and return an operand, as in Python.
        if (e.name == "and") return truthy(left) ? eval(*e.children[1], scope) : left;
        if (e.name == "or") return truthy(left) ? left : eval(*e.children[1], scope);
        Value right = eval(*e.children[1], scope);
        if (e.name == "~") {
          std::string s = to_str(left), r = to_str(right);
          check_size(s.size() + r.size());
          return Value(Json(std::move(s += r)));
        }
        return arithmetic(e.name, left, right);
      }
      case ExprKind::Compare: {
        Value left = eval(*e.children[0], scope);
        for (size_t i = 0; i < e.ops.size(); ++i) {  // a < b < c is a < b and b < c
          Value right = eval(*e.children[i + 1], scope);
          if (!compare_op(e.ops[i], left, right)) return Value(Json(false));
          left = std::move(right);
        }
        return Value(Json(true));
      }
      case ExprKind::CondExpr:
        if (truthy(eval(*e.children[1], scope))) return eval(*e.children[0], scope);
        if (e.children[2]) return eval(*e.children[2], scope);
        return Value::undefined("the inline if-expression has no else branch");
    }
    throw RuntimeError("unknown expression");
  }

  // Positional arguments of a call / filter / test (after the callee or subject) and keywords.
  CallArgs eval_args(const Expr& e, const Scope& scope) {
    CallArgs args;
    for (size_t i = 1; i < e.children.size(); ++i) args.positional.push_back(eval(*e.children[i], scope));
    for (const auto& [key, value] : e.kwargs) args.keyword.emplace_back(key, eval(*value, scope));
    return args;
  }

  // Counts nested exec / eval calls (macros recurse through both).
  struct NestingGuard {
    int& depth;
    explicit NestingGuard(int& d) : depth(d) {
      if (++depth > kMaxNesting) {
        --depth;
        throw RuntimeError("template evaluation nested deeper than " + std::to_string(kMaxNesting) + " levels");
      }
    }
    ~NestingGuard() { --depth; }
  };

  const Source& src_;
  Scope root_;
  int64_t steps_ = 0;
  int call_depth_ = 0;
  int nesting_ = 0;
};

}  // namespace

std::string render(const Source& source, const Body& body,
                   const std::vector<std::pair<std::string, Value>>& variables) {
  return Renderer(source).run(body, variables);
}

}  // namespace phinfer::jinja
