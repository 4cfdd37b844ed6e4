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

ordered_json config_json(const ModelConfig& c, const std::string& preset) {
  // The key set and order of microsoft/Phi-3-mini-4k-instruct's config.json.
  auto opt = [](const auto& v) { return v ? ordered_json(*v) : ordered_json(nullptr); };
  ordered_json j;
  j["_name_or_path"] = "phinfer-synthetic-" + preset;
  j["architectures"] = {"Phi3ForCausalLM"};
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["auto_map"] = {{"AutoConfig", "configuration_phi3.Phi3Config"},
                   {"AutoModelForCausalLM", "modeling_phi3.Phi3ForCausalLM"}};
  j["bos_token_id"] = opt(c.bos_token_id);
  j["embd_pdrop"] = 0.0;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  else j["eos_token_id"] = c.eos_token_ids;
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.hidden_size;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = c.intermediate_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["model_type"] = "phi3";
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["original_max_position_embeddings"] = c.original_max_position_embeddings;
  j["pad_token_id"] = opt(c.pad_token_id);
  j["resid_pdrop"] = 0.0;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_scaling"] = nullptr;
  j["rope_theta"] = c.rope_theta;
  j["sliding_window"] = opt(c.sliding_window);
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = c.torch_dtype;
  j["transformers_version"] = "4.40.2";
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  return j;
}

ordered_json generation_config_json(const ModelConfig& c) {
  ordered_json j;
  j["_from_model_config"] = true;
  j["bos_token_id"] = c.bos_token_id ? *c.bos_token_id : 1;
  j["eos_token_id"] = {32000, 32001, 32007};  // <|endoftext|>, <|assistant|>, <|end|>
  j["pad_token_id"] = c.pad_token_id ? *c.pad_token_id : 32000;
  j["transformers_version"] = "4.40.2";
  return j;
}

std::string shard_name(size_t k, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k, n);
  return buf;
}

bool is_checkpoint_file(const std::string& f) {
  if (f == "model.safetensors" || f == "model.safetensors.index.json") return true;
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

std::vector<std::string> preset_names() { return {"tiny", "mini"}; }

ModelConfig preset_config(const std::string& preset) {
  ModelConfig c;
  c.model_type = "phi3";
  c.vocab_size = 32064;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = 4096;
  c.original_max_position_embeddings = 4096;
  c.sliding_window = 2047;
  c.tie_word_embeddings = false;
  c.bos_token_id = 1;
  c.eos_token_ids = {32000};
  c.pad_token_id = 32000;
  c.torch_dtype = "bfloat16";
  if (preset == "mini") {
    c.hidden_size = 3072;
    c.intermediate_size = 8192;
    c.num_hidden_layers = 32;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 32;
  } else if (preset == "tiny") {
    c.hidden_size = 256;
    c.intermediate_size = 512;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 4;
  } else {
    throw Error("unknown synthetic model preset '" + preset + "' (expected tiny or mini)");
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  return c;
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
  const float base = 0.02f;
  const float qkv = static_cast<float>(std::sqrt(0.6 / static_cast<double>(H)));
  const float head = static_cast<float>(5.0 / std::sqrt(static_cast<double>(H)));
  std::vector<TensorSpec> s;
  s.push_back({"model.embed_tokens.weight", {V, H}, base});
  // Within a layer: the order the modules are declared in transformers' modeling_phi3.
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s.push_back({p + "self_attn.o_proj.weight", {H, c.q_dim()}, base});
    s.push_back({p + "self_attn.qkv_proj.weight", {c.q_dim() + 2 * c.kv_dim(), H}, qkv});
    s.push_back({p + "mlp.gate_up_proj.weight", {2 * I, H}, base});
    s.push_back({p + "mlp.down_proj.weight", {H, I}, base});
    s.push_back({p + "input_layernorm.weight", {H}, 0.0f});
    s.push_back({p + "post_attention_layernorm.weight", {H}, 0.0f});
  }
  s.push_back({"model.norm.weight", {H}, 0.0f});
  if (!c.tie_word_embeddings) s.push_back({"lm_head.weight", {V, H}, head});
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

void write_checkpoint(const Options& o) {
  if (o.out.empty()) throw Error("make-synthetic: no output folder given");
  const DType dtype = o.dtype;
  ModelConfig config = preset_config(o.preset);
  config.torch_dtype = torch_dtype_name(dtype);  // also rejects dtypes other than f32/f16/bf16

  std::error_code ec;
  std::filesystem::create_directories(o.out, ec);
  if (!std::filesystem::is_directory(o.out)) throw Error(o.out.string() + ": cannot create the output folder");
  for (const auto& entry : std::filesystem::directory_iterator(o.out))
    if (entry.is_regular_file() && is_checkpoint_file(entry.path().filename().string()))
      std::filesystem::remove(entry.path());

  write_text_file(o.out / "config.json", config_json(config, o.preset).dump(2) + "\n");
  write_text_file(o.out / "generation_config.json", generation_config_json(config).dump(2) + "\n");
  write_tokenizer_files(o.out);

  const auto specs = tensor_specs(config);
  const uint64_t max_shard = o.max_shard_bytes ? o.max_shard_bytes : o.preset == "mini" ? 5'000'000'000ull : 0;
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
