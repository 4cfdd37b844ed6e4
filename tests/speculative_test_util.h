#pragma once
// Shared by the speculative decoding tests (prompt lookup and draft model): the golden prompts and
// the check that a speculative result is exactly the plain one.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "phinfer/engine.h"
#include "phinfer/pipeline.h"
#include "test_util.h"

namespace phinfer::test {

// The chat and text300 prompts of a synthetic golden model, or every prompt of stories260K's golden.
inline std::vector<std::vector<int32_t>> golden_prompts(const std::string& model) {
  const auto g = read_json(shared_path("models/" + model + "/golden.json"));
  std::vector<std::vector<int32_t>> out;
  if (g.contains("cases")) {
    for (const auto& c : g["cases"])
      if (c["name"] == "chat" || c["name"] == "text300") out.push_back(c["prompt_ids"].get<std::vector<int32_t>>());
  } else {
    for (const auto& p : g["prompts"]) out.push_back(p["prompt_ids"].get<std::vector<int32_t>>());
  }
  return out;
}

// Ids, text, finish reason and log-probabilities bit for bit.
inline void expect_same_generation(const GenerationResult& plain, const GenerationResult& spec, const std::string& what) {
  ASSERT_EQ(spec.output_ids, plain.output_ids) << what;
  EXPECT_EQ(spec.text, plain.text) << what;
  EXPECT_EQ(spec.finish_reason, plain.finish_reason) << what;
  ASSERT_EQ(spec.logprobs.size(), plain.logprobs.size()) << what;
  for (size_t i = 0; i < spec.logprobs.size(); ++i) {
    ASSERT_EQ(spec.logprobs[i].logprob, plain.logprobs[i].logprob) << what << ", token " << i;
    ASSERT_EQ(spec.logprobs[i].top.size(), plain.logprobs[i].top.size());
    for (size_t k = 0; k < spec.logprobs[i].top.size(); ++k) {
      EXPECT_EQ(spec.logprobs[i].top[k].id, plain.logprobs[i].top[k].id);
      EXPECT_EQ(spec.logprobs[i].top[k].logprob, plain.logprobs[i].top[k].logprob);
    }
  }
}

// Requests with 0, 3 or 6 draft tokens in turn, 30 + i new tokens each (eos ignored).
inline std::vector<GenerationConfig> mixed_draft_configs(size_t n) {
  std::vector<GenerationConfig> configs(n);
  for (size_t i = 0; i < n; ++i) {
    configs[i].max_new_tokens = 30 + static_cast<int64_t>(i);
    configs[i].ignore_eos = true;
    configs[i].draft_tokens = static_cast<int>(i % 3) * 3;
  }
  return configs;
}

// Runs request i (prompts[i % size], configs[i]) together in an engine with a small step budget
// (drafts compete for rows, prompts wait) and checks each against `alone[i]`; returns the
// engine's counters.
inline Engine::Stats expect_batched_as_alone(const Pipeline& p, const std::vector<std::vector<int32_t>>& prompts,
                                             const std::vector<GenerationConfig>& configs,
                                             const std::vector<GenerationResult>& alone) {
  Engine engine(p, EngineOptions{0, 64, 16, 64, 0});
  std::vector<Engine::RequestId> ids;
  for (size_t i = 0; i < configs.size(); ++i) ids.push_back(engine.add_request(prompts[i % prompts.size()], configs[i]));
  for (size_t i = 0; i < configs.size(); ++i)
    expect_same_generation(alone[i], engine.run_to_completion(ids[i]), "request " + std::to_string(i));
  return engine.stats();
}

}  // namespace phinfer::test
