#pragma once
// Syntax tree of the Jinja subset. Nodes are plain structs with a kind tag; the meaning of the
// generic fields per kind is listed beside each kind. Every node keeps its byte offset in the
// template so that errors can say where they happened.
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_value.h"

namespace phinfer::jinja {

enum class ExprKind {
  Const,     // value
  Name,      // name: a variable
  List,      // [children...]
  Tuple,     // (children...) or `a, b`; evaluates to a list
  Dict,      // {children[0]: children[1], children[2]: children[3], ...}
  GetAttr,   // children[0].name
  GetItem,   // children[0][children[1]]
  Slice,     // children[0][children[1]:children[2]:children[3]]; omitted parts are null
  Call,      // children[0](children[1...], kwargs)
  Filter,    // children[0] | name(children[1...], kwargs)
  Test,      // children[0] is name(children[1...], kwargs)
  Unary,     // name ("-", "+" or "not") applied to children[0]
  Binary,    // children[0] name children[1]; name is + - * / // % ** ~ and or
  Compare,   // children[0] ops[0] children[1] ops[1] children[2] ... (chained like Python)
  CondExpr,  // children[0] if children[1] else children[2] (children[2] null: Undefined)
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  size_t pos = 0;
  int depth = 1;     // height of this subtree; the parser bounds it
  Json value;        // Const
  std::string name;  // Name, GetAttr, Filter, Test, Unary, Binary
  std::vector<ExprPtr> children;
  std::vector<std::string> ops;                          // Compare: ==, !=, <, <=, >, >=, in, not in
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // Call, Filter, Test
};

enum class StmtKind {
  Text,      // text
  Output,    // {{ expr }}
  If,        // branches (condition, body) for if and each elif; else_body
  For,       // for target in expr [if filter]: body; else_body when nothing was iterated
  Set,       // set target = expr (target: Name, Tuple of Names, or GetAttr on a namespace)
  SetBlock,  // set target: body rendered to a string
  Macro,     // macro name(params = defaults): body
  Scope,     // body run in its own scope ({% generation %} of transformers)
  Break,
  Continue,
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  StmtKind kind;
  size_t pos = 0;
  std::string text;  // Text
  ExprPtr expr;      // Output, For (iterable), Set (value)
  ExprPtr target;    // For, Set, SetBlock
  ExprPtr filter;    // For: the loop's `if` condition
  std::vector<std::pair<ExprPtr, Body>> branches;  // If
  Body body;
  Body else_body;  // If, For
  std::string name;                   // Macro
  std::vector<std::string> params;    // Macro
  std::vector<ExprPtr> defaults;      // Macro: defaults of the last params.size() - n params
};

}  // namespace phinfer::jinja
