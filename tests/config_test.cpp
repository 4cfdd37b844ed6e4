// config.json / generation_config.json: the real Phi-3 / Phi-4 configs parse to the right values,
// and every malformed one is rejected with a message naming the file and the field.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>

#include <nlohmann/json.hpp>

#include "phinfer/config.h"
#include "phinfer/error.h"
#include "test_util.h"

namespace phinfer {
namespace {

using nlohmann::json;

constexpr const char* kSrc = "cfg/config.json";

// Phi-3-mini-4k-instruct's fields (the architecture part).
json base_config() {
  return json::parse(R"({
    "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_act": "silu",
    "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "max_position_embeddings": 4096, "original_max_position_embeddings": 4096, "rope_scaling": null,
    "sliding_window": 2047, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 32000,
    "pad_token_id": 32000, "torch_dtype": "bfloat16"})");
}

// A 128k-style config: LongRoPE with 48 + 48 factors.
json longrope_config(const std::string& type) {
  json j = base_config();
  j["max_position_embeddings"] = 131072;
  j["sliding_window"] = 262144;
  j["rope_scaling"] = {{"type", type},
                       {"short_factor", std::vector<double>(48, 1.05)},
                       {"long_factor", std::vector<double>(48, 1.5)}};
  return j;
}

void expect_config_error(const json& j, std::initializer_list<std::string> parts) {
  SCOPED_TRACE(j.dump().substr(0, 300));
  try {
    ModelConfig::from_json(j, kSrc);
    ADD_FAILURE() << "accepted a bad config; expected an error containing '" << *parts.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(kSrc), std::string::npos) << "message lacks the file name: " << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
  }
}

// fn() must throw phinfer::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << parts.front() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
  }
}

json edited(const std::function<void(json&)>& edit, json j = base_config()) {
  edit(j);
  return j;
}

void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

const double kAttention128k = std::sqrt(1.0 + std::log(32.0) / std::log(4096.0));  // 1.19024...

TEST(ConfigFields, BaseConfigParses) {
  ModelConfig c = ModelConfig::from_json(base_config(), kSrc);
  EXPECT_EQ(c.head_dim, 96);
  EXPECT_EQ(c.rotary_dim(), 96);
  EXPECT_EQ(c.q_dim(), 3072);
  EXPECT_EQ(c.kv_dim(), 3072);
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_EQ(c.sliding_window, 2047);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{32000});
}

TEST(ConfigFields, NotAnObject) {
  expect_config_error(json::array({1, 2}), {"expected a JSON object"});
  expect_config_error(json("text"), {"expected a JSON object"});
}

TEST(ConfigFields, MissingRequiredField) {
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"}) {
    expect_config_error(edited([&](json& j) { j.erase(key); }),
                        {std::string("field '") + key + "'", "expected an integer", "found nothing"});
    expect_config_error(edited([&](json& j) { j[key] = nullptr; }), {std::string("field '") + key + "'"});
  }
}

TEST(ConfigFields, WrongTypes) {
  expect_config_error(edited([](json& j) { j["hidden_size"] = "3072"; }),
                      {"field 'hidden_size'", "expected an integer", "found \"3072\""});
  expect_config_error(edited([](json& j) { j["vocab_size"] = 32064.5; }), {"field 'vocab_size'", "found 32064.5"});
  expect_config_error(edited([](json& j) { j["num_hidden_layers"] = true; }), {"field 'num_hidden_layers'", "found true"});
  expect_config_error(edited([](json& j) { j["num_key_value_heads"] = json::array({8}); }),
                      {"field 'num_key_value_heads'", "found [8]"});
  expect_config_error(edited([](json& j) { j["rms_norm_eps"] = "1e-5"; }), {"field 'rms_norm_eps'", "a number"});
  expect_config_error(edited([](json& j) { j["rope_theta"] = json::object(); }), {"field 'rope_theta'", "a number"});
  expect_config_error(edited([](json& j) { j["tie_word_embeddings"] = 0; }),
                      {"field 'tie_word_embeddings'", "true or false", "found 0"});
  expect_config_error(edited([](json& j) { j["torch_dtype"] = 16; }), {"field 'torch_dtype'", "a string"});
  expect_config_error(edited([](json& j) { j["eos_token_id"] = "32000"; }),
                      {"field 'eos_token_id'", "an integer token id or a list of them"});
  expect_config_error(edited([](json& j) { j["eos_token_id"] = json::array({32000, "x"}); }), {"field 'eos_token_id'"});
  expect_config_error(edited([](json& j) { j["bos_token_id"] = -1; }), {"field 'bos_token_id'", "found -1"});
  expect_config_error(edited([](json& j) { j["sliding_window"] = "2047"; }), {"field 'sliding_window'"});
}

TEST(ConfigFields, OutOfRangeValues) {
  expect_config_error(edited([](json& j) { j["hidden_size"] = 0; }), {"field 'hidden_size'", "found 0"});
  expect_config_error(edited([](json& j) { j["vocab_size"] = -5; }), {"field 'vocab_size'", "found -5"});
  expect_config_error(edited([](json& j) { j["intermediate_size"] = 9223372036854775807LL; }),
                      {"field 'intermediate_size'"});
  expect_config_error(edited([](json& j) { j["vocab_size"] = 18446744073709551615ULL; }), {"field 'vocab_size'"});
  expect_config_error(edited([](json& j) { j["rms_norm_eps"] = -1e-5; }), {"field 'rms_norm_eps'"});
  expect_config_error(edited([](json& j) { j["partial_rotary_factor"] = 1.5; }), {"field 'partial_rotary_factor'"});
  expect_config_error(edited([](json& j) { j["partial_rotary_factor"] = 0.001; }), {"partial_rotary_factor", "fewer than 2"});
  expect_config_error(edited([](json& j) { j["sliding_window"] = 0; }), {"field 'sliding_window'"});
  expect_config_error(edited([](json& j) { j["eos_token_id"] = 4294967296LL; }), {"field 'eos_token_id'"});
}

TEST(ConfigFields, UnsupportedModelTypeOrActivation) {
  expect_config_error(edited([](json& j) { j["model_type"] = "llama"; }), {"model_type 'llama'", "phi3"});
  expect_config_error(edited([](json& j) { j["hidden_act"] = "gelu"; }), {"hidden_act 'gelu'", "silu"});
}

TEST(ConfigFields, HeadsMustDivide) {
  expect_config_error(edited([](json& j) { j["num_key_value_heads"] = 5; }),
                      {"num_attention_heads (32)", "multiple of num_key_value_heads (5)"});
  expect_config_error(edited([](json& j) { j["num_attention_heads"] = 30; j["num_key_value_heads"] = 10; }),
                      {"hidden_size (3072)", "not divisible by num_attention_heads (30)"});
  // An explicit head_dim lifts the divisibility requirement (q_dim need not equal hidden_size).
  ModelConfig c = ModelConfig::from_json(
      edited([](json& j) { j["num_attention_heads"] = 30; j["num_key_value_heads"] = 10; j["head_dim"] = 128; }), kSrc);
  EXPECT_EQ(c.q_dim(), 3840);
  EXPECT_EQ(c.kv_dim(), 1280);
  // GQA defaults: no num_key_value_heads means MHA.
  ModelConfig mha = ModelConfig::from_json(edited([](json& j) { j.erase("num_key_value_heads"); }), kSrc);
  EXPECT_EQ(mha.num_key_value_heads, 32);
}

TEST(ConfigRopeScaling, SuAndLongropeGiveTheSameAttentionFactor) {
  for (const char* type : {"su", "longrope"}) {
    SCOPED_TRACE(type);
    ModelConfig c = ModelConfig::from_json(longrope_config(type), kSrc);
    ASSERT_TRUE(c.rope_scaling.has_value());
    EXPECT_NEAR(c.rope_scaling->attention_factor, 1.1902, 5e-5);
    EXPECT_NEAR(c.rope_scaling->attention_factor, kAttention128k, 1e-12);
    EXPECT_EQ(c.rope_scaling->short_factor.size(), 48u);
    EXPECT_FLOAT_EQ(c.rope_scaling->long_factor[47], 1.5f);
    EXPECT_EQ(c.original_max_position_embeddings, 4096);
  }
  // "rope_type" (newer transformers) works as "type".
  ModelConfig c = ModelConfig::from_json(edited([](json& j) {
    j["rope_scaling"]["rope_type"] = "longrope";
    j["rope_scaling"].erase("type");
  }, longrope_config("longrope")), kSrc);
  EXPECT_TRUE(c.rope_scaling.has_value());
}

TEST(ConfigRopeScaling, AttentionFactorFollowsTransformers) {
  // Not extended (max == original): factor 1.
  ModelConfig same = ModelConfig::from_json(edited([](json& j) { j["max_position_embeddings"] = 4096; },
                                                   longrope_config("longrope")), kSrc);
  EXPECT_EQ(same.rope_scaling->attention_factor, 1.0);
  // An explicit attention_factor wins.
  ModelConfig expl = ModelConfig::from_json(edited([](json& j) { j["rope_scaling"]["attention_factor"] = 1.25; },
                                                   longrope_config("longrope")), kSrc);
  EXPECT_EQ(expl.rope_scaling->attention_factor, 1.25);
  // transformers takes factor = max / original for Phi-3 and ignores rope_scaling.factor.
  ModelConfig with_factor = ModelConfig::from_json(edited([](json& j) { j["rope_scaling"]["factor"] = 8.0; },
                                                          longrope_config("longrope")), kSrc);
  EXPECT_NEAR(with_factor.rope_scaling->attention_factor, kAttention128k, 1e-12);
  expect_config_error(edited([](json& j) { j["rope_scaling"]["factor"] = "8"; }, longrope_config("longrope")),
                      {"rope_scaling", "field 'factor'"});
}

TEST(ConfigRopeScaling, Malformed) {
  const json lr = longrope_config("longrope");
  expect_config_error(edited([](json& j) { j["rope_scaling"]["short_factor"].erase(0); }, lr),
                      {"rope_scaling", "rotary_dim/2 = 48", "found 47 and 48"});
  expect_config_error(edited([](json& j) { j["rope_scaling"]["long_factor"].push_back(1.0); }, lr),
                      {"rope_scaling", "rotary_dim/2 = 48", "found 48 and 49"});
  expect_config_error(edited([](json& j) { j["rope_scaling"].erase("long_factor"); }, lr),
                      {"rope_scaling", "field 'long_factor'", "a list of numbers", "found nothing"});
  expect_config_error(edited([](json& j) { j["rope_scaling"]["short_factor"][3] = "1.0"; }, lr),
                      {"field 'short_factor'", "a list of numbers"});
  expect_config_error(edited([](json& j) { j["rope_scaling"]["short_factor"][3] = 0.0; }, lr),
                      {"field 'short_factor'", "positive"});
  expect_config_error(edited([](json& j) { j["rope_scaling"]["short_factor"][3] = -1.0; }, lr),
                      {"field 'short_factor'", "positive"});
  expect_config_error(edited([](json& j) { j["rope_scaling"]["type"] = "linear"; }, lr),
                      {"rope_scaling type 'linear'", "longrope", "su"});
  expect_config_error(edited([](json& j) { j["rope_scaling"].erase("type"); }, lr), {"rope_scaling type ''"});
  expect_config_error(edited([](json& j) { j["rope_scaling"]["type"] = 3; }, lr), {"field 'type'", "a string"});
  expect_config_error(edited([](json& j) { j["rope_scaling"] = "longrope"; }, lr),
                      {"field 'rope_scaling'", "null or an object"});
  expect_config_error(edited([](json& j) { j["rope_scaling"]["attention_factor"] = -2; }, lr), {"field 'attention_factor'"});
  expect_config_error(edited([](json& j) { j["rope_scaling"]["attention_factor"] = 0; }, lr),
                      {"field 'attention_factor'", "positive"});
  expect_config_error(edited([](json& j) { j["original_max_position_embeddings"] = 1; }, lr),
                      {"rope_scaling", "no valid attention factor", "original_max_position_embeddings 1"});
  // With partial rotary 0.75 the lists must have 36 entries for head_dim 96.
  expect_config_error(edited([](json& j) { j["partial_rotary_factor"] = 0.75; }, lr),
                      {"rotary_dim/2 = 36", "found 48 and 48"});
}

TEST(ConfigFields, DeeplyNestedValueGivesAShortMessage) {
  json deep = 1;
  for (int i = 0; i < 200000; ++i) {
    json wrap = json::array();
    wrap.push_back(std::move(deep));
    deep = std::move(wrap);
  }
  json j = base_config();
  j["hidden_size"] = std::move(deep);
  std::string msg;
  expect_error([&] {
    try {
      ModelConfig::from_json(j, kSrc);
    } catch (const Error& e) {
      msg = e.what();
      throw;
    }
  }, {"field 'hidden_size'"});
  EXPECT_LT(msg.size(), 300u) << msg;
}

TEST(ConfigFields, ToJsonRoundTrips) {
  json lr = longrope_config("su");
  lr["partial_rotary_factor"] = 0.5;
  lr["rope_scaling"]["short_factor"] = std::vector<double>(32, 1.0);
  lr["rope_scaling"]["long_factor"] = std::vector<double>(32, 2.0);
  lr["rope_scaling"]["attention_factor"] = 1.3;
  lr["head_dim"] = 128;
  lr["eos_token_id"] = json::array({32000, 32007});
  for (const json& j : {base_config(), lr}) {
    ModelConfig a = ModelConfig::from_json(j, kSrc);
    ModelConfig b = ModelConfig::from_json(a.to_json(), "round trip");
    EXPECT_EQ(a.head_dim, b.head_dim);
    EXPECT_EQ(a.rotary_dim(), b.rotary_dim());
    EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
    EXPECT_EQ(a.sliding_window, b.sliding_window);
    EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
    EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
    EXPECT_EQ(a.original_max_position_embeddings, b.original_max_position_embeddings);
    ASSERT_EQ(a.rope_scaling.has_value(), b.rope_scaling.has_value());
    if (a.rope_scaling) {
      EXPECT_EQ(a.rope_scaling->short_factor, b.rope_scaling->short_factor);
      EXPECT_EQ(a.rope_scaling->long_factor, b.rope_scaling->long_factor);
      EXPECT_EQ(a.rope_scaling->attention_factor, b.rope_scaling->attention_factor);
    }
  }
}

TEST(ConfigFile, BadJsonNamesTheFile) {
  auto dir = test::temp_dir("config_bad_json");
  const auto path = dir / "config.json";
  for (const std::string text : {"{\"vocab_size\": 32064,", "", "{\"vocab_size\": 1e999}", "\xff\xfe{}"}) {
    SCOPED_TRACE(text);
    write_text(path, text);
    expect_error([&] { ModelConfig::from_file(path); }, {path.string() + ": malformed JSON"});
  }
}

TEST(ConfigFile, MissingFileNamesTheFile) {
  auto dir = test::temp_dir("config_missing");
  expect_error([&] { ModelConfig::from_file(dir / "config.json"); }, {(dir / "config.json").string() + ": cannot open"});
}

TEST(ConfigFile, FieldErrorsNameTheFile) {
  auto dir = test::temp_dir("config_field_error");
  write_text(dir / "config.json", edited([](json& j) { j.erase("vocab_size"); }).dump());
  expect_error([&] { ModelConfig::from_file(dir / "config.json"); },
               {(dir / "config.json").string() + ": field 'vocab_size'"});
}

// The real configs shipped with the Phi-3 / Phi-4 checkpoints.
struct RealConfig {
  std::string folder;
  int64_t vocab, hidden, layers, heads, kv_heads, head_dim, rotary_dim, max_pos, original_max;
  std::optional<int64_t> window;
  std::optional<std::string> rope;  // nullopt: no LongRoPE
  bool tied;
  std::vector<int32_t> eos;      // config.json
  std::vector<int32_t> gen_eos;  // generation_config.json (empty: none shipped)
};

TEST(ConfigReal, ShippedConfigsParse) {
  const std::vector<RealConfig> cases = {
      {"phi3-mini-4k-instruct", 32064, 3072, 32, 32, 32, 96, 96, 4096, 4096, 2047, std::nullopt, false, {32000}, {}},
      {"phi3-mini-128k-instruct-2024-04", 32064, 3072, 32, 32, 32, 96, 96, 131072, 4096, 262144, "su", false,
       {32000}, {32000, 32001, 32007}},
      {"phi3-mini-128k-instruct-2024-07", 32064, 3072, 32, 32, 32, 96, 96, 131072, 4096, 262144, "longrope", false,
       {32000}, {32000, 32001, 32007}},
      {"phi3.5-mini-instruct", 32064, 3072, 32, 32, 32, 96, 96, 131072, 4096, 262144, "longrope", false, {32000},
       {32007, 32001, 32000}},
      // head_dim 3072 / 24 = 128, partial_rotary_factor 0.75: 96 rotary dims, 48 factors each.
      {"phi4-mini-instruct", 200064, 3072, 32, 24, 8, 128, 96, 131072, 4096, 262144, "longrope", true, {199999},
       {200020, 199999}},
      {"phi4-14b", 100352, 5120, 40, 40, 10, 128, 128, 16384, 16384, std::nullopt, std::nullopt, false, {100265},
       {100265}},
  };
  for (const auto& rc : cases) {
    SCOPED_TRACE(rc.folder);
    const auto dir = test::shared_path("data/" + rc.folder);
    const json raw = test::read_json(dir / "config.json");
    ModelConfig c = ModelConfig::from_file(dir / "config.json");
    EXPECT_EQ(c.vocab_size, rc.vocab);
    EXPECT_EQ(c.hidden_size, rc.hidden);
    EXPECT_EQ(c.num_hidden_layers, rc.layers);
    EXPECT_EQ(c.num_attention_heads, rc.heads);
    EXPECT_EQ(c.num_key_value_heads, rc.kv_heads);
    EXPECT_EQ(c.head_dim, rc.head_dim);
    EXPECT_EQ(c.rotary_dim(), rc.rotary_dim);
    EXPECT_EQ(c.max_position_embeddings, rc.max_pos);
    EXPECT_EQ(c.original_max_position_embeddings, rc.original_max);
    EXPECT_EQ(c.sliding_window, rc.window);
    EXPECT_EQ(c.tie_word_embeddings, rc.tied);
    EXPECT_EQ(c.eos_token_ids, rc.eos);
    EXPECT_EQ(c.intermediate_size, raw["intermediate_size"].get<int64_t>());
    EXPECT_DOUBLE_EQ(c.rope_theta, raw["rope_theta"].get<double>());
    EXPECT_DOUBLE_EQ(c.rms_norm_eps, raw["rms_norm_eps"].get<double>());
    EXPECT_EQ(c.bos_token_id, raw["bos_token_id"].get<int32_t>());
    ASSERT_EQ(c.rope_scaling.has_value(), rc.rope.has_value());
    if (rc.rope) {
      EXPECT_EQ(raw["rope_scaling"]["type"], *rc.rope);
      EXPECT_EQ(c.rope_scaling->short_factor.size(), static_cast<size_t>(rc.rotary_dim / 2));
      EXPECT_EQ(c.rope_scaling->long_factor.size(), static_cast<size_t>(rc.rotary_dim / 2));
      for (size_t i = 0; i < c.rope_scaling->long_factor.size(); ++i)
        EXPECT_FLOAT_EQ(c.rope_scaling->long_factor[i], raw["rope_scaling"]["long_factor"][i].get<float>());
      EXPECT_NEAR(c.rope_scaling->attention_factor, kAttention128k, 1e-12);
    }
    GenerationDefaults g = GenerationDefaults::from_file(dir / "generation_config.json");
    EXPECT_EQ(g.eos_token_ids, rc.gen_eos);
  }
}

TEST(ConfigReal, TestModelsParse) {
  for (const char* m : {"phi3-tiny-mha", "phi3-tiny-gqa-longrope", "phi4-tiny-synth", "stories260K-phi3"}) {
    SCOPED_TRACE(m);
    const auto dir = test::shared_path(std::string("models/") + m);
    EXPECT_NO_THROW(ModelConfig::from_file(dir / "config.json"));
    EXPECT_NO_THROW(GenerationDefaults::from_file(dir / "generation_config.json"));
  }
}

TEST(ConfigGeneration, EosAsIntegerOrList) {
  auto dir = test::temp_dir("config_generation");
  const auto path = dir / "generation_config.json";
  write_text(path, R"({"bos_token_id": 1, "eos_token_id": 2, "do_sample": false, "temperature": 0.7,
                       "top_k": 40, "top_p": 0.9, "max_new_tokens": 128, "pad_token_id": 0})");
  GenerationDefaults g = GenerationDefaults::from_file(path);
  EXPECT_EQ(g.eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(g.bos_token_id, 1);
  EXPECT_EQ(g.pad_token_id, 0);
  EXPECT_EQ(g.do_sample, false);
  EXPECT_EQ(g.temperature, 0.7);
  EXPECT_EQ(g.top_k, 40);
  EXPECT_EQ(g.top_p, 0.9);
  EXPECT_EQ(g.max_new_tokens, 128);

  write_text(path, R"({"eos_token_id": [32000, 32001, 32007]})");
  g = GenerationDefaults::from_file(path);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int32_t>{32000, 32001, 32007}));
  EXPECT_FALSE(g.bos_token_id.has_value());
  EXPECT_FALSE(g.do_sample.has_value());
  EXPECT_FALSE(g.temperature.has_value());
}

TEST(ConfigGeneration, MissingFileGivesEmptyDefaults) {
  auto dir = test::temp_dir("config_generation_missing");
  GenerationDefaults g = GenerationDefaults::from_file(dir / "generation_config.json");
  EXPECT_TRUE(g.eos_token_ids.empty());
  EXPECT_FALSE(g.bos_token_id.has_value());
  EXPECT_FALSE(g.pad_token_id.has_value());
  EXPECT_FALSE(g.do_sample.has_value());
  EXPECT_FALSE(g.temperature.has_value());
  EXPECT_FALSE(g.top_k.has_value());
  EXPECT_FALSE(g.top_p.has_value());
  EXPECT_FALSE(g.max_new_tokens.has_value());
}

TEST(ConfigGeneration, MalformedFileIsAnError) {
  auto dir = test::temp_dir("config_generation_bad");
  const auto path = dir / "generation_config.json";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"eos_token_id": [1, 2)", "malformed JSON"},
      {R"([1])", "expected a JSON object"},
      {R"({"eos_token_id": "2"})", "field 'eos_token_id'"},
      {R"({"eos_token_id": [2, -1]})", "field 'eos_token_id'"},
      {R"({"temperature": "hot"})", "field 'temperature'"},
      {R"({"top_p": 1.5})", "field 'top_p'"},
      {R"({"top_k": -1})", "field 'top_k'"},
      {R"({"do_sample": "yes"})", "field 'do_sample'"},
  };
  for (const auto& [text, want] : cases) {
    SCOPED_TRACE(text);
    write_text(path, text);
    expect_error([&] { GenerationDefaults::from_file(path); }, {path.string(), want});
  }
}

// Numbers that pass a double range check but break float math: a LongRoPE factor of 1e-300 or
// 1e300 becomes 0 or inf in float (every logit NaN); each is rejected naming the field, the
// expected range and the value found.
TEST(ConfigFields, FloatFieldsMustStayFiniteInFloat) {
  const json lr = longrope_config("longrope");
  for (const char* table : {"short_factor", "long_factor"})
    for (double bad : {1e-300, 1e300, 1e-7, 2e6})
      expect_config_error(edited([&](json& j) { j["rope_scaling"][table][5] = bad; }, lr),
                          {std::string("field '") + table + "'", "[1e-06, 1e+06]", "found " + json(bad).dump() + " at index 5"});
  expect_config_error(edited([](json& j) { j["rope_scaling"]["attention_factor"] = 1e-300; }, lr),
                      {"field 'attention_factor'", "positive", "1e-300"});
  expect_config_error(edited([](json& j) { j["rms_norm_eps"] = 1e-300; }), {"field 'rms_norm_eps'", "[1e-12, 1]"});
  expect_config_error(edited([](json& j) { j["rms_norm_eps"] = 0.0; }), {"field 'rms_norm_eps'"});
  expect_config_error(edited([](json& j) { j["rope_theta"] = 1e300; }), {"field 'rope_theta'", "[1, 1e+12]"});
  // The bounds themselves are accepted, and give finite float frequencies.
  ModelConfig edge = ModelConfig::from_json(edited([](json& j) {
                                              j["rope_theta"] = 1e12;
                                              j["rms_norm_eps"] = 1e-12;
                                              j["rope_scaling"]["short_factor"][0] = 1e-6;
                                              j["rope_scaling"]["long_factor"][47] = 1e6;
                                            }, lr),
                                            kSrc);
  EXPECT_EQ(edge.rope_scaling->short_factor[0], 1e-6f);
  EXPECT_TRUE(std::isfinite(edge.rope_scaling->long_factor[47]));
}

// Integers beyond a field's type are rejected, never wrapped into range.
TEST(ConfigFields, IntegersAreNeverNarrowedIntoRange) {
  const uint64_t wraps_to_32 = (uint64_t{1} << 32) + 32, wraps_to_minus_1 = ~uint64_t{0};
  expect_config_error(edited([&](json& j) { j["num_hidden_layers"] = wraps_to_32; }), {"field 'num_hidden_layers'", "4294967328"});
  expect_config_error(edited([&](json& j) { j["vocab_size"] = wraps_to_minus_1; }), {"field 'vocab_size'"});
  expect_config_error(edited([&](json& j) { j["bos_token_id"] = wraps_to_32; }), {"field 'bos_token_id'"});
  expect_config_error(edited([&](json& j) { j["eos_token_id"] = json::array({1, (uint64_t{1} << 32) + 1}); }),
                      {"field 'eos_token_id'"});
  expect_error([&] { GenerationDefaults::from_json({{"top_k", wraps_to_minus_1}}, kSrc); }, {"field 'top_k'"});
  expect_error([&] { GenerationDefaults::from_json({{"temperature", 1e-300}}, kSrc); }, {"field 'temperature'", "0 or a number in"});
  EXPECT_EQ(GenerationDefaults::from_json({{"temperature", 0.0}}, kSrc).temperature, 0.0);
}

}  // namespace
}  // namespace phinfer
