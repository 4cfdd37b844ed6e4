#pragma once
// Parser of the Jinja subset: tokens to a syntax tree, following jinja2/parser.py's grammar and
// operator precedence. Unknown or unsupported tags, filters and tests are rejected here, when the
// template is loaded, not when a conversation happens to reach them.
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_lexer.h"

namespace phinfer::jinja {

// Throws phinfer::Error naming the construct and its line and column.
Body parse(const Source& source, const std::vector<Token>& tokens);

}  // namespace phinfer::jinja
