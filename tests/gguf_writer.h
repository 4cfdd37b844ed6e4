#pragma once
// A small GGUF writer for the tests and the fuzz harness (never part of the product library): it
// builds valid files and, through its raw hooks, the malformed ones the reader must reject.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace phinfer::test {

class GgufWriter {
 public:
  enum Type : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 };

  template <typename T>
  static void put(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  static void put_string(std::string& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    out += s;
  }

  uint32_t version = 3;
  uint32_t alignment = 32;  // used to place tensors; write general.alignment yourself to change it

  // key + type + value bytes as given (the hook for malformed values).
  void raw(const std::string& key, uint32_t type, const std::string& value) {
    put_string(kv_, key);
    put<uint32_t>(kv_, type);
    kv_ += value;
    ++n_kv_;
  }
  void u32(const std::string& key, uint32_t v) { raw(key, U32, bytes(v)); }
  void u64(const std::string& key, uint64_t v) { raw(key, U64, bytes(v)); }
  void i32(const std::string& key, int32_t v) { raw(key, I32, bytes(v)); }
  void f32(const std::string& key, float v) { raw(key, F32, bytes(v)); }
  void boolean(const std::string& key, bool v) { raw(key, BOOL, std::string(1, v ? '\1' : '\0')); }
  void str(const std::string& key, const std::string& v) {
    std::string b;
    put_string(b, v);
    raw(key, STRING, b);
  }
  void strings(const std::string& key, const std::vector<std::string>& v) {
    std::string b;
    put<uint32_t>(b, STRING);
    put<uint64_t>(b, v.size());
    for (const auto& s : v) put_string(b, s);
    raw(key, ARRAY, b);
  }
  template <typename T>
  void numbers(const std::string& key, uint32_t elem_type, const std::vector<T>& v) {
    std::string b;
    put<uint32_t>(b, elem_type);
    put<uint64_t>(b, v.size());
    for (T x : v) put<T>(b, x);
    raw(key, ARRAY, b);
  }

  // A tensor; `offset` overrides the placement (-1: the next aligned offset), `n_dims` the count
  // written (-1: ne.size()).
  void tensor(const std::string& name, uint32_t type, std::vector<int64_t> ne, std::string data, int64_t offset = -1,
              int64_t n_dims = -1) {
    tensors_.push_back({name, type, std::move(ne), std::move(data), offset, n_dims});
  }

  // The file; n_tensors / n_kv override the counts written in the header.
  std::string build(int64_t n_tensors = -1, int64_t n_kv = -1) const {
    std::string out = "GGUF";
    put<uint32_t>(out, version);
    put<uint64_t>(out, n_tensors < 0 ? tensors_.size() : static_cast<uint64_t>(n_tensors));
    put<uint64_t>(out, n_kv < 0 ? n_kv_ : static_cast<uint64_t>(n_kv));
    out += kv_;
    uint64_t offset = 0;
    std::vector<uint64_t> placed;
    for (const auto& t : tensors_) {
      const uint64_t at = t.offset >= 0 ? static_cast<uint64_t>(t.offset) : offset;
      placed.push_back(at);
      offset = (at + t.data.size() + alignment - 1) / alignment * alignment;
      put_string(out, t.name);
      put<uint32_t>(out, static_cast<uint32_t>(t.n_dims >= 0 ? t.n_dims : static_cast<int64_t>(t.ne.size())));
      for (int64_t d : t.ne) put<int64_t>(out, d);
      put<uint32_t>(out, t.type);
      put<uint64_t>(out, at);
    }
    out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
    const size_t data_start = out.size();
    for (size_t k = 0; k < tensors_.size(); ++k) {
      const auto& t = tensors_[k];
      if (placed[k] > (uint64_t{1} << 30)) continue;  // a crafted offset far past the end: no data
      if (data_start + placed[k] + t.data.size() > out.size()) out.resize(data_start + placed[k] + t.data.size(), '\0');
      std::memcpy(out.data() + data_start + placed[k], t.data.data(), t.data.size());
    }
    return out;
  }

  template <typename T>
  static std::string bytes(T v) {
    std::string b;
    put<T>(b, v);
    return b;
  }

 private:
  struct Tensor {
    std::string name;
    uint32_t type;
    std::vector<int64_t> ne;
    std::string data;
    int64_t offset, n_dims;
  };
  std::string kv_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace phinfer::test
