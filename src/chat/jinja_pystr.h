#pragma once
// Python str methods on UTF-8 strings (indices and lengths count code points, as in Python).
// Used by the template's string methods ("x".strip()) and by the filters built on them.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace phinfer::jinja::pystr {

// Case mapping covers ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic; other scripts are
// left unchanged (Python maps more, e.g. U+00DF to "SS").
std::string lower(const std::string& s);
std::string upper(const std::string& s);
std::string capitalize(const std::string& s);  // str.capitalize()
std::string title(const std::string& s);       // str.title()
bool is_lower(const std::string& s);           // str.islower()
bool is_upper(const std::string& s);           // str.isupper()

// str.split(sep=None, maxsplit=-1); sep nullopt splits on whitespace runs.
std::vector<std::string> split(const std::string& s, const std::optional<std::string>& sep, int64_t maxsplit);
std::vector<std::string> splitlines(const std::string& s);
std::string replace(const std::string& s, const std::string& old, const std::string& repl, int64_t count);
int64_t find(const std::string& s, const std::string& sub, bool from_right);  // code point index or -1
int64_t count(const std::string& s, const std::string& sub);

}  // namespace phinfer::jinja::pystr
