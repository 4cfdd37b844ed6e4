#pragma once
// Next-token choice with Hugging Face semantics: greedy, or temperature -> top_k -> top_p -> sample.
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
};

class Sampler {
 public:
  Sampler(SamplingParams params, uint64_t seed);
  int32_t next(std::span<const float> logits);

  static int32_t argmax(std::span<const float> logits);  // lowest id on ties

 private:
  double uniform();  // [0, 1), the same sequence on every platform for a seed

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace phinfer::generate
