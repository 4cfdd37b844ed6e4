#include "model/weights.h"

#include <cmath>
#include <functional>
#include <set>

#include "model/gguf_weights.h"
#include "phinfer/error.h"

namespace phinfer::model {

using kernels::WeightFormat;
using kernels::WeightMatrix;

kernels::WeightMatrix as_matrix(const format::TensorView& t) {
  WeightMatrix m;
  m.format = t.dtype == DType::F32 ? WeightFormat::F32 : t.dtype == DType::F16 ? WeightFormat::F16 : WeightFormat::BF16;
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

std::string LoadedWeights::layer_tensor_name(int64_t layer, const char* field) {
  return "model.layers." + std::to_string(layer) + "." + field;
}

namespace {

// NativeFile::open has validated every entry (format, shape, grouping, byte size): only the
// shape this checkpoint schema expects is left to check.
WeightMatrix native_matrix(const format::NativeFile& f, const TensorSpec& spec) {
  const format::NativeTensor& t = f.require(spec.name);
  const auto shape = t.info["shape"].get<std::vector<int64_t>>();
  if (shape != spec.shape) {
    format::TensorView want, found;
    want.shape = spec.shape;
    found.shape = shape;
    throw Error(f.path().string() + ": tensor '" + spec.name + "': expected shape " + want.shape_string() + ", found " +
                found.shape_string());
  }
  return t.matrix;
}

// The layer index of "model.layers.<n>.<...>", or -1.
int64_t layer_of(const std::string& name) {
  static const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return -1;
  int64_t n = 0;
  size_t i = prefix.size();
  if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) {
    n = n * 10 + (name[i] - '0');
    if (n > (int64_t{1} << 40)) return -1;
  }
  return n;
}

// transformers only warns about checkpoint tensors the config does not use; a checkpoint with more
// layers than num_hidden_layers is a wrong config, and running it silently gives wrong output.
template <typename Map>
void reject_unused_layers(const Map& tensors, const ModelConfig& c, const std::string& where) {
  for (const auto& [name, t] : tensors) {
    const int64_t layer = layer_of(name);
    if (layer >= c.num_hidden_layers)
      throw Error(where + ": holds tensor '" + name + "' of layer " + std::to_string(layer) +
                  ", but the config's num_hidden_layers is " + std::to_string(c.num_hidden_layers));
  }
}

}  // namespace

LoadedWeights LoadedWeights::open(const std::filesystem::path& path, GgufWeights gguf) {
  LoadedWeights m;
  m.path_ = path;
  std::function<WeightMatrix(const TensorSpec&)> matrix;
  if (format::is_native_file(path)) {
    m.native_ = format::NativeFile::open(path);
    const auto& meta = m.native_->metadata();
    if (!meta.contains("config")) throw Error(path.string() + ": the model file has no config");
    m.config_ = ModelConfig::from_json(meta["config"], path.string() + " (config)");
    reject_unused_layers(m.native_->tensors(), m.config_, path.string());
    matrix = [&f = *m.native_](const TensorSpec& spec) { return native_matrix(f, spec); };
  } else if (format::is_gguf_file(path)) {
    m.gguf_ = std::make_shared<const format::GgufFile>(format::GgufFile::open(path));
    m.config_ = config_from_gguf(*m.gguf_);
    matrix = [&f = *m.gguf_, gguf, &owned = m.owned_](const TensorSpec& spec) { return gguf_matrix(f, spec, gguf, owned); };
  } else {
    if (!std::filesystem::is_directory(path))
      throw Error(path.string() + ": not a Hugging Face checkpoint folder, a phinfer model file or a GGUF file");
    m.config_ = ModelConfig::from_file(path / "config.json");
    m.checkpoint_ = format::SafetensorsCheckpoint::open(path);
    if (!m.config_.tie_word_embeddings && !m.checkpoint_.find("lm_head.weight"))
      throw Error(path.string() + ": tensor 'lm_head.weight' is missing and config.json has tie_word_embeddings false");
    reject_unused_layers(m.checkpoint_.tensors(), m.config_, path.string());
    matrix = [&ck = m.checkpoint_](const TensorSpec& spec) { return as_matrix(ck.require(spec.name, spec.shape)); };
  }
  const ModelConfig& c = m.config_;
  ModelWeights& w = m.weights_;
  w.layers.resize(static_cast<size_t>(c.num_hidden_layers));
  for (const TensorSpec& spec : expected_tensors(c)) {
    WeightMatrix mat = matrix(spec);
    std::vector<float> norm;
    if (spec.kind == TensorSpec::Kind::Norm) {
      // Norms are small and copied to fp32 anyway: check them here, once.
      norm = to_f32(mat);
      for (size_t i = 0; i < norm.size(); ++i)
        if (!std::isfinite(norm[i]))
          throw Error(path.string() + ": tensor '" + spec.name + "' holds a non-finite value (" +
                      std::to_string(norm[i]) + ") at index " + std::to_string(i));
    }
    if (spec.kind == TensorSpec::Kind::Embedding) w.embed_tokens = mat;
    if (spec.kind == TensorSpec::Kind::LmHead) w.lm_head = mat;
    if (spec.name == "model.norm.weight") w.final_norm = std::move(norm);
    const int64_t layer = layer_of(spec.name);
    if (layer < 0) continue;
    LayerWeights& L = w.layers[static_cast<size_t>(layer)];
    const std::string field = spec.name.substr(spec.name.find('.', 13) + 1);
    if (field == "self_attn.qkv_proj.weight") L.qkv_proj = mat;
    else if (field == "self_attn.o_proj.weight") L.o_proj = mat;
    else if (field == "mlp.gate_up_proj.weight") L.gate_up_proj = mat;
    else if (field == "mlp.down_proj.weight") L.down_proj = mat;
    else if (field == "input_layernorm.weight") L.input_norm = std::move(norm);
    else if (field == "post_attention_layernorm.weight") L.post_attention_norm = std::move(norm);
  }
  if (c.tie_word_embeddings) w.lm_head = w.embed_tokens;
  return m;
}

const nlohmann::json& LoadedWeights::native_metadata() const {
  static const nlohmann::json none;
  return native_ ? native_->metadata() : none;
}

void LoadedWeights::check_finite(int64_t layer) const {
  std::vector<float> row;
  auto check = [&](const WeightMatrix& m, const std::string& name) {
    row.resize(static_cast<size_t>(m.cols));
    for (int64_t r = 0; r < m.rows; ++r) {
      m.row_to_f32(r, row.data());
      for (int64_t c = 0; c < m.cols; ++c)
        if (!std::isfinite(row[static_cast<size_t>(c)]))
          throw Error(path_.string() + ": tensor '" + name + "' holds a non-finite value (" +
                      std::to_string(row[static_cast<size_t>(c)]) + ") at row " + std::to_string(r) + ", column " +
                      std::to_string(c) + (kernels::is_quantized(m.format) ? " (after dequantization: a scale or minimum is not finite)" : ""));
    }
  };
  if (layer < 0) {
    check(weights_.embed_tokens, "model.embed_tokens.weight");
    if (!config_.tie_word_embeddings) check(weights_.lm_head, "lm_head.weight");
    return;
  }
  const LayerWeights& L = weights_.layers[static_cast<size_t>(layer)];
  check(L.qkv_proj, layer_tensor_name(layer, "self_attn.qkv_proj.weight"));
  check(L.o_proj, layer_tensor_name(layer, "self_attn.o_proj.weight"));
  check(L.gate_up_proj, layer_tensor_name(layer, "mlp.gate_up_proj.weight"));
  check(L.down_proj, layer_tensor_name(layer, "mlp.down_proj.weight"));
}

}  // namespace phinfer::model
