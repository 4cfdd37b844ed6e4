#include "model/phi3.h"

#include <algorithm>
#include <functional>
#include <cmath>
#include <limits>
#include <string>

#include "phinfer/error.h"

namespace phinfer::model {
namespace {

using kernels::WeightFormat;
using kernels::WeightMatrix;

// HF Phi3RMSNorm: x / sqrt(mean(x^2) + eps) * weight.
void rms_norm(const float* x, const float* weight, int64_t n, double eps, float* out) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * scale);
}

}  // namespace

kernels::WeightMatrix as_matrix(const format::TensorView& t) {
  kernels::WeightMatrix m;
  m.format = t.dtype == DType::F32   ? kernels::WeightFormat::F32
             : t.dtype == DType::F16 ? kernels::WeightFormat::F16
                                     : kernels::WeightFormat::BF16;
  m.rows = t.shape[0];
  m.cols = t.shape.size() > 1 ? t.shape[1] : 1;
  m.data = t.data.data();
  return m;
}

std::vector<float> to_f32(const kernels::WeightMatrix& m) {
  std::vector<float> v(static_cast<size_t>(m.rows * m.cols));
  for (int64_t r = 0; r < m.rows; ++r) m.row_to_f32(r, v.data() + r * m.cols);
  return v;
}

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
  using K = TensorSpec::Kind;
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  std::vector<TensorSpec> out = {{K::Embedding, "model.embed_tokens.weight", {V, H}}};
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    out.push_back({K::Linear, p + "self_attn.qkv_proj.weight", {c.q_dim() + 2 * c.kv_dim(), H}});
    out.push_back({K::Linear, p + "self_attn.o_proj.weight", {H, c.q_dim()}});
    out.push_back({K::Linear, p + "mlp.gate_up_proj.weight", {2 * I, H}});
    out.push_back({K::Linear, p + "mlp.down_proj.weight", {H, I}});
    out.push_back({K::Norm, p + "input_layernorm.weight", {H}});
    out.push_back({K::Norm, p + "post_attention_layernorm.weight", {H}});
  }
  out.push_back({K::Norm, "model.norm.weight", {H}});
  if (!c.tie_word_embeddings) out.push_back({K::LmHead, "lm_head.weight", {V, H}});
  return out;
}

SlidingWindow SlidingWindow::parse(const std::string& text) {
  if (text == "auto") return {};
  if (text == "off") return {Mode::Off, 0};
  try {
    size_t used = 0;
    long long v = std::stoll(text, &used);
    if (used == text.size() && v > 0) return {Mode::Fixed, v};
  } catch (const std::exception&) {
  }
  throw Error("--sliding-window: expected auto, off or a positive integer, found '" + text + "'");
}

// Where the weights come from: a Hugging Face folder (safetensors, float dtypes) or a phinfer model
// file (any kernel format, stored in the kernels' layout). Both hand out views into the mapping.
namespace {

WeightFormat parse_native_format(const std::string& name, const std::string& where) {
  if (name == "f32") return WeightFormat::F32;
  if (name == "f16") return WeightFormat::F16;
  if (name == "bf16") return WeightFormat::BF16;
  if (name == "q8") return WeightFormat::Q8;
  if (name == "q4") return WeightFormat::Q4;
  throw Error(where + ": unknown weight format '" + name + "'");
}

WeightMatrix native_matrix(const format::NativeFile& f, const TensorSpec& spec) {
  const format::NativeTensor& t = f.require(spec.name);
  const std::string where = f.path().string() + ": tensor '" + spec.name + "'";
  const auto& info = t.info;
  if (!info.contains("format") || !info["format"].is_string() || !info.contains("shape") || !info["shape"].is_array())
    throw Error(where + ": entry needs format and shape");
  std::vector<int64_t> shape;
  for (const auto& d : info["shape"]) {
    if (!d.is_number_integer()) throw Error(where + ": shape must hold integers");
    shape.push_back(d.get<int64_t>());
  }
  if (shape != spec.shape) {
    format::TensorView want, found;
    want.shape = spec.shape;
    found.shape = shape;
    throw Error(where + ": expected shape " + want.shape_string() + ", found " + found.shape_string());
  }
  WeightMatrix m;
  m.format = parse_native_format(info["format"].get<std::string>(), where);
  m.rows = shape[0];
  m.cols = shape.size() > 1 ? shape[1] : 1;
  if (kernels::is_quantized(m.format)) {
    if (!info.contains("group_size") || !info["group_size"].is_number_integer() || !info.contains("symmetric") ||
        !info["symmetric"].is_boolean())
      throw Error(where + ": quantized entry needs group_size and symmetric");
    m.group_size = info["group_size"].get<int>();
    m.symmetric = info["symmetric"].get<bool>();
  }
  if (m.bytes() != t.data.size())
    throw Error(where + ": holds " + std::to_string(t.data.size()) + " bytes, the format needs " + std::to_string(m.bytes()));
  m.data = t.data.data();
  return m;
}

}  // namespace

std::unique_ptr<Phi3Model> Phi3Model::load(const std::filesystem::path& path, SlidingWindow window) {
  std::unique_ptr<Phi3Model> m(new Phi3Model());
  std::function<WeightMatrix(const TensorSpec&)> matrix;
  if (format::is_native_file(path)) {
    m->native_ = format::NativeFile::open(path);
    const auto& meta = m->native_->metadata();
    if (!meta.contains("config")) throw Error(path.string() + ": the model file has no config");
    m->config_ = ModelConfig::from_json(meta["config"], path.string() + " (config)");
    matrix = [&f = *m->native_](const TensorSpec& spec) { return native_matrix(f, spec); };
  } else {
    if (!std::filesystem::is_directory(path))
      throw Error(path.string() + ": not a Hugging Face checkpoint folder or a phinfer model file");
    m->config_ = ModelConfig::from_file(path / "config.json");
    m->checkpoint_ = format::SafetensorsCheckpoint::open(path);
    if (!m->config_.tie_word_embeddings && !m->checkpoint_.find("lm_head.weight"))
      throw Error(path.string() + ": tensor 'lm_head.weight' is missing and config.json has tie_word_embeddings false");
    matrix = [&ck = m->checkpoint_](const TensorSpec& spec) { return as_matrix(ck.require(spec.name, spec.shape)); };
  }
  const ModelConfig& c = m->config_;
  ModelWeights& w = m->weights_;
  w.layers.resize(static_cast<size_t>(c.num_hidden_layers));
  for (const TensorSpec& spec : expected_tensors(c)) {
    WeightMatrix mat = matrix(spec);
    if (spec.kind == TensorSpec::Kind::Embedding) w.embed_tokens = mat;
    if (spec.kind == TensorSpec::Kind::LmHead) w.lm_head = mat;
    if (spec.name == "model.norm.weight") w.final_norm = to_f32(mat);
    if (spec.name.rfind("model.layers.", 0) != 0) continue;
    const size_t dot = spec.name.find('.', 13);
    LayerWeights& L = w.layers[std::stoul(spec.name.substr(13, dot - 13))];
    const std::string field = spec.name.substr(dot + 1);
    if (field == "self_attn.qkv_proj.weight") L.qkv_proj = mat;
    else if (field == "self_attn.o_proj.weight") L.o_proj = mat;
    else if (field == "mlp.gate_up_proj.weight") L.gate_up_proj = mat;
    else if (field == "mlp.down_proj.weight") L.down_proj = mat;
    else if (field == "input_layernorm.weight") L.input_norm = to_f32(mat);
    else if (field == "post_attention_layernorm.weight") L.post_attention_norm = to_f32(mat);
  }
  if (c.tie_word_embeddings) w.lm_head = w.embed_tokens;

  switch (window.mode) {
    case SlidingWindow::Mode::Auto: m->window_ = c.sliding_window; break;
    case SlidingWindow::Mode::Off: m->window_.reset(); break;
    case SlidingWindow::Mode::Fixed: m->window_ = window.size; break;
  }

  // inv_freq[i] = 1 / (factor[i] * theta^(2i / rotary_dim)), in double: closest to the reference.
  const int64_t half = c.rotary_dim() / 2;
  for (int64_t i = 0; i < half; ++i) {
    double base = std::pow(c.rope_theta, static_cast<double>(2 * i) / static_cast<double>(c.rotary_dim()));
    double s = c.rope_scaling ? c.rope_scaling->short_factor[static_cast<size_t>(i)] : 1.0;
    double lf = c.rope_scaling ? c.rope_scaling->long_factor[static_cast<size_t>(i)] : 1.0;
    m->inv_freq_short_.push_back(1.0 / (s * base));
    m->inv_freq_long_.push_back(1.0 / (lf * base));
  }
  m->attention_factor_ = c.rope_scaling ? c.rope_scaling->attention_factor : 1.0;
  return m;
}

RopeTable Phi3Model::table_for_length(int64_t total_length) const {
  return config_.rope_scaling && total_length > config_.original_max_position_embeddings ? RopeTable::Long
                                                                                          : RopeTable::Short;
}

Phi3Model::KVCache Phi3Model::new_cache() const {
  KVCache cache;
  cache.f16 = kv_f16_;
  cache.kv_heads = config_.num_key_value_heads;
  cache.head_dim = config_.head_dim;
  const auto layers = static_cast<size_t>(config_.num_hidden_layers);
  if (cache.f16) {
    cache.k16.resize(layers);
    cache.v16.resize(layers);
  } else {
    cache.k.resize(layers);
    cache.v.resize(layers);
  }
  return cache;
}

namespace {
// Re-lays [head][old_cap][hd] into [head][new_cap][hd], keeping the first `length` positions.
template <typename T>
void grow(std::vector<T>& store, int64_t heads, int64_t hd, int64_t old_cap, int64_t new_cap, int64_t length) {
  std::vector<T> grown(static_cast<size_t>(heads * new_cap * hd));
  for (int64_t h = 0; h < heads; ++h)
    std::copy_n(store.data() + h * old_cap * hd, length * hd, grown.data() + h * new_cap * hd);
  store.swap(grown);
}
}  // namespace

void Phi3Model::KVCache::reserve(int64_t needed) {
  if (needed <= capacity) return;
  const int64_t cap = std::max<int64_t>(needed, std::max<int64_t>(256, capacity * 2));
  for (auto* store : {&k, &v})
    for (auto& layer : *store) grow(layer, kv_heads, head_dim, capacity, cap, length);
  for (auto* store : {&k16, &v16})
    for (auto& layer : *store) grow(layer, kv_heads, head_dim, capacity, cap, length);
  capacity = cap;
}

void Phi3Model::KVCache::store(int layer, int64_t pos, const float* key, const float* value) {
  const auto l = static_cast<size_t>(layer);
  for (int64_t h = 0; h < kv_heads; ++h) {
    const int64_t at = (h * capacity + pos) * head_dim;
    const float* kh = key + h * head_dim;
    const float* vh = value + h * head_dim;
    if (f16) {
      for (int64_t i = 0; i < head_dim; ++i) {
        k16[l][static_cast<size_t>(at + i)] = f32_to_f16(kh[i]);
        v16[l][static_cast<size_t>(at + i)] = f32_to_f16(vh[i]);
      }
    } else {
      std::copy_n(kh, head_dim, k[l].data() + at);
      std::copy_n(vh, head_dim, v[l].data() + at);
    }
  }
}

// fp32 caches are read in place; fp16 rows are converted into scratch.
static const float* cached_rows(const float* f32, const uint16_t* f16, int64_t offset, int64_t n, std::vector<float>& scratch) {
  if (f32) return f32 + offset;
  scratch.resize(static_cast<size_t>(n));
  kernels::WeightMatrix m{kernels::WeightFormat::F16, 1, n, reinterpret_cast<const std::byte*>(f16 + offset)};
  m.row_to_f32(0, scratch.data());
  return scratch.data();
}

const float* Phi3Model::KVCache::keys(int layer, int64_t head, int64_t pos, int64_t count, std::vector<float>& scratch) const {
  const auto l = static_cast<size_t>(layer);
  const int64_t at = (head * capacity + pos) * head_dim;
  return f16 ? cached_rows(nullptr, k16[l].data(), at, count * head_dim, scratch)
             : cached_rows(k[l].data(), nullptr, at, count * head_dim, scratch);
}

const float* Phi3Model::KVCache::values(int layer, int64_t head, int64_t pos, int64_t count, std::vector<float>& scratch) const {
  const auto l = static_cast<size_t>(layer);
  const int64_t at = (head * capacity + pos) * head_dim;
  return f16 ? cached_rows(nullptr, v16[l].data(), at, count * head_dim, scratch)
             : cached_rows(v[l].data(), nullptr, at, count * head_dim, scratch);
}

void Phi3Model::apply_rope(float* qk, int64_t n, int64_t pos0, int64_t stride, int64_t n_heads, RopeTable table) const {
  const auto& inv_freq = table == RopeTable::Long ? inv_freq_long_ : inv_freq_short_;
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  const int64_t hd = config_.head_dim;
  std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
  for (int64_t t = 0; t < n; ++t) {
    const double pos = static_cast<double>(pos0 + t);
    for (int64_t i = 0; i < half; ++i) {
      double angle = pos * inv_freq[static_cast<size_t>(i)];
      cos_t[static_cast<size_t>(i)] = static_cast<float>(std::cos(angle) * attention_factor_);
      sin_t[static_cast<size_t>(i)] = static_cast<float>(std::sin(angle) * attention_factor_);
    }
    float* row = qk + t * stride;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* x = row + h * hd;
      // rotate_half pairs dim i with i + rotary_dim/2; dims past rotary_dim pass through.
      for (int64_t i = 0; i < half; ++i) {
        const float a = x[i], b = x[i + half];
        const float c = cos_t[static_cast<size_t>(i)], s = sin_t[static_cast<size_t>(i)];
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
      }
    }
  }
}

// Blocked attention with an online softmax (as in FlashAttention): each job takes one kv head and a
// block of query positions (all query heads of its group), streams the visible keys/values in blocks,
// and keeps only a running max, sum and output per query row, so memory never grows with n^2.
void Phi3Model::attention(const float* q, const KVCache& cache, int layer, int64_t n, int64_t pos0, float* out,
                          kernels::ThreadPool& pool) const {
  constexpr int64_t kQueryBlock = 16, kKeyBlock = 64;
  const ModelConfig& c = config_;
  const int64_t hd = c.head_dim, kv_dim = c.kv_dim(), q_dim = c.q_dim();
  const int64_t group = c.num_attention_heads / c.num_key_value_heads;
  const int64_t q_stride = q_dim + 2 * kv_dim;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t n_qblocks = (n + kQueryBlock - 1) / kQueryBlock;
  // Query at position i sees key j iff 0 <= i - j < window.
  auto first_visible = [&](int64_t pos) { return window_ ? std::max<int64_t>(0, pos - *window_ + 1) : int64_t{0}; };

  pool.parallel_for(c.num_key_value_heads * n_qblocks, [&](int64_t b, int64_t e) {
    std::vector<float> kbuf, vbuf, scores(static_cast<size_t>(kKeyBlock));
    std::vector<float> row_max, row_sum, acc;
    for (int64_t job = b; job < e; ++job) {
      const int64_t kvh = job / n_qblocks, t0 = (job % n_qblocks) * kQueryBlock;
      const int64_t nt = std::min(kQueryBlock, n - t0);
      const int64_t rows = nt * group;  // row r: token t0 + r / group, head kvh * group + r % group
      row_max.assign(static_cast<size_t>(rows), -std::numeric_limits<float>::infinity());
      row_sum.assign(static_cast<size_t>(rows), 0.0f);
      acc.assign(static_cast<size_t>(rows * hd), 0.0f);
      const int64_t key_begin = first_visible(pos0 + t0), key_end = pos0 + t0 + nt;
      for (int64_t k0 = key_begin; k0 < key_end; k0 += kKeyBlock) {
        const int64_t nk = std::min(kKeyBlock, key_end - k0);
        const float* K = cache.keys(layer, kvh, k0, nk, kbuf);
        const float* V = cache.values(layer, kvh, k0, nk, vbuf);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t t = t0 + r / group, h = kvh * group + r % group, pos = pos0 + t;
          const int64_t j0 = std::max(k0, first_visible(pos)), j1 = std::min(k0 + nk, pos + 1);
          if (j0 >= j1) continue;
          const float* qr = q + t * q_stride + h * hd;
          float* sc = scores.data();
          const int64_t nj = j1 - j0;
          kernels::dot_rows(qr, K + (j0 - k0) * hd, nj, hd, sc);
          float block_max = -std::numeric_limits<float>::infinity();
          for (int64_t j = 0; j < nj; ++j) block_max = std::max(block_max, sc[j] *= scale);
          float& m = row_max[static_cast<size_t>(r)];
          float* a = acc.data() + r * hd;
          const float new_max = std::max(m, block_max);
          const float correction = std::exp(m - new_max);  // 0 on the first block (m = -inf)
          float& sum = row_sum[static_cast<size_t>(r)];
          sum *= correction;
          if (correction != 1.0f)
            for (int64_t d = 0; d < hd; ++d) a[d] *= correction;
          for (int64_t j = 0; j < nj; ++j) sum += sc[j] = std::exp(sc[j] - new_max);
          kernels::axpy_rows(sc, V + (j0 - k0) * hd, nj, hd, a);
          m = new_max;
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t t = t0 + r / group, h = kvh * group + r % group;
        const float inv = 1.0f / row_sum[static_cast<size_t>(r)];
        float* o = out + t * q_dim + h * hd;
        const float* a = acc.data() + r * hd;
        for (int64_t d = 0; d < hd; ++d) o[d] = a[d] * inv;
      }
    }
  });
}

void Phi3Model::forward(std::span<const int32_t> tokens, KVCache& cache, RopeTable table,
                        std::span<const int64_t> logit_rows, float* logits, kernels::ThreadPool& pool) const {
  const ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return;
  const int64_t H = c.hidden_size, I = c.intermediate_size, kv_dim = c.kv_dim(), q_dim = c.q_dim();
  const int64_t qkv_dim = q_dim + 2 * kv_dim;
  const int64_t pos0 = cache.length;
  if (cache.length > 0 && cache.table != table)
    throw Error("internal: KV cache was built with the other LongRoPE table; recompute the sequence");
  for (int32_t id : tokens)
    if (id < 0 || id >= c.vocab_size)
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
  for (int64_t r : logit_rows)
    if (r < 0 || r >= n) throw Error("internal: logit row out of range");
  cache.reserve(pos0 + n);
  cache.table = table;

  std::vector<float> x(static_cast<size_t>(n * H)), xn(static_cast<size_t>(n * H));
  std::vector<float> qkv(static_cast<size_t>(n * qkv_dim)), att(static_cast<size_t>(n * q_dim));
  std::vector<float> gu(static_cast<size_t>(n * 2 * I)), act(static_cast<size_t>(n * I)), tmp(static_cast<size_t>(n * H));
  for (int64_t t = 0; t < n; ++t) weights_.embed_tokens.row_to_f32(tokens[static_cast<size_t>(t)], x.data() + t * H);

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = weights_.layers[static_cast<size_t>(l)];
    for (int64_t t = 0; t < n; ++t) rms_norm(x.data() + t * H, L.input_norm.data(), H, c.rms_norm_eps, xn.data() + t * H);
    kernels::matmul(L.qkv_proj, xn.data(), n, qkv.data(), qkv_dim, pool);
    apply_rope(qkv.data(), n, pos0, qkv_dim, c.num_attention_heads, table);            // q
    apply_rope(qkv.data() + q_dim, n, pos0, qkv_dim, c.num_key_value_heads, table);    // k
    for (int64_t t = 0; t < n; ++t) {
      const float* row = qkv.data() + t * qkv_dim;
      cache.store(static_cast<int>(l), pos0 + t, row + q_dim, row + q_dim + kv_dim);
    }
    attention(qkv.data(), cache, static_cast<int>(l), n, pos0, att.data(), pool);
    kernels::matmul(L.o_proj, att.data(), n, tmp.data(), H, pool);
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];

    for (int64_t t = 0; t < n; ++t)
      rms_norm(x.data() + t * H, L.post_attention_norm.data(), H, c.rms_norm_eps, xn.data() + t * H);
    kernels::matmul(L.gate_up_proj, xn.data(), n, gu.data(), 2 * I, pool);
    for (int64_t t = 0; t < n; ++t) {
      const float* g = gu.data() + t * 2 * I;
      const float* u = g + I;
      float* a = act.data() + t * I;
      for (int64_t i = 0; i < I; ++i) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];  // SiLU(gate) * up
    }
    kernels::matmul(L.down_proj, act.data(), n, tmp.data(), H, pool);
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
  }
  cache.length = pos0 + n;

  if (logit_rows.empty()) return;
  std::vector<float> sel(logit_rows.size() * static_cast<size_t>(H));
  for (size_t r = 0; r < logit_rows.size(); ++r)
    rms_norm(x.data() + logit_rows[r] * H, weights_.final_norm.data(), H, c.rms_norm_eps, sel.data() + r * static_cast<size_t>(H));
  kernels::matmul(weights_.lm_head, sel.data(), static_cast<int64_t>(logit_rows.size()), logits, c.vocab_size, pool);
}

Sequence::Sequence(const Phi3Model& model, kernels::ThreadPool& pool)
    : model_(&model), pool_(&pool), cache_(model.new_cache()) {}

void Sequence::reset() {
  cache_ = model_->new_cache();
  tokens_.clear();
  last_logits_.clear();
}

void Sequence::truncate(size_t n) {
  if (n >= tokens_.size()) return;
  if (n == 0) return reset();
  tokens_.resize(n);
  cache_.length = static_cast<int64_t>(n);
  last_logits_.clear();
}

std::vector<float> Sequence::append_with_logits(std::span<const int32_t> tokens, std::span<const int64_t> rows,
                                                int64_t planned_length) {
  const int64_t vocab = model_->config().vocab_size;
  if (tokens.empty()) throw Error("internal: append of no tokens");
  const int64_t total = std::max<int64_t>(planned_length, static_cast<int64_t>(tokens_.size() + tokens.size()));
  const RopeTable table = model_->table_for_length(total);
  std::vector<float> out(rows.size() * static_cast<size_t>(vocab));
  if (cache_.length > 0 && cache_.table != table) {
    // The crossing: recompute everything (old tokens + new) with the new table, as transformers does.
    std::vector<int32_t> all(tokens_);
    all.insert(all.end(), tokens.begin(), tokens.end());
    std::vector<int64_t> shifted(rows.begin(), rows.end());
    for (auto& r : shifted) r += static_cast<int64_t>(tokens_.size());
    cache_ = model_->new_cache();
    model_->forward(all, cache_, table, shifted, out.data(), *pool_);
    ++recomputations_;
  } else {
    model_->forward(tokens, cache_, table, rows, out.data(), *pool_);
  }
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  return out;
}

const std::vector<float>& Sequence::append(std::span<const int32_t> tokens, int64_t planned_length) {
  const int64_t last = static_cast<int64_t>(tokens.size()) - 1;
  last_logits_ = append_with_logits(tokens, std::span<const int64_t>(&last, 1), planned_length);
  return last_logits_;
}

}  // namespace phinfer::model

namespace phinfer::model {

const nlohmann::json& Phi3Model::native_metadata() const {
  static const nlohmann::json none;
  return native_ ? native_->metadata() : none;
}

uint64_t Phi3Model::weight_bytes_per_token() const {
  uint64_t total = weights_.lm_head.bytes();
  for (const auto& L : weights_.layers)
    total += L.qkv_proj.bytes() + L.o_proj.bytes() + L.gate_up_proj.bytes() + L.down_proj.bytes();
  return total;
}

}  // namespace phinfer::model
