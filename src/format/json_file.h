#pragma once
// Reading a JSON file with errors that name the file and the field.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace phinfer::format {

// Parses a whole JSON file (a regular file, see file_io.h); throws phinfer::Error "<file>: <what>" on I/O or syntax errors
// (including numbers too large for a double, which nlohmann reports as out_of_range).
nlohmann::json read_json_file(const std::filesystem::path& path);

// The value as an integer in [lo, hi]; nullopt when it is not an integer or out of that range.
// Every conversion of a JSON number to a narrower integer goes through here: 4294967328 must be
// rejected as a group size, not wrap to 32.
std::optional<int64_t> json_integer(const nlohmann::json& value, int64_t lo, int64_t hi);

// A short rendering of a value for error messages: at most about `max_chars` characters, nesting
// cut off after a few levels (never recursing deep, so a hostile value cannot exhaust the stack).
std::string json_brief(const nlohmann::json& value, size_t max_chars = 80);

}  // namespace phinfer::format
