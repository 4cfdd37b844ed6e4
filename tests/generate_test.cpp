// Sampling and the generation loop: determinism, greedy equivalences, stopping, streaming, and the
// LongRoPE crossing equal to a fresh run on the full sequence.
#include <gtest/gtest.h>

#include <random>

#include "generate/sampler.h"
#include "generate/stop_strings.h"
#include "model/phi3.h"
#include "model/sequence.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"
#include "test_util.h"

namespace phinfer {
namespace {

using generate::Sampler;
using generate::SamplingParams;

std::vector<float> random_logits(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

TEST(Sampler, TopK1EqualsGreedy) {
  Sampler s({true, 0.7, 1, 1.0}, 123);
  for (uint64_t i = 0; i < 50; ++i) {
    auto l = random_logits(i, 1000);
    EXPECT_EQ(s.next(l), Sampler::argmax(l));
  }
}

TEST(Sampler, SameSeedSameIdsDifferentSeedDiffers) {
  auto draw = [](uint64_t seed) {
    Sampler s({true, 1.0, 50, 0.95}, seed);
    std::vector<int32_t> ids;
    for (uint64_t i = 0; i < 64; ++i) ids.push_back(s.next(random_logits(i, 500)));
    return ids;
  };
  EXPECT_EQ(draw(7), draw(7));
  EXPECT_NE(draw(7), draw(8));
}

TEST(Sampler, TinyTopPKeepsOnlyTheBest) {
  Sampler s({true, 1.0, 0, 1e-6}, 5);
  for (uint64_t i = 0; i < 20; ++i) {
    auto l = random_logits(100 + i, 300);
    EXPECT_EQ(s.next(l), Sampler::argmax(l));
  }
}

TEST(Sampler, FollowsTheDistribution) {
  // Two tokens with probabilities 0.75 / 0.25 (logit difference ln 3).
  std::vector<float> l = {std::log(3.0f), 0.0f};
  Sampler s({true, 1.0, 0, 1.0}, 42);
  int first = 0;
  for (int i = 0; i < 20000; ++i) first += s.next(l) == 0;
  EXPECT_NEAR(first / 20000.0, 0.75, 0.015);
}

TEST(Sampler, RejectsBadParameters) {
  EXPECT_THROW(Sampler({true, 0.0, 0, 1.0}, 1), Error);
  EXPECT_THROW(Sampler({true, 1.0, 0, 0.0}, 1), Error);
  EXPECT_THROW(Sampler({true, 1.0, -1, 1.0}, 1), Error);
  EXPECT_NO_THROW(Sampler({false, 0.0, 0, 1.0}, 1));  // greedy ignores them
}

class PipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::filesystem::path(test::shared_path("models/phi3-tiny-mha"));
    pipe_ = new Pipeline(Pipeline::load(*dir_));
    golden_ = new nlohmann::json(test::read_json(*dir_ / "golden.json"));
  }
  static void TearDownTestSuite() {
    delete pipe_;
    delete golden_;
    delete dir_;
  }
  static const nlohmann::json& gcase(const std::string& name) {
    for (const auto& c : (*golden_)["cases"])
      if (c["name"] == name) return c;
    throw std::runtime_error("no golden case " + name);
  }
  static std::filesystem::path* dir_;
  static Pipeline* pipe_;
  static nlohmann::json* golden_;
};
std::filesystem::path* PipelineTest::dir_ = nullptr;
Pipeline* PipelineTest::pipe_ = nullptr;
nlohmann::json* PipelineTest::golden_ = nullptr;

TEST_F(PipelineTest, GreedyMatchesGoldenUpToTheFirstStop) {
  const auto& c = gcase("text300");
  auto gold = c["greedy_ids"].get<std::vector<int32_t>>();
  GenerationConfig gc;
  gc.max_new_tokens = static_cast<int64_t>(gold.size());
  auto r = pipe_->generate(c["prompt_ids"].get<std::vector<int32_t>>(), gc);
  auto stops = pipe_->stop_ids(gc);
  std::vector<int32_t> expect;
  for (int32_t id : gold) {
    expect.push_back(id);
    if (std::binary_search(stops.begin(), stops.end(), id)) break;
  }
  EXPECT_EQ(r.output_ids, expect);
  EXPECT_EQ(r.stats.prompt_tokens, c["n_prompt"].get<int64_t>());
  EXPECT_EQ(r.stats.generated_tokens, static_cast<int64_t>(expect.size()));
}

TEST_F(PipelineTest, StopsAtEosIdsAndEndToken) {
  auto stops = pipe_->stop_ids({});
  // generation_config.json lists 32000, 32001, 32007; <|end|> is 32007.
  for (int32_t id : {32000, 32001, 32007}) EXPECT_TRUE(std::binary_search(stops.begin(), stops.end(), id)) << id;
  const auto& c = gcase("chat");
  auto gold = c["greedy_ids"].get<std::vector<int32_t>>();
  GenerationConfig gc;
  gc.max_new_tokens = 32;
  gc.extra_eos_token_ids = {gold[5]};
  auto r = pipe_->generate(c["prompt_ids"].get<std::vector<int32_t>>(), gc);
  EXPECT_EQ(r.finish_reason, "eos");
  EXPECT_EQ(r.output_ids.back(), gold[5]);
  EXPECT_LE(r.output_ids.size(), 6u);
}

TEST_F(PipelineTest, MaxNewTokensAndLengthReason) {
  GenerationConfig gc;
  gc.max_new_tokens = 3;
  gc.extra_eos_token_ids = {};
  auto r = pipe_->generate(std::vector<int32_t>{1, 450, 4996}, gc);
  EXPECT_LE(r.output_ids.size(), 3u);
  if (r.output_ids.size() == 3) EXPECT_EQ(r.finish_reason, "length");
  gc.max_new_tokens = 0;
  EXPECT_TRUE(pipe_->generate(std::vector<int32_t>{1, 450}, gc).output_ids.empty());
  EXPECT_THROW(pipe_->generate(std::vector<int32_t>{}, gc), Error);
  EXPECT_THROW(pipe_->generate(std::vector<int32_t>{1, 99999999}, GenerationConfig{}), Error);
}

TEST_F(PipelineTest, SamplingIsSeededAndTopK1IsGreedy) {
  std::vector<int32_t> prompt = gcase("chat")["prompt_ids"].get<std::vector<int32_t>>();
  GenerationConfig gc;
  gc.max_new_tokens = 24;
  gc.do_sample = true;
  gc.temperature = 1.3;
  gc.top_k = 0;
  gc.seed = 11;
  auto a = pipe_->generate(prompt, gc), b = pipe_->generate(prompt, gc);
  EXPECT_EQ(a.output_ids, b.output_ids);
  gc.seed = 12;
  EXPECT_NE(pipe_->generate(prompt, gc).output_ids, a.output_ids);

  GenerationConfig greedy;
  greedy.max_new_tokens = 24;
  gc.top_k = 1;
  EXPECT_EQ(pipe_->generate(prompt, gc).output_ids, pipe_->generate(prompt, greedy).output_ids);
}

TEST_F(PipelineTest, StreamingConcatenationEqualsText) {
  GenerationConfig gc;
  gc.max_new_tokens = 20;
  gc.do_sample = true;
  gc.seed = 3;
  std::string streamed;
  auto r = pipe_->generate("Once upon a time", gc, [&](std::string_view t) {
    streamed += t;
    return true;
  });
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.text, pipe_->tokenizer().decode(r.output_ids, true));

  // skip_prompt = false: the prompt text comes first; return_full_text: the result starts with the prompt.
  gc.skip_prompt = false;
  gc.return_full_text = true;
  std::string with_prompt;
  auto full = pipe_->generate("Once upon a time", gc, [&](std::string_view t) {
    with_prompt += t;
    return true;
  });
  EXPECT_EQ(full.text.rfind("Once upon a time", 0), 0u);
  EXPECT_NE(with_prompt.find("Once upon a time"), std::string::npos);
  EXPECT_EQ(full.output_ids, r.output_ids);
}

TEST_F(PipelineTest, StreamerCanStop) {
  GenerationConfig gc;
  gc.max_new_tokens = 30;
  int calls = 0;
  auto r = pipe_->generate(gcase("text300")["prompt_ids"].get<std::vector<int32_t>>(), gc, [&](std::string_view) {
    return ++calls < 3;
  });
  EXPECT_EQ(r.finish_reason, "stopped");
  EXPECT_LT(r.output_ids.size(), 30u);
}

TEST_F(PipelineTest, SlidingWindowOverride) {
  // Past the 2047-key window, "off" must change the logits and a window of 2047 must not.
  auto ids = gcase("window2600")["prompt_ids"].get<std::vector<int32_t>>();
  const int64_t last = static_cast<int64_t>(ids.size()) - 1;
  auto base = pipe_->logits(ids, std::span<const int64_t>(&last, 1));
  auto off = Pipeline::load(*dir_, {0, "off"}).logits(ids, std::span<const int64_t>(&last, 1));
  auto same = Pipeline::load(*dir_, {0, "2047"}).logits(ids, std::span<const int64_t>(&last, 1));
  double d_off = 0, d_same = 0;
  for (size_t i = 0; i < base.size(); ++i) {
    d_off = std::max(d_off, static_cast<double>(std::abs(base[i] - off[i])));
    d_same = std::max(d_same, static_cast<double>(std::abs(base[i] - same[i])));
  }
  EXPECT_GT(d_off, 0.1);
  EXPECT_EQ(d_same, 0.0);
  EXPECT_THROW(Pipeline::load(*dir_, {0, "-3"}), Error);
  EXPECT_THROW(Pipeline::load(*dir_, {0, "wide"}), Error);
}

TEST(LongRopeCrossing, TokensAfterTheCrossingEqualAFreshRun) {
  auto dir = test::shared_path("models/phi3-tiny-gqa-longrope");
  auto m = model::Phi3Model::load(dir);
  kernels::ThreadPool pool(0);
  nlohmann::json golden = test::read_json(dir / "golden.json");
  const nlohmann::json* c = nullptr;
  for (const auto& x : golden["cases"])
    if (x["name"] == "cross4096") c = &x;
  ASSERT_NE(c, nullptr);
  auto prompt = (*c)["prompt_ids"].get<std::vector<int32_t>>();
  ASSERT_EQ(prompt.size(), 4077u);

  model::Sequence seq(*m, pool);
  std::vector<std::vector<float>> step_logits = {seq.append(prompt)};
  std::vector<int32_t> generated;
  for (int step = 0; step < 24; ++step) {
    generated.push_back(Sampler::argmax(step_logits.back()));
    step_logits.push_back(seq.append(std::span<const int32_t>(&generated.back(), 1)));
  }
  EXPECT_EQ(seq.recomputations(), 1);
  // New token 20 is the first chosen from a 4097-token sequence; check it and a later one (KV-cached
  // after the recompute) against a fresh run on the full sequence: same token, same logits.
  for (size_t k : {20u, 23u}) {
    std::vector<int32_t> full = prompt;
    full.insert(full.end(), generated.begin(), generated.begin() + static_cast<std::ptrdiff_t>(k));
    model::Sequence fresh(*m, pool);
    const auto& l = fresh.append(full);
    EXPECT_EQ(Sampler::argmax(l), generated[k]) << "token " << k;
    double diff = 0;
    for (size_t i = 0; i < l.size(); ++i) diff = std::max(diff, static_cast<double>(std::abs(l[i] - step_logits[k][i])));
    EXPECT_LT(diff, 1e-4) << "token " << k;
  }
  EXPECT_EQ(generated, std::vector<int32_t>((*c)["greedy_ids"].begin(), (*c)["greedy_ids"].begin() + 24));
}

}  // namespace
}  // namespace phinfer

namespace phinfer {
namespace {

TEST(Sampler, RepetitionPenaltyAndMinP) {
  // Greedy with a penalty: a seen token with the best logit loses to an unseen one.
  std::vector<float> l = {2.0f, 1.5f, -1.0f};
  std::vector<int32_t> seen = {0};
  Sampler greedy({false, 1.0, 0, 1.0, 0.0, 1.5}, 1);
  EXPECT_EQ(greedy.next(l, seen), 1);       // 2 / 1.5 = 1.33 < 1.5
  EXPECT_EQ(greedy.next(l, {}), 0);
  std::vector<float> neg = {-1.0f, -1.2f};
  std::vector<int32_t> seen0 = {0};
  EXPECT_EQ(greedy.next(neg, seen0), 1);    // -1 * 1.5 = -1.5 < -1.2
  // min_p = 0.5 keeps only tokens with at least half the best probability.
  std::vector<float> m = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler s({true, 1.0, 0, 1.0, 0.7, 1.0}, 9);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(s.next(m), 0);
  Sampler s2({true, 1.0, 0, 1.0, 0.5, 1.0}, 9);
  int ones = 0;
  for (int i = 0; i < 2000; ++i) {
    int32_t id = s2.next(m);
    EXPECT_NE(id, 2);
    ones += id == 1;
  }
  EXPECT_NEAR(ones / 2000.0, 0.375, 0.04);  // 0.3 / (0.5 + 0.3)
  EXPECT_THROW(Sampler({true, 1.0, 0, 1.0, 1.5, 1.0}, 1), Error);
  EXPECT_THROW(Sampler({false, 1.0, 0, 1.0, 0.0, 0.0}, 1), Error);
}

TEST(StopStrings, MatchedAcrossPiecesAndNeverReleased) {
  generate::StopStringMatcher m({"<END>", "stop here"});
  std::string out;
  for (const char* piece : {"Hello wor", "ld <E", "N", "D> more"}) out += m.push(piece);
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(out, "Hello world ");
  EXPECT_EQ(m.text(), "Hello world ");
  EXPECT_EQ(m.push("ignored"), "");

  generate::StopStringMatcher partial({"abc"});
  std::string o2 = partial.push("xxab");
  EXPECT_EQ(o2, "xx");  // "ab" may start "abc": held back
  o2 += partial.push("d");
  o2 += partial.flush();
  EXPECT_FALSE(partial.matched());
  EXPECT_EQ(o2, "xxabd");

  generate::StopStringMatcher none({});
  EXPECT_EQ(none.push("abc"), "abc");
}

TEST_F(PipelineTest, StopStringSplitOverSeveralTokens) {
  // Generate freely, then choose a stop string that spans several generated tokens.
  GenerationConfig gc;
  gc.max_new_tokens = 24;
  gc.do_sample = true;
  gc.seed = 4;
  std::vector<int32_t> prompt = {1, 450, 4996, 17354, 1701};
  auto free_run = pipe_->generate(prompt, gc);
  ASSERT_GE(free_run.output_ids.size(), 10u);
  const auto& tok = pipe_->tokenizer();
  std::string before = tok.decode(std::vector<int32_t>(free_run.output_ids.begin(), free_run.output_ids.begin() + 5), true);
  std::string upto = tok.decode(std::vector<int32_t>(free_run.output_ids.begin(), free_run.output_ids.begin() + 8), true);
  ASSERT_GT(upto.size(), before.size() + 2);
  std::string stop = upto.substr(before.size() > 0 ? before.size() - 1 : 0);  // spans tokens 5..7 and the one before
  gc.stop_strings = {stop};
  std::string streamed;
  auto r = pipe_->generate(prompt, gc, [&](std::string_view t) {
    streamed += t;
    return true;
  });
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.text.find(stop), std::string::npos);
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.text, free_run.text.substr(0, free_run.text.find(stop)));
  EXPECT_LE(r.output_ids.size(), 8u);
}

}  // namespace
}  // namespace phinfer

namespace phinfer {
namespace {

TEST(Phi4Generation, PaddingIdsPastTheTokenizerDecodeToNothing) {
  // phi4-tiny-synth: 200064 embedding rows, the tokenizer ends at 200028. Ids in between are valid
  // model inputs/outputs with no text (as in Hugging Face's decode), never an error.
  Pipeline p = Pipeline::load(test::shared_path("models/phi4-tiny-synth"));
  GenerationConfig gc;
  gc.max_new_tokens = 16;
  gc.do_sample = true;
  gc.temperature = 5.0;
  gc.top_k = 0;
  gc.seed = 1;
  gc.ignore_eos = true;
  gc.skip_prompt = false;
  gc.return_full_text = true;
  std::string streamed;
  auto r = p.generate(std::vector<int32_t>{200022, 9906, 200050, 200063}, gc, [&](std::string_view t) {
    streamed += t;
    return true;
  });
  EXPECT_EQ(r.output_ids.size(), 16u);
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.text.rfind(" ('", 0), 0u) << r.text;  // <|system|> is special, so skipped; 9906 is " ('"
}

}  // namespace
}  // namespace phinfer

namespace phinfer {
namespace {

TEST(KvCache, F16CacheStaysCloseToF32AndKeepsGreedy) {
  auto dir = test::shared_path("models/phi3-tiny-gqa-longrope");
  auto golden = test::read_json(dir / "golden.json");
  const auto& c = golden["cases"][1];  // text300
  PipelineOptions half;
  half.kv_cache_dtype = "f16";
  Pipeline p32 = Pipeline::load(dir), p16 = Pipeline::load(dir, half);
  GenerationConfig gc;
  gc.max_new_tokens = 16;
  gc.ignore_eos = true;
  auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
  auto a = p32.generate(prompt, gc), b = p16.generate(prompt, gc);
  int same = 0;
  for (size_t i = 0; i < a.output_ids.size(); ++i) same += a.output_ids[i] == b.output_ids[i];
  EXPECT_GE(same, 12) << "fp16 keys/values should rarely change a greedy choice";
  PipelineOptions bad;
  bad.kv_cache_dtype = "int3";
  EXPECT_THROW(Pipeline::load(dir, bad), Error);
}

}  // namespace
}  // namespace phinfer

namespace phinfer {
namespace {

TEST(ChunkedPrefill, LongPromptUsesTheTableOfTheWholePromptAndCanBeCancelled) {
  // Pipeline::generate feeds long prompts in chunks; every chunk of a 4991-token prompt must use the
  // long LongRoPE table, exactly as one call (the golden) does.
  auto dir = test::shared_path("models/phi3-tiny-gqa-longrope");
  auto golden = test::read_json(dir / "golden.json");
  const nlohmann::json* c = nullptr;
  for (const auto& x : golden["cases"])
    if (x["name"] == "long5000") c = &x;
  ASSERT_NE(c, nullptr);
  Pipeline p = Pipeline::load(dir);
  GenerationConfig gc;
  gc.max_new_tokens = 8;
  gc.ignore_eos = true;
  auto prompt = (*c)["prompt_ids"].get<std::vector<int32_t>>();
  auto r = p.generate(prompt, gc);
  EXPECT_EQ(r.output_ids, std::vector<int32_t>((*c)["greedy_ids"].begin(), (*c)["greedy_ids"].begin() + 8));

  std::atomic<bool> cancel{true};
  gc.cancel = &cancel;
  auto stopped = p.generate(prompt, gc);
  EXPECT_EQ(stopped.finish_reason, "stopped");
  EXPECT_TRUE(stopped.output_ids.empty());
}

}  // namespace
}  // namespace phinfer
