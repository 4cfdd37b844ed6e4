#pragma once
// Reading a JSON file with errors that name the file and the field.
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace phinfer::format {

// Parses a whole JSON file; throws phinfer::Error "<file>: <what>" on I/O or syntax errors.
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace phinfer::format
