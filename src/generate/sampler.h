#pragma once
// Next-token choice with Hugging Face semantics and order: repetition penalty (also when greedy),
// then greedy, or temperature -> top_k -> top_p -> min_p -> sample.
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace phinfer::generate {

struct SamplingParams {
  bool do_sample = false;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  double min_p = 0.0;               // keep tokens with p >= min_p * p(best); 0 disables
  double repetition_penalty = 1.0;  // > 1 discourages tokens already in the sequence; 1 disables
  // OpenAI's additive penalties over the generated tokens (as vLLM): logit -= frequency * count +
  // presence * (count > 0); in [-2, 2], 0 disables. Applied after the repetition penalty.
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
};

class Sampler {
 public:
  Sampler(SamplingParams params, uint64_t seed);
  // history: the ids so far (prompt and generated), for the repetition penalty; the generated ones
  // are those from prompt_length on (for the presence and frequency penalties).
  // allowed: when not empty, one bit per id (bit i of word i/64); only those ids may be chosen
  // (a grammar's mask; at least one must be set).
  int32_t next(std::span<const float> logits, std::span<const int32_t> history = {}, size_t prompt_length = 0,
               std::span<const uint64_t> allowed = {});
  // The distribution next() samples from (penalties, temperature, top_k, top_p, min_p applied):
  // ids, most likely first, and their probabilities.
  struct Distribution {
    std::vector<int32_t> ids;
    std::vector<double> probs;
  };
  // Sampling only: next(), also handing back the distribution the token was drawn from (a draft
  // model's q, for the target's acceptance rule).
  int32_t next_keeping_distribution(std::span<const float> logits, std::span<const int32_t> history,
                                    size_t prompt_length, Distribution& out);
  // Speculative decoding's acceptance rule: `draft` was drawn from `q` (null: a deterministic draft,
  // q its point mass, as prompt lookup proposes). Returns `draft` with probability
  // min(1, p(draft) / q(draft)) under this sampler's distribution p (for greedy: when it is the
  // argmax), else a token drawn from normalize(max(0, p - q)). The token returned therefore
  // follows p exactly; whether the draft was accepted is `result == draft`.
  int32_t next_with_draft(std::span<const float> logits, std::span<const int32_t> history, size_t prompt_length,
                          int32_t draft, const Distribution* q = nullptr);

  static int32_t argmax(std::span<const float> logits);  // lowest id on ties

 private:
  double uniform();  // [0, 1), the same sequence on every platform for a seed
  // Applies the penalties; returns the logits to choose from (logits itself or penalized_).
  std::span<const float> penalize(std::span<const float> logits, std::span<const int32_t> history, size_t prompt_length);
  // Sampling only: candidates_[i] and probs_[i] for the tokens that stay after temperature, top_k,
  // top_p and min_p, most likely first.
  void distribution(std::span<const float> logits);
  int32_t draw();  // from probs_

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
  std::vector<double> probs_;
  std::vector<float> penalized_;
  std::vector<float> masked_;
  std::vector<int32_t> generated_;
  std::vector<double> q_by_id_;  // next_with_draft: q indexed by id (zero outside q's ids)
};

}  // namespace phinfer::generate
