#include "model/phi3.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "phinfer/error.h"

namespace phinfer::model {
namespace {

using kernels::WeightFormat;
using kernels::WeightMatrix;

WeightMatrix as_matrix(const format::TensorView& t) {
  WeightMatrix m;
  m.format = t.dtype == DType::F32 ? WeightFormat::F32 : t.dtype == DType::F16 ? WeightFormat::F16 : WeightFormat::BF16;
  m.rows = t.shape[0];
  m.cols = t.shape.size() > 1 ? t.shape[1] : 1;
  m.data = t.data.data();
  return m;
}

std::vector<float> as_vector(const format::TensorView& t) {
  WeightMatrix m = as_matrix(t);
  std::vector<float> v(static_cast<size_t>(t.numel()));
  m.cols = t.numel();
  m.rows = 1;
  m.row_to_f32(0, v.data());
  return v;
}

// HF Phi3RMSNorm: x / sqrt(mean(x^2) + eps) * weight.
void rms_norm(const float* x, const float* weight, int64_t n, double eps, float* out) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * scale);
}

}  // namespace

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

std::unique_ptr<Phi3Model> Phi3Model::load(const std::filesystem::path& dir, SlidingWindow window) {
  if (!std::filesystem::is_directory(dir)) throw Error(dir.string() + ": not a directory (expected a Hugging Face checkpoint folder)");
  std::unique_ptr<Phi3Model> m(new Phi3Model());
  m->config_ = ModelConfig::from_file(dir / "config.json");
  const ModelConfig& c = m->config_;
  m->checkpoint_ = format::SafetensorsCheckpoint::open(dir);
  const auto& ck = m->checkpoint_;

  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  ModelWeights& w = m->weights_;
  w.embed_tokens = as_matrix(ck.require("model.embed_tokens.weight", {V, H}));
  w.final_norm = as_vector(ck.require("model.norm.weight", {H}));
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed_tokens;
  } else {
    if (!ck.find("lm_head.weight"))
      throw Error(dir.string() + ": tensor 'lm_head.weight' is missing and config.json has tie_word_embeddings false");
    w.lm_head = as_matrix(ck.require("lm_head.weight", {V, H}));
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights L;
    L.qkv_proj = as_matrix(ck.require(p + "self_attn.qkv_proj.weight", {c.q_dim() + 2 * c.kv_dim(), H}));
    L.o_proj = as_matrix(ck.require(p + "self_attn.o_proj.weight", {H, c.q_dim()}));
    L.gate_up_proj = as_matrix(ck.require(p + "mlp.gate_up_proj.weight", {2 * I, H}));
    L.down_proj = as_matrix(ck.require(p + "mlp.down_proj.weight", {H, I}));
    L.input_norm = as_vector(ck.require(p + "input_layernorm.weight", {H}));
    L.post_attention_norm = as_vector(ck.require(p + "post_attention_layernorm.weight", {H}));
    w.layers.push_back(std::move(L));
  }

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
  cache.k.resize(static_cast<size_t>(config_.num_hidden_layers));
  cache.v.resize(static_cast<size_t>(config_.num_hidden_layers));
  return cache;
}

static void ensure_capacity(Phi3Model::KVCache& cache, int64_t needed, int64_t kv_dim) {
  if (needed <= cache.capacity) return;
  int64_t cap = std::max<int64_t>(needed, std::max<int64_t>(256, cache.capacity * 2));
  for (auto* store : {&cache.k, &cache.v})
    for (auto& layer : *store) layer.resize(static_cast<size_t>(cap * kv_dim));
  cache.capacity = cap;
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

void Phi3Model::attention(const float* q, const KVCache& cache, int layer, int64_t n, int64_t pos0, float* out,
                          kernels::ThreadPool& pool) const {
  const ModelConfig& c = config_;
  const int64_t hd = c.head_dim, n_heads = c.num_attention_heads, kv_dim = c.kv_dim();
  const int64_t group = c.num_attention_heads / c.num_key_value_heads;
  const int64_t q_stride = c.q_dim() + 2 * kv_dim;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const float* K = cache.k[static_cast<size_t>(layer)].data();
  const float* V = cache.v[static_cast<size_t>(layer)].data();
  pool.parallel_for(n * n_heads, [&](int64_t b, int64_t e) {
    std::vector<float> scores;
    for (int64_t job = b; job < e; ++job) {
      const int64_t t = job / n_heads, h = job % n_heads, kvh = h / group;
      const int64_t pos = pos0 + t;
      // Query at position i sees key j iff 0 <= i - j < window.
      const int64_t first = window_ ? std::max<int64_t>(0, pos - *window_ + 1) : 0;
      const int64_t count = pos - first + 1;
      scores.resize(static_cast<size_t>(count));
      const float* qh = q + t * q_stride + h * hd;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < count; ++j) {
        float s = kernels::dot(qh, K + (first + j) * kv_dim + kvh * hd, hd) * scale;
        scores[static_cast<size_t>(j)] = s;
        mx = std::max(mx, s);
      }
      float sum = 0;
      for (auto& s : scores) {
        s = std::exp(s - mx);
        sum += s;
      }
      float* o = out + t * c.q_dim() + h * hd;
      std::fill(o, o + hd, 0.0f);
      const float inv = 1.0f / sum;
      for (int64_t j = 0; j < count; ++j)
        kernels::axpy(scores[static_cast<size_t>(j)] * inv, V + (first + j) * kv_dim + kvh * hd, o, hd);
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
  ensure_capacity(cache, pos0 + n, kv_dim);
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
    float* K = cache.k[static_cast<size_t>(l)].data();
    float* V = cache.v[static_cast<size_t>(l)].data();
    for (int64_t t = 0; t < n; ++t) {
      std::copy_n(qkv.data() + t * qkv_dim + q_dim, kv_dim, K + (pos0 + t) * kv_dim);
      std::copy_n(qkv.data() + t * qkv_dim + q_dim + kv_dim, kv_dim, V + (pos0 + t) * kv_dim);
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

std::vector<float> Sequence::append_with_logits(std::span<const int32_t> tokens, std::span<const int64_t> rows) {
  const int64_t vocab = model_->config().vocab_size;
  if (tokens.empty()) throw Error("internal: append of no tokens");
  const int64_t total = static_cast<int64_t>(tokens_.size() + tokens.size());
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

const std::vector<float>& Sequence::append(std::span<const int32_t> tokens) {
  const int64_t last = static_cast<int64_t>(tokens.size()) - 1;
  last_logits_ = append_with_logits(tokens, std::span<const int64_t>(&last, 1));
  return last_logits_;
}

}  // namespace phinfer::model
