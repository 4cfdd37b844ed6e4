// safetensors: byte mutations of a small valid file (header length, header text, data size) and
// random, mostly well-formed headers (dtypes, shapes, offsets). Accepted files must give views
// inside the buffer, of the size their dtype and shape say, never overlapping.
#include <algorithm>
#include <cstring>
#include <memory>

#include "format/safetensors.h"
#include "fuzz/mutate.h"
#include "fuzz/targets.h"
#include "phinfer/error.h"

namespace phinfer::fuzz {
namespace {

using nlohmann::json;
constexpr const char* kSrc = "buf.safetensors";
constexpr const char* kName = "model.safetensors";

void set_header_len(std::string& f, uint64_t len) {
  if (f.size() < 8) f.resize(8);
  for (int i = 0; i < 8; ++i) f[static_cast<size_t>(i)] = static_cast<char>(len >> (8 * i));
}

uint64_t header_len(const std::string& f) {
  uint64_t v = 0;
  for (int i = 7; i >= 0 && f.size() >= 8; --i) v = (v << 8) | static_cast<uint8_t>(f[static_cast<size_t>(i)]);
  return v;
}

// 8-byte little-endian header length + header text + `data_size` data bytes.
std::string make_file(const std::string& header, size_t data_size) {
  std::string f(8, '\0');
  set_header_len(f, header.size());
  f += header;
  for (size_t i = 0; i < data_size; ++i) f.push_back(static_cast<char>(i * 7 + 1));
  return f;
}

const std::vector<std::string> kFragments = {
    "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u0000", "\\ud800", "null", "true", "false", "0", "-1",
    "1.5", "1e999", "-1e999", "18446744073709551615", "18446744073709551616", "9223372036854775807",
    "4294967296", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"F32\"", "\"BF16\"", "\"BOOL\"", "\"F8\"",
    "\"__metadata__\"", "[0,0]", "[0,4]", "[4,0]", "[60,72]", "[0,18446744073709551615]", "[]", "[[[[[[",
    "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", "\xff", "\xc3\xa9", " ", "\n", std::string(1, '\0'),
};
const std::vector<std::string> kWords = {"dtype", "shape", "data_offsets", "__metadata__", "F32", "F16", "BF16",
                                         "F64", "I8", "U8", "I16", "I32", "I64", "BOOL", "F8_E4M3", "format"};

class SafetensorsHarness : public Harness {
 public:
  SafetensorsHarness() {
    // Several dtypes, a scalar, an empty tensor, metadata, padding between tensors.
    seed_ = json::parse(R"({"__metadata__":{"format":"pt"},
      "model.embed_tokens.weight":{"dtype":"BF16","shape":[4,3],"data_offsets":[0,24]},
      "model.norm.weight":{"dtype":"F32","shape":[3],"data_offsets":[24,36]},
      "lm_head.weight":{"dtype":"F16","shape":[4,3],"data_offsets":[36,60]},
      "scalar":{"dtype":"I64","shape":[],"data_offsets":[64,72]},
      "empty":{"dtype":"U8","shape":[0],"data_offsets":[60,60]}})");
  }

  Input generate(Rng& rng) override {
    switch (rng() % 5) {
      case 0: return {{kName, random_structured(rng)}};
      case 1: {  // structural edits of the header, length kept right so parsing goes deep
        json h = seed_;
        mutate_json(h, rng, kWords);
        std::string text = h.dump(-1, ' ', false, json::error_handler_t::replace);
        while (one_in(rng, 2) && (text.size() + 8) % 8) text += ' ';
        return {{kName, make_file(text, one_in(rng, 4) ? pick(rng, 80) : 72)}};
      }
      default: return {{kName, mutate(rng)}};
    }
  }

  void run(const Input& input) override {
    const std::string& bytes = file(input, kName);
    // An exact-size heap block, so a sanitizer catches any read past its end.
    std::unique_ptr<std::byte[]> exact(new std::byte[bytes.size() ? bytes.size() : 1]);
    std::memcpy(exact.get(), bytes.data(), bytes.size());
    std::span<const std::byte> buf(exact.get(), bytes.size());
    std::map<std::string, format::TensorView> tensors;
    try {
      tensors = format::parse_safetensors(buf, kSrc);
    } catch (const Error& e) {
      require(std::string_view(e.what()).starts_with(kSrc), "message does not start with the file name: " +
                                                                 brief(e.what()));
      throw;
    }
    std::vector<std::pair<const std::byte*, const std::byte*>> spans;
    for (const auto& [name, t] : tensors) {
      require(name == t.name && t.file == kSrc && name != "__metadata__", "tensor '" + name + "' misnamed");
      if (!t.data.empty()) {
        require(reinterpret_cast<uintptr_t>(t.data.data()) % dtype_size(t.dtype) == 0,
                "tensor '" + name + "' is not aligned to its element size");
        if (!t.aligned_copy) {  // a misaligned tensor is viewed in its own aligned copy
          require(t.data.data() >= buf.data() + 8 && t.data.data() + t.data.size() <= buf.data() + buf.size(),
                  "tensor '" + name + "' views outside the buffer");
          spans.emplace_back(t.data.data(), t.data.data() + t.data.size());
        }
      }
      require(t.shape.size() <= 8, "tensor '" + name + "' has rank " + std::to_string(t.shape.size()));
      for (int64_t d : t.shape) require(d >= 0, "tensor '" + name + "' has a negative dimension");
      require(static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype) == t.data.size(),
              "tensor '" + name + "' size disagrees with dtype and shape");
      volatile uint8_t sink = 0;  // touch every byte: an out-of-bounds view fails here under ASan
      for (std::byte b : t.data) sink = sink ^ static_cast<uint8_t>(b);
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) require(spans[i].first >= spans[i - 1].second, "overlapping views");
  }

 private:
  std::string seed_file() const { return make_file(seed_.dump(), 72); }

  // Byte edits of the seed file; the header length is sometimes set to hostile values.
  std::string mutate(Rng& rng) const {
    std::string f = seed_file();
    const uint64_t len = header_len(f);
    for (int r = 1 + static_cast<int>(rng() % 3); r > 0; --r) {
      switch (rng() % 4) {
        case 0: {
          uint64_t v;
          switch (rng() % 5) {
            case 0: v = rng(); break;
            case 1: v = rng() % 256; break;
            case 2: v = f.size() - 8 + (rng() % 9) - 4; break;  // around the real end (may wrap: fine)
            case 3: v = uint64_t{1} << (rng() % 64); break;
            default: v = len + (rng() % 17) - 8; break;
          }
          set_header_len(f, v);
          break;
        }
        case 1: {  // edit the header text only, fixing the length
          if (f.size() < 8 + len) break;
          std::string text = f.substr(8, len), data = f.substr(8 + len);
          mutate_bytes(text, rng, kFragments);
          if (one_in(rng, 4)) data.resize(pick(rng, data.size() + 1));
          f = make_file(text, 0) + data;
          break;
        }
        default: mutate_bytes(f, rng, kFragments); break;
      }
    }
    return f;
  }

  // Random, mostly well-formed headers: random dtypes, shapes and offsets over a random data size.
  static std::string random_structured(Rng& rng) {
    static const char* const kDtypes[] = {"F32", "F16", "BF16", "F64", "I8", "U8", "I16", "I32", "I64", "BOOL", "X"};
    json h = json::object();
    const uint64_t data_size = rng() % 200;
    for (int i = static_cast<int>(rng() % 6); i > 0; --i) {
      json shape = json::array();
      for (int d = static_cast<int>(rng() % 4); d > 0; --d) shape.push_back(one_in(rng, 10) ? rng() : rng() % 7);
      uint64_t a = rng() % (data_size + 8), b = rng() % 3 ? a + rng() % 64 : rng() % (data_size + 8);
      h["t" + std::to_string(i)] = {{"dtype", kDtypes[pick(rng, std::size(kDtypes))]}, {"shape", shape},
                                    {"data_offsets", {a, b}}};
    }
    if (one_in(rng, 2)) h["__metadata__"] = {{"k", "v"}};
    return make_file(h.dump(), data_size);
  }

  json seed_;
};

}  // namespace

std::unique_ptr<Harness> make_safetensors(const Context&) { return std::make_unique<SafetensorsHarness>(); }

}  // namespace phinfer::fuzz
