// Random-weight Phi-4-mini checkpoints (phinfer make-synthetic --preset phi4-mini / phi4-tiny): the
// real Phi-4-mini-instruct config and files, the byte-level tokenizer, the shard plan, and the
// tiny model end to end (tied embeddings, partial rotary, LongRoPE, GQA) through Pipeline.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <iterator>
#include <set>

#include "format/safetensors.h"
#include "model/phi3.h"
#include "model/sequence.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"
#include "phinfer/tokenizer.h"
#include "synthetic/synthetic.h"
#include "synthetic_test_util.h"
#include "test_util.h"

namespace phinfer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using test::file_bytes;

fs::path real_dir() { return test::shared_path("data/phi4-mini-instruct"); }

// phi4-mini's files without the 7.7 GB of weights, written once.
const fs::path& phi4_mini_metadata() {
  static const fs::path dir = [] {
    synthetic::Options o;
    o.preset = "phi4-mini";
    o.out = test::temp_dir("synthetic/phi4-mini-metadata");
    synthetic::write_metadata_files(o);
    return o.out;
  }();
  return dir;
}

// The phi4-tiny checkpoint (bf16, seed 1), written once per test run.
const fs::path& phi4_tiny() {
  static const fs::path dir = [] {
    synthetic::Options o;
    o.preset = "phi4-tiny";
    o.out = test::temp_dir("synthetic/phi4-tiny");
    o.seed = 1;
    synthetic::write_checkpoint(o);
    return o.out;
  }();
  return dir;
}

const Tokenizer& phi4_tokenizer() {
  static const Tokenizer tok = Tokenizer::from_dir(phi4_tiny());
  return tok;
}

// preset_config("phi4-mini") is Phi-4-mini-instruct's config.json, field by field.
TEST(SyntheticPhi4Preset, MiniEqualsTheRealConfig) {
  const ModelConfig c = synthetic::preset_config("phi4-mini");
  const ModelConfig real = ModelConfig::from_file(real_dir() / "config.json");
  EXPECT_EQ(c.model_type, real.model_type);
  EXPECT_EQ(c.vocab_size, real.vocab_size);
  EXPECT_EQ(c.hidden_size, real.hidden_size);
  EXPECT_EQ(c.intermediate_size, real.intermediate_size);
  EXPECT_EQ(c.num_hidden_layers, real.num_hidden_layers);
  EXPECT_EQ(c.num_attention_heads, real.num_attention_heads);
  EXPECT_EQ(c.num_key_value_heads, real.num_key_value_heads);
  EXPECT_EQ(c.head_dim, real.head_dim);
  EXPECT_EQ(c.rms_norm_eps, real.rms_norm_eps);
  EXPECT_EQ(c.rope_theta, real.rope_theta);
  EXPECT_EQ(c.partial_rotary_factor, real.partial_rotary_factor);
  EXPECT_EQ(c.rotary_dim(), real.rotary_dim());
  EXPECT_EQ(c.max_position_embeddings, real.max_position_embeddings);
  EXPECT_EQ(c.original_max_position_embeddings, real.original_max_position_embeddings);
  EXPECT_EQ(c.sliding_window, real.sliding_window);
  EXPECT_EQ(c.tie_word_embeddings, real.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, real.bos_token_id);
  EXPECT_EQ(c.eos_token_ids, real.eos_token_ids);
  EXPECT_EQ(c.pad_token_id, real.pad_token_id);
  EXPECT_EQ(c.torch_dtype, real.torch_dtype);
  ASSERT_TRUE(c.rope_scaling.has_value());
  ASSERT_TRUE(real.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->short_factor, real.rope_scaling->short_factor);
  EXPECT_EQ(c.rope_scaling->long_factor, real.rope_scaling->long_factor);
  EXPECT_EQ(c.rope_scaling->long_factor.size(), 48u);
  EXPECT_EQ(c.rope_scaling->attention_factor, real.rope_scaling->attention_factor);

  // The values the issue names, in case the shared file ever changes.
  EXPECT_EQ(c.vocab_size, 200064);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rotary_dim(), 96);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.sliding_window, 262144);
  EXPECT_EQ(c.bos_token_id, 199999);

  // Tied: no lm_head.weight. Embedding 200064 x 3072; per layer o_proj 3072^2, qkv_proj
  // (3072 + 2 x 1024) x 3072, gate_up 2 x 8192 x 3072, down 8192 x 3072, two norms; final norm.
  const auto specs = synthetic::tensor_specs(c);
  EXPECT_EQ(specs.size(), 1u + 32u * 6u + 1u);
  for (const auto& s : specs) EXPECT_NE(s.name, "lm_head.weight");
  const uint64_t layer = 3072ull * 3072 + 5120ull * 3072 + 2ull * 8192 * 3072 + 8192ull * 3072 + 2 * 3072;
  EXPECT_EQ(synthetic::parameter_count(c), 200064ull * 3072 + 32 * layer + 3072);
  EXPECT_EQ(synthetic::parameter_count(c), 3'836'021'760ull);
}

// The written config.json and generation_config.json are the real ones (but for the name), and so
// are the tokenizer's config files.
TEST(SyntheticPhi4Files, MiniConfigAndTokenizerConfigAreTheRealOnes) {
  const fs::path& dir = phi4_mini_metadata();
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  json ours = test::read_json(dir / "config.json");
  json real = test::read_json(real_dir() / "config.json");
  EXPECT_EQ(ours["_name_or_path"], "phinfer-synthetic-phi4-mini");
  ours.erase("_name_or_path");
  real.erase("_name_or_path");
  EXPECT_EQ(ours, real);
  EXPECT_EQ(test::read_json(dir / "generation_config.json"), test::read_json(real_dir() / "generation_config.json"));
  for (const char* f : {"tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"})
    EXPECT_EQ(test::read_json(dir / f), test::read_json(real_dir() / f)) << f;
  // Same key order as the real config.json too (both written by transformers / here with indent 2).
  std::string ours_text = file_bytes(dir / "config.json"), real_text = file_bytes(real_dir() / "config.json");
  ours_text.replace(ours_text.find("phinfer-synthetic-phi4-mini"), 27, "Phi-4-mini-instruct");
  EXPECT_EQ(ours_text, real_text);
}

// tokenizer.json: the real file's structure (added tokens, pre-tokenizer, decoder, model type and
// flags), byte-level vocabulary, and the real ids of the special strings.
TEST(SyntheticPhi4Files, TokenizerJsonHasThePhi4MiniFormat) {
  const json tok = test::read_json(phi4_mini_metadata() / "tokenizer.json");
  const json real = test::read_json(real_dir() / "tokenizer.json");
  for (const char* key : {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
                          "post_processor", "decoder"})
    EXPECT_EQ(tok[key], real[key]) << key;
  const json& m = tok["model"];
  for (auto it = real["model"].begin(); it != real["model"].end(); ++it)
    if (it.key() != "vocab" && it.key() != "merges") {
      EXPECT_EQ(m[it.key()], it.value()) << it.key();
    }
  EXPECT_EQ(m.size(), real["model"].size());

  // Dense ids 0..200018, as the real vocabulary: the 256 byte characters first (in the same order),
  // learned pieces, filler, then the reserved strings at their real ids.
  const json& vocab = m["vocab"];
  EXPECT_EQ(vocab.size(), 200019u);
  std::vector<std::string> by_id(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int64_t id = it.value().get<int64_t>();
    ASSERT_GE(id, 0);
    ASSERT_LT(id, 200019);
    ASSERT_TRUE(by_id[static_cast<size_t>(id)].empty()) << id;
    by_id[static_cast<size_t>(id)] = it.key();
  }
  const json& real_vocab = real["model"]["vocab"];
  for (auto it = real_vocab.begin(); it != real_vocab.end(); ++it) {
    const int64_t id = it.value().get<int64_t>();
    if (id < 256 || id >= 199999) EXPECT_EQ(by_id[static_cast<size_t>(id)], it.key()) << id;
  }
  EXPECT_EQ(by_id[199999], "<|endoftext|>");
  EXPECT_EQ(by_id[200018], "<|endofprompt|>");
  EXPECT_TRUE(vocab.contains("\xC4\xA0the"));  // "Ġthe"

  // Merges are [left, right] pairs of pieces whose join is a piece; learned from the built-in text.
  const json& merges = m["merges"];
  EXPECT_GE(merges.size(), 1500u);
  EXPECT_LE(merges.size(), 8000u);
  for (const auto& mg : merges) {
    ASSERT_TRUE(mg.is_array() && mg.size() == 2) << mg;
    const std::string a = mg[0], b = mg[1];
    ASSERT_TRUE(vocab.contains(a) && vocab.contains(b) && vocab.contains(a + b)) << mg;
  }
  // vocab.json / merges.txt (GPT2Tokenizer's files) hold the same.
  EXPECT_EQ(test::read_json(phi4_mini_metadata() / "vocab.json"), vocab);
  const std::string merges_txt = file_bytes(phi4_mini_metadata() / "merges.txt");
  EXPECT_EQ(merges_txt.rfind("#version: 0.2\n", 0), 0u);
  EXPECT_EQ(static_cast<size_t>(std::count(merges_txt.begin(), merges_txt.end(), '\n')), merges.size() + 1);
}

// The 7.7 GB phi4-mini checkpoint's files by the 5 GB rule: 2 shards, checked on the plan.
TEST(SyntheticPhi4Shards, MiniPlanIsTwoShards) {
  const auto specs = synthetic::tensor_specs(synthetic::preset_config("phi4-mini"));
  const auto plan = synthetic::plan_shards(specs, DType::BF16, synthetic::preset_info("phi4-mini").default_max_shard_bytes);
  EXPECT_EQ(plan.total_bytes, 7'672'043'520ull);
  ASSERT_EQ(plan.shards.size(), 2u);
  EXPECT_EQ(plan.shards[0].file, "model-00001-of-00002.safetensors");
  EXPECT_EQ(plan.shards[1].file, "model-00002-of-00002.safetensors");
  // Embedding (1.23 GB) + layers 0..17 + layer 18's o_proj and qkv_proj; gate_up would pass 5 GB.
  EXPECT_EQ(plan.shards[0].bytes, 4'903'624'704ull);
  EXPECT_EQ(plan.shards[1].bytes, 2'768'418'816ull);
  std::map<std::string, size_t> shard_of;
  for (size_t k = 0; k < plan.shards.size(); ++k)
    for (size_t i : plan.shards[k].tensors) shard_of[specs[i].name] = k;
  EXPECT_EQ(shard_of.size(), specs.size());
  EXPECT_EQ(shard_of["model.embed_tokens.weight"], 0u);
  EXPECT_EQ(shard_of["model.layers.18.self_attn.qkv_proj.weight"], 0u);
  EXPECT_EQ(shard_of["model.layers.18.mlp.gate_up_proj.weight"], 1u);
  EXPECT_EQ(shard_of["model.norm.weight"], 1u);
  EXPECT_EQ(shard_of.count("lm_head.weight"), 0u);
}

TEST(SyntheticPhi4Preset, TinyHasThePhi4Structure) {
  const ModelConfig c = synthetic::preset_config("phi4-tiny");
  const ModelConfig mini = synthetic::preset_config("phi4-mini");
  EXPECT_EQ(c.vocab_size, 200064);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.partial_rotary_factor, 0.75);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.rotary_dim(), 24);
  EXPECT_LT(c.num_key_value_heads, c.num_attention_heads);
  EXPECT_EQ(c.num_attention_heads % c.num_key_value_heads, 0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  // Every 4th of the real factors (the frequencies a 24-dimension rotary part keeps).
  ASSERT_EQ(c.rope_scaling->long_factor.size(), 12u);
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(c.rope_scaling->long_factor[i], mini.rope_scaling->long_factor[4 * i]) << i;
    EXPECT_EQ(c.rope_scaling->short_factor[i], 1.0f);
  }
  EXPECT_EQ(c.rope_scaling->attention_factor, mini.rope_scaling->attention_factor);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.original_max_position_embeddings, 4096);
  EXPECT_EQ(c.sliding_window, 262144);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{199999});
  EXPECT_EQ(synthetic::parameter_count(c), 53'446'912ull);
}

// phi4-tiny on disk: one file, no lm_head; it loads tied and gives a peaked next-token distribution.
TEST(SyntheticPhi4Checkpoint, TinyLoadsTiedWithoutLmHead) {
  const fs::path& dir = phi4_tiny();
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "vocab.json",
                        "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"})
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  auto ck = format::SafetensorsCheckpoint::open(dir);
  EXPECT_EQ(ck.find("lm_head.weight"), nullptr);
  ASSERT_NE(ck.find("model.embed_tokens.weight"), nullptr);
  EXPECT_EQ(ck.find("model.embed_tokens.weight")->shape, (std::vector<int64_t>{200064, 256}));
  EXPECT_EQ(ck.find("model.layers.3.self_attn.qkv_proj.weight")->shape, (std::vector<int64_t>{256 + 2 * 64, 256}));
  EXPECT_EQ(ck.tensors().size(), synthetic::tensor_specs(synthetic::preset_config("phi4-tiny")).size());

  // The written config.json has the real key set; only the size keys and the factor lists differ.
  const json ours = test::read_json(dir / "config.json");
  const json real = test::read_json(real_dir() / "config.json");
  const std::set<std::string> differ = {"_name_or_path",       "hidden_size",       "intermediate_size",
                                        "num_attention_heads", "num_hidden_layers", "num_key_value_heads",
                                        "rope_scaling"};
  EXPECT_EQ(ours.size(), real.size());
  for (auto it = real.begin(); it != real.end(); ++it) {
    ASSERT_TRUE(ours.contains(it.key())) << it.key();
    if (!differ.count(it.key())) {
      EXPECT_EQ(ours[it.key()], it.value()) << it.key();
    }
  }

  auto m = model::Phi3Model::load(dir);
  EXPECT_TRUE(m->config().tie_word_embeddings);
  EXPECT_EQ(m->config().rotary_dim(), 24);
  EXPECT_EQ(m->weights().lm_head.data, m->weights().embed_tokens.data);  // the same tensor

  kernels::ThreadPool pool(2);
  model::Sequence seq(*m, pool);
  const auto logits = seq.append(phi4_tokenizer().encode("<|user|>What is the capital of France?<|end|><|assistant|>"));
  ASSERT_EQ(logits.size(), 200064u);
  test::expect_peaked(logits, "phi4-tiny");
}

// Through the public Pipeline: the chat template renders the Phi-4-mini format, and generation runs.
TEST(SyntheticPhi4Checkpoint, TinyGeneratesThroughPipelineWithItsChatTemplate) {
  PipelineOptions po;
  po.threads = 2;
  const Pipeline p = Pipeline::load(phi4_tiny(), po);
  const std::vector<ChatMessage> messages = {{"system", "You are terse."}, {"user", "Hello there"}};
  EXPECT_EQ(p.render_chat(messages), "<|system|>You are terse.<|end|><|user|>Hello there<|end|><|assistant|>");
  const auto ids = p.encode_chat(messages);
  ASSERT_GE(ids.size(), 6u);
  EXPECT_EQ(ids.front(), 200022);  // <|system|>, no BOS
  EXPECT_EQ(ids.back(), 200019);   // <|assistant|>
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 200020), 2);  // <|end|>
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 200021), 1);  // <|user|>

  GenerationConfig g;
  g.max_new_tokens = 8;
  const auto stops = p.stop_ids(g);
  EXPECT_NE(std::find(stops.begin(), stops.end(), 200020), stops.end());
  EXPECT_NE(std::find(stops.begin(), stops.end(), 199999), stops.end());
  std::string streamed;
  const GenerationResult r = p.generate(ids, g, [&](std::string_view t) {
    streamed += t;
    return true;
  });
  EXPECT_EQ(r.prompt_ids, ids);
  ASSERT_GE(r.output_ids.size(), 1u);
  EXPECT_LE(r.output_ids.size(), 8u);
  EXPECT_EQ(streamed, r.text);
  for (int32_t id : r.output_ids) EXPECT_LT(id, 199999);  // words, not markers or padding ids
  // A random tied model easily just repeats its input token; this one does not (see tensor_specs).
  EXPECT_NE(r.output_ids[0], ids.back());
  EXPECT_GE(std::set<int32_t>(r.output_ids.begin(), r.output_ids.end()).size(), 3u);
  EXPECT_EQ(r.finish_reason, "length");
  // Deterministic: the same greedy run gives the same ids; sampling with a seed too.
  EXPECT_EQ(p.generate(ids, g).output_ids, r.output_ids);
  g.do_sample = true;
  g.seed = 7;
  EXPECT_EQ(p.generate(ids, g).output_ids, p.generate(ids, g).output_ids);
  std::printf("[ synthetic ] phi4-tiny says: \"%s\" (%s)\n", r.text.c_str(), r.finish_reason.c_str());
}

// --- the generated byte-level tokenizer through phinfer::Tokenizer ---

TEST(SyntheticPhi4Tokenizer, EveryStringRoundTripsAndNoBosIsAdded) {
  const Tokenizer& tok = phi4_tokenizer();
  for (const std::string& s : std::vector<std::string>{
           "Hello world", "The quick brown fox jumps over the lazy dog.", "  two leading spaces and trailing ones  ",
        "Tabs\tand\nnew lines\r\n, numbers 3.14159 and 1234567 (parentheses)!", "don't I'LL we've",
        "caf\xC3\xA9 na\xC3\xAFve \xC3\x9C" "ber", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",  // "café naïve Über", "日本語"
        "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82, \xD0\xBC\xD0\xB8\xD1\x80",   // "Привет, мир"
        "emoji \xF0\x9F\x99\x82\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD end",                    // 🙂👍🏽
        "\xD8\xB9\xD8\xB1\xD8\xA8\xD9\x8A \xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\xA8\xE0\xA5\x8D\xE0\xA4\xA6\xE0\xA5\x80",
        std::string("nul\0byte", 8), "\x01\x7f control", ""}) {
    SCOPED_TRACE(s);
    const auto ids = tok.encode(s, /*add_special_tokens=*/false);
    EXPECT_EQ(tok.decode(ids), s);
    EXPECT_EQ(tok.encode(s, /*add_special_tokens=*/true), ids);  // no BOS, no EOS
    for (int32_t id : ids) EXPECT_LT(id, 199999);                // ordinary text: never a special id
  }
  // English encodes into word pieces, not bytes.
  const auto ids = tok.encode("The quick brown fox jumps over the lazy dog.", false);
  EXPECT_LE(ids.size(), 14u);
  EXPECT_EQ(tok.id_to_token(ids[0]), "The");
  EXPECT_EQ(tok.id_to_token(ids[1]).substr(0, 2), "\xC4\xA0");  // "Ġ": a word with its space
  // Characters the text never had are their UTF-8 bytes, ids 0..255.
  for (int32_t id : tok.encode("\xE6\x97\xA5", false)) EXPECT_LT(id, 256);
  EXPECT_EQ(tok.encode("\xE6\x97\xA5", false).size(), 3u);
}

TEST(SyntheticPhi4Tokenizer, SpecialTokensHaveTheRealIds) {
  const Tokenizer& tok = phi4_tokenizer();
  const std::vector<std::pair<std::string, int32_t>> want = {
      {"<|endoftext|>", 199999}, {"<|endofprompt|>", 200018}, {"<|assistant|>", 200019}, {"<|end|>", 200020},
      {"<|user|>", 200021},      {"<|system|>", 200022},      {"<|tool|>", 200023},      {"<|/tool|>", 200024},
      {"<|tool_call|>", 200025}, {"<|/tool_call|>", 200026},  {"<|tool_response|>", 200027}, {"<|tag|>", 200028}};
  for (const auto& [text, id] : want) {
    EXPECT_EQ(tok.token_to_id(text), id) << text;
    EXPECT_EQ(tok.encode(text, false), std::vector<int32_t>{id}) << text;
  }
  EXPECT_TRUE(tok.is_special(200021));
  EXPECT_FALSE(tok.is_special(200023));  // tool markers are not special, as in the real file
  EXPECT_EQ(tok.vocab_size(), 200029);
  EXPECT_EQ(tok.bos_id(), 199999);
  EXPECT_EQ(tok.eos_id(), 199999);
  EXPECT_EQ(tok.id_to_token(0), "!");
  EXPECT_EQ(tok.id_to_token(188), "\xC4\x80");  // "Ā" = byte 0x00

  // Markers strip the whitespace on their right; no newlines in the Phi-4 chat format.
  const auto chat = tok.encode("<|user|> Hi<|end|>\n<|assistant|>", false);
  ASSERT_GE(chat.size(), 4u);
  EXPECT_EQ(chat.front(), 200021);
  EXPECT_EQ(chat.back(), 200019);
  EXPECT_EQ(chat[chat.size() - 2], 200020);
  EXPECT_EQ(tok.decode(chat), "<|user|>Hi<|end|><|assistant|>");
  EXPECT_EQ(tok.decode(chat, /*skip_special_tokens=*/true), "Hi");

  // Filler ids (no merge reaches them) still decode to text: pairs of the corpus's words.
  const std::string filler = tok.decode({199998});
  EXPECT_FALSE(filler.empty());
  EXPECT_EQ(filler[0], ' ');
  for (char ch : filler) EXPECT_TRUE(ch == ' ' || std::isalpha(static_cast<unsigned char>(ch))) << filler;
}

}  // namespace
}  // namespace phinfer
