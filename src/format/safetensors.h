#pragma once
// safetensors files (single or sharded with model.safetensors.index.json), memory-mapped and
// validated: header length, JSON, dtypes, shapes and data offsets are all checked before use.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "format/file_io.h"
#include "format/mapped_file.h"

namespace phinfer::format {

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;  // inside the mapped file, or inside `aligned_copy`
  std::string file;                 // for error messages
  // Set when the data in the file is not aligned to the element size (a header length that is not
  // a multiple of 8, as some non-HF writers produce): an aligned copy the view points into.
  std::shared_ptr<const void> aligned_copy;

  int64_t numel() const;
  std::string shape_string() const;  // "[3072, 8192]"
};

// Parses one safetensors byte buffer: throws phinfer::Error naming `source_name` on any problem.
// Every returned view is aligned to its element size (misaligned tensors are copied).
std::map<std::string, TensorView> parse_safetensors(std::span<const std::byte> bytes,
                                                    const std::string& source_name);

// All tensors of a checkpoint folder (model.safetensors, or the shards listed by the index).
class SafetensorsCheckpoint {
 public:
  static SafetensorsCheckpoint open(const std::filesystem::path& dir);

  const TensorView* find(const std::string& name) const;
  // The tensor, checked: present, one of the float dtypes, exactly this shape.
  const TensorView& require(const std::string& name, const std::vector<int64_t>& shape) const;
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  // Drops the process's pages of a tensor that was read once (see MappedFile::release).
  void release(const TensorView& t) const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::vector<std::shared_ptr<MappedFile>> files_;
  std::map<std::string, TensorView> tensors_;
};

// Writes a safetensors file whose tensors are known up front and whose data is streamed in order,
// so a multi-gigabyte checkpoint never has to be held in memory.
class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  SafetensorsWriter(const std::filesystem::path& path, std::vector<Entry> entries,
                    const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
  // Appends bytes of the current tensor(s), in entry order.
  void write(const void* data, size_t nbytes);
  void finish();  // checks that exactly the declared bytes were written, then renames the file into place

 private:
  std::filesystem::path path_;
  std::unique_ptr<OutputFile> out_;  // null once finished
  uint64_t expected_ = 0;
  uint64_t written_ = 0;
};

}  // namespace phinfer::format
