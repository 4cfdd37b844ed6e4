#include "model/gguf_weights.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <thread>

#include <nlohmann/json.hpp>

#include "format/dtype.h"
#include "format/gguf_quants.h"
#include "phinfer/error.h"

namespace phinfer::model {

using format::GgmlType;
using format::GgufFile;
using format::GgufTensor;
using kernels::WeightFormat;
using kernels::WeightMatrix;
using nlohmann::json;

namespace {

constexpr const char* kArch = "phi3";

std::string key(const char* suffix) { return std::string(kArch) + "." + suffix; }

uint64_t require_uint(const GgufFile& f, const std::string& k) {
  auto v = f.get_uint(k);
  if (!v) throw Error(f.source() + ": metadata key '" + k + "' is missing");
  return *v;
}

// A 1-D F32-or-dequantizable tensor as floats (rope factor tables).
std::vector<float> vector_f32(const GgufFile& f, const GgufTensor& t) {
  if (t.ne.size() != 1)
    throw Error(f.source() + ": tensor '" + t.name + "': expected one dimension, found shape " + t.shape_string());
  if (!format::can_dequantize(t.type))
    throw Error(f.source() + ": tensor '" + t.name + "' has type " + format::ggml_type_info(t.type).name +
                ", which this importer cannot read (it reads " + format::dequantizable_type_names() + ")");
  std::vector<float> v(static_cast<size_t>(t.numel));
  format::dequantize(t.type, t.data.data(), t.numel, v.data());
  return v;
}

// A token id key, checked against the vocabulary size.
std::optional<int64_t> token_id(const GgufFile& f, const std::string& k, int64_t vocab) {
  auto v = f.get_uint(k);
  if (!v) return std::nullopt;
  if (*v >= static_cast<uint64_t>(vocab))
    throw Error(f.source() + ": metadata key '" + k + "': expected a token id below the vocabulary size " +
                std::to_string(vocab) + ", found " + std::to_string(*v));
  return static_cast<int64_t>(*v);
}

int64_t vocab_size(const GgufFile& f) {
  const GgufTensor* e = f.find_tensor("token_embd.weight");
  if (!e) throw Error(f.source() + ": tensor 'token_embd.weight' is missing");
  if (e->ne.size() != 2)
    throw Error(f.source() + ": tensor 'token_embd.weight': expected 2 dimensions, found shape " + e->shape_string());
  return e->ne[1];
}

json generation_json(const GgufFile& f) {
  const int64_t vocab = vocab_size(f);
  json g = json::object();
  if (auto id = token_id(f, "tokenizer.ggml.bos_token_id", vocab)) g["bos_token_id"] = *id;
  if (auto id = token_id(f, "tokenizer.ggml.eos_token_id", vocab)) g["eos_token_id"] = *id;
  if (auto id = token_id(f, "tokenizer.ggml.padding_token_id", vocab)) g["pad_token_id"] = *id;
  return g;
}

}  // namespace

ModelConfig config_from_gguf(const GgufFile& f) {
  const auto arch = f.get_string("general.architecture");
  if (!arch) throw Error(f.source() + ": metadata key 'general.architecture' is missing");
  if (*arch != kArch)
    throw Error(f.source() + ": architecture '" + std::string(*arch) +
                "' is not supported (expected 'phi3': Phi-3, Phi-3.5 and Phi-4-mini)");
  json j;
  j["model_type"] = "phi3";
  j["vocab_size"] = vocab_size(f);
  const uint64_t hidden = require_uint(f, key("embedding_length"));
  const uint64_t heads = require_uint(f, key("attention.head_count"));
  j["hidden_size"] = hidden;
  j["intermediate_size"] = require_uint(f, key("feed_forward_length"));
  j["num_hidden_layers"] = require_uint(f, key("block_count"));
  j["num_attention_heads"] = heads;
  j["num_key_value_heads"] = f.get_uint(key("attention.head_count_kv")).value_or(heads);
  // GGUF has no head_dim for phi3 unless key_length is written; ModelConfig derives hidden / heads.
  uint64_t head_dim = heads ? hidden / heads : 0;
  if (auto kl = f.get_uint(key("attention.key_length"))) {
    j["head_dim"] = *kl;
    head_dim = *kl;
  }
  if (auto eps = f.get_float(key("attention.layer_norm_rms_epsilon"))) j["rms_norm_eps"] = *eps;
  if (auto theta = f.get_float(key("rope.freq_base"))) j["rope_theta"] = *theta;
  if (auto rot = f.get_uint(key("rope.dimension_count"))) {
    if (head_dim > 0 && (*rot == 0 || *rot > head_dim || *rot % 2 != 0))
      throw Error(f.source() + ": metadata key '" + key("rope.dimension_count") +
                  "': expected an even number from 2 to head_dim " + std::to_string(head_dim) + ", found " +
                  std::to_string(*rot));
    if (head_dim > 0) j["partial_rotary_factor"] = static_cast<double>(*rot) / static_cast<double>(head_dim);
  }
  const uint64_t context = require_uint(f, key("context_length"));
  j["max_position_embeddings"] = context;
  j["original_max_position_embeddings"] = f.get_uint(key("rope.scaling.original_context_length")).value_or(context);
  if (auto w = f.get_uint(key("attention.sliding_window")); w && *w > 0) j["sliding_window"] = *w;
  j["tie_word_embeddings"] = f.find_tensor("output.weight") == nullptr;
  const GgufTensor* rs = f.find_tensor("rope_factors_short.weight");
  const GgufTensor* rl = f.find_tensor("rope_factors_long.weight");
  if ((rs == nullptr) != (rl == nullptr))
    throw Error(f.source() + ": tensor '" + std::string(rs ? "rope_factors_long.weight" : "rope_factors_short.weight") +
                "' is missing (LongRoPE needs both factor tables)");
  if (rs) {
    json scaling = {{"type", "longrope"}, {"short_factor", vector_f32(f, *rs)}, {"long_factor", vector_f32(f, *rl)}};
    if (auto af = f.get_float(key("rope.scaling.attn_factor"))) scaling["attention_factor"] = *af;
    j["rope_scaling"] = scaling;
  }
  const json g = generation_json(f);
  for (const char* k : {"bos_token_id", "eos_token_id", "pad_token_id"})
    if (g.contains(k)) j[k] = g[k];
  ModelConfig c = ModelConfig::from_json(j, f.source() + " (metadata)");
  // A file with more layers than block_count has the wrong metadata: running it would silently
  // drop layers.
  for (const GgufTensor& t : f.tensors()) {
    if (t.name.rfind("blk.", 0) != 0) continue;
    int64_t layer = 0;
    size_t i = 4;
    for (; i < t.name.size() && i < 14 && t.name[i] >= '0' && t.name[i] <= '9'; ++i) layer = layer * 10 + (t.name[i] - '0');
    if (i > 4 && layer >= c.num_hidden_layers)
      throw Error(f.source() + ": holds tensor '" + t.name + "' of layer " + std::to_string(layer) + ", but " +
                  key("block_count") + " is " + std::to_string(c.num_hidden_layers));
  }
  return c;
}

GenerationDefaults generation_defaults_from_gguf(const GgufFile& f) {
  return GenerationDefaults::from_json(generation_json(f), f.source() + " (metadata)");
}

std::string gguf_tensor_name(const std::string& n) {
  static const std::pair<const char*, const char*> top[] = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"lm_head.weight", "output.weight"},
      {"model.norm.weight", "output_norm.weight"},
  };
  for (const auto& [hf, gg] : top)
    if (n == hf) return gg;
  static const std::pair<const char*, const char*> layer[] = {
      {"input_layernorm.weight", "attn_norm.weight"},     {"self_attn.qkv_proj.weight", "attn_qkv.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},  {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_up_proj.weight", "ffn_up.weight"},       {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  const std::string prefix = "model.layers.";
  if (n.rfind(prefix, 0) == 0) {
    const size_t dot = n.find('.', prefix.size());
    if (dot != std::string::npos) {
      const std::string field = n.substr(dot + 1);
      for (const auto& [hf, gg] : layer)
        if (field == hf) return "blk." + n.substr(prefix.size(), dot - prefix.size()) + "." + gg;
    }
  }
  throw Error("no GGUF tensor name for checkpoint tensor '" + n + "'");
}

const GgufTensor& require_gguf_tensor(const GgufFile& f, const TensorSpec& spec) {
  const std::string name = gguf_tensor_name(spec.name == "lm_head.weight" && !f.find_tensor("output.weight")
                                                ? "model.embed_tokens.weight"
                                                : spec.name);
  const GgufTensor* t = f.find_tensor(name);
  if (!t) throw Error(f.source() + ": tensor '" + name + "' (" + spec.name + ") is missing");
  // ggml lists the contiguous dimension first: [rows, cols] is ne = [cols, rows].
  std::vector<int64_t> want(spec.shape.rbegin(), spec.shape.rend());
  if (t->ne != want) {
    GgufTensor w;
    w.ne = want;
    throw Error(f.source() + ": tensor '" + name + "': expected shape " + w.shape_string() + " (ggml order), found " +
                t->shape_string());
  }
  if (!format::can_dequantize(t->type))
    throw Error(f.source() + ": tensor '" + name + "' has type " + format::ggml_type_info(t->type).name +
                ", which this importer cannot read (it reads " + format::dequantizable_type_names() + ")");
  return *t;
}

std::vector<float> gguf_tensor_f32(const GgufFile& f, const TensorSpec& spec) {
  const GgufTensor& t = require_gguf_tensor(f, spec);
  std::vector<float> v(static_cast<size_t>(t.numel));
  format::dequantize(t.type, t.data.data(), t.numel, v.data());
  return v;
}

namespace {

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// One kernels layout target of a block-quantized GGUF type, and the codes/scales of one block.
struct Repack {
  WeightFormat format;
  int group;  // of the kernels' layout
  bool symmetric;
  int split = 1;  // groups per stored block
};

std::optional<Repack> repack_target(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: return Repack{WeightFormat::Int8, 16, true, 2};
    case GgmlType::Q4_0: return Repack{WeightFormat::Int4, 32, true};
    case GgmlType::Q4_1: return Repack{WeightFormat::Int4, 32, false};
    case GgmlType::Q5_0: return Repack{WeightFormat::Int8, 32, true};
    case GgmlType::Q5_1: return Repack{WeightFormat::Int8, 32, false};
    case GgmlType::Q4_K: return Repack{WeightFormat::Int4, 32, false};
    case GgmlType::Q5_K: return Repack{WeightFormat::Int8, 32, false};
    case GgmlType::Q6_K: return Repack{WeightFormat::Int8, 16, true};
    default: return std::nullopt;
  }
}

inline int nibble(const uint8_t* qs, int j) { return j < 16 ? qs[j] & 15 : qs[j - 16] >> 4; }

// Codes, scales and minimums of one row of `cols` values (the layout of gguf_quants.h).
void row_codes(GgmlType t, const uint8_t* p, int64_t cols, uint8_t* v, uint16_t* sc, uint16_t* mn) {
  const int64_t bs = format::ggml_type_info(t).block_bytes;
  switch (t) {
    case GgmlType::Q8_0:
      for (int64_t b = 0; b < cols / 32; ++b, p += bs, v += 32) {
        sc[b] = load_u16(p);
        for (int j = 0; j < 32; ++j) v[j] = static_cast<uint8_t>(static_cast<int8_t>(p[2 + j]) + 128);
      }
      break;
    case GgmlType::Q4_0:
    case GgmlType::Q4_1: {
      const int qs = t == GgmlType::Q4_0 ? 2 : 4;
      for (int64_t b = 0; b < cols / 32; ++b, p += bs, v += 32) {
        sc[b] = load_u16(p);
        if (t == GgmlType::Q4_1) mn[b] = load_u16(p + 2);
        for (int j = 0; j < 32; ++j) v[j] = static_cast<uint8_t>(nibble(p + qs, j));
      }
      break;
    }
    case GgmlType::Q5_0:
    case GgmlType::Q5_1: {
      const bool asym = t == GgmlType::Q5_1;
      const int qh_at = asym ? 4 : 2;
      for (int64_t b = 0; b < cols / 32; ++b, p += bs, v += 32) {
        sc[b] = load_u16(p);
        if (asym) mn[b] = load_u16(p + 2);
        uint32_t h;
        std::memcpy(&h, p + qh_at, 4);
        // Q5_0's d * (q - 16) is the int8 symmetric d * (v - 128) with v = q + 112.
        for (int j = 0; j < 32; ++j)
          v[j] = static_cast<uint8_t>((nibble(p + qh_at + 4, j) | ((h >> j) & 1) << 4) + (asym ? 0 : 112));
      }
      break;
    }
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {
      const bool five = t == GgmlType::Q5_K;
      for (int64_t b = 0; b < cols / 256; ++b, p += bs) {
        const float d = f16_to_f32(load_u16(p)), dmin = f16_to_f32(load_u16(p + 2));
        const uint8_t* qh = p + 16;
        const uint8_t* qs = p + (five ? 48 : 16);
        for (int s = 0; s < 8; ++s) {
          uint8_t scale, m;
          format::k_scale_min(s, p + 4, &scale, &m);
          // y = (d sc) q - (dmin m): asymmetric with minimum -(dmin m).
          sc[8 * b + s] = f32_to_f16(d * static_cast<float>(scale));
          mn[8 * b + s] = f32_to_f16(-(dmin * static_cast<float>(m)));
          const int c = s / 2;
          for (int l = 0; l < 32; ++l) {
            int q = s % 2 ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 15;
            if (five && (qh[l] >> s & 1)) q += 16;
            v[256 * b + 32 * s + l] = static_cast<uint8_t>(q);
          }
        }
      }
      break;
    }
    case GgmlType::Q6_K:
      for (int64_t b = 0; b < cols / 256; ++b, p += bs) {
        const float d = f16_to_f32(load_u16(p + 208));
        const auto* scales = reinterpret_cast<const int8_t*>(p + 192);
        for (int s = 0; s < 16; ++s) sc[16 * b + s] = f32_to_f16(d * static_cast<float>(scales[s]));
        uint8_t* y = v + 256 * b;
        const uint8_t* ql = p;
        const uint8_t* qh = p + 128;
        for (int n = 0; n < 2; ++n, ql += 64, qh += 32, y += 128)
          for (int l = 0; l < 32; ++l) {
            // q - 32 as the int8 symmetric code q - 32 + 128.
            y[l] = static_cast<uint8_t>(((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) + 96);
            y[l + 32] = static_cast<uint8_t>(((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) + 96);
            y[l + 64] = static_cast<uint8_t>(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) + 96);
            y[l + 96] = static_cast<uint8_t>(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) + 96);
          }
      }
      break;
    default:
      break;
  }
}

// The file's bytes when aligned for the element type, else a copy.
const std::byte* aligned_in_place(const GgufTensor& t, size_t align, std::vector<kernels::AlignedBytes>& storage) {
  if (reinterpret_cast<uintptr_t>(t.data.data()) % align == 0) return t.data.data();
  storage.emplace_back(t.data.size());
  std::memcpy(storage.back().data(), t.data.data(), t.data.size());
  return storage.back().data();
}

}  // namespace

WeightMatrix gguf_matrix(const GgufFile& f, const TensorSpec& spec, GgufWeights mode,
                         std::vector<kernels::AlignedBytes>& storage) {
  const GgufTensor& t = require_gguf_tensor(f, spec);
  WeightMatrix m;
  m.rows = spec.shape[0];
  m.cols = spec.shape.size() > 1 ? spec.shape[1] : 1;
  switch (t.type) {
    case GgmlType::F32: m.format = WeightFormat::F32; m.data = aligned_in_place(t, 4, storage); return m;
    case GgmlType::F16: m.format = WeightFormat::F16; m.data = aligned_in_place(t, 2, storage); return m;
    case GgmlType::BF16: m.format = WeightFormat::BF16; m.data = aligned_in_place(t, 2, storage); return m;
    default: break;
  }
  const auto target = repack_target(t.type);
  if (mode == GgufWeights::Dequantize || !target || spec.shape.size() < 2) {
    storage.emplace_back(static_cast<size_t>(t.numel) * 4);
    format::dequantize(t.type, t.data.data(), t.numel, reinterpret_cast<float*>(storage.back().data()));
    m.format = WeightFormat::F32;
    m.data = storage.back().data();
    return m;
  }
  const kernels::QuantLayout L = kernels::QuantLayout::of(target->format, m.rows, m.cols, target->group, target->symmetric);
  storage.emplace_back(L.total_bytes);
  std::byte* out = storage.back().data();
  const int64_t row_bytes = t.row_length() / format::ggml_type_info(t.type).block * format::ggml_type_info(t.type).block_bytes;
  const int split = target->split;
  const auto* src = reinterpret_cast<const uint8_t*>(t.data.data());
  // Rows own disjoint bytes of the packed matrix (their codes and scales), so row ranges repack in
  // parallel.
  auto repack_rows = [&](int64_t r0, int64_t r1) {
    std::vector<uint8_t> codes(static_cast<size_t>(m.cols));
    std::vector<uint16_t> scales(static_cast<size_t>(L.n_scales)), mins(scales.size());
    std::vector<uint16_t> block_scales(static_cast<size_t>(L.n_scales / split)), block_mins(block_scales.size());
    for (int64_t r = r0; r < r1; ++r) {
      row_codes(t.type, src + r * row_bytes, m.cols, codes.data(), block_scales.data(), block_mins.data());
      // Each stored block becomes `split` groups with its scale: activations are then quantized per
      // smaller group, which lowers their rounding error (the weights are unchanged).
      for (int64_t g = 0; g < L.n_scales; ++g) {
        scales[static_cast<size_t>(g)] = block_scales[static_cast<size_t>(g / split)];
        mins[static_cast<size_t>(g)] = block_mins[static_cast<size_t>(g / split)];
      }
      kernels::pack_row(L, r, codes.data(), scales.data(), mins.data(), out);
    }
  };
  const int64_t n_threads = std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, std::max<int64_t>(1, m.rows / 256));
  std::vector<std::thread> workers;
  for (int64_t k = 1; k < n_threads; ++k)
    workers.emplace_back(repack_rows, m.rows * k / n_threads, m.rows * (k + 1) / n_threads);
  repack_rows(0, m.rows / n_threads);
  for (auto& w : workers) w.join();
  m.format = target->format;
  m.group_size = target->group;
  m.symmetric = target->symmetric;
  m.data = out;
  return m;
}

}  // namespace phinfer::model
