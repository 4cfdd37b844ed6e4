#pragma once
// Reading a JSON file with errors that name the file and the field.
#include <cstddef>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace phinfer::format {

// Parses a whole JSON file; throws phinfer::Error "<file>: <what>" on I/O or syntax errors
// (including numbers too large for a double, which nlohmann reports as out_of_range).
nlohmann::json read_json_file(const std::filesystem::path& path);

// A short rendering of a value for error messages: at most about `max_chars` characters, nesting
// cut off after a few levels (never recursing deep, so a hostile value cannot exhaust the stack).
std::string json_brief(const nlohmann::json& value, size_t max_chars = 80);

}  // namespace phinfer::format
