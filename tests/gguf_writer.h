#pragma once
// A small GGUF writer for the tests and the fuzz harness (never part of the product library): it
// builds valid files and, through its raw hooks, the malformed ones the reader must reject.
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "format/gguf.h"

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

// A valid tiny phi3 GGUF (hidden 32, 2 heads of 16, 1 kv head, 1 layer, vocab 8, llama tokenizer);
// `edit` changes metadata before the file is written; `tensors` can drop or reshape tensors.
struct TinyPhi3 {
  std::map<std::string, std::function<void(GgufWriter&, const std::string&)>> kv;
  std::map<std::string, std::pair<std::vector<int64_t>, uint32_t>> tensors;  // name -> ne, type

  TinyPhi3() {
    auto u32 = [](uint32_t v) { return [v](GgufWriter& w, const std::string& k) { w.u32(k, v); }; };
    kv["general.architecture"] = [](GgufWriter& w, const std::string& k) { w.str(k, "phi3"); };
    kv["phi3.context_length"] = u32(128);
    kv["phi3.embedding_length"] = u32(32);
    kv["phi3.feed_forward_length"] = u32(64);
    kv["phi3.block_count"] = u32(1);
    kv["phi3.attention.head_count"] = u32(2);
    kv["phi3.attention.head_count_kv"] = u32(1);
    kv["phi3.rope.dimension_count"] = u32(16);
    kv["phi3.attention.layer_norm_rms_epsilon"] = [](GgufWriter& w, const std::string& k) { w.f32(k, 1e-5f); };
    kv["tokenizer.ggml.model"] = [](GgufWriter& w, const std::string& k) { w.str(k, "llama"); };
    kv["tokenizer.ggml.tokens"] = [](GgufWriter& w, const std::string& k) {
      w.strings(k, {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab"});
    };
    kv["tokenizer.ggml.scores"] = [](GgufWriter& w, const std::string& k) {
      w.numbers<float>(k, GgufWriter::F32, {0, 0, 0, -1, -2, -3, -4, -5});
    };
    kv["tokenizer.ggml.token_type"] = [](GgufWriter& w, const std::string& k) {
      w.numbers<int32_t>(k, GgufWriter::I32, {2, 3, 3, 1, 1, 1, 1, 1});
    };
    kv["tokenizer.ggml.bos_token_id"] = u32(1);
    kv["tokenizer.ggml.eos_token_id"] = u32(2);
    tensors["token_embd.weight"] = {{32, 8}, 0};
    tensors["output_norm.weight"] = {{32}, 0};
    tensors["output.weight"] = {{32, 8}, 0};
    tensors["blk.0.attn_norm.weight"] = {{32}, 0};
    tensors["blk.0.ffn_norm.weight"] = {{32}, 0};
    tensors["blk.0.attn_qkv.weight"] = {{32, 64}, 0};
    tensors["blk.0.attn_output.weight"] = {{32, 32}, 0};
    tensors["blk.0.ffn_up.weight"] = {{32, 128}, 0};
    tensors["blk.0.ffn_down.weight"] = {{64, 32}, 0};
  }
  std::string build() const {
    GgufWriter w;
    for (const auto& [k, put] : kv) put(w, k);
    uint32_t seed = 1;
    for (const auto& [name, t] : tensors) {
      int64_t n = 1;
      for (int64_t d : t.first) n *= d;
      const auto& info = *format::ggml_type_info(t.second);
      std::string data(static_cast<size_t>(n / info.block * info.block_bytes), '\0');
      if (t.second == 0) {
        for (int64_t i = 0; i < n; ++i) {
          seed = seed * 1664525u + 1013904223u;
          const float v = name.find("norm") != std::string::npos || name.find("rope") != std::string::npos ? 1.0f : (static_cast<float>(seed >> 8) / 16777216.0f - 0.5f) * 0.2f;
          std::memcpy(data.data() + 4 * i, &v, 4);
        }
      }
      w.tensor(name, t.second, t.first, data);
    }
    return w.build();
  }
  std::filesystem::path write(const std::filesystem::path& dir, const std::string& tag) const {
    const auto path = dir / ("phinfer-gguf-" + std::to_string(::getpid()) + "-" + tag + ".gguf");
    std::ofstream(path, std::ios::binary) << build();
    return path;
  }
};

}  // namespace phinfer::test
