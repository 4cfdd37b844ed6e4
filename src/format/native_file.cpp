#include "format/native_file.h"

#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <unistd.h>

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

}  // namespace

uint32_t crc32(std::span<const std::byte> data, uint32_t crc) {
  const auto& t = crc_table();
  crc = ~crc;
  for (std::byte b : data) crc = t[(crc ^ static_cast<uint8_t>(b)) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

bool is_native_file(const std::filesystem::path& path) {
  if (!std::filesystem::is_regular_file(path)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  return in.gcount() == 8 && std::memcmp(magic, kNativeMagic, 8) == 0;
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
  } catch (const json::parse_error& e) {
    throw Error(src + ": corrupt phinfer model file (metadata is not JSON: " + e.what() + ")");
  }
  if (!meta.is_object() || !meta.contains("tensors") || !meta["tensors"].is_object())
    throw Error(src + ": corrupt phinfer model file (no tensor table)");
  for (auto it = meta["tensors"].begin(); it != meta["tensors"].end(); ++it) {
    const json& t = *it;
    const std::string where = src + ": tensor '" + it.key() + "'";
    if (!t.is_object() || !t.contains("offset") || !t.contains("size") || !t["offset"].is_number_unsigned() ||
        !t["size"].is_number_unsigned())
      throw Error(where + ": entry needs unsigned offset and size");
    const uint64_t off = t["offset"].get<uint64_t>(), size = t["size"].get<uint64_t>();
    if (off % kNativeAlignment != 0 || off < data_offset || off > bytes.size() || size > bytes.size() - off)
      throw Error(where + ": bytes [" + std::to_string(off) + ", +" + std::to_string(size) + ") are outside the data section or misaligned");
    f.tensors_.emplace(it.key(), NativeTensor{it.key(), t, bytes.subspan(off, size)});
  }
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
  for (const auto& [name, t] : tensors_) {
    const std::string want = t.info.value("crc32", "");
    if (crc_hex(crc32(t.data)) != want)
      throw Error(path().string() + ": tensor '" + name + "' is corrupt (CRC32 " + crc_hex(crc32(t.data)) + ", expected " +
                  want + ")");
  }
}

NativeFileWriter::NativeFileWriter(const std::filesystem::path& path, json metadata, std::vector<TensorDecl> tensors)
    // A per-process name: two processes filling the same cache entry never write into one file.
    : path_(path), tmp_path_(path.string() + ".partial." + std::to_string(::getpid())), meta_(std::move(metadata)), tensors_(std::move(tensors)) {
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
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!file_) throw Error(tmp_path_.string() + ": cannot create file");
  rewrite_header();
  std::fseek(file_, static_cast<long>(data_offset_), SEEK_SET);
}

NativeFileWriter::~NativeFileWriter() {
  if (file_) {
    std::fclose(file_);
    std::error_code ec;
    std::filesystem::remove(tmp_path_, ec);
  }
}

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
  std::fseek(file_, 0, SEEK_SET);
  if (std::fwrite(head.data(), 1, head.size(), file_) != head.size() || std::fwrite(text.data(), 1, text.size(), file_) != text.size())
    throw Error(tmp_path_.string() + ": write failed (disk full?)");
}

void NativeFileWriter::write(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    if (current_ >= tensors_.size()) throw Error(tmp_path_.string() + ": more tensor data than declared");
    TensorDecl& t = tensors_[current_];
    if (t.size == 0) {  // nothing to write; its CRC placeholder is already crc32("") = 0
      ++current_;
      continue;
    }
    const uint64_t take = std::min<uint64_t>(bytes.size(), t.size - written_in_current_);
    if (take && std::fwrite(bytes.data(), 1, take, file_) != take) throw Error(tmp_path_.string() + ": write failed (disk full?)");
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
      if (next > end && std::fwrite(zeros.data(), 1, next - end, file_) != next - end)
        throw Error(tmp_path_.string() + ": write failed (disk full?)");
    }
  }
}

void NativeFileWriter::finish() {
  // Zero-size tensors complete without any write call.
  while (current_ < tensors_.size() && tensors_[current_].size == 0) ++current_;
  if (current_ != tensors_.size())
    throw Error(tmp_path_.string() + ": tensor '" + tensors_[current_].name + "' was not fully written");
  rewrite_header();
  if (std::fclose(file_) != 0) {
    file_ = nullptr;
    throw Error(tmp_path_.string() + ": close failed");
  }
  file_ = nullptr;
  std::filesystem::rename(tmp_path_, path_);
}

}  // namespace phinfer::format
