#pragma once
// Evaluator of the Jinja subset: walks the syntax tree with Jinja's scoping rules (a for-loop
// body is its own scope, if-blocks are not) and Python's operator semantics.
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_lexer.h"

namespace phinfer::jinja {

// Renders `body` with the given top-level variables. Errors are phinfer::Error naming the line
// and column; raise_exception() gives its own message. Bounded: loop iterations, macro
// recursion and output size have limits, so no template can run forever.
std::string render(const Source& source, const Body& body,
                   const std::vector<std::pair<std::string, Value>>& variables);

}  // namespace phinfer::jinja
