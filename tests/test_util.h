#pragma once
// Helpers shared by the tests: where ../shared is (missing => the test fails loudly, never skips),
// and reading JSON / JSONL goldens.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>
#include <vector>

namespace phinfer::test {

inline std::filesystem::path shared_dir() {
  std::filesystem::path p = PHINFER_SHARED_DIR;
  if (!std::filesystem::is_directory(p)) {
    ADD_FAILURE() << "shared test data not found at " << p
                  << " (the tests need ../shared beside the project root)";
    throw std::runtime_error("missing ../shared");
  }
  return p;
}

inline std::filesystem::path shared_path(const std::string& rel) {
  auto p = shared_dir() / rel;
  if (!std::filesystem::exists(p)) {
    ADD_FAILURE() << "shared test file missing: " << p;
    throw std::runtime_error("missing " + p.string());
  }
  return p;
}

inline nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream f(p);
  if (!f) throw std::runtime_error("cannot open " + p.string());
  return nlohmann::json::parse(f);
}

inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::ifstream f(p);
  if (!f) throw std::runtime_error("cannot open " + p.string());
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// A string as one single-quoted shell word.
inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A whole file's bytes ("" when it cannot be read).
inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A fresh scratch directory under the build tree, private to this test process (ctest runs tests
// in parallel processes) and removed when the process exits.
inline std::filesystem::path temp_dir(const std::string& name) {
  struct ProcessRoot {
    std::filesystem::path path = std::filesystem::path(PHINFER_TEST_TMP) / ("p" + std::to_string(::getpid()));
    ~ProcessRoot() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static ProcessRoot root;
  auto p = root.path / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

}  // namespace phinfer::test
