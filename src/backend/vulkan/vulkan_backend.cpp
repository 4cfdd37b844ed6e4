// The Vulkan backend: weights uploaded once in their stored layout (F32/F16/BF16 row-major, Int8/Int4
// in the packed tiles of kernels/quant.h, which the shaders read in place), KV caches in device
// memory (fp32, [layers][capacity][kv_dim] per sequence), and the whole forward pass on the GPU: one
// command buffer per call, about 14 dispatches a layer whatever the batch holds. Only the rows'
// tokens, RoPE cos/sin (computed on the host exactly as the CPU backend does) and cache addresses go
// up; only the wanted logits come back.
//
// Batch invariance: every shader computes a row's values from that row (and its sequence's cache)
// alone, with a fixed order of operations, so an entry's logits do not depend on the other entries.
#include "backend/vulkan/vulkan_backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>

#include "backend/vulkan/vulkan_device.h"
#include "kernels/quant.h"
#include "phinfer/error.h"

namespace phinfer::backend::vulkan {
namespace {

constexpr int kGroup = 64;          // invocations per workgroup of every shader but the probe
constexpr uint32_t kTokenTile = 8;  // tokens per matmul workgroup

// kernels::QuantLayout as the shaders read it (quant.glsl).
struct ShaderQuantLayout {
  uint32_t bits = 0, symmetric = 0, block = 0, n_blocks = 0, block_chunks = 0, tile_bytes = 0, quant_bytes = 0,
           scale_bytes = 0, per_row_scale = 0;
};
static_assert(sizeof(ShaderQuantLayout) == 36);

uint32_t u32(int64_t v, const char* what) {
  if (v < 0 || v > static_cast<int64_t>(UINT32_MAX)) throw Error(std::string("gpu: ") + what + " is too large for the shaders");
  return static_cast<uint32_t>(v);
}

// Workgroups for n items, within the device's limit (the shaders loop over what is beyond it).
uint32_t group_count(int64_t n, uint32_t limit) { return static_cast<uint32_t>(std::clamp<int64_t>(n, 1, limit)); }

int32_t i32(int64_t v, const char* what) {
  if (v < 0 || v > static_cast<int64_t>(INT32_MAX)) throw Error(std::string("gpu: ") + what + " is too large for the shaders");
  return static_cast<int32_t>(v);
}

// A weight matrix on the device.
struct DeviceMatrix {
  kernels::WeightFormat format = kernels::WeightFormat::F32;
  int64_t rows = 0, cols = 0;
  ShaderQuantLayout layout;
  uint32_t q_words = 0;  // activation words per token its quantized input takes
  Buffer buffer;
  const Buffer* same_as = nullptr;  // tied lm_head: the embedding's buffer (the same bytes, uploaded once)
  bool quantized() const { return kernels::is_quantized(format); }
  uint64_t address() const { return same_as ? same_as->address() : buffer.address(); }
};

ShaderQuantLayout shader_layout(const kernels::WeightMatrix& w) {
  ShaderQuantLayout s;
  if (!kernels::is_quantized(w.format)) return s;
  const auto L = kernels::QuantLayout::of(w);
  s.bits = static_cast<uint32_t>(L.bits);
  s.symmetric = L.symmetric ? 1 : 0;
  s.block = u32(L.block, "quantization block");
  s.n_blocks = u32(L.n_blocks, "block count");
  s.block_chunks = u32(L.block_chunks, "chunk count");
  s.tile_bytes = u32(L.tile_bytes, "tile size");
  s.quant_bytes = u32(L.quant_bytes, "tile size");
  s.scale_bytes = u32(L.scale_bytes, "tile size");
  s.per_row_scale = L.n_scales == 1 ? 1 : 0;
  return s;
}

uint32_t activation_words(const kernels::WeightMatrix& w) {
  if (!kernels::is_quantized(w.format)) return 0;
  const auto L = kernels::QuantLayout::of(w);
  return u32(L.n_chunks * L.chunk_cols / 4, "activation size");
}

// Every weight of one model on one device, shared by the backends of that model there.
struct DeviceWeights {
  struct Layer {
    DeviceMatrix qkv, o, gate_up, down;
    Buffer input_norm, post_norm;
  };
  DeviceMatrix embed, lm_head;
  Buffer final_norm;
  std::vector<Layer> layers;
  uint32_t max_q_words = 0, max_blocks = 0;
};

// Tied embeddings: lm_head is the embedding matrix itself (uploaded once, read for both).
bool tied_lm_head(const model::ModelWeights& w) {
  return w.lm_head.data == w.embed_tokens.data && w.lm_head.format == w.embed_tokens.format &&
         w.lm_head.bytes() == w.embed_tokens.bytes();
}

uint64_t weight_bytes(const model::Phi3Model& m) {
  const auto& w = m.weights();
  const auto& c = m.config();
  uint64_t total = w.embed_tokens.bytes() + (tied_lm_head(w) ? 0 : w.lm_head.bytes());
  for (const auto& L : w.layers) total += L.qkv_proj.bytes() + L.o_proj.bytes() + L.gate_up_proj.bytes() + L.down_proj.bytes();
  total += static_cast<uint64_t>((2 * c.num_hidden_layers + 1) * c.hidden_size) * 4;
  return total;
}

uint64_t activation_bytes(const ModelConfig& c, int64_t rows, int64_t logit_rows) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, qkv = c.q_dim() + 2 * c.kv_dim();
  const int64_t per_row = 2 * H + qkv + c.q_dim() + 2 * I + I + std::max({H, I, c.q_dim()}) / 4 + 2 * std::max({H, I, c.q_dim()}) / 16 + 8;
  return static_cast<uint64_t>(rows * per_row * 4 + logit_rows * (H + c.vocab_size) * 4);
}

// A matrix's shape and layout as the shaders take them (no buffer yet).
DeviceMatrix describe_matrix(const kernels::WeightMatrix& w) {
  DeviceMatrix d;
  d.format = w.format;
  d.rows = w.rows;
  d.cols = w.cols;
  d.layout = shader_layout(w);
  d.q_words = activation_words(w);
  u32(w.rows, "rows of a matrix");
  u32(w.cols, "columns of a matrix");
  return d;
}

DeviceMatrix upload_matrix(const std::shared_ptr<Device>& dev, const kernels::WeightMatrix& w, const std::string& name) {
  DeviceMatrix d = describe_matrix(w);
  d.buffer = Buffer(dev, w.bytes(), false, name);
  dev->upload(d.buffer, 0, w.data, w.bytes());
  return d;
}

std::shared_ptr<DeviceWeights> upload_weights(const std::shared_ptr<Device>& dev, const model::Phi3Model& m) {
  static std::mutex mu;
  static std::map<std::pair<const Device*, const model::Phi3Model*>, std::weak_ptr<DeviceWeights>> shared;
  std::lock_guard<std::mutex> lock(mu);
  std::erase_if(shared, [](const auto& entry) { return entry.second.expired(); });  // models since unloaded
  auto& slot = shared[{dev.get(), &m}];
  if (auto w = slot.lock()) return w;

  auto out = std::make_shared<DeviceWeights>();
  auto matrix = [&](const kernels::WeightMatrix& w, const std::string& name) {
    DeviceMatrix d = upload_matrix(dev, w, name);
    out->max_q_words = std::max(out->max_q_words, d.q_words);
    out->max_blocks = std::max(out->max_blocks, d.layout.n_blocks);
    return d;
  };
  auto vector = [&](const std::vector<float>& v, const std::string& name) {
    Buffer b(dev, v.size() * 4, false, name);
    dev->upload(b, 0, v.data(), v.size() * 4);
    return b;
  };
  const auto& w = m.weights();
  out->embed = matrix(w.embed_tokens, "model.embed_tokens.weight");
  if (tied_lm_head(w)) {
    out->lm_head = describe_matrix(w.lm_head);
    out->lm_head.same_as = &out->embed.buffer;
  } else {
    out->lm_head = matrix(w.lm_head, "lm_head.weight");
  }
  out->final_norm = vector(w.final_norm, "model.norm.weight");
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const auto& L = w.layers[l];
    const auto name = [&](const char* f) { return model::LoadedWeights::layer_tensor_name(static_cast<int64_t>(l), f); };
    DeviceWeights::Layer d;
    d.qkv = matrix(L.qkv_proj, name("self_attn.qkv_proj.weight"));
    d.o = matrix(L.o_proj, name("self_attn.o_proj.weight"));
    d.gate_up = matrix(L.gate_up_proj, name("mlp.gate_up_proj.weight"));
    d.down = matrix(L.down_proj, name("mlp.down_proj.weight"));
    d.input_norm = vector(L.input_norm, name("input_layernorm.weight"));
    d.post_norm = vector(L.post_attention_norm, name("post_attention_layernorm.weight"));
    out->layers.push_back(std::move(d));
  }
  slot = out;
  return out;
}

// One sequence's KV cache in device memory.
class VulkanCache final : public SequenceCache {
 public:
  VulkanCache(std::shared_ptr<Device> dev, int64_t layers, int64_t kv_dim) : dev_(std::move(dev)), layers_(layers), kv_dim_(kv_dim) {}
  int64_t length() const override { return length_; }
  model::RopeTable table() const override { return table_; }
  void truncate(int64_t n) override {
    if (n < length_) length_ = n;
    if (length_ == 0) {
      k_ = Buffer();
      v_ = Buffer();
      capacity_ = 0;
    }
  }
  void reserve(int64_t positions) override {
    if (positions <= capacity_) return;
    const uint64_t bytes = static_cast<uint64_t>(layers_ * positions * kv_dim_) * 4;
    Buffer k(dev_, bytes, false, "KV cache keys (" + std::to_string(positions) + " positions)");
    Buffer v(dev_, bytes, false, "KV cache values (" + std::to_string(positions) + " positions)");
    copy_positions(length_, k, v, positions);
    k_ = std::move(k);
    v_ = std::move(v);
    capacity_ = positions;
  }
  int64_t capacity() const override { return capacity_; }
  uint64_t bytes() const override { return k_.size() + v_.size(); }
  std::unique_ptr<SequenceCache> clone(int64_t length, int64_t capacity) const override {
    auto copy = std::make_unique<VulkanCache>(dev_, layers_, kv_dim_);
    const int64_t n = std::min(length, length_);
    if (n > 0) {
      copy->reserve(std::max(capacity, n));
      copy_positions(n, copy->k_, copy->v_, copy->capacity_);
      copy->length_ = n;
      copy->table_ = table_;
    } else if (capacity > 0) {
      copy->reserve(capacity);
    }
    return copy;
  }

  // Copies positions [0, n) of every layer into buffers laid out for `to_capacity` positions.
  void copy_positions(int64_t n, const Buffer& to_k, const Buffer& to_v, int64_t to_capacity) const {
    if (n <= 0) return;
    std::vector<VkBufferCopy> regions;
    const uint64_t row = static_cast<uint64_t>(kv_dim_) * 4;
    for (int64_t l = 0; l < layers_; ++l)
      regions.push_back({static_cast<uint64_t>(l * capacity_) * row, static_cast<uint64_t>(l * to_capacity) * row,
                         static_cast<uint64_t>(n) * row});
    dev_->copy_now(k_, to_k, regions);
    dev_->copy_now(v_, to_v, regions);
  }

  std::shared_ptr<Device> dev_;
  int64_t layers_, kv_dim_;
  Buffer k_, v_;
  int64_t length_ = 0, capacity_ = 0;
  model::RopeTable table_ = model::RopeTable::Short;
};

// Push constants of each shader (the layout blocks of the .comp files).
struct EmbedPush {
  uint64_t weights, tokens, x;
  ShaderQuantLayout L;
  uint32_t format, cols, rows;
};
struct RmsNormPush {
  uint64_t x, weight, out, rows_index;
  uint32_t n, rows;
  float eps;
};
struct QuantizeActPush {
  uint64_t x, q, dx, sums;
  ShaderQuantLayout L;
  uint32_t cols, tokens, q_words;
};
struct MatmulQuantPush {
  uint64_t w, q, dx, sums, y;
  ShaderQuantLayout L;
  uint32_t cols, rows, tokens, y_stride, accumulate, q_words;
};
struct MatmulFloatPush {
  uint64_t w, x, y;
  uint32_t format, cols, rows, tokens, y_stride, accumulate;
};
struct RopeStorePush {
  uint64_t qkv, cos, sin, rows_info;
  uint32_t layer, n_heads, n_kv_heads, head_dim, half_rot, q_dim, kv_dim, qkv_stride, rows;
};
struct AttentionPush {
  uint64_t qkv, out, rows_info, jobs;
  uint32_t layer, group, head_dim, q_dim, kv_dim, qkv_stride, n_jobs, n_heads;
  float scale;
};
constexpr int64_t kAttentionRows = 16;       // rows of one sequence per attention workgroup (attention.comp)
constexpr int64_t kMaxAttentionHeadDim = 128;
struct SiluMulPush {
  uint64_t gate_up, out;
  uint32_t n, rows;
};
struct BandwidthPush {
  uint64_t src, dst;
  uint32_t n_vec4;
};
static_assert(sizeof(MatmulQuantPush) <= 128 && sizeof(QuantizeActPush) <= 128 && sizeof(EmbedPush) <= 128);

struct RowInfo {
  uint64_t k_addr, v_addr;
  int32_t position, first_key, capacity, pad;
};
static_assert(sizeof(RowInfo) == 32);

class VulkanBackend final : public Backend {
 public:
  VulkanBackend(std::shared_ptr<Device> dev, std::shared_ptr<const model::Phi3Model> model, const BackendOptions& o)
      : dev_(std::move(dev)), model_(std::move(model)), options_(o), commands_(dev_) {
    if (o.kv_type != model::KVCacheType::F32)
      throw Error(std::string("gpu: the GPU backend keeps its KV cache in f32; the KV cache type ") +
                  model::kv_cache_type_name(o.kv_type) + " is for the cpu device");
    const auto& c = model_->config();
    if (c.head_dim > kMaxAttentionHeadDim)
      throw Error("gpu: the attention shader handles heads of up to " + std::to_string(kMaxAttentionHeadDim) +
                  " dimensions; the model's head_dim is " + std::to_string(c.head_dim));
    const uint64_t need = required_bytes(*model_, 64);
    const uint64_t have = dev_->info().memory_bytes;
    const uint64_t used = dev_->allocated_bytes();
    if (need + used > have)
      throw Error("gpu:" + std::to_string(dev_->info().index) + " (" + dev_->info().name + "): the model needs " +
                  std::to_string(need) + " bytes of device memory (" + std::to_string(weight_bytes(*model_)) +
                  " of weights, the rest activations) but the device has " + std::to_string(have) + " bytes" +
                  (used ? " of which " + std::to_string(used) + " are in use" : std::string()));
    weights_ = upload_weights(dev_, *model_);
    half_ = c.rotary_dim() / 2;
    ensure(64, 1);
    const uint64_t in_use = dev_->allocated_bytes();
    kv_limit_ = have > in_use ? (have - in_use) / 10 * 9 : 1;
  }

  std::string device() const override { return "gpu:" + std::to_string(dev_->info().index); }
  const model::Phi3Model& model() const override { return *model_; }
  std::unique_ptr<SequenceCache> new_cache() override {
    return std::make_unique<VulkanCache>(dev_, model_->config().num_hidden_layers, model_->config().kv_dim());
  }
  uint64_t cache_bytes_per_position() const override {
    const auto& c = model_->config();
    return static_cast<uint64_t>(2 * c.num_hidden_layers * c.kv_dim()) * 4;
  }
  std::unique_ptr<Backend> companion(std::shared_ptr<const model::Phi3Model> model) override {
    return std::make_unique<VulkanBackend>(dev_, std::move(model), options_);
  }
  // What the device had free once the weights and activations were in, less a tenth for the
  // activations of larger calls, prefix caches copied while growing, and the driver.
  uint64_t kv_memory_limit() const override { return kv_limit_; }

  std::span<const float> forward(std::span<const BatchEntry> entries) override;

 private:
  void ensure(int64_t rows, int64_t logit_rows);
  void matmul(const DeviceMatrix& m, uint64_t x, int64_t tokens, uint64_t y, int64_t y_stride, bool accumulate);
  void rms_norm(uint64_t x, const Buffer& weight, uint64_t out, int64_t rows, uint64_t rows_index);

  std::shared_ptr<Device> dev_;
  std::shared_ptr<const model::Phi3Model> model_;
  BackendOptions options_;
  std::shared_ptr<DeviceWeights> weights_;
  Commands commands_;
  int64_t half_ = 0;
  uint64_t kv_limit_ = 0;
  int64_t max_rows_ = 0, max_logit_rows_ = 0;
  Buffer x_, xn_, qkv_, att_, gate_up_, act_, qact_, dx_, sums_, selected_;
  Buffer inputs_, logits_;  // host-visible
  uint64_t tokens_off_ = 0, cos_off_ = 0, sin_off_ = 0, rows_off_ = 0, logit_rows_off_ = 0, jobs_off_ = 0;
};

void VulkanBackend::ensure(int64_t rows, int64_t logit_rows) {
  if (rows <= max_rows_ && logit_rows <= max_logit_rows_) return;
  const auto& c = model_->config();
  const int64_t R = std::max(rows, max_rows_), L = std::max<int64_t>(std::max(logit_rows, max_logit_rows_), 1);
  const int64_t H = c.hidden_size, I = c.intermediate_size, qkv = c.q_dim() + 2 * c.kv_dim();
  auto f32 = [&](int64_t n, const char* what) { return Buffer(dev_, static_cast<uint64_t>(std::max<int64_t>(n, 1)) * 4, false, what); };
  x_ = f32(R * H, "hidden states");
  xn_ = f32(R * H, "normed hidden states");
  qkv_ = f32(R * qkv, "queries, keys and values");
  att_ = f32(R * c.q_dim(), "attention output");
  gate_up_ = f32(R * 2 * I, "gate and up projections");
  act_ = f32(R * I, "MLP activations");
  qact_ = f32(R * std::max<int64_t>(weights_->max_q_words, 1), "quantized activations");
  dx_ = f32(R * std::max<int64_t>(weights_->max_blocks, 1), "activation scales");
  sums_ = f32(R * std::max<int64_t>(weights_->max_blocks, 1), "activation sums");
  selected_ = f32(L * H, "final hidden states");
  // Inputs: tokens, cos, sin, row infos, logit rows (each 64-byte aligned).
  auto align = [](uint64_t v) { return (v + 63) / 64 * 64; };
  tokens_off_ = 0;
  cos_off_ = align(tokens_off_ + static_cast<uint64_t>(R) * 4);
  sin_off_ = align(cos_off_ + static_cast<uint64_t>(R * half_) * 4);
  rows_off_ = align(sin_off_ + static_cast<uint64_t>(R * half_) * 4);
  logit_rows_off_ = align(rows_off_ + static_cast<uint64_t>(R) * sizeof(RowInfo));
  jobs_off_ = align(logit_rows_off_ + static_cast<uint64_t>(L) * 4);
  inputs_ = Buffer(dev_, jobs_off_ + static_cast<uint64_t>(R) * 8, true, "forward inputs");
  logits_ = Buffer(dev_, static_cast<uint64_t>(L * c.vocab_size) * 4, true, "logits");
  max_rows_ = R;
  max_logit_rows_ = L;
}

// Records y (+)= W x: activation quantization and the integer product for Int8/Int4, else the
// float product. q, dx, sums: scratch for the quantized activations.
// integer_dot: with the dot-product instruction shader (the same results, bit for bit).
void record_matmul(Commands& cmd, const Device& dev, const DeviceMatrix& m, uint64_t x, int64_t tokens, uint64_t y,
                   int64_t y_stride, bool accumulate, uint64_t q, uint64_t dx, uint64_t sums, bool integer_dot) {
  const uint32_t token_groups = group_count((tokens + kTokenTile - 1) / kTokenTile, dev.max_groups_y());
  if (m.quantized()) {
    QuantizeActPush qp{x, q, dx, sums, m.layout, static_cast<uint32_t>(m.cols), static_cast<uint32_t>(tokens), m.q_words};
    cmd.dispatch(Pipeline::QuantizeAct, &qp, sizeof qp, group_count(m.layout.n_blocks, dev.max_groups_x()),
                 group_count(tokens, dev.max_groups_y()));
    MatmulQuantPush p{m.address(), q, dx, sums, y, m.layout, static_cast<uint32_t>(m.cols),
                      static_cast<uint32_t>(m.rows), static_cast<uint32_t>(tokens), static_cast<uint32_t>(y_stride),
                      accumulate ? 1u : 0u, m.q_words};
    cmd.dispatch(integer_dot ? Pipeline::MatmulQuantDot : Pipeline::MatmulQuant, &p, sizeof p,
                 group_count((m.rows + 15) / 16, dev.max_groups_x()), token_groups);
  } else {
    MatmulFloatPush p{m.address(), x, y, static_cast<uint32_t>(m.format), static_cast<uint32_t>(m.cols),
                      static_cast<uint32_t>(m.rows), static_cast<uint32_t>(tokens), static_cast<uint32_t>(y_stride),
                      accumulate ? 1u : 0u};
    cmd.dispatch(Pipeline::MatmulFloat, &p, sizeof p, group_count((m.rows + 7) / 8, dev.max_groups_x()), token_groups);
  }
}

void VulkanBackend::matmul(const DeviceMatrix& m, uint64_t x, int64_t tokens, uint64_t y, int64_t y_stride, bool accumulate) {
  record_matmul(commands_, *dev_, m, x, tokens, y, y_stride, accumulate, qact_.address(), dx_.address(), sums_.address(),
                dev_->integer_dot_accelerated());
}

void VulkanBackend::rms_norm(uint64_t x, const Buffer& weight, uint64_t out, int64_t rows, uint64_t rows_index) {
  const auto& c = model_->config();
  RmsNormPush p{x, weight.address(), out, rows_index, static_cast<uint32_t>(c.hidden_size), static_cast<uint32_t>(rows),
                static_cast<float>(c.rms_norm_eps)};
  commands_.dispatch(Pipeline::RmsNorm, &p, sizeof p, group_count(rows, dev_->max_groups_x()));
}

std::span<const float> VulkanBackend::forward(std::span<const BatchEntry> entries) {
  const auto& c = model_->config();
  const auto& W = *weights_;
  int64_t n = 0, n_logits = 0;
  // Check the whole call before touching any cache: a bad call changes nothing.
  for (const BatchEntry& e : entries) {
    auto* cache = dynamic_cast<VulkanCache*>(e.cache);
    if (!cache || cache->dev_ != dev_) throw Error("internal: a KV cache of another backend was given to the gpu backend");
    if (e.tokens.empty()) throw Error("internal: forward batch entry without tokens");
    if (cache->length_ > 0 && cache->table_ != e.table)
      throw Error("internal: KV cache was built with the other LongRoPE table; recompute the sequence");
    model::check_token_ids(e.tokens, c.vocab_size);
    for (int64_t r : e.logit_rows)
      if (r < 0 || r >= static_cast<int64_t>(e.tokens.size())) throw Error("internal: logit row out of range");
    n += static_cast<int64_t>(e.tokens.size());
    n_logits += static_cast<int64_t>(e.logit_rows.size());
  }
  if (n == 0) return {};
  u32(n, "rows of a forward call");
  for (const BatchEntry& e : entries) {
    auto* cache = static_cast<VulkanCache*>(e.cache);
    const int64_t need = cache->length_ + static_cast<int64_t>(e.tokens.size());
    if (need > cache->capacity_) cache->reserve(std::max({need, 2 * cache->capacity_, int64_t{256}}));
  }
  ensure(n, n_logits);

  // Inputs.
  auto* base = static_cast<std::byte*>(inputs_.mapped());
  auto* tokens = reinterpret_cast<int32_t*>(base + tokens_off_);
  auto* cosv = reinterpret_cast<float*>(base + cos_off_);
  auto* sinv = reinterpret_cast<float*>(base + sin_off_);
  auto* rows = reinterpret_cast<RowInfo*>(base + rows_off_);
  auto* logit_rows = reinterpret_cast<int32_t*>(base + logit_rows_off_);
  auto* jobs = reinterpret_cast<uint32_t*>(base + jobs_off_);  // attention: {first row, rows} per block of a sequence
  int64_t n_jobs = 0;
  const std::optional<int64_t> window = model_->sliding_window();
  int64_t row = 0, lr = 0;
  for (const BatchEntry& e : entries) {
    auto* cache = static_cast<VulkanCache*>(e.cache);
    for (size_t i = 0; i < e.tokens.size(); ++i, ++row) {
      const int64_t pos = cache->length_ + static_cast<int64_t>(i);
      tokens[row] = e.tokens[i];
      model_->rope_row(e.table, pos, cosv + row * half_, sinv + row * half_);
      RowInfo& info = rows[row];
      info.k_addr = cache->k_.address();
      info.v_addr = cache->v_.address();
      info.position = i32(pos, "position");
      info.first_key = static_cast<int32_t>(window ? std::max<int64_t>(0, pos - *window + 1) : 0);
      info.capacity = i32(cache->capacity_, "KV cache capacity");
      info.pad = 0;
    }
    const int64_t entry_first = row - static_cast<int64_t>(e.tokens.size());
    for (int64_t r : e.logit_rows) logit_rows[lr++] = static_cast<int32_t>(entry_first + r);
    for (int64_t t0 = 0; t0 < static_cast<int64_t>(e.tokens.size()); t0 += kAttentionRows) {
      jobs[2 * n_jobs] = static_cast<uint32_t>(entry_first + t0);
      jobs[2 * n_jobs + 1] = static_cast<uint32_t>(std::min<int64_t>(kAttentionRows, static_cast<int64_t>(e.tokens.size()) - t0));
      ++n_jobs;
    }
  }

  const uint64_t in = inputs_.address();
  const int64_t H = c.hidden_size, I = c.intermediate_size, q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const int64_t qkv_dim = q_dim + 2 * kv_dim;
  const uint32_t gx = dev_->max_groups_x(), gy = dev_->max_groups_y();
  commands_.begin();
  {
    EmbedPush p{W.embed.address(), in + tokens_off_, x_.address(), W.embed.layout,
                static_cast<uint32_t>(W.embed.format), static_cast<uint32_t>(H), static_cast<uint32_t>(n)};
    commands_.dispatch(Pipeline::Embed, &p, sizeof p, group_count(n, gx));
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const auto& L = W.layers[static_cast<size_t>(l)];
    rms_norm(x_.address(), L.input_norm, xn_.address(), n, 0);
    matmul(L.qkv, xn_.address(), n, qkv_.address(), qkv_dim, false);
    RopeStorePush rp{qkv_.address(), in + cos_off_, in + sin_off_, in + rows_off_, static_cast<uint32_t>(l),
                     static_cast<uint32_t>(c.num_attention_heads), static_cast<uint32_t>(c.num_key_value_heads),
                     static_cast<uint32_t>(c.head_dim), static_cast<uint32_t>(half_), static_cast<uint32_t>(q_dim),
                     static_cast<uint32_t>(kv_dim), static_cast<uint32_t>(qkv_dim), static_cast<uint32_t>(n)};
    commands_.dispatch(Pipeline::RopeStore, &rp, sizeof rp, group_count(n, gx));
    AttentionPush ap{qkv_.address(), att_.address(), in + rows_off_, in + jobs_off_, static_cast<uint32_t>(l),
                     static_cast<uint32_t>(c.num_attention_heads / c.num_key_value_heads), static_cast<uint32_t>(c.head_dim),
                     static_cast<uint32_t>(q_dim), static_cast<uint32_t>(kv_dim), static_cast<uint32_t>(qkv_dim),
                     static_cast<uint32_t>(n_jobs), static_cast<uint32_t>(c.num_attention_heads),
                     static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)))};
    commands_.dispatch(Pipeline::Attention, &ap, sizeof ap, group_count(n_jobs, gx), group_count(c.num_attention_heads, gy));
    matmul(L.o, att_.address(), n, x_.address(), H, true);
    rms_norm(x_.address(), L.post_norm, xn_.address(), n, 0);
    matmul(L.gate_up, xn_.address(), n, gate_up_.address(), 2 * I, false);
    SiluMulPush sp{gate_up_.address(), act_.address(), static_cast<uint32_t>(I), static_cast<uint32_t>(n)};
    commands_.dispatch(Pipeline::SiluMul, &sp, sizeof sp, group_count((n * I + kGroup - 1) / kGroup, gx));
    matmul(L.down, act_.address(), n, x_.address(), H, true);
  }
  if (n_logits > 0) {
    rms_norm(x_.address(), W.final_norm, selected_.address(), n_logits, in + logit_rows_off_);
    matmul(W.lm_head, selected_.address(), n_logits, logits_.address(), c.vocab_size, false);
  }
  commands_.submit_and_wait();

  const float* logits = static_cast<const float*>(logits_.mapped());
  const size_t count = static_cast<size_t>(n_logits) * static_cast<size_t>(c.vocab_size);
  if (kernels::first_non_finite(logits, static_cast<int64_t>(count)) >= 0) {
    for (int64_t l = -1; l < c.num_hidden_layers; ++l) model_->loaded().check_finite(l);  // names a bad weight
    throw Error(model_->loaded().path().string() + ": the forward pass on the GPU produced a non-finite logit; "
                "every weight is finite, so values overflowed float");
  }
  // Only a call that succeeded extends the caches.
  for (const BatchEntry& e : entries) {
    auto* cache = static_cast<VulkanCache*>(e.cache);
    cache->length_ += static_cast<int64_t>(e.tokens.size());
    cache->table_ = e.table;
  }
  return {logits, count};
}

}  // namespace

uint64_t required_bytes(const model::Phi3Model& m, int64_t rows) {
  return weight_bytes(m) + activation_bytes(m.config(), rows, 1);
}

std::unique_ptr<Backend> create_backend(int device_index, std::shared_ptr<const model::Phi3Model> model,
                                        const BackendOptions& options) {
  return std::make_unique<VulkanBackend>(Device::open(device_index), std::move(model), options);
}

std::vector<float> matmul(int device_index, const kernels::WeightMatrix& w, const float* x, int64_t tokens, bool integer_dot) {
  auto dev = Device::open(device_index);
  if (integer_dot && !dev->integer_dot()) throw Error("gpu: " + dev->info().name + " has no integer dot products");
  const DeviceMatrix m = upload_matrix(dev, w, "test matrix");
  Buffer xb(dev, static_cast<uint64_t>(tokens * w.cols) * 4, false, "test input");
  dev->upload(xb, 0, x, static_cast<uint64_t>(tokens * w.cols) * 4);
  Buffer yb(dev, static_cast<uint64_t>(tokens * w.rows) * 4, true, "test output");
  const int64_t words = std::max<int64_t>(m.q_words, 1), blocks = std::max<uint32_t>(m.layout.n_blocks, 1);
  Buffer q(dev, static_cast<uint64_t>(tokens * words) * 4, false, "test activations");
  Buffer dx(dev, static_cast<uint64_t>(tokens * blocks) * 4, false, "test scales");
  Buffer sums(dev, static_cast<uint64_t>(tokens * blocks) * 4, false, "test sums");
  Commands cmd(dev);
  cmd.begin();
  record_matmul(cmd, *dev, m, xb.address(), tokens, yb.address(), w.rows, false, q.address(), dx.address(), sums.address(),
                integer_dot);
  cmd.submit_and_wait();
  const float* y = static_cast<const float*>(yb.mapped());
  return {y, y + tokens * w.rows};
}

double measure_bandwidth(int device_index, uint64_t bytes, int reps) {
  auto dev = Device::open(device_index);
  bytes = bytes / 16 * 16;
  Buffer src(dev, bytes, false, "bandwidth probe source");
  const uint32_t groups = std::min<uint32_t>(dev->max_groups_x(), 1024);
  Buffer dst(dev, static_cast<uint64_t>(groups) * 256 * 4, false, "bandwidth probe output");
  Commands cmd(dev);
  BandwidthPush p{src.address(), dst.address(), u32(static_cast<int64_t>(bytes / 16), "probe size")};
  std::vector<double> gbps;
  for (int r = 0; r < reps + 1; ++r) {
    cmd.begin();
    const auto t0 = std::chrono::steady_clock::now();
    cmd.dispatch(Pipeline::Bandwidth, &p, sizeof p, groups);
    cmd.submit_and_wait();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) gbps.push_back(static_cast<double>(bytes) / s / 1e9);  // the first run warms up
  }
  std::sort(gbps.begin(), gbps.end());
  return gbps.empty() ? 0 : gbps[gbps.size() / 2];
}

}  // namespace phinfer::backend::vulkan
