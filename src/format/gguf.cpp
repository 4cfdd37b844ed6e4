#include "format/gguf.h"

#include <unistd.h>

#include <cstring>
#include <limits>

#include "format/file_io.h"
#include "phinfer/error.h"

namespace phinfer::format {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32

// The smallest encoding of one metadata entry (empty key, type, one-byte value) and of one tensor
// info (empty name, one dimension): counts beyond remaining / these are impossible.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

size_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::Bool: return 1;
    case GgufValueType::U16: case GgufValueType::I16: return 2;
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
    case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: return 8;
    default: return 0;  // string, array
  }
}

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::F64); }

template <typename T>
T load_le(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // the project targets little-endian hosts (x86-64)
  return v;
}

class Reader {
 public:
  Reader(std::span<const std::byte> bytes, const std::string& src) : b_(bytes), src_(src) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return b_.size() - pos_; }

  // `what` names the field, usually starting with the source name (not repeated then).
  std::string field(const std::string& what) const {
    return what.rfind(src_ + ": ", 0) == 0 ? what.substr(src_.size() + 2) : what;
  }
  [[noreturn]] void truncated(const std::string& what, uint64_t need) const {
    throw Error(src_ + ": truncated GGUF file: " + field(what) + " needs " + std::to_string(need) + " bytes at offset " +
                std::to_string(pos_) + ", but only " + std::to_string(remaining()) + " remain");
  }
  std::span<const std::byte> take(uint64_t n, const std::string& what) {
    if (n > remaining()) truncated(what, n);
    auto s = b_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  template <typename T>
  T get(const std::string& what) {
    return load_le<T>(take(sizeof(T), what).data());
  }
  std::string_view string(const std::string& what) {
    const uint64_t n = get<uint64_t>(what + " length");
    if (n > remaining())
      throw Error(src_ + ": " + field(what) + ": string length " + std::to_string(n) + " exceeds the " + std::to_string(remaining()) +
                  " bytes left in the file");
    auto s = take(n, what);
    return {reinterpret_cast<const char*>(s.data()), s.size()};
  }

 private:
  std::span<const std::byte> b_;
  const std::string& src_;
  uint64_t pos_ = 0;
};

GgufValue read_value(Reader& r, GgufValueType type, const std::string& where, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufValueType::U8: v.u = r.get<uint8_t>(where); break;
    case GgufValueType::I8: v.i = r.get<int8_t>(where); break;
    case GgufValueType::U16: v.u = r.get<uint16_t>(where); break;
    case GgufValueType::I16: v.i = r.get<int16_t>(where); break;
    case GgufValueType::U32: v.u = r.get<uint32_t>(where); break;
    case GgufValueType::I32: v.i = r.get<int32_t>(where); break;
    case GgufValueType::U64: v.u = r.get<uint64_t>(where); break;
    case GgufValueType::I64: v.i = r.get<int64_t>(where); break;
    case GgufValueType::F32: v.f = r.get<float>(where); break;
    case GgufValueType::F64: v.f = r.get<double>(where); break;
    case GgufValueType::Bool: {
      const uint8_t x = r.get<uint8_t>(where);
      if (x > 1) throw Error(where + ": expected a bool (0 or 1), found " + std::to_string(x));
      v.b = x == 1;
      break;
    }
    case GgufValueType::String: v.str = r.string(where); break;
    case GgufValueType::Array: {
      const uint32_t et = r.get<uint32_t>(where + " element type");
      if (!valid_value_type(et))
        throw Error(where + ": array element type id " + std::to_string(et) + " is not a GGUF value type (expected 0..12)");
      v.element_type = static_cast<GgufValueType>(et);
      if (v.element_type == GgufValueType::Array && depth + 1 >= kGgufMaxArrayNesting)
        throw Error(where + ": arrays nested deeper than " + std::to_string(kGgufMaxArrayNesting) + " levels");
      v.count = r.get<uint64_t>(where + " element count");
      // Every element takes at least one byte (strings 8, arrays 12): a count beyond that is a lie,
      // caught before anything is allocated for it.
      const uint64_t min_elem = v.element_type == GgufValueType::String ? 8
                                : v.element_type == GgufValueType::Array ? 12
                                                                         : scalar_size(v.element_type);
      if (v.count > r.remaining() / min_elem)
        throw Error(where + ": array of " + std::to_string(v.count) + " " +
                    std::string(gguf_value_type_name(v.element_type)) + " elements needs at least " +
                    (v.count > std::numeric_limits<uint64_t>::max() / min_elem ? std::string("more than 2^64")
                                                                                : std::to_string(v.count * min_elem)) +
                    " bytes, but only " + std::to_string(r.remaining()) + " remain in the file");
      if (v.element_type == GgufValueType::String) {
        v.strings.reserve(v.count);
        for (uint64_t k = 0; k < v.count; ++k) v.strings.push_back(r.string(where + "[" + std::to_string(k) + "]"));
      } else if (v.element_type == GgufValueType::Array) {
        v.arrays.reserve(v.count);
        for (uint64_t k = 0; k < v.count; ++k)
          v.arrays.push_back(read_value(r, GgufValueType::Array, where + "[" + std::to_string(k) + "]", depth + 1));
      } else {
        v.raw = r.take(v.count * min_elem, where);
        if (v.element_type == GgufValueType::Bool)
          for (std::byte x : v.raw)
            if (static_cast<uint8_t>(x) > 1)
              throw Error(where + ": expected bools (0 or 1), found " + std::to_string(static_cast<uint8_t>(x)));
      }
      break;
    }
  }
  return v;
}

}  // namespace

std::string_view gguf_value_type_name(GgufValueType t) {
  static constexpr const char* names[] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                          "bool", "string", "array", "u64", "i64", "f64"};
  const auto k = static_cast<uint32_t>(t);
  return k < 13 ? names[k] : "invalid";
}

bool GgufValue::is_integer() const {
  return scalar_size(type) != 0 && type != GgufValueType::F32 && type != GgufValueType::F64 && type != GgufValueType::Bool;
}

std::string GgufValue::type_string() const {
  if (type != GgufValueType::Array) return std::string(gguf_value_type_name(type));
  return "array of " + std::string(gguf_value_type_name(element_type));
}

double GgufValue::number_at(uint64_t k) const {
  const std::byte* p = raw.data() + k * scalar_size(element_type);
  switch (element_type) {
    case GgufValueType::F32: return load_le<float>(p);
    case GgufValueType::F64: return load_le<double>(p);
    default: return static_cast<double>(integer_at(k));
  }
}

int64_t GgufValue::integer_at(uint64_t k) const {
  const std::byte* p = raw.data() + k * scalar_size(element_type);
  switch (element_type) {
    case GgufValueType::U8: case GgufValueType::Bool: return load_le<uint8_t>(p);
    case GgufValueType::I8: return load_le<int8_t>(p);
    case GgufValueType::U16: return load_le<uint16_t>(p);
    case GgufValueType::I16: return load_le<int16_t>(p);
    case GgufValueType::U32: return load_le<uint32_t>(p);
    case GgufValueType::I32: return load_le<int32_t>(p);
    case GgufValueType::I64: return load_le<int64_t>(p);
    case GgufValueType::U64: {
      const auto v = load_le<uint64_t>(p);
      return v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? -1 : static_cast<int64_t>(v);
    }
    case GgufValueType::F32: return static_cast<int64_t>(load_le<float>(p));
    case GgufValueType::F64: return static_cast<int64_t>(load_le<double>(p));
    default: return 0;
  }
}

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
  static const GgmlTypeInfo table[] = {
      {GgmlType::F32, "F32", 1, 4},          {GgmlType::F16, "F16", 1, 2},         {GgmlType::Q4_0, "Q4_0", 32, 18},
      {GgmlType::Q4_1, "Q4_1", 32, 20},      {GgmlType::Q5_0, "Q5_0", 32, 22},     {GgmlType::Q5_1, "Q5_1", 32, 24},
      {GgmlType::Q8_0, "Q8_0", 32, 34},      {GgmlType::Q8_1, "Q8_1", 32, 36},     {GgmlType::Q2_K, "Q2_K", 256, 84},
      {GgmlType::Q3_K, "Q3_K", 256, 110},    {GgmlType::Q4_K, "Q4_K", 256, 144},   {GgmlType::Q5_K, "Q5_K", 256, 176},
      {GgmlType::Q6_K, "Q6_K", 256, 210},    {GgmlType::Q8_K, "Q8_K", 256, 292},   {GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66},
      {GgmlType::IQ2_XS, "IQ2_XS", 256, 74}, {GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98}, {GgmlType::IQ1_S, "IQ1_S", 256, 50},
      {GgmlType::IQ4_NL, "IQ4_NL", 32, 18},  {GgmlType::IQ3_S, "IQ3_S", 256, 110}, {GgmlType::IQ2_S, "IQ2_S", 256, 82},
      {GgmlType::IQ4_XS, "IQ4_XS", 256, 136}, {GgmlType::I8, "I8", 1, 1},          {GgmlType::I16, "I16", 1, 2},
      {GgmlType::I32, "I32", 1, 4},          {GgmlType::I64, "I64", 1, 8},         {GgmlType::F64, "F64", 1, 8},
      {GgmlType::IQ1_M, "IQ1_M", 256, 56},   {GgmlType::BF16, "BF16", 1, 2},       {GgmlType::TQ1_0, "TQ1_0", 256, 54},
      {GgmlType::TQ2_0, "TQ2_0", 256, 66},   {GgmlType::MXFP4, "MXFP4", 32, 17},
  };
  for (const auto& t : table)
    if (static_cast<uint32_t>(t.type) == id) return &t;
  return nullptr;
}

const GgmlTypeInfo& ggml_type_info(GgmlType t) { return *ggml_type_info(static_cast<uint32_t>(t)); }

std::string GgufTensor::shape_string() const {
  std::string s = "[";
  for (size_t k = 0; k < ne.size(); ++k) s += (k ? ", " : "") + std::to_string(ne[k]);
  return s + "]";
}

GgufFile GgufFile::open(const std::filesystem::path& path) {
  auto mapped = std::make_shared<MappedFile>(path);
  GgufFile f = parse(mapped->bytes(), path.string());
  f.file_ = std::move(mapped);
  return f;
}

GgufFile GgufFile::parse(std::span<const std::byte> bytes, const std::string& source) {
  GgufFile f;
  f.source_ = source;
  const std::string& src = f.source_;
  Reader r(bytes, src);
  if (bytes.size() < 4 || load_le<uint32_t>(bytes.data()) != kMagic)
    throw Error(src + ": not a GGUF file (expected the magic \"GGUF\" in the first 4 bytes)");
  r.take(4, "magic");
  f.version_ = r.get<uint32_t>("version");
  if (f.version_ == 1)
    throw Error(src + ": GGUF version 1 is not supported (expected version 2 or 3; re-convert the file with a current llama.cpp)");
  if (f.version_ != 2 && f.version_ != 3) {
    const uint32_t swapped = __builtin_bswap32(f.version_);
    throw Error(src + ": GGUF version " + std::to_string(f.version_) + " is not supported (expected 2 or 3)" +
                (swapped == 2 || swapped == 3 ? "; this is a big-endian file, only little-endian files are read" : ""));
  }
  const uint64_t n_tensors = r.get<uint64_t>("tensor count");
  const uint64_t n_kv = r.get<uint64_t>("metadata count");
  if (n_kv > r.remaining() / kMinKvBytes)
    throw Error(src + ": header claims " + std::to_string(n_kv) + " metadata entries, but the " +
                std::to_string(r.remaining()) + " remaining bytes hold at most " + std::to_string(r.remaining() / kMinKvBytes));
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string entry = src + ": metadata entry " + std::to_string(k);
    const std::string_view key = r.string(entry + " key");
    if (key.empty()) throw Error(entry + ": the key is empty");
    const std::string where = src + ": metadata key '" + std::string(key) + "'";
    const uint32_t type = r.get<uint32_t>(where + " value type");
    if (!valid_value_type(type))
      throw Error(where + ": value type id " + std::to_string(type) + " is not a GGUF value type (expected 0..12)");
    GgufValue v = read_value(r, static_cast<GgufValueType>(type), where, 0);
    if (!f.kv_.emplace(std::string(key), std::move(v)).second) throw Error(where + " appears twice");
  }

  if (const GgufValue* a = f.find("general.alignment")) {
    if (a->type != GgufValueType::U32)
      throw Error(src + ": metadata key 'general.alignment': expected u32, found " + a->type_string());
    if (a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > kGgufMaxAlignment)
      throw Error(src + ": metadata key 'general.alignment': expected a power of two from 1 to " +
                  std::to_string(kGgufMaxAlignment) + ", found " + std::to_string(a->u));
    f.alignment_ = static_cast<uint32_t>(a->u);
  }

  if (n_tensors > r.remaining() / kMinTensorInfoBytes)
    throw Error(src + ": header claims " + std::to_string(n_tensors) + " tensors, but the " + std::to_string(r.remaining()) +
                " remaining bytes hold at most " + std::to_string(r.remaining() / kMinTensorInfoBytes) + " tensor infos");
  f.tensors_.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensor t;
    const std::string_view name = r.string(src + ": tensor info " + std::to_string(k) + " name");
    t.name = std::string(name);
    const std::string where = src + ": tensor '" + t.name + "'";
    if (name.empty()) throw Error(src + ": tensor info " + std::to_string(k) + ": the name is empty");
    if (name.size() > kGgufMaxTensorName)
      throw Error(where + ": name of " + std::to_string(name.size()) + " bytes (at most " +
                  std::to_string(kGgufMaxTensorName) + " allowed)");
    const uint32_t n_dims = r.get<uint32_t>(where + " dimension count");
    if (n_dims < 1 || n_dims > kGgufMaxDims)
      throw Error(where + ": expected 1 to " + std::to_string(kGgufMaxDims) + " dimensions, found " + std::to_string(n_dims));
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const auto ne = r.get<int64_t>(where + " dimension " + std::to_string(d));
      if (ne < 0) throw Error(where + ": dimension " + std::to_string(d) + " is negative (" + std::to_string(ne) + ")");
      t.ne.push_back(ne);
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(ne), &numel) ||
          numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw Error(where + ": shape " + t.shape_string() + " has more elements than fit in int64");
    }
    t.numel = static_cast<int64_t>(numel);
    const uint32_t type = r.get<uint32_t>(where + " type");
    const GgmlTypeInfo* info = ggml_type_info(type);
    if (!info) throw Error(where + ": unknown ggml type id " + std::to_string(type));
    t.type = info->type;
    if (t.ne[0] % info->block != 0)
      throw Error(where + ": row length " + std::to_string(t.ne[0]) + " is not a multiple of the " + info->name +
                  " block size " + std::to_string(info->block));
    t.offset = r.get<uint64_t>(where + " data offset");
    if (!f.by_name_.emplace(t.name, f.tensors_.size()).second) throw Error(where + " appears twice");
    f.tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t header_end = r.pos();
  const uint64_t data_start = (header_end + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  if (data_start > bytes.size() && !f.tensors_.empty())
    throw Error(src + ": truncated GGUF file: the data section should start at offset " + std::to_string(data_start) +
                " but the file has " + std::to_string(bytes.size()) + " bytes");
  const uint64_t data_size = data_start <= bytes.size() ? bytes.size() - data_start : 0;
  uint64_t expected = 0;  // where the next tensor must start: tensors tile the data section in order
  for (GgufTensor& t : f.tensors_) {
    const std::string where = src + ": tensor '" + t.name + "'";
    const GgmlTypeInfo& info = ggml_type_info(t.type);
    const uint64_t n_blocks = static_cast<uint64_t>(t.numel / info.block);
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(n_blocks, static_cast<uint64_t>(info.block_bytes), &nbytes))
      throw Error(where + ": " + info.name + " x shape " + t.shape_string() + " is more bytes than fit in 64 bits");
    if (t.offset % f.alignment_ != 0)
      throw Error(where + ": data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                  std::to_string(f.alignment_));
    if (t.offset != expected)
      throw Error(where + ": data offset " + std::to_string(t.offset) + ", expected " + std::to_string(expected) +
                  " (tensors must follow each other in order" + (t.offset < expected ? "; this one overlaps the previous)" : ")"));
    if (t.offset > data_size || nbytes > data_size - t.offset)
      throw Error(where + ": data [" + std::to_string(t.offset) + ", +" + std::to_string(nbytes) +
                  ") runs past the end of the data section (" + std::to_string(data_size) + " bytes)");
    t.data = bytes.subspan(data_start + t.offset, nbytes);
    const uint64_t end = t.offset + nbytes;
    expected = (end + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  }
  return f;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

std::optional<uint64_t> GgufFile::get_uint(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_integer())
    throw Error(source_ + ": metadata key '" + key + "': expected an unsigned integer, found " + v->type_string());
  if (v->type == GgufValueType::I8 || v->type == GgufValueType::I16 || v->type == GgufValueType::I32 ||
      v->type == GgufValueType::I64) {
    if (v->i < 0)
      throw Error(source_ + ": metadata key '" + key + "': expected a non-negative integer, found " + std::to_string(v->i));
    return static_cast<uint64_t>(v->i);
  }
  return v->u;
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type == GgufValueType::F32 || v->type == GgufValueType::F64) return v->f;
  if (v->is_integer()) {
    const bool is_signed = v->type == GgufValueType::I8 || v->type == GgufValueType::I16 ||
                           v->type == GgufValueType::I32 || v->type == GgufValueType::I64;
    return is_signed ? static_cast<double>(v->i) : static_cast<double>(v->u);
  }
  throw Error(source_ + ": metadata key '" + key + "': expected a number, found " + v->type_string());
}

std::optional<bool> GgufFile::get_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufValueType::Bool)
    throw Error(source_ + ": metadata key '" + key + "': expected bool, found " + v->type_string());
  return v->b;
}

std::optional<std::string_view> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufValueType::String)
    throw Error(source_ + ": metadata key '" + key + "': expected string, found " + v->type_string());
  return v->str;
}

const GgufValue* GgufFile::get_array(const std::string& key, std::initializer_list<GgufValueType> element_types) const {
  const GgufValue* v = find(key);
  if (!v) return nullptr;
  bool ok = v->type == GgufValueType::Array;
  if (ok) {
    ok = false;
    for (GgufValueType t : element_types) ok = ok || v->element_type == t;
  }
  if (!ok) {
    std::string want;
    for (GgufValueType t : element_types) want += (want.empty() ? "" : " or ") + std::string(gguf_value_type_name(t));
    throw Error(source_ + ": metadata key '" + key + "': expected an array of " + want + ", found " + v->type_string());
  }
  return v;
}

bool is_gguf_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  try {
    const FileDescriptor fd = open_regular_file(path);
    char magic[4];
    return ::pread(fd.get(), magic, 4, 0) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace phinfer::format
