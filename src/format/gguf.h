#pragma once
// GGUF files (llama.cpp's model format, versions 2 and 3, little endian), memory-mapped and
// validated before use. Everything in the file is untrusted: every count and length is checked
// against the bytes that remain before anything is allocated for it, nesting is bounded, and
// tensor shapes, byte sizes and offsets are computed with overflow checks and must tile the data
// section in order (as llama.cpp's loader requires). Errors are phinfer::Error naming the file,
// the key or tensor, what was expected and what was found.
//
// Layout (all integers little endian):
//   "GGUF" u32 version  u64 n_tensors  u64 n_kv
//   n_kv x   { string key, u32 value_type, value }
//   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
//   padding to `general.alignment` (u32, default 32), then the data section; tensor offsets are
//   relative to its start.
//   string = u64 length + bytes (no terminator); array = u32 element type, u64 count, elements.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "format/mapped_file.h"

namespace phinfer::format {

enum class GgufValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9,
  U64 = 10, I64 = 11, F64 = 12,
};
std::string_view gguf_value_type_name(GgufValueType t);  // "u32", "string", "array", ...

// One metadata value. Strings view the file's bytes (the GgufFile must outlive them).
struct GgufValue {
  GgufValueType type = GgufValueType::U8;
  // Scalars: the integer types fill `i` when signed or `u` when unsigned; F32/F64 fill `f`.
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string_view str;
  // Arrays: element type and count; numeric/bool elements stay packed in `raw`, string elements
  // are in `strings`, nested arrays in `arrays`.
  GgufValueType element_type = GgufValueType::U8;
  uint64_t count = 0;
  std::span<const std::byte> raw;
  std::vector<std::string_view> strings;
  std::vector<GgufValue> arrays;

  bool is_integer() const;  // any of the integer scalar types
  // Element k of a numeric array as a double / int64 (callers check element_type first).
  double number_at(uint64_t k) const;
  int64_t integer_at(uint64_t k) const;
  std::string type_string() const;  // "u32", "array of string", ...
};

// ggml tensor types this reader knows the block geometry of (the ids llama.cpp writes).
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9, Q2_K = 10, Q3_K = 11,
  Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19,
  IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28,
  IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};
struct GgmlTypeInfo {
  GgmlType type;
  const char* name;    // "Q4_K"
  int64_t block;       // elements per block
  int64_t block_bytes; // bytes per block
};
// The geometry of a type id, or null for ids that are unknown or retired.
const GgmlTypeInfo* ggml_type_info(uint32_t id);
const GgmlTypeInfo& ggml_type_info(GgmlType t);

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> ne;          // ggml order: ne[0] is the contiguous row length
  uint64_t offset = 0;              // relative to the data section
  std::span<const std::byte> data;  // exactly the tensor's bytes, inside the file
  int64_t numel = 0;

  int64_t row_length() const { return ne.empty() ? 1 : ne[0]; }
  int64_t n_rows() const { return row_length() ? numel / row_length() : 0; }
  std::string shape_string() const;  // "[256, 32064]" (ggml order)
};

inline constexpr uint32_t kGgufDefaultAlignment = 32;
inline constexpr uint32_t kGgufMaxAlignment = 1u << 16;
inline constexpr size_t kGgufMaxTensorName = 63;  // GGML_MAX_NAME - 1
inline constexpr int kGgufMaxDims = 4;
inline constexpr int kGgufMaxArrayNesting = 4;

class GgufFile {
 public:
  // Maps and parses a file (only regular files are opened).
  static GgufFile open(const std::filesystem::path& path);
  // Parses bytes the caller keeps alive for the lifetime of the result; `source` names them in errors.
  static GgufFile parse(std::span<const std::byte> bytes, const std::string& source);

  const std::string& source() const { return source_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }  // in file order
  const GgufValue* find(const std::string& key) const;
  const GgufTensor* find_tensor(const std::string& name) const;

  // Typed access: nullopt when the key is absent, phinfer::Error naming the key with the expected
  // and found type (or value) when it is present but does not fit.
  std::optional<uint64_t> get_uint(const std::string& key) const;  // any integer type, >= 0
  std::optional<double> get_float(const std::string& key) const;   // f32, f64 or an integer
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::string_view> get_string(const std::string& key) const;
  // An array whose elements are of one of the given kinds; nullopt when absent.
  const GgufValue* get_array(const std::string& key, std::initializer_list<GgufValueType> element_types) const;

 private:
  std::string source_;
  std::shared_ptr<MappedFile> file_;  // null when parsing caller-owned bytes
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> by_name_;
};

// A regular file starting with the GGUF magic.
bool is_gguf_file(const std::filesystem::path& path);

}  // namespace phinfer::format
