#pragma once
// A read-only memory map of a whole file (weights are never copied into the heap).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>

namespace phinfer::format {

class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);  // throws phinfer::Error
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  // Drops this process's pages of a range it no longer needs (they stay in the page cache), so a
  // pass over a large file does not grow the resident set.
  void release(std::span<const std::byte> range) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace phinfer::format
