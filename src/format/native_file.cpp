#include "format/native_file.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <vector>

#include "format/file_io.h"
#include "format/json_file.h"
#include "kernels/matrix.h"
#include "kernels/quant.h"
#include "phinfer/error.h"

namespace phinfer::format {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxJsonBytes = 512u << 20;  // a tokenizer of 200k entries is ~15 MB

uint64_t align_up(uint64_t x) { return (x + kNativeAlignment - 1) / kNativeAlignment * kNativeAlignment; }

template <typename T>
T load_le(const std::byte* p) {
  T v{};
  std::memcpy(&v, p, sizeof(T));  // x86-64 and ARM64 are little-endian
  return v;
}
template <typename T>
void store_le(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

std::string crc_hex(uint32_t crc) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", crc);
  return buf;
}

// Rows and columns of one tensor: far above any model (a 200k vocabulary), far below the sizes at
// which the byte count of a quantized layout could overflow.
constexpr int64_t kMaxNativeDim = int64_t{1} << 24;

std::optional<kernels::WeightFormat> weight_format_of(const std::string& name) {
  const kernels::FormatInfo* f = kernels::find_format_by_name(name);  // registry names and legacy tags
  return f ? std::optional(f->format) : std::nullopt;
}

// Checks every field of one tensor entry, so the loader can use them without further checks:
// a known format, a shape of one or two sizes in [0, kMaxNativeDim], for q8/q4 a group size of
// -1 or 1..kMaxGroupSize and a symmetric flag, a byte size that is exactly what the format needs,
// and a CRC32 of 8 hex digits. Returns the matrix the entry describes (without its data).
kernels::WeightMatrix check_tensor_entry(const json& t, uint64_t size, const std::string& where) {
  if (!t.contains("format") || !t["format"].is_string())
    throw Error(where + ": expected a string 'format', found " + json_brief(t.value("format", json())));
  const auto fmt = weight_format_of(t["format"].get<std::string>());
  if (!fmt) throw Error(where + ": unknown weight format " + json_brief(t["format"]) + " (expected " + kernels::format_names() + ")");
  const json shape = t.value("shape", json());
  if (!shape.is_array() || shape.empty() || shape.size() > 2)
    throw Error(where + ": expected a shape of one or two sizes, found " + json_brief(shape));
  kernels::WeightMatrix m;
  m.format = *fmt;
  std::array<int64_t, 2> dims = {0, 1};
  for (size_t i = 0; i < shape.size(); ++i) {
    auto d = json_integer(shape[i], 0, kMaxNativeDim);
    if (!d) throw Error(where + ": shape sizes must be integers in [0, " + std::to_string(kMaxNativeDim) + "], found " + json_brief(shape));
    dims[i] = *d;
  }
  m.rows = dims[0];
  m.cols = dims[1];
  if (kernels::is_quantized(m.format)) {
    const json group = t.value("group_size", json());
    auto g = json_integer(group, -1, kernels::kMaxGroupSize);
    if (!g || *g == 0)
      throw Error(where + ": expected group_size -1 or 1.." + std::to_string(kernels::kMaxGroupSize) + ", found " + json_brief(group));
    if (!t.contains("symmetric") || !t["symmetric"].is_boolean())
      throw Error(where + ": expected symmetric true or false, found " + json_brief(t.value("symmetric", json())));
    if (m.cols < 1) throw Error(where + ": a quantized tensor needs at least one column, found shape " + json_brief(shape));
    m.group_size = static_cast<int>(*g);
    m.symmetric = t["symmetric"].get<bool>();
  }
  if (m.bytes() != size)
    throw Error(where + ": size " + std::to_string(size) + " does not match format " + t["format"].get<std::string>() +
                " with shape " + json_brief(shape) + ", which needs " + std::to_string(m.bytes()) + " bytes");
  const json crc = t.value("crc32", json());
  const bool hex8 = crc.is_string() && crc.get<std::string>().size() == 8 &&
                    crc.get<std::string>().find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!hex8) throw Error(where + ": expected crc32 as 8 lowercase hex digits, found " + json_brief(crc));
  return m;
}

}  // namespace

uint32_t crc32(std::span<const std::byte> data, uint32_t crc) {
  const auto& t = crc_table();
  crc = ~crc;
  for (std::byte b : data) crc = t[(crc ^ static_cast<uint8_t>(b)) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

bool is_native_file(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;  // folders, FIFOs: not ours
  try {
    const FileDescriptor fd = open_regular_file(path);
    char magic[8] = {};
    return ::pread(fd.get(), magic, 8, 0) == 8 && std::memcmp(magic, kNativeMagic, 8) == 0;
  } catch (const Error&) {
    return false;
  }
}

NativeFile NativeFile::open(const std::filesystem::path& path) {
  NativeFile f;
  f.file_ = std::make_shared<MappedFile>(path);
  const auto bytes = f.file_->bytes();
  const std::string src = path.string();
  if (bytes.size() < 64) throw Error(src + ": truncated phinfer model file (" + std::to_string(bytes.size()) + " bytes)");
  if (std::memcmp(bytes.data(), kNativeMagic, 8) != 0) throw Error(src + ": not a phinfer model file (bad magic)");
  const uint32_t version = load_le<uint32_t>(bytes.data() + 8);
  if (version != kNativeVersion)
    throw Error(src + ": phinfer model file version " + std::to_string(version) + " is not supported (this build reads version " +
                std::to_string(kNativeVersion) + "); convert the model again");
  const uint64_t json_offset = load_le<uint64_t>(bytes.data() + 16), json_size = load_le<uint64_t>(bytes.data() + 24);
  const uint64_t data_offset = load_le<uint64_t>(bytes.data() + 32), data_size = load_le<uint64_t>(bytes.data() + 40);
  const uint32_t json_crc = load_le<uint32_t>(bytes.data() + 48);
  if (json_offset < 64 || json_size > kMaxJsonBytes || json_offset > bytes.size() || json_size > bytes.size() - json_offset)
    throw Error(src + ": truncated or corrupt phinfer model file (metadata at " + std::to_string(json_offset) + "+" +
                std::to_string(json_size) + " is outside the " + std::to_string(bytes.size()) + "-byte file)");
  if (data_offset % kNativeAlignment != 0 || data_offset < json_offset + json_size || data_offset > bytes.size() ||
      data_size != bytes.size() - data_offset)
    throw Error(src + ": truncated or corrupt phinfer model file (data section " + std::to_string(data_offset) + "+" +
                std::to_string(data_size) + " does not match the file size " + std::to_string(bytes.size()) + ")");
  const auto json_bytes = bytes.subspan(json_offset, json_size);
  if (crc32(json_bytes) != json_crc) throw Error(src + ": corrupt phinfer model file (metadata checksum mismatch)");
  json meta;
  try {
    meta = json::parse(reinterpret_cast<const char*>(json_bytes.data()),
                       reinterpret_cast<const char*>(json_bytes.data()) + json_bytes.size());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    throw Error(src + ": corrupt phinfer model file (metadata is not JSON: " + e.what() + ")");
  }
  if (!meta.is_object() || !meta.contains("tensors") || !meta["tensors"].is_object())
    throw Error(src + ": corrupt phinfer model file (no tensor table)");
  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (auto it = meta["tensors"].begin(); it != meta["tensors"].end(); ++it) {
    const json& t = *it;
    const std::string where = src + ": tensor '" + it.key() + "'";
    if (!t.is_object() || !t.contains("offset") || !t.contains("size") || !t["offset"].is_number_unsigned() ||
        !t["size"].is_number_unsigned())
      throw Error(where + ": entry needs unsigned offset and size");
    const uint64_t off = t["offset"].get<uint64_t>(), size = t["size"].get<uint64_t>();
    if (off % kNativeAlignment != 0 || off < data_offset || off > bytes.size() || size > bytes.size() - off)
      throw Error(where + ": bytes [" + std::to_string(off) + ", +" + std::to_string(size) + ") are outside the data section or misaligned");
    kernels::WeightMatrix matrix = check_tensor_entry(t, size, where);
    matrix.data = bytes.data() + off;
    auto placed = f.tensors_.emplace(it.key(), NativeTensor{it.key(), t, bytes.subspan(off, size), matrix}).first;
    if (size > 0) ranges.push_back({off, off + size, &placed->first});  // empty tensors overlap nothing
  }
  // Two tensors sharing bytes are a crafted or corrupt file. Sorted by begin, each range must start
  // at or after the end of the one before (every accepted range ends before the next begins).
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      throw Error(src + ": tensors '" + *ranges[i - 1].name + "' (bytes [" + std::to_string(ranges[i - 1].begin) + ", " +
                  std::to_string(ranges[i - 1].end) + ")) and '" + *ranges[i].name + "' (bytes [" +
                  std::to_string(ranges[i].begin) + ", " + std::to_string(ranges[i].end) + ")) overlap");
  meta.erase("tensors");
  f.meta_ = std::move(meta);
  return f;
}

const NativeTensor& NativeFile::require(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error(path().string() + ": tensor '" + name + "' is missing");
  return it->second;
}

void NativeFile::verify() const {
  // In file order, so the tensor named is the first bad one in the file; pages are dropped as they
  // are checked, so verifying a large file does not grow the resident set.
  std::vector<const NativeTensor*> order;
  for (const auto& [name, t] : tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const NativeTensor* a, const NativeTensor* b) { return a->data.data() < b->data.data(); });
  for (const NativeTensor* t : order) {
    const uint32_t crc = crc32(t->data);
    file_->release(t->data);
    const std::string want = t->info["crc32"].get<std::string>();  // checked by open()
    if (crc_hex(crc) != want)
      throw Error(path().string() + ": tensor '" + t->name + "' is corrupt (CRC32 " + crc_hex(crc) + ", expected " + want + ")");
  }
}

uint64_t NativeFile::tensor_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, t] : tensors_) n += t.data.size();
  return n;
}

NativeFileWriter::NativeFileWriter(const std::filesystem::path& path, json metadata, std::vector<TensorDecl> tensors)
    : path_(path), meta_(std::move(metadata)), tensors_(std::move(tensors)) {
  // Offsets are fixed now; CRCs are placeholders of their final width, so the JSON size never changes.
  json table = json::object();
  for (auto& t : tensors_) {
    t.info["size"] = t.size;
    t.info["offset"] = uint64_t{0};
    t.info["crc32"] = "00000000";
  }
  // The JSON size depends on the offsets' digits; iterate until the layout is stable.
  uint64_t json_size = 0;
  for (int pass = 0; pass < 4; ++pass) {
    table = json::object();
    for (const auto& t : tensors_) table[t.name] = t.info;
    meta_["tensors"] = table;
    json_size = meta_.dump().size();
    uint64_t off = align_up(64 + json_size);
    data_offset_ = off;
    bool changed = false;
    for (auto& t : tensors_) {
      if (t.info["offset"].get<uint64_t>() != off) changed = true;
      t.info["offset"] = off;
      off = align_up(off + t.size);
    }
    data_size_ = off - data_offset_;
    if (!changed) break;
  }
  json_reserved_ = json_size;
  // A per-process partial file beside the target (see file_io.h), renamed by finish().
  out_ = std::make_unique<OutputFile>(path_);
  rewrite_header();
  if (std::fseek(out_->stream(), static_cast<long>(data_offset_), SEEK_SET) != 0)
    throw Error(out_->partial().string() + ": seek failed");
}

NativeFileWriter::~NativeFileWriter() = default;

void NativeFileWriter::rewrite_header() {
  json table = json::object();
  for (const auto& t : tensors_) table[t.name] = t.info;
  meta_["tensors"] = table;
  const std::string text = meta_.dump();
  if (text.size() != json_reserved_) throw Error("internal: native file metadata changed size");
  std::array<std::byte, 64> head{};
  std::memcpy(head.data(), kNativeMagic, 8);
  store_le<uint32_t>(head.data() + 8, kNativeVersion);
  store_le<uint64_t>(head.data() + 16, 64);
  store_le<uint64_t>(head.data() + 24, text.size());
  store_le<uint64_t>(head.data() + 32, data_offset_);
  store_le<uint64_t>(head.data() + 40, data_size_);
  store_le<uint32_t>(head.data() + 48, crc32(std::as_bytes(std::span(text.data(), text.size()))));
  std::FILE* file = out_->stream();
  if (std::fseek(file, 0, SEEK_SET) != 0 || std::fwrite(head.data(), 1, head.size(), file) != head.size() ||
      std::fwrite(text.data(), 1, text.size(), file) != text.size())
    throw Error(out_->partial().string() + ": write failed (disk full?)");
}

void NativeFileWriter::write(std::span<const std::byte> bytes) {
  if (!out_) throw Error(path_.string() + ": write after finish()");
  std::FILE* file = out_->stream();
  const std::string partial = out_->partial().string();
  while (!bytes.empty()) {
    if (current_ >= tensors_.size()) throw Error(partial + ": more tensor data than declared");
    TensorDecl& t = tensors_[current_];
    if (t.size == 0) {  // nothing to write; its CRC placeholder is already crc32("") = 0
      ++current_;
      continue;
    }
    const uint64_t take = std::min<uint64_t>(bytes.size(), t.size - written_in_current_);
    if (take && std::fwrite(bytes.data(), 1, take, file) != take) throw Error(partial + ": write failed (disk full?)");
    crc_ = crc32(bytes.first(take), crc_);
    written_in_current_ += take;
    bytes = bytes.subspan(take);
    if (written_in_current_ == t.size) {
      t.info["crc32"] = crc_hex(crc_);
      crc_ = 0;
      written_in_current_ = 0;
      ++current_;
      // Pad to the next tensor's aligned offset.
      const uint64_t end = t.info["offset"].get<uint64_t>() + t.size;
      const uint64_t next = align_up(end);
      static const std::array<char, kNativeAlignment> zeros{};
      if (next > end && std::fwrite(zeros.data(), 1, next - end, file) != next - end)
        throw Error(partial + ": write failed (disk full?)");
    }
  }
}

void NativeFileWriter::finish() {
  if (!out_) throw Error(path_.string() + ": finish() called twice");
  // Zero-size tensors complete without any write call.
  while (current_ < tensors_.size() && tensors_[current_].size == 0) ++current_;
  if (current_ != tensors_.size())
    throw Error(out_->partial().string() + ": tensor '" + tensors_[current_].name + "' was not fully written");
  rewrite_header();
  auto out = std::move(out_);
  out->commit();
}

}  // namespace phinfer::format
