#include "model/phi3.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "phinfer/error.h"

namespace phinfer::model {
namespace {

// HF Phi3RMSNorm: x / sqrt(mean(x^2) + eps) * weight. The sum of squares is taken in double in 8
// lanes (element i in lane i % 8) summed pairwise at the end: a fixed order that vectorizes.
void rms_norm(const float* x, const float* weight, int64_t n, double eps, float* out) {
  double lane[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lane[l] += static_cast<double>(x[i + l]) * x[i + l];
  for (int l = 0; i < n; ++i, ++l) lane[l] += static_cast<double>(x[i]) * x[i];
  for (int w = 4; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) lane[l] += lane[l + w];
  const double ss = lane[0];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * scale);
}

template <typename T>
void grow_to(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
}

constexpr int64_t kQueryBlock = 16, kKeyBlock = 64;
constexpr int64_t kPrefetchBlocks = 1;  // key blocks ahead that attention asks the cache for
static_assert(kKeyBlock <= kernels::kMaxConvertedRows, "a key block is converted in one piece");

}  // namespace

void check_token_ids(std::span<const int32_t> ids, int64_t vocab_size) {
  for (int32_t id : ids)
    if (id < 0 || id >= vocab_size)
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
}

std::optional<int64_t> SlidingWindow::resolve(const ModelConfig& config) const {
  switch (mode) {
    case Mode::Auto: return config.sliding_window;
    case Mode::Off: return std::nullopt;
    case Mode::Fixed: return size;
  }
  return std::nullopt;
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
  throw Error("sliding window: expected auto, off or a positive integer, found '" + text + "'");
}

Activations::Activations(const ModelConfig& c, int64_t rows, int64_t logit_rows) { ensure(c, rows, logit_rows); }

void Activations::ensure(const ModelConfig& c, int64_t rows, int64_t logit_rows) {
  if (rows <= max_rows && logit_rows <= max_logit_rows) return;
  max_rows = std::max(max_rows, rows);
  max_logit_rows = std::max(max_logit_rows, logit_rows);
  const int64_t n = max_rows, H = c.hidden_size, I = c.intermediate_size;
  grow_to(x, n * H);
  grow_to(xn, n * H);
  grow_to(qkv, n * (c.q_dim() + 2 * c.kv_dim()));
  grow_to(att, n * c.q_dim());
  grow_to(gate_up, n * 2 * I);
  grow_to(act, n * I);
  grow_to(tmp, n * H);
  grow_to(rope_cos, n * (c.rotary_dim() / 2));
  grow_to(rope_sin, n * (c.rotary_dim() / 2));
  grow_to(selected, max_logit_rows * H);
  grow_to(logits, max_logit_rows * c.vocab_size);
  jobs.reserve(static_cast<size_t>(c.num_key_value_heads * (n + kQueryBlock)));
}

std::unique_ptr<Phi3Model> Phi3Model::load(const std::filesystem::path& path, SlidingWindow window) {
  return std::make_unique<Phi3Model>(LoadedWeights::open(path), window);
}

Phi3Model::Phi3Model(LoadedWeights weights, SlidingWindow window) : loaded_(std::move(weights)) {
  const ModelConfig& c = config();
  window_ = window.resolve(c);
  // inv_freq[i] = 1 / (factor[i] * theta^(2i / rotary_dim)), in double: closest to the reference.
  const int64_t half = c.rotary_dim() / 2;
  const std::string where = loaded_.path().string() + ": config";
  for (int64_t i = 0; i < half; ++i) {
    double base = std::pow(c.rope_theta, static_cast<double>(2 * i) / static_cast<double>(c.rotary_dim()));
    double s = c.rope_scaling ? c.rope_scaling->short_factor[static_cast<size_t>(i)] : 1.0;
    double lf = c.rope_scaling ? c.rope_scaling->long_factor[static_cast<size_t>(i)] : 1.0;
    inv_freq_short_.push_back(1.0 / (s * base));
    inv_freq_long_.push_back(1.0 / (lf * base));
    // The tables are used in float: a factor that over- or underflows there makes every logit NaN.
    for (double f : {inv_freq_short_.back(), inv_freq_long_.back()})
      if (!std::isfinite(static_cast<float>(f)) || (f != 0 && static_cast<float>(f) == 0.0f))
        throw Error(where + ": RoPE frequency " + std::to_string(i) + " (from rope_theta " + std::to_string(c.rope_theta) +
                    " and factor " + std::to_string(f == inv_freq_short_.back() ? s : lf) +
                    ") is not representable in float: expected a finite, non-zero value, found " + std::to_string(f));
  }
  attention_factor_ = c.rope_scaling ? c.rope_scaling->attention_factor : 1.0;
  if (!std::isfinite(static_cast<float>(attention_factor_)) || attention_factor_ <= 0)
    throw Error(where + ": rope_scaling attention factor must be finite and positive, found " +
                std::to_string(attention_factor_));
}

RopeTable Phi3Model::table_for_length(int64_t total_length) const {
  const ModelConfig& c = config();
  return c.rope_scaling && total_length > c.original_max_position_embeddings ? RopeTable::Long : RopeTable::Short;
}

uint64_t Phi3Model::weight_bytes_per_token() const {
  const ModelWeights& w = weights();
  uint64_t total = w.lm_head.bytes();
  for (const auto& L : w.layers) total += L.qkv_proj.bytes() + L.o_proj.bytes() + L.gate_up_proj.bytes() + L.down_proj.bytes();
  return total;
}

void Phi3Model::rope_row(RopeTable table, int64_t position, float* cs, float* sn) const {
  const int64_t half = config().rotary_dim() / 2;
  const auto& inv_freq = table == RopeTable::Long ? inv_freq_long_ : inv_freq_short_;
  const double pos = static_cast<double>(position);
  for (int64_t i = 0; i < half; ++i) {
    const double angle = pos * inv_freq[static_cast<size_t>(i)];
    cs[i] = static_cast<float>(std::cos(angle) * attention_factor_);
    sn[i] = static_cast<float>(std::sin(angle) * attention_factor_);
  }
}

void Phi3Model::rope_tables(const ForwardBatch& batch, Activations& acts) const {
  const int64_t half = config().rotary_dim() / 2;
  for (int64_t r = 0; r < batch.rows(); ++r)
    rope_row(batch.seqs[static_cast<size_t>(batch.row_seq[static_cast<size_t>(r)])].table,
             batch.positions[static_cast<size_t>(r)], acts.rope_cos.data() + r * half, acts.rope_sin.data() + r * half);
}

void Phi3Model::apply_rope(float* row, const Activations& acts, int64_t t, int64_t n_heads) const {
  const int64_t half = config().rotary_dim() / 2, hd = config().head_dim;
  const float* cs = acts.rope_cos.data() + t * half;
  const float* sn = acts.rope_sin.data() + t * half;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* x = row + h * hd;
    // rotate_half pairs dim i with i + rotary_dim/2; dims past rotary_dim pass through.
    for (int64_t i = 0; i < half; ++i) {
      const float a = x[i], b = x[i + half];
      x[i] = a * cs[i] - b * sn[i];
      x[i + half] = b * cs[i] + a * sn[i];
    }
  }
}

namespace {
// x[j] *= scale for j < n; returns the largest x[j] (-inf for n = 0). In 16 lanes so that the
// compare chains overlap: the maximum of finite numbers does not depend on the order.
float scale_and_max(float* x, int64_t n, float scale) {
  constexpr int kLanes = 16;
  float lanes[kLanes];
  std::fill_n(lanes, kLanes, -std::numeric_limits<float>::infinity());
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] = std::max(lanes[l], x[j + l] *= scale);
  for (; j < n; ++j) lanes[0] = std::max(lanes[0], x[j] *= scale);
  return *std::max_element(lanes, lanes + kLanes);
}
}  // namespace

// Blocked attention with an online softmax (as in FlashAttention): each job takes one sequence,
// one kv head and a block of that sequence's query rows (all query heads of the group), streams
// the visible keys/values in blocks, and keeps only a running max, sum and output per query row.
// Key blocks are aligned to absolute positions (multiples of kKeyBlock, clipped to what a row
// sees), so a row's result does not depend on which rows share its job.
void Phi3Model::attention(const ForwardBatch& batch, Activations& acts, int layer, kernels::ThreadPool& pool) const {
  const ModelConfig& c = config();
  const int64_t hd = c.head_dim, kv_dim = c.kv_dim(), q_dim = c.q_dim();
  const int64_t group = c.num_attention_heads / c.num_key_value_heads;
  const int64_t q_stride = q_dim + 2 * kv_dim;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  auto first_visible = [&](int64_t pos) { return window_ ? std::max<int64_t>(0, pos - *window_ + 1) : int64_t{0}; };

  acts.jobs.clear();
  for (size_t s = 0; s < batch.seqs.size(); ++s)
    for (int64_t h = 0; h < c.num_key_value_heads; ++h)
      for (int64_t t0 = 0; t0 < batch.seqs[s].n_rows; t0 += kQueryBlock)
        acts.jobs.push_back({static_cast<int32_t>(s), static_cast<int32_t>(h), t0});
  const float* q = acts.qkv.data();
  float* out = acts.att.data();

  pool.parallel_for(static_cast<int64_t>(acts.jobs.size()), [&](int64_t b, int64_t e) {
    // Per-thread scratch, grown once.
    thread_local std::vector<float> scores, row_max, row_sum, acc;
    grow_to(scores, kernels::kMaxQueryRows * kKeyBlock);
    grow_to(row_max, kQueryBlock * group);
    grow_to(row_sum, kQueryBlock * group);
    grow_to(acc, kQueryBlock * group * hd);
    for (int64_t job = b; job < e; ++job) {
      const Activations::AttentionJob& J = acts.jobs[static_cast<size_t>(job)];
      const ForwardBatch::Sequence& S = batch.seqs[static_cast<size_t>(J.seq)];
      const KVCache& cache = *S.cache;
      const int64_t kvh = J.kv_head, t0 = J.first_row;
      const int64_t nt = std::min(kQueryBlock, S.n_rows - t0);
      const int64_t pos0 = batch.positions[static_cast<size_t>(S.first_row)];  // position of the sequence's row 0
      const int64_t rows = nt * group;  // row r: token t0 + r / group, head kvh * group + r % group
      std::fill_n(row_max.begin(), rows, -std::numeric_limits<float>::infinity());
      std::fill_n(row_sum.begin(), rows, 0.0f);
      std::fill_n(acc.begin(), rows * hd, 0.0f);
      const int64_t key_end = pos0 + t0 + nt;
      // Keys of row r within block [k0, k0 + nk): its window, up to its own position.
      auto visible = [&](int64_t k0, int64_t nk, int64_t r) {
        const int64_t pos = pos0 + t0 + r / group;
        return std::pair<int64_t, int64_t>{std::max(k0, first_visible(pos)), std::min(k0 + nk, pos + 1)};
      };
      constexpr int kMaxQ = kernels::kMaxQueryRows;
      for (int64_t k0 = first_visible(pos0 + t0) / kKeyBlock * kKeyBlock; k0 < key_end; k0 += kKeyBlock) {
        const int64_t nk = std::min(kKeyBlock, key_end - k0);
        const int64_t ahead = k0 + kPrefetchBlocks * kKeyBlock;
        const int64_t n_ahead = ahead < key_end ? std::min(kKeyBlock, key_end - ahead) : 0;
        cache.prefetch(KVCache::Part::Keys, layer, kvh, ahead, n_ahead);
        bool values_asked = false;
        // Consecutive rows that see the same keys (the query heads of one token; in prefill, the rows
        // past the block) read the block together, so each key and value is loaded once for them.
        for (int64_t r = 0; r < rows;) {
          const auto [j0, j1] = visible(k0, nk, r);
          int nq = 1;
          while (nq < kMaxQ && r + nq < rows && visible(k0, nk, r + nq) == std::pair{j0, j1}) ++nq;
          if (j0 >= j1) {
            r += nq;
            continue;
          }
          const int64_t nj = j1 - j0;
          const float* qs[kMaxQ];
          float* sc[kMaxQ];
          float* a[kMaxQ];
          for (int i = 0; i < nq; ++i) {
            const int64_t t = t0 + (r + i) / group, h = kvh * group + (r + i) % group;
            qs[i] = q + (S.first_row + t) * q_stride + h * hd;
            sc[i] = scores.data() + i * kKeyBlock;
            a[i] = acc.data() + (r + i) * hd;
          }
          cache.key_scores(layer, kvh, j0, nj, qs, nq, sc);
          if (!values_asked) cache.prefetch(KVCache::Part::Values, layer, kvh, ahead, n_ahead);  // spread over the block
          values_asked = true;
          for (int i = 0; i < nq; ++i) {
            float* si = sc[i];
            const float block_max = scale_and_max(si, nj, scale);
            float& m = row_max[static_cast<size_t>(r + i)];
            const float new_max = std::max(m, block_max);
            const float correction = std::exp(m - new_max);  // 0 on the first block (m = -inf)
            float& sum = row_sum[static_cast<size_t>(r + i)];
            sum *= correction;
            if (correction != 1.0f)
              for (int64_t d = 0; d < hd; ++d) a[i][d] *= correction;
            kernels::exp_minus(si, nj, new_max);
            for (int64_t j = 0; j < nj; ++j) sum += si[j];
            m = new_max;
          }
          cache.add_weighted_values(layer, kvh, j0, nj, sc, nq, a);
          r += nq;
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t t = t0 + r / group, h = kvh * group + r % group;
        const float inv = 1.0f / row_sum[static_cast<size_t>(r)];
        float* o = out + (S.first_row + t) * q_dim + h * hd;
        const float* a = acc.data() + r * hd;
        for (int64_t d = 0; d < hd; ++d) o[d] = a[d] * inv;
      }
    }
  });
}

void Phi3Model::non_finite(const ForwardBatch& batch, int64_t layer, int64_t row, const char* what) const {
  loaded_.check_finite(layer);  // throws naming the tensor when a weight is at fault
  throw Error(loaded_.path().string() + ": the forward pass produced a non-finite " + what +
              (layer >= 0 ? " after layer " + std::to_string(layer) : std::string()) + " at position " +
              std::to_string(batch.positions[static_cast<size_t>(row)]) + " (token id " +
              std::to_string(batch.tokens[static_cast<size_t>(row)]) + "); every weight is finite, so values overflowed float");
}

void Phi3Model::forward(const ForwardBatch& batch, Activations& acts, kernels::ThreadPool& pool) const {
  const ModelConfig& c = config();
  const ModelWeights& w = weights();
  const int64_t n = batch.rows();
  if (n == 0) return;
  const int64_t H = c.hidden_size, I = c.intermediate_size, kv_dim = c.kv_dim(), q_dim = c.q_dim();
  const int64_t qkv_dim = q_dim + 2 * kv_dim;
  const auto n_logits = static_cast<int64_t>(batch.logit_rows.size());

  // Check the whole batch before touching any cache: a bad call changes nothing.
  int64_t next_row = 0;
  for (const ForwardBatch::Sequence& S : batch.seqs) {
    if (!S.cache || S.first_row != next_row || S.n_rows <= 0)
      throw Error("internal: forward batch rows are not grouped by sequence");
    next_row += S.n_rows;
    if (S.cache->length > 0 && S.cache->table != S.table)
      throw Error("internal: KV cache was built with the other LongRoPE table; recompute the sequence");
    if (S.cache->layers != c.num_hidden_layers || S.cache->kv_heads != c.num_key_value_heads || S.cache->head_dim != c.head_dim)
      throw Error("internal: KV cache of another model shape");
  }
  if (next_row != n) throw Error("internal: forward batch rows are not grouped by sequence");
  check_token_ids(batch.tokens, c.vocab_size);
  for (int64_t r : batch.logit_rows)
    if (r < 0 || r >= n) throw Error("internal: logit row out of range");
  // A cache that is too small grows by doubling (a caller that appends token by token pays O(1) per token).
  for (const ForwardBatch::Sequence& S : batch.seqs)
    if (S.cache->length + S.n_rows > S.cache->capacity)
      S.cache->reserve(std::max({S.cache->length + S.n_rows, 2 * S.cache->capacity, int64_t{256}}));
  acts.ensure(c, n, n_logits);

  float* x = acts.x.data();
  float* xn = acts.xn.data();
  float* qkv = acts.qkv.data();
  float* tmp = acts.tmp.data();
  for (int64_t t = 0; t < n; ++t) {
    w.embed_tokens.row_to_f32(batch.tokens[static_cast<size_t>(t)], x + t * H);
    if (kernels::first_non_finite(x + t * H, H) >= 0) non_finite(batch, -1, t, "embedding");
  }
  rope_tables(batch, acts);

  // The work between the matrix products is per row: each such step runs over the rows in parallel
  // (a row's result does not depend on which thread computes it).
  auto each_row = [&](auto&& fn) {
    pool.parallel_for(n, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) fn(t);
    });
  };
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = w.layers[static_cast<size_t>(l)];
    each_row([&](int64_t t) { rms_norm(x + t * H, L.input_norm.data(), H, c.rms_norm_eps, xn + t * H); });
    kernels::matmul(L.qkv_proj, xn, n, qkv, qkv_dim, pool);
    each_row([&](int64_t t) {
      float* row = qkv + t * qkv_dim;
      apply_rope(row, acts, t, c.num_attention_heads);          // q
      apply_rope(row + q_dim, acts, t, c.num_key_value_heads);  // k
      KVCache& cache = *batch.seqs[static_cast<size_t>(batch.row_seq[static_cast<size_t>(t)])].cache;
      cache.store(static_cast<int>(l), batch.positions[static_cast<size_t>(t)], row + q_dim, row + q_dim + kv_dim);
    });
    attention(batch, acts, static_cast<int>(l), pool);
    kernels::matmul(L.o_proj, acts.att.data(), n, tmp, H, pool);
    each_row([&](int64_t t) {
      float* xt = x + t * H;
      const float* dt = tmp + t * H;
      for (int64_t i = 0; i < H; ++i) xt[i] += dt[i];
      rms_norm(xt, L.post_attention_norm.data(), H, c.rms_norm_eps, xn + t * H);
    });
    kernels::matmul(L.gate_up_proj, xn, n, acts.gate_up.data(), 2 * I, pool);
    each_row([&](int64_t t) {
      const float* g = acts.gate_up.data() + t * 2 * I;
      kernels::silu_mul(g, g + I, acts.act.data() + t * I, I);  // SiLU(gate) * up
    });
    kernels::matmul(L.down_proj, acts.act.data(), n, tmp, H, pool);
    each_row([&](int64_t t) {
      float* xt = x + t * H;
      const float* dt = tmp + t * H;
      for (int64_t i = 0; i < H; ++i) xt[i] += dt[i];
    });
    if (const int64_t bad = kernels::first_non_finite(x, n * H); bad >= 0) non_finite(batch, l, bad / H, "hidden state");
  }
  if (n_logits > 0) {
    float* sel = acts.selected.data();
    for (int64_t r = 0; r < n_logits; ++r)
      rms_norm(x + batch.logit_rows[static_cast<size_t>(r)] * H, w.final_norm.data(), H, c.rms_norm_eps, sel + r * H);
    kernels::matmul(w.lm_head, sel, n_logits, acts.logits.data(), c.vocab_size, pool);
    for (int64_t r = 0; r < n_logits; ++r)
      if (kernels::first_non_finite(acts.logits.data() + r * c.vocab_size, c.vocab_size) >= 0)
        non_finite(batch, -1, batch.logit_rows[static_cast<size_t>(r)], "logit");
  }
  // Only a call that succeeded extends the caches: after an error they hold what they held.
  for (const ForwardBatch::Sequence& S : batch.seqs) {
    S.cache->length += S.n_rows;
    S.cache->table = S.table;
  }
}

}  // namespace phinfer::model
