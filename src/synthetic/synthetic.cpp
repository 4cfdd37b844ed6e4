#include "synthetic/synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <future>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "format/safetensors.h"
#include "kernels/thread_pool.h"
#include "phinfer/error.h"
#include "synthetic/detail.h"

namespace phinfer::synthetic {
namespace {

using ordered_json = nlohmann::ordered_json;

using detail::kGamma;
using detail::mix64;
using detail::write_text_file;

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// The tensor's stream key: each tensor is an independent stream, whatever the write order.
uint64_t tensor_key(uint64_t seed, std::string_view name) { return mix64(mix64(seed + kGamma) ^ fnv1a64(name)); }

// Pair p of standard normals: Box-Muller over the p-th output of a counter-based splitmix64, in
// float (twice as fast as double; tails reach 6.6 sigma).
void normal_pair(uint64_t key, uint64_t p, float* z0, float* z1) {
  const uint64_t h = mix64(key + (p + 1) * kGamma);
  const float u1 = static_cast<float>((h >> 32) + 1) * 0x1p-32f;     // (0, 1]
  const float u2 = static_cast<float>(h & 0xffffffffu) * 0x1p-32f;  // [0, 1]
  const float r = std::sqrt(-2.0f * std::log(u1));
  const float a = 6.28318530718f * u2;
  *z0 = r * std::cos(a);
  *z1 = r * std::sin(a);
}

ordered_json longrope_json(int64_t pairs);

// config.json with the key set and order of microsoft/Phi-3-mini-4k-instruct's, or with
// `phi4` of microsoft/Phi-4-mini-instruct's (a few more keys, LongRoPE factors).
ordered_json config_json(const ModelConfig& c, const std::string& preset, bool phi4) {
  auto opt = [](const auto& v) { return v ? ordered_json(*v) : ordered_json(nullptr); };
  ordered_json j;
  j["_name_or_path"] = "phinfer-synthetic-" + preset;
  j["architectures"] = {"Phi3ForCausalLM"};
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["auto_map"] = {{"AutoConfig", "configuration_phi3.Phi3Config"},
                   {"AutoModelForCausalLM", "modeling_phi3.Phi3ForCausalLM"}};
  if (phi4) j["auto_map"]["AutoTokenizer"] = "Xenova/gpt-4o";
  j["bos_token_id"] = opt(c.bos_token_id);
  j["embd_pdrop"] = 0.0;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  else j["eos_token_id"] = c.eos_token_ids;
  if (phi4) j["full_attn_mod"] = 1;
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.hidden_size;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = c.intermediate_size;
  if (phi4) {
    j["interpolate_factor"] = 1;
    j["lm_head_bias"] = false;
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  if (phi4) j["mlp_bias"] = false;
  j["model_type"] = "phi3";
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["original_max_position_embeddings"] = c.original_max_position_embeddings;
  j["pad_token_id"] = opt(c.pad_token_id);
  if (phi4) j["partial_rotary_factor"] = c.partial_rotary_factor;
  j["resid_pdrop"] = 0.0;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_scaling"] = phi4 ? longrope_json(c.rotary_dim() / 2) : ordered_json(nullptr);
  j["rope_theta"] = c.rope_theta;
  j["sliding_window"] = opt(c.sliding_window);
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = c.torch_dtype;
  j["transformers_version"] = phi4 ? "4.45.0" : "4.40.2";
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  return j;
}

int32_t opt_or(const std::optional<int32_t>& v, int32_t fallback) { return v ? *v : fallback; }

ordered_json generation_config_json(const ModelConfig& c, bool phi4) {
  ordered_json j;
  j["_from_model_config"] = true;
  j["bos_token_id"] = opt_or(c.bos_token_id, phi4 ? 199999 : 1);
  if (phi4) j["eos_token_id"] = {200020, 199999};  // <|end|>, <|endoftext|>
  else j["eos_token_id"] = {32000, 32001, 32007};  // <|endoftext|>, <|assistant|>, <|end|>
  j["pad_token_id"] = opt_or(c.pad_token_id, phi4 ? 199999 : 32000);
  j["transformers_version"] = phi4 ? "4.45.0" : "4.40.2";
  return j;
}

// microsoft/Phi-4-mini-instruct's LongRoPE factors (config.json, rope_scaling; MIT licence,
// Copyright (c) Microsoft Corporation), one per rotary frequency pair: 48 for head_dim 128 at
// partial_rotary_factor 0.75. The short factors are all 1.
constexpr double kPhi4MiniLongFactor[48] = {
    1,           1.118320672, 1.250641126, 1.398617824, 1.564103225, 1.74916897,  1.956131817, 2.187582649,
    2.446418898, 2.735880826, 3.059592084, 3.421605075, 3.826451687, 4.279200023, 4.785517845, 5.351743533,
    5.984965424, 6.693110555, 7.485043894, 8.370679318, 9.36110372,  10.4687158,  11.70738129, 13.09260651,
    14.64173252, 16.37415215, 18.31155283, 20.47818807, 22.90118105, 25.61086418, 28.64115884, 32.03,
    32.1,        32.13,       32.23,       32.6,        32.61,       32.64,       32.66,       32.7,
    32.71,       32.93,       32.97,       33.28,       33.49,       33.5,        44.16,       47.77};

// Factors for `pairs` rotary frequency pairs: the real table, or every k-th entry of it when
// pairs divides 48 (the frequencies a smaller head_dim keeps).
ordered_json longrope_json(int64_t pairs) {
  if (pairs <= 0 || 48 % pairs != 0) throw Error("internal: no LongRoPE table for " + std::to_string(pairs) + " pairs");
  const int64_t step = 48 / pairs;
  ordered_json lf = ordered_json::array(), sf = ordered_json::array();
  for (int64_t i = 0; i < pairs; ++i) {
    const double f = kPhi4MiniLongFactor[i * step];
    if (f == std::floor(f)) lf.push_back(static_cast<int64_t>(f));  // written "1", as in the real file
    else lf.push_back(f);
    sf.push_back(1.0);
  }
  ordered_json j;
  j["long_factor"] = lf;
  j["short_factor"] = sf;
  j["type"] = "longrope";
  return j;
}

std::string shard_name(size_t k, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k, n);
  return buf;
}

bool is_checkpoint_file(const std::string& f) {
  if (f == "model.safetensors" || f == "model.safetensors.index.json") return true;
  if (f == "vocab.json" || f == "merges.txt") return true;  // Phi-4 tokenizer files a Phi-3 one lacks
  return f.rfind("model-", 0) == 0 && f.find("-of-") != std::string::npos && f.size() > 12 &&
         f.compare(f.size() - 12, 12, ".safetensors") == 0;
}

void convert(const float* in, size_t n, DType dtype, std::byte* out) {
  switch (dtype) {
    case DType::F32: std::memcpy(out, in, n * 4); break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h = f32_to_bf16(in[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      break;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h = f32_to_f16(in[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      break;
    default: throw Error("internal: synthetic weights are F32, F16 or BF16");
  }
}

constexpr size_t kChunkElements = size_t{1} << 20;  // 4 MB of floats + two buffers of up to 4 MB

}  // namespace

const std::vector<PresetInfo>& presets() {
  static const std::vector<PresetInfo> all = {
      {"tiny", "Phi-3 tokenizer, 4 layers, hidden 256 (19M parameters): demos and tests", TokenizerFormat::Phi3, 0},
      {"mini", "the real Phi-3-mini-4k-instruct shape (3.8B)", TokenizerFormat::Phi3, 5'000'000'000ull},
      {"medium", "the real Phi-3-medium-4k-instruct shape (14B, GQA 40/10)", TokenizerFormat::Phi3, 5'000'000'000ull},
      {"phi4-mini", "the real Phi-4-mini-instruct config (3.8B, 200k byte-level vocabulary, tied)",
       TokenizerFormat::Phi4, 5'000'000'000ull},
      {"phi4-tiny", "the Phi-4-mini structure, 4 layers, hidden 256 (53M parameters): tests", TokenizerFormat::Phi4, 0},
  };
  return all;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& p : presets()) names.push_back(p.name);
  return names;
}

const PresetInfo& preset_info(const std::string& preset) {
  for (const auto& p : presets())
    if (p.name == preset) return p;
  std::string valid;
  for (const auto& p : presets()) valid += (valid.empty() ? "" : ", ") + p.name;
  throw Error("unknown synthetic model preset '" + preset + "' (expected one of: " + valid + ")");
}

namespace {

struct Shape {
  const char* preset;
  int64_t hidden, intermediate, layers, heads, kv_heads;
};
constexpr Shape kShapes[] = {
    {"tiny", 256, 512, 4, 8, 4},          {"mini", 3072, 8192, 32, 32, 32},   {"medium", 5120, 17920, 40, 40, 10},
    {"phi4-mini", 3072, 8192, 32, 24, 8}, {"phi4-tiny", 256, 512, 4, 8, 2},
};

}  // namespace

ModelConfig preset_config(const std::string& preset) {
  const PresetInfo& info = preset_info(preset);
  const Shape* shape = nullptr;
  for (const auto& s : kShapes)
    if (preset == s.preset) shape = &s;
  if (!shape) throw Error("internal: no shape for synthetic preset " + preset);
  ModelConfig c;
  c.model_type = "phi3";
  c.hidden_size = shape->hidden;
  c.intermediate_size = shape->intermediate;
  c.num_hidden_layers = shape->layers;
  c.num_attention_heads = shape->heads;
  c.num_key_value_heads = shape->kv_heads;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.torch_dtype = "bfloat16";
  if (info.tokenizer == TokenizerFormat::Phi3) {
    c.vocab_size = 32064;
    c.max_position_embeddings = 4096;
    c.original_max_position_embeddings = 4096;
    c.sliding_window = 2047;
    c.tie_word_embeddings = false;
    c.bos_token_id = 1;
    c.eos_token_ids = {32000};
    c.pad_token_id = 32000;
    return c;
  }
  c.vocab_size = 200064;
  c.partial_rotary_factor = 0.75;
  c.max_position_embeddings = 131072;
  c.original_max_position_embeddings = 4096;
  c.sliding_window = 262144;
  c.tie_word_embeddings = true;
  c.bos_token_id = 199999;
  c.eos_token_ids = {199999};
  c.pad_token_id = 199999;
  // Through config.json's parser, which fills rope_scaling (factors, attention factor) exactly as
  // for the written file.
  return ModelConfig::from_json(nlohmann::json::parse(config_json(c, preset, true).dump()), "synthetic preset " + preset);
}

DType parse_dtype(const std::string& t) {
  if (t == "f32" || t == "float32" || t == "F32") return DType::F32;
  if (t == "f16" || t == "float16" || t == "F16") return DType::F16;
  if (t == "bf16" || t == "bfloat16" || t == "BF16") return DType::BF16;
  throw Error("unknown weight dtype '" + t + "' (expected f32, f16 or bf16)");
}

std::string torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: throw Error("synthetic checkpoints are f32, f16 or bf16, not " + std::string(dtype_name(dtype)));
  }
}

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<TensorSpec> tensor_specs(const ModelConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const bool tied = c.tie_word_embeddings;
  auto inv_sqrt = [](int64_t n) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n))); };
  const float base = 0.02f;
  const float qkv = static_cast<float>(std::sqrt(0.6 / static_cast<double>(H)));
  const float head = 5.0f * inv_sqrt(H);
  // Tied (see the header): the embedding is the output projection too, at 3 / sqrt(hidden), and
  // the layers write 2 / sqrt(fan_in) so the residual stream outweighs the token's own embedding.
  const float embed = tied ? 3.0f * inv_sqrt(H) : base;
  const float o_proj = tied ? 2.0f * inv_sqrt(c.q_dim()) : base;
  const float gate_up = tied ? inv_sqrt(H) : base;
  const float down = tied ? 2.0f * inv_sqrt(I) : base;
  std::vector<TensorSpec> s;
  s.push_back({"model.embed_tokens.weight", {V, H}, embed});
  // Within a layer: the order the modules are declared in transformers' modeling_phi3.
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s.push_back({p + "self_attn.o_proj.weight", {H, c.q_dim()}, o_proj});
    s.push_back({p + "self_attn.qkv_proj.weight", {c.q_dim() + 2 * c.kv_dim(), H}, qkv});
    s.push_back({p + "mlp.gate_up_proj.weight", {2 * I, H}, gate_up});
    s.push_back({p + "mlp.down_proj.weight", {H, I}, down});
    s.push_back({p + "input_layernorm.weight", {H}, 0.0f});
    s.push_back({p + "post_attention_layernorm.weight", {H}, 0.0f});
  }
  s.push_back({"model.norm.weight", {H}, 0.0f});
  if (!tied) s.push_back({"lm_head.weight", {V, H}, head});
  return s;
}

uint64_t parameter_count(const ModelConfig& c) {
  uint64_t n = 0;
  for (const auto& s : tensor_specs(c)) n += static_cast<uint64_t>(s.numel());
  return n;
}

ShardPlan plan_shards(const std::vector<TensorSpec>& specs, DType dtype, uint64_t max_shard_bytes) {
  ShardPlan plan;
  const uint64_t esize = dtype_size(dtype);
  for (size_t i = 0; i < specs.size(); ++i) {
    const uint64_t b = static_cast<uint64_t>(specs[i].numel()) * esize;
    if (plan.shards.empty() ||
        (max_shard_bytes > 0 && plan.shards.back().bytes + b > max_shard_bytes && !plan.shards.back().tensors.empty()))
      plan.shards.emplace_back();
    plan.shards.back().tensors.push_back(i);
    plan.shards.back().bytes += b;
    plan.total_bytes += b;
  }
  const size_t n = plan.shards.size();
  for (size_t k = 0; k < n; ++k) {
    auto& sh = plan.shards[k];
    sh.file = n == 1 ? "model.safetensors" : shard_name(k + 1, n);
    // safetensors stores a file's tensors sorted by name.
    std::sort(sh.tensors.begin(), sh.tensors.end(),
              [&](size_t a, size_t b) { return specs[a].name < specs[b].name; });
  }
  return plan;
}

void generate_values(const TensorSpec& spec, uint64_t seed, uint64_t first, size_t count, float* out) {
  if (spec.std == 0.0f) {
    std::fill(out, out + count, 1.0f);
    return;
  }
  const uint64_t key = tensor_key(seed, spec.name);
  const float sd = spec.std;
  uint64_t i = first;
  const uint64_t end = first + count;
  float z0, z1;
  if (i < end && (i & 1)) {  // odd start: second half of a pair
    normal_pair(key, i >> 1, &z0, &z1);
    *out++ = z1 * sd;
    ++i;
  }
  for (; i + 1 < end; i += 2) {
    normal_pair(key, i >> 1, &z0, &z1);
    *out++ = z0 * sd;
    *out++ = z1 * sd;
  }
  if (i < end) {
    normal_pair(key, i >> 1, &z0, &z1);
    *out++ = z0 * sd;
  }
}

namespace {

// The preset's config, with torch_dtype set to the weights' dtype; the output folder is created
// and cleared of an earlier checkpoint's files.
ModelConfig prepare_folder(const Options& o) {
  if (o.out.empty()) throw Error("make-synthetic: no output folder given");
  ModelConfig config = preset_config(o.preset);
  config.torch_dtype = torch_dtype_name(o.dtype);  // also rejects dtypes other than f32/f16/bf16

  std::error_code ec;
  std::filesystem::create_directories(o.out, ec);
  if (!std::filesystem::is_directory(o.out)) throw Error(o.out.string() + ": cannot create the output folder");
  for (const auto& entry : std::filesystem::directory_iterator(o.out))
    if (entry.is_regular_file() && is_checkpoint_file(entry.path().filename().string()))
      std::filesystem::remove(entry.path());
  return config;
}

void write_metadata(const Options& o, const ModelConfig& config) {
  const bool phi4 = preset_info(o.preset).tokenizer == TokenizerFormat::Phi4;
  write_text_file(o.out / "config.json", config_json(config, o.preset, phi4).dump(2) + "\n");
  write_text_file(o.out / "generation_config.json", generation_config_json(config, phi4).dump(2) + "\n");
  if (phi4) write_phi4_tokenizer_files(o.out);
  else write_tokenizer_files(o.out);
}

}  // namespace

void write_metadata_files(const Options& o) { write_metadata(o, prepare_folder(o)); }

void write_checkpoint(const Options& o) {
  const DType dtype = o.dtype;
  const PresetInfo& info = preset_info(o.preset);
  const ModelConfig config = prepare_folder(o);
  write_metadata(o, config);

  const auto specs = tensor_specs(config);
  const uint64_t max_shard = o.max_shard_bytes ? o.max_shard_bytes : info.default_max_shard_bytes;
  const ShardPlan plan = plan_shards(specs, dtype, max_shard);
  const size_t esize = dtype_size(dtype);

  // Chunks are generated on the pool while the previous chunk is written by another thread, so
  // the disk and the CPUs stay busy together; memory is two chunk buffers.
  kernels::ThreadPool pool(o.threads);
  std::vector<float> values(kChunkElements);
  std::vector<std::byte> buffers[2] = {std::vector<std::byte>(kChunkElements * esize),
                                       std::vector<std::byte>(kChunkElements * esize)};
  int cur = 0;
  uint64_t done = 0;
  if (o.progress) o.progress(0.0);
  for (const auto& shard : plan.shards) {
    std::vector<format::SafetensorsWriter::Entry> entries;
    for (size_t i : shard.tensors) entries.push_back({specs[i].name, dtype, specs[i].shape});
    format::SafetensorsWriter writer(o.out / shard.file, std::move(entries));
    std::future<void> pending;  // after `writer`: destroyed (so waited for) before it
    size_t pending_bytes = 0;
    auto wait_pending = [&] {
      if (!pending.valid()) return;
      pending.get();  // rethrows a write error
      done += pending_bytes;
      if (o.progress) o.progress(static_cast<double>(done) / static_cast<double>(plan.total_bytes));
    };
    for (size_t i : shard.tensors) {
      const TensorSpec& spec = specs[i];
      const uint64_t numel = static_cast<uint64_t>(spec.numel());
      for (uint64_t first = 0; first < numel; first += kChunkElements) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkElements, numel - first));
        std::byte* bytes = buffers[cur].data();
        // Even-sized pieces keep each thread on whole normal pairs.
        const int64_t pieces = static_cast<int64_t>((n + 8191) / 8192);
        pool.parallel_for(pieces, [&](int64_t b, int64_t e) {
          const size_t lo = static_cast<size_t>(b) * 8192, hi = std::min(n, static_cast<size_t>(e) * 8192);
          generate_values(spec, o.seed, first + lo, hi - lo, values.data() + lo);
          convert(values.data() + lo, hi - lo, dtype, bytes + lo * esize);
        });
        wait_pending();
        pending_bytes = n * esize;
        pending = std::async(std::launch::async, [&writer, bytes, nb = pending_bytes] { writer.write(bytes, nb); });
        cur ^= 1;
      }
    }
    wait_pending();
    writer.finish();
  }

  if (plan.shards.size() > 1) {
    std::map<std::string, std::string> weight_map;  // sorted by tensor name, as transformers writes it
    for (const auto& shard : plan.shards)
      for (size_t i : shard.tensors) weight_map[specs[i].name] = shard.file;
    ordered_json index;
    index["metadata"] = {{"total_size", plan.total_bytes}};
    index["weight_map"] = ordered_json::object();
    for (const auto& [name, file] : weight_map) index["weight_map"][name] = file;
    write_text_file(o.out / "model.safetensors.index.json", index.dump(2) + "\n");
  }
}

}  // namespace phinfer::synthetic
