#include "format/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "format/json_file.h"
#include "phinfer/error.h"

namespace phinfer::format {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // same bound as the reference implementation
constexpr size_t kMaxRank = 8;

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

// A copy of `bytes` in a 64-byte aligned buffer owned by `owner`.
std::span<const std::byte> aligned_copy(std::span<const std::byte> bytes, std::shared_ptr<const void>* owner) {
  const size_t padded = (bytes.size() + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, padded);
  if (p == nullptr) throw std::bad_alloc();
  std::memcpy(p, bytes.data(), bytes.size());
  *owner = std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); });
  return {static_cast<const std::byte*>(p), bytes.size()};
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::map<std::string, TensorView> parse_safetensors(std::span<const std::byte> bytes, const std::string& src) {
  if (bytes.size() < 8)
    throw Error(src + ": truncated safetensors file (" + std::to_string(bytes.size()) +
                " bytes; the 8-byte header length is missing)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  if (header_len > kMaxHeaderBytes)
    throw Error(src + ": safetensors header length " + std::to_string(header_len) + " is absurd (limit " +
                std::to_string(kMaxHeaderBytes) + " bytes); the file is corrupt or not safetensors");
  if (header_len > bytes.size() - 8)
    throw Error(src + ": truncated safetensors file: header claims " + std::to_string(header_len) +
                " bytes but only " + std::to_string(bytes.size() - 8) + " follow");
  const char* hp = reinterpret_cast<const char*>(bytes.data() + 8);
  json header;
  try {
    header = json::parse(hp, hp + header_len);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    throw Error(src + ": safetensors header is not valid JSON: " + e.what());
  }
  if (!header.is_object())
    throw Error(src + ": safetensors header must be a JSON object, found " + std::string(header.type_name()));

  const std::span<const std::byte> data = bytes.subspan(8 + header_len);
  std::map<std::string, TensorView> out;
  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) throw Error(src + ": __metadata__ must be an object of strings, found " + json_brief(*it));
      for (auto m = it->begin(); m != it->end(); ++m)
        if (!m->is_string())
          throw Error(src + ": __metadata__ must be an object of strings, found '" + m.key() + "': " + json_brief(*m));
      continue;
    }
    const std::string where = src + ": tensor '" + name + "'";
    const json& e = *it;
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw Error(where + ": expected an object with dtype, shape and data_offsets");
    if (!e["dtype"].is_string()) throw Error(where + ": dtype must be a string");
    auto dtype = dtype_from_name(e["dtype"].get<std::string>());
    if (!dtype)
      throw Error(where + ": unknown dtype '" + e["dtype"].get<std::string>() +
                  "' (expected one of F32, F16, BF16, F64, I8, U8, I16, I32, I64, BOOL)");
    const json& shape = e["shape"];
    if (!shape.is_array() || shape.size() > kMaxRank)
      throw Error(where + ": shape must be a list of at most 8 sizes, found " + json_brief(shape));
    TensorView t;
    t.name = name;
    t.dtype = *dtype;
    t.file = src;
    uint64_t numel = 1;
    for (const json& d : shape) {
      if (!d.is_number_unsigned()) throw Error(where + ": shape entries must be non-negative integers, found " + json_brief(d));
      uint64_t v = d.get<uint64_t>();
      // Every partial product must fit int64 too (numel() multiplies in that order): [3, 2^62, 0]
      // holds no bytes but is no real tensor either.
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || mul_overflows(numel, v, &numel) ||
          numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw Error(where + ": shape " + shape.dump() + " overflows");
      t.shape.push_back(static_cast<int64_t>(v));
    }
    uint64_t nbytes = 0;
    if (mul_overflows(numel, dtype_size(*dtype), &nbytes)) throw Error(where + ": shape " + shape.dump() + " overflows");
    const json& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw Error(where + ": data_offsets must be [begin, end] (two non-negative integers), found " + json_brief(off));
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data.size())
      throw Error(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  "] out of range: the data section has " + std::to_string(data.size()) + " bytes");
    if (end - begin != nbytes)
      throw Error(where + ": data_offsets span " + std::to_string(end - begin) + " bytes but dtype " +
                  std::string(dtype_name(*dtype)) + " x shape " + shape.dump() + " needs " + std::to_string(nbytes));
    t.data = data.subspan(begin, end - begin);
    // bf16/f16/f32 values are read through typed pointers: a misaligned tensor is copied once.
    if (!t.data.empty() && reinterpret_cast<uintptr_t>(t.data.data()) % dtype_size(*dtype) != 0)
      t.data = aligned_copy(t.data, &t.aligned_copy);
    auto placed = out.emplace(name, std::move(t)).first;
    if (begin != end) ranges.push_back({begin, end, &placed->first});  // empty tensors overlap nothing
  }
  // Overlapping tensors are a sign of a crafted or corrupt file.
  // Sorted by begin, each range must start at or after the furthest end so far (comparing only
  // neighbours misses a range nested in an earlier, longer one).
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  size_t furthest = 0;
  for (size_t i = 1; i < ranges.size(); ++i) {
    const Range& prev = ranges[furthest];
    if (ranges[i].begin < prev.end)
      throw Error(src + ": tensors '" + *prev.name + "' (bytes [" + std::to_string(prev.begin) + ", " +
                  std::to_string(prev.end) + ")) and '" + *ranges[i].name + "' (bytes [" +
                  std::to_string(ranges[i].begin) + ", " + std::to_string(ranges[i].end) +
                  ")) overlap in the data section");
    if (ranges[i].end > prev.end) furthest = i;
  }
  return out;
}

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::filesystem::path& dir) {
  SafetensorsCheckpoint ck;
  ck.dir_ = dir;
  std::vector<std::string> files;
  const auto index_path = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(index_path)) {
    json index = read_json_file(index_path);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw Error(index_path.string() + ": expected an object with a 'weight_map' object, found " + json_brief(index));
    std::map<std::string, std::string> unique;  // shard -> one tensor it should hold (for messages)
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it->is_string())
        throw Error(index_path.string() + ": weight_map['" + it.key() + "'] must be a file name, found " + json_brief(*it));
      std::string f = it->get<std::string>();
      // Shards must sit in the folder itself: no paths, no escaping it.
      const bool control = std::any_of(f.begin(), f.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x20; });
      if (f.empty() || control || f.find('/') != std::string::npos || f.find('\\') != std::string::npos || f == "." ||
          f == "..")
        throw Error(index_path.string() + ": weight_map['" + it.key() + "'] = " + json_brief(*it) +
                    " is not a plain file name in the checkpoint folder");
      unique.emplace(f, it.key());
    }
    for (const auto& [f, tensor] : unique) {
      if (!std::filesystem::exists(dir / f))
        throw Error(index_path.string() + ": shard '" + f + "' (listed for tensor '" + tensor + "') is missing: cannot open " +
                    (dir / f).string());
      files.push_back(f);
    }
    std::map<std::string, TensorView> all;
    for (const auto& f : files) {
      auto mf = std::make_shared<MappedFile>(dir / f);
      auto tensors = parse_safetensors(mf->bytes(), (dir / f).string());
      for (auto& [name, t] : tensors) {
        auto mapped = index["weight_map"].find(name);
        if (mapped == index["weight_map"].end() || mapped->get<std::string>() != f) continue;  // index decides
        all.emplace(name, std::move(t));
      }
      ck.files_.push_back(std::move(mf));
    }
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it)
      if (!all.count(it.key()))
        throw Error(index_path.string() + ": tensor '" + it.key() + "' is listed in shard '" +
                    it->get<std::string>() + "' but that file does not contain it");
    ck.tensors_ = std::move(all);
  } else {
    const auto single = dir / "model.safetensors";
    if (!std::filesystem::exists(single))
      throw Error(dir.string() + ": no model.safetensors or model.safetensors.index.json found");
    auto mf = std::make_shared<MappedFile>(single);
    ck.tensors_ = parse_safetensors(mf->bytes(), single.string());
    ck.files_.push_back(std::move(mf));
  }
  return ck;
}

void SafetensorsCheckpoint::release(const TensorView& t) const {
  for (const auto& f : files_) f->release(t.data);
}

const TensorView* SafetensorsCheckpoint::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const TensorView& SafetensorsCheckpoint::require(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorView* t = find(name);
  if (!t) throw Error(dir_.string() + ": tensor '" + name + "' is missing from the checkpoint");
  if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16)
    throw Error(t->file + ": tensor '" + name + "': expected dtype F32, F16 or BF16, found " +
                std::string(dtype_name(t->dtype)));
  if (t->shape != shape) {
    TensorView want;
    want.shape = shape;
    throw Error(t->file + ": tensor '" + name + "': expected shape " + want.shape_string() + ", found " +
                t->shape_string());
  }
  return *t;
}

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& path, std::vector<Entry> entries,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& e : entries) {
    if (e.name == "__metadata__" || header.contains(e.name))
      throw Error(path.string() + ": tensor name '" + e.name + "' is reserved or written twice");
    uint64_t n = dtype_size(e.dtype);
    for (int64_t d : e.shape)
      if (d < 0 || mul_overflows(n, static_cast<uint64_t>(d), &n))
        throw Error(path.string() + ": tensor '" + e.name + "' has an invalid shape");
    uint64_t end = 0;
    if (__builtin_add_overflow(offset, n, &end)) throw Error(path.string() + ": tensor '" + e.name + "' overflows the file size");
    header[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  expected_ = offset;
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw Error(path.string() + ": cannot write the header (tensor names and metadata must be UTF-8): " + e.what());
  }
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');  // keep the data 8-byte aligned, as HF does
  out_ = std::make_unique<OutputFile>(path);
  uint8_t len[8];
  uint64_t hl = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(hl >> (8 * i));
  if (std::fwrite(len, 1, 8, out_->stream()) != 8 || std::fwrite(text.data(), 1, text.size(), out_->stream()) != text.size())
    throw Error(out_->partial().string() + ": write failed (disk full?)");
}

void SafetensorsWriter::write(const void* data, size_t nbytes) {
  if (!out_) throw Error(path_.string() + ": write after finish()");
  if (nbytes > expected_ - written_) throw Error(path_.string() + ": more tensor data written than declared");
  if (nbytes && std::fwrite(data, 1, nbytes, out_->stream()) != nbytes)
    throw Error(out_->partial().string() + ": write failed (disk full?)");
  written_ += nbytes;
}

void SafetensorsWriter::finish() {
  if (!out_) throw Error(path_.string() + ": finish() called twice");
  if (written_ != expected_)
    throw Error(path_.string() + ": wrote " + std::to_string(written_) + " bytes of tensor data, declared " +
                std::to_string(expected_));
  auto out = std::move(out_);
  out->commit();
}

}  // namespace phinfer::format
