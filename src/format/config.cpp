#include "phinfer/config.h"

#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "format/json_file.h"
#include "phinfer/error.h"

namespace phinfer {
namespace {

using nlohmann::json;

// Field readers that explain what is wrong: "<file>: field 'x': expected ..., found ...".
struct FieldReader {
  const json& j;
  const std::string& source;

  [[noreturn]] void fail(const std::string& key, const std::string& expected) const {
    // json_brief, not dump: a deeply nested value must not exhaust the stack.
    std::string found = j.contains(key) ? format::json_brief(j.at(key)) : "nothing";
    throw Error(source + ": field '" + key + "': expected " + expected + ", found " + found);
  }
  bool has(const std::string& key) const { return j.contains(key) && !j.at(key).is_null(); }

  int64_t integer(const std::string& key, int64_t lo, int64_t hi) const {
    if (!has(key) || !j.at(key).is_number_integer()) fail(key, "an integer");
    auto x = format::json_integer(j.at(key), lo, hi);
    if (!x) fail(key, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return *x;
  }
  int64_t integer_or(const std::string& key, int64_t def, int64_t lo, int64_t hi) const {
    return has(key) ? integer(key, lo, hi) : def;
  }
  double number(const std::string& key, double lo, double hi) const {
    if (!has(key) || !j.at(key).is_number()) fail(key, "a number");
    double x = j.at(key).get<double>();
    if (!(x >= lo && x <= hi)) fail(key, "a number in [" + range_text(lo, hi) + "]");
    return x;
  }
  double number_or(const std::string& key, double def, double lo, double hi) const {
    return has(key) ? number(key, lo, hi) : def;
  }
  bool boolean_or(const std::string& key, bool def) const {
    if (!has(key)) return def;
    if (!j.at(key).is_boolean()) fail(key, "true or false");
    return j.at(key).get<bool>();
  }
  std::string string_or(const std::string& key, const std::string& def) const {
    if (!has(key)) return def;
    if (!j.at(key).is_string()) fail(key, "a string");
    return j.at(key).get<std::string>();
  }
  std::optional<int32_t> token_id(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    return static_cast<int32_t>(integer(key, 0, INT32_MAX));
  }
  // eos_token_id may be one integer or a list of them.
  std::vector<int32_t> token_ids(const std::string& key) const {
    std::vector<int32_t> out;
    if (!has(key)) return out;
    const json& v = j.at(key);
    if (v.is_number_integer()) {
      out.push_back(static_cast<int32_t>(integer(key, 0, INT32_MAX)));
    } else if (v.is_array()) {
      for (const json& e : v) {
        auto id = format::json_integer(e, 0, INT32_MAX);
        if (!id) fail(key, "an integer token id or a list of them");
        out.push_back(static_cast<int32_t>(*id));
      }
    } else {
      fail(key, "an integer token id or a list of them");
    }
    return out;
  }
  // Every entry in [lo, hi]: the bounds keep the values finite and nonzero once narrowed to float.
  std::vector<float> float_list(const std::string& key, double lo, double hi) const {
    if (!has(key) || !j.at(key).is_array()) fail(key, "a list of numbers");
    std::vector<float> out;
    const json& list = j.at(key);
    for (size_t i = 0; i < list.size(); ++i) {
      const json& e = list[i];
      const double x = e.is_number() ? e.get<double>() : std::nan("");
      if (!(x >= lo && x <= hi))
        throw Error(source + ": field '" + key + "': expected a list of numbers, each positive and in [" + range_text(lo, hi) +
                    "], found " + format::json_brief(e) + " at index " + std::to_string(i));
      out.push_back(static_cast<float>(x));
    }
    return out;
  }

  static std::string range_text(double lo, double hi) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g, %g", lo, hi);
    return buf;
  }
};

// Bounds on the floating-point fields that keep every derived float finite and nonzero: an RMS
// epsilon of 1e-300 makes 1/sqrt(eps) overflow a float, a LongRoPE factor of 1e-300 or 1e300
// becomes 0 or inf in float and every logit NaN.
constexpr double kMinRmsNormEps = 1e-12;
constexpr double kMinRopeFactor = 1e-6, kMaxRopeFactor = 1e6;
constexpr double kMinAttentionFactor = 1e-6, kMaxAttentionFactor = 100.0;
constexpr double kMaxRopeTheta = 1e12;
constexpr double kMinTemperature = 1e-6, kMaxTemperature = 1e6;

constexpr int64_t kMaxDim = int64_t{1} << 20;    // far above any Phi model, far below overflow
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxPositions = int64_t{1} << 24;

// As transformers (Phi3SuScaledRotaryEmbedding, and _compute_longrope_parameters for configs with
// original_max_position_embeddings, which Phi3Config always has): factor = max / original (a
// rope_scaling "factor" does not enter), attention factor sqrt(1 + ln(factor) / ln(original)).
double default_attention_factor(int64_t max_positions, int64_t original_max_positions) {
  const double factor = static_cast<double>(max_positions) / static_cast<double>(original_max_positions);
  if (factor <= 1.0) return 1.0;
  return std::sqrt(1.0 + std::log(factor) / std::log(static_cast<double>(original_max_positions)));
}

// The rotary inverse frequencies theta^(-2i/d) / factor_i as the model uses them (in float): each
// must be finite and nonzero. The field bounds guarantee it; this states the invariant the forward
// pass relies on, so a change of bounds cannot silently break it.
void check_rotary_frequencies(const ModelConfig& c, const std::string& source) {
  const int64_t half = c.rotary_dim() / 2;
  auto check = [&](const std::vector<float>* factors, const char* table) {
    for (int64_t i = 0; i < half; ++i) {
      const double base = std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(c.rotary_dim()));
      const double factor = factors ? static_cast<double>((*factors)[static_cast<size_t>(i)]) : 1.0;
      const float inv_freq = static_cast<float>(base / factor);
      if (!std::isfinite(inv_freq) || !(inv_freq > 0.0f))
        throw Error(source + ": rope_theta " + std::to_string(c.rope_theta) + (factors ? std::string(" with ") + table : "") +
                    " gives rotary frequency " + std::to_string(i) + " = " + std::to_string(base / factor) +
                    ", which is not a finite nonzero float");
    }
  };
  check(nullptr, "");
  if (c.rope_scaling) {
    check(&c.rope_scaling->short_factor, "short_factor");
    check(&c.rope_scaling->long_factor, "long_factor");
    const float af = static_cast<float>(c.rope_scaling->attention_factor);
    if (!std::isfinite(af) || !(af > 0.0f))
      throw Error(source + ": rope_scaling attention factor " + std::to_string(c.rope_scaling->attention_factor) +
                  " is not a finite positive float");
  }
}

}  // namespace

int64_t ModelConfig::rotary_dim() const {
  int64_t d = static_cast<int64_t>(std::llround(static_cast<double>(head_dim) * partial_rotary_factor));
  return d - (d % 2);
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": expected a JSON object");
  FieldReader r{j, source};
  ModelConfig c;
  c.model_type = r.string_or("model_type", "phi3");
  if (c.model_type != "phi3")
    throw Error(source + ": model_type '" + c.model_type + "' is not supported (expected 'phi3', the Phi3ForCausalLM family)");
  std::string act = r.string_or("hidden_act", "silu");
  if (act != "silu") throw Error(source + ": hidden_act '" + act + "' is not supported (expected 'silu')");

  c.vocab_size = r.integer("vocab_size", 1, kMaxVocab);
  c.hidden_size = r.integer("hidden_size", 1, kMaxDim);
  c.intermediate_size = r.integer("intermediate_size", 1, kMaxDim);
  c.num_hidden_layers = r.integer("num_hidden_layers", 1, 4096);
  c.num_attention_heads = r.integer("num_attention_heads", 1, 4096);
  c.num_key_value_heads = r.integer_or("num_key_value_heads", c.num_attention_heads, 1, 4096);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    throw Error(source + ": num_attention_heads (" + std::to_string(c.num_attention_heads) +
                ") must be a multiple of num_key_value_heads (" + std::to_string(c.num_key_value_heads) + ")");
  if (r.has("head_dim")) {
    c.head_dim = r.integer("head_dim", 2, kMaxDim);
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      throw Error(source + ": hidden_size (" + std::to_string(c.hidden_size) +
                  ") is not divisible by num_attention_heads (" + std::to_string(c.num_attention_heads) + ")");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  c.rms_norm_eps = r.number_or("rms_norm_eps", 1e-5, kMinRmsNormEps, 1.0);
  c.rope_theta = r.number_or("rope_theta", 10000.0, 1.0, kMaxRopeTheta);
  c.partial_rotary_factor = r.number_or("partial_rotary_factor", 1.0, 0.0, 1.0);
  if (c.rotary_dim() < 2) throw Error(source + ": partial_rotary_factor leaves fewer than 2 rotary dimensions");
  c.max_position_embeddings = r.integer_or("max_position_embeddings", 4096, 1, kMaxPositions);
  c.original_max_position_embeddings =
      r.integer_or("original_max_position_embeddings", c.max_position_embeddings, 1, kMaxPositions);
  if (r.has("sliding_window")) c.sliding_window = r.integer("sliding_window", 1, kMaxPositions * 16);
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", false);
  c.bos_token_id = r.token_id("bos_token_id");
  c.eos_token_ids = r.token_ids("eos_token_id");
  c.pad_token_id = r.token_id("pad_token_id");
  c.torch_dtype = r.string_or("torch_dtype", "");

  if (r.has("rope_scaling")) {
    const json& rs = j.at("rope_scaling");
    if (!rs.is_object()) r.fail("rope_scaling", "null or an object");
    std::string where = source + " rope_scaling";
    FieldReader s{rs, where};
    std::string type = s.has("type") ? s.string_or("type", "") : s.string_or("rope_type", "");
    if (type != "longrope" && type != "su")
      throw Error(source + ": rope_scaling type '" + type + "' is not supported (expected 'longrope' or 'su')");
    LongRopeScaling ls;
    ls.short_factor = s.float_list("short_factor", kMinRopeFactor, kMaxRopeFactor);
    ls.long_factor = s.float_list("long_factor", kMinRopeFactor, kMaxRopeFactor);
    const size_t want = static_cast<size_t>(c.rotary_dim() / 2);
    if (ls.short_factor.size() != want || ls.long_factor.size() != want)
      throw Error(where + ": short_factor and long_factor need rotary_dim/2 = " + std::to_string(want) +
                  " entries each, found " + std::to_string(ls.short_factor.size()) + " and " +
                  std::to_string(ls.long_factor.size()));
    if (s.has("original_max_position_embeddings"))
      c.original_max_position_embeddings = s.integer("original_max_position_embeddings", 1, kMaxPositions);
    if (s.has("factor")) (void)s.number("factor", 0.0, kMaxRopeFactor);  // checked, but not used (see above)
    ls.attention_factor = s.has("attention_factor")
                              ? s.number("attention_factor", 0.0, kMaxAttentionFactor)
                              : default_attention_factor(c.max_position_embeddings, c.original_max_position_embeddings);
    if (s.has("attention_factor") && !(ls.attention_factor >= kMinAttentionFactor))
      s.fail("attention_factor", "a positive number in [" + FieldReader::range_text(kMinAttentionFactor, kMaxAttentionFactor) + "]");
    if (!std::isfinite(ls.attention_factor) || !(ls.attention_factor > 0.0))  // ln(original) = 0 when original is 1
      throw Error(where + ": no valid attention factor follows from max_position_embeddings " +
                  std::to_string(c.max_position_embeddings) + " and original_max_position_embeddings " +
                  std::to_string(c.original_max_position_embeddings));
    c.rope_scaling = std::move(ls);
  }
  check_rotary_frequencies(c, source);
  return c;
}

ModelConfig ModelConfig::from_file(const std::filesystem::path& path) {
  return from_json(format::read_json_file(path), path.string());
}

json ModelConfig::to_json() const {
  json j = {
      {"model_type", model_type},
      {"architectures", {"Phi3ForCausalLM"}},
      {"hidden_act", "silu"},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"rms_norm_eps", rms_norm_eps},
      {"rope_theta", rope_theta},
      {"max_position_embeddings", max_position_embeddings},
      {"original_max_position_embeddings", original_max_position_embeddings},
      {"tie_word_embeddings", tie_word_embeddings},
      {"sliding_window", sliding_window ? json(*sliding_window) : json(nullptr)},
      {"bos_token_id", bos_token_id ? json(*bos_token_id) : json(nullptr)},
      {"pad_token_id", pad_token_id ? json(*pad_token_id) : json(nullptr)},
      {"torch_dtype", torch_dtype},
  };
  if (partial_rotary_factor != 1.0) j["partial_rotary_factor"] = partial_rotary_factor;
  if (head_dim != hidden_size / num_attention_heads || hidden_size % num_attention_heads != 0) j["head_dim"] = head_dim;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else j["eos_token_id"] = eos_token_ids;
  if (rope_scaling) {
    j["rope_scaling"] = {{"type", "longrope"},
                         {"short_factor", rope_scaling->short_factor},
                         {"long_factor", rope_scaling->long_factor}};
    if (rope_scaling->attention_factor != default_attention_factor(max_position_embeddings, original_max_position_embeddings))
      j["rope_scaling"]["attention_factor"] = rope_scaling->attention_factor;
  } else {
    j["rope_scaling"] = nullptr;
  }
  return j;
}

GenerationDefaults GenerationDefaults::from_file(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) return {};
  return from_json(format::read_json_file(path), path.string());
}

GenerationDefaults GenerationDefaults::from_json(const json& j, const std::string& source) {
  GenerationDefaults g;
  if (!j.is_object()) throw Error(source + ": expected a JSON object");
  FieldReader r{j, source};
  g.eos_token_ids = r.token_ids("eos_token_id");
  g.bos_token_id = r.token_id("bos_token_id");
  g.pad_token_id = r.token_id("pad_token_id");
  if (r.has("do_sample")) g.do_sample = r.boolean_or("do_sample", false);
  if (r.has("temperature")) {
    // Logits are divided by it in float: below kMinTemperature they would overflow to inf.
    g.temperature = r.number("temperature", 0.0, kMaxTemperature);
    if (*g.temperature != 0.0 && *g.temperature < kMinTemperature)
      r.fail("temperature", "0 or a number in [" + FieldReader::range_text(kMinTemperature, kMaxTemperature) + "]");
  }
  if (r.has("top_k")) g.top_k = r.integer("top_k", 0, kMaxVocab);
  if (r.has("top_p")) g.top_p = r.number("top_p", 0.0, 1.0);
  if (r.has("max_new_tokens")) g.max_new_tokens = r.integer("max_new_tokens", 0, kMaxPositions);
  return g;
}

}  // namespace phinfer
