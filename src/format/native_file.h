#pragma once
// The phinfer model file (.phi): one file holding the model config, tokenizer, chat template,
// quantization recipe and every tensor already in the layout the kernels consume, 64-byte aligned,
// so loading is a memory map and a header parse.
//
// Layout (little-endian):
//   [0, 64)        fixed header: magic "PHINFER\0", u32 version, u32 reserved, u64 json_offset,
//                  u64 json_size, u64 data_offset, u64 data_size, u32 json_crc32, zero padding
//   [json_offset)  UTF-8 JSON: {"config":{...}, "generation_config":{...}, "tokenizer":{"tokenizer.json":..,
//                  "tokenizer_config.json":..}, "quantization":{...}, "tensors":{name:{"format":..,
//                  "shape":[rows, cols], "group_size":.., "symmetric":.., "offset":.., "size":.., "crc32":..}}}
//   [data_offset)  tensor bytes; each tensor starts at a multiple of 64 relative to the file start
// Integrity: the fixed header and JSON are always checked (CRC32); tensor CRC32s are checked by
// verify() (a full read of the file), not at every load.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "format/file_io.h"
#include "format/mapped_file.h"
#include "kernels/matrix.h"

namespace phinfer::format {

inline constexpr char kNativeMagic[8] = {'P', 'H', 'I', 'N', 'F', 'E', 'R', '\0'};
inline constexpr uint32_t kNativeVersion = 1;
inline constexpr size_t kNativeAlignment = 64;

uint32_t crc32(std::span<const std::byte> data, uint32_t crc = 0);

bool is_native_file(const std::filesystem::path& path);  // a regular file starting with the magic

struct NativeTensor {
  std::string name;
  nlohmann::json info;  // the tensor's JSON entry (format, shape, group_size, ...)
  std::span<const std::byte> data;
  kernels::WeightMatrix matrix;  // the entry as the kernels read it, validated by NativeFile::open
};

class NativeFile {
 public:
  // Validates the header, the metadata checksum and every tensor entry: byte range inside the data
  // section, aligned, not overlapping another; format f32|f16|bf16|q8|q4; shape of one or two sizes;
  // q8/q4 group_size (-1 or 1..65536, never narrowed) and symmetric; size exactly what the format
  // needs; crc32 of 8 hex digits. A loader may use these fields of info without checking them again.
  static NativeFile open(const std::filesystem::path& path);
  const nlohmann::json& metadata() const { return meta_; }   // the JSON minus "tensors"
  const std::map<std::string, NativeTensor>& tensors() const { return tensors_; }
  const NativeTensor& require(const std::string& name) const;
  const std::filesystem::path& path() const { return file_->path(); }
  // Reads every tensor and checks its CRC32; throws phinfer::Error naming the first bad tensor
  // (in file order).
  void verify() const;
  uint64_t tensor_bytes() const;  // the sum of the tensors' sizes

 private:
  std::shared_ptr<MappedFile> file_;
  nlohmann::json meta_;
  std::map<std::string, NativeTensor> tensors_;
};

// Streams a native file: metadata and the tensor table are declared first, then tensor bytes are
// appended in declaration order (so a converter never holds the whole model in memory).
class NativeFileWriter {
 public:
  struct TensorDecl {
    std::string name;
    nlohmann::json info;  // format, shape, ... (offset, size, crc32 are filled in)
    uint64_t size = 0;
  };
  NativeFileWriter(const std::filesystem::path& path, nlohmann::json metadata, std::vector<TensorDecl> tensors);
  ~NativeFileWriter();
  // Appends the bytes of the next declared tensor (exactly its size, in one or more calls).
  void write(std::span<const std::byte> bytes);
  // Finishes the file (fills in CRCs) and atomically renames it into place (see OutputFile).
  void finish();

 private:
  void rewrite_header();
  std::filesystem::path path_;
  std::unique_ptr<OutputFile> out_;  // null once finished
  nlohmann::json meta_;
  std::vector<TensorDecl> tensors_;
  size_t current_ = 0;
  uint64_t written_in_current_ = 0;
  uint32_t crc_ = 0;
  uint64_t json_reserved_ = 0, data_offset_ = 0, data_size_ = 0;
};

}  // namespace phinfer::format
