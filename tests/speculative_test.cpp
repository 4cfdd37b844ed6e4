// Speculative decoding by prompt lookup (GenerationConfig::draft_tokens): greedy output is exactly
// plain greedy output, ids, text and log-probabilities alike, on every golden model (drafts checked
// by batch-invariant rows, so an agreed draft row is bit for bit the row plain decoding computes);
// batched requests with and without drafts give their alone results; and the sampler's acceptance
// rule draws from the model's distribution exactly (chi-square against the distribution).
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "generate/sampler.h"
#include "phinfer/engine.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"
#include "speculative_test_util.h"
#include "test_util.h"

namespace phinfer {
namespace {

std::vector<std::vector<int32_t>> prompts_of(const std::string& model) {
  auto out = test::golden_prompts(model);
  // A text said twice: its last token occurred before, so the lookup has a draft at once.
  std::vector<int32_t> twice(out.back().begin(), out.back().begin() + std::min<size_t>(out.back().size(), 40));
  twice.insert(twice.end(), twice.begin(), twice.end());
  out.push_back(twice);
  return out;
}

using test::expect_same_generation;

class SpeculativeGreedy : public ::testing::TestWithParam<std::string> {};

TEST_P(SpeculativeGreedy, IsExactlyPlainGreedyDecoding) {
  const std::string model = GetParam();
  Pipeline p = Pipeline::load(test::shared_path("models/" + model));
  int64_t drafted = 0, accepted = 0;
  for (const auto& prompt : prompts_of(model)) {
    GenerationConfig gc;
    gc.max_new_tokens = 40;
    gc.ignore_eos = true;
    gc.logprobs = true;
    gc.top_logprobs = 3;
    gc.repetition_penalty = model == "phi3-tiny-mha" ? 1.1 : 1.0;  // penalties see every accepted token
    const GenerationResult plain = p.generate(prompt, gc);
    for (int k : {1, 4, 9}) {
      gc.draft_tokens = k;
      const GenerationResult spec = p.generate(prompt, gc);
      expect_same_generation(plain, spec, model + " draft_tokens " + std::to_string(k));
      drafted += spec.stats.draft_tokens;
      accepted += spec.stats.accepted_draft_tokens;
      EXPECT_LE(spec.stats.accepted_draft_tokens, spec.stats.draft_tokens);
    }
    gc.draft_tokens = 0;
  }
  std::printf("%s: %lld draft tokens, %lld accepted\n", model.c_str(), static_cast<long long>(drafted),
              static_cast<long long>(accepted));
  EXPECT_GT(drafted, 0) << "the lookup never proposed a draft";
  if (model == "stories260K-phi3") EXPECT_GT(accepted, 0) << "a trained model's repetitive stories should accept drafts";
}

INSTANTIATE_TEST_SUITE_P(GoldenModels, SpeculativeGreedy,
                         ::testing::Values("phi3-tiny-mha", "phi3-tiny-gqa-longrope", "phi4-tiny-synth", "stories260K-phi3"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(Speculative, StopsMaxTokensAndTheLongRopeCrossingMatchPlainDecoding) {
  const auto dir = test::shared_path("models/phi3-tiny-gqa-longrope");
  const auto golden = test::read_json(dir / "golden.json");
  Pipeline p = Pipeline::load(dir);
  for (const auto& c : golden["cases"]) {
    if (c["name"] != "cross4096") continue;
    // Crossing 4096 tokens with drafts: no draft spans the table change, so the ids are the golden ones.
    GenerationConfig gc;
    const auto ids = c["greedy_ids"].get<std::vector<int32_t>>();
    gc.max_new_tokens = static_cast<int64_t>(ids.size());
    gc.ignore_eos = true;
    gc.draft_tokens = 8;
    EXPECT_EQ(p.generate(c["prompt_ids"].get<std::vector<int32_t>>(), gc).output_ids, ids);
  }
  // Stop strings and small max_new_tokens end in the same place.
  Pipeline s = Pipeline::load(test::shared_path("models/stories260K-phi3"));
  const auto prompt = prompts_of("stories260K-phi3")[0];
  for (int64_t max_new : {1, 2, 7}) {
    GenerationConfig gc;
    gc.max_new_tokens = max_new;
    const auto plain = s.generate(prompt, gc);
    gc.draft_tokens = 6;
    expect_same_generation(plain, s.generate(prompt, gc), "max_new_tokens " + std::to_string(max_new));
  }
  GenerationConfig gc;
  gc.max_new_tokens = 60;
  gc.stop_strings = {"Lily"};
  const auto plain = s.generate(prompt, gc);
  gc.draft_tokens = 6;
  expect_same_generation(plain, s.generate(prompt, gc), "stop string");
  gc.draft_tokens = 33;
  EXPECT_THROW(s.generate(prompt, gc), Error);
}

TEST(Speculative, BatchedRequestsWithAndWithoutDraftsGiveTheirAloneResults) {
  Pipeline p = Pipeline::load(test::shared_path("models/stories260K-phi3"));
  const auto prompts = prompts_of("stories260K-phi3");
  const auto configs = test::mixed_draft_configs(8);
  std::vector<GenerationResult> alone;
  for (size_t i = 0; i < configs.size(); ++i) {
    GenerationConfig plain = configs[i];
    plain.draft_tokens = 0;
    alone.push_back(p.generate(prompts[i % prompts.size()], plain));
  }
  EXPECT_GT(test::expect_batched_as_alone(p, prompts, configs, alone).accepted_draft_tokens, 0u);
}

TEST(Speculative, SampledOutputIsSeededAndValid) {
  Pipeline p = Pipeline::load(test::shared_path("models/stories260K-phi3"));
  GenerationConfig gc;
  gc.do_sample = true;
  gc.temperature = 0.7;
  gc.max_new_tokens = 40;
  gc.draft_tokens = 5;
  gc.seed = 42;
  const auto prompt = prompts_of("stories260K-phi3")[1];
  const auto a = p.generate(prompt, gc), b = p.generate(prompt, gc);
  EXPECT_EQ(a.output_ids, b.output_ids) << "the same seed gives the same text";
  EXPECT_GT(a.stats.draft_tokens, 0);
}

// The acceptance rule draws from the model's distribution p exactly, whatever the draft: a likely
// token, an unlikely one, one outside top_k, or the only candidate left.
TEST(Speculative, AcceptanceRuleFollowsTheDistribution) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f};
  generate::SamplingParams params;
  params.do_sample = true;
  params.top_k = 5;  // token 5 is out
  std::vector<double> p(6, 0.0);
  double z = 0;
  for (size_t i = 0; i < 5; ++i) z += p[i] = std::exp(static_cast<double>(logits[i]) - 2.0);
  for (auto& x : p) x /= z;
  const int draws = 40000;
  for (int32_t draft : {0, 2, 4, 5}) {
    generate::Sampler sampler(params, 1234 + static_cast<uint64_t>(draft));
    std::vector<int> count(6, 0);
    for (int i = 0; i < draws; ++i) ++count[static_cast<size_t>(sampler.next_with_draft(logits, {}, 0, draft))];
    double chi2 = 0;
    for (size_t i = 0; i < 5; ++i) {
      const double expected = p[i] * draws;
      chi2 += (count[i] - expected) * (count[i] - expected) / expected;
    }
    EXPECT_EQ(count[5], 0) << "a token outside top_k was drawn";
    // 4 degrees of freedom: P(chi2 > 18.47) = 0.001.
    EXPECT_LT(chi2, 18.47) << "draft " << draft;
  }
  // Greedy: the draft is accepted exactly when it is the argmax.
  generate::Sampler greedy(generate::SamplingParams{}, 0);
  EXPECT_EQ(greedy.next_with_draft(logits, {}, 0, 0), 0);
  EXPECT_EQ(greedy.next_with_draft(logits, {}, 0, 3), 0);
  // top_k 1: one candidate, always accepted when drafted.
  params.top_k = 1;
  generate::Sampler one(params, 9);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(one.next_with_draft(logits, {}, 0, 0), 0);
}

}  // namespace
}  // namespace phinfer
