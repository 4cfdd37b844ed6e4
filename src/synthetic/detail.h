#pragma once
// Small helpers shared by the synthetic checkpoint writer's files.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "phinfer/error.h"

namespace phinfer::synthetic::detail {

// splitmix64's output function: a bijective 64-bit mixer.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;  // splitmix64's increment

inline void write_text_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(path.string() + ": cannot create file");
  f << text;
  f.close();
  if (!f) throw Error(path.string() + ": write failed");
}

}  // namespace phinfer::synthetic::detail
