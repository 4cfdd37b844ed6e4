#include "generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "phinfer/error.h"

namespace phinfer::generate {

Sampler::Sampler(SamplingParams params, uint64_t seed) : params_(params), rng_(seed) {
  if (params_.do_sample) {
    if (!(params_.temperature > 0) || !std::isfinite(params_.temperature))
      throw Error("temperature must be a positive number when sampling, found " + std::to_string(params_.temperature));
    if (!(params_.top_p > 0 && params_.top_p <= 1))
      throw Error("top_p must be in (0, 1], found " + std::to_string(params_.top_p));
    if (params_.top_k < 0) throw Error("top_k must be >= 0, found " + std::to_string(params_.top_k));
    if (!(params_.min_p >= 0 && params_.min_p <= 1))
      throw Error("min_p must be in [0, 1], found " + std::to_string(params_.min_p));
  }
  if (!(params_.repetition_penalty > 0) || !std::isfinite(params_.repetition_penalty))
    throw Error("repetition_penalty must be a positive number, found " + std::to_string(params_.repetition_penalty));
  if (!(params_.presence_penalty >= -2 && params_.presence_penalty <= 2))
    throw Error("presence_penalty must be in [-2, 2], found " + std::to_string(params_.presence_penalty));
  if (!(params_.frequency_penalty >= -2 && params_.frequency_penalty <= 2))
    throw Error("frequency_penalty must be in [-2, 2], found " + std::to_string(params_.frequency_penalty));
}

int32_t Sampler::argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

std::span<const float> Sampler::penalize(std::span<const float> logits, std::span<const int32_t> history,
                                        size_t prompt_length) {
  const bool additive = params_.presence_penalty != 0.0 || params_.frequency_penalty != 0.0;
  if ((params_.repetition_penalty != 1.0 && !history.empty()) || additive) penalized_.assign(logits.begin(), logits.end());
  if (params_.repetition_penalty != 1.0 && !history.empty()) {
    // HF RepetitionPenaltyLogitsProcessor: each distinct seen token once; negative logits are multiplied.
    const float p = static_cast<float>(params_.repetition_penalty);
    std::vector<bool> seen(penalized_.size(), false);
    for (int32_t id : history) {
      if (id < 0 || static_cast<size_t>(id) >= penalized_.size() || seen[static_cast<size_t>(id)]) continue;
      seen[static_cast<size_t>(id)] = true;
      float& l = penalized_[static_cast<size_t>(id)];
      l = l < 0 ? l * p : l / p;
    }
    logits = penalized_;
  }
  if (additive && prompt_length < history.size()) {
    generated_.assign(history.begin() + static_cast<std::ptrdiff_t>(prompt_length), history.end());
    std::sort(generated_.begin(), generated_.end());
    for (size_t i = 0; i < generated_.size();) {
      size_t j = i;
      while (j < generated_.size() && generated_[j] == generated_[i]) ++j;
      const int32_t id = generated_[i];
      if (id >= 0 && static_cast<size_t>(id) < penalized_.size())
        penalized_[static_cast<size_t>(id)] -= static_cast<float>(params_.frequency_penalty * static_cast<double>(j - i) +
                                                                   params_.presence_penalty);
      i = j;
    }
  }
  if (additive) logits = penalized_;
  return logits;
}

void Sampler::distribution(std::span<const float> logits) {
  // Temperature, then keep the top_k, then the smallest prefix whose probability reaches top_p.
  candidates_.clear();
  candidates_.reserve(logits.size());
  const float inv_t = static_cast<float>(1.0 / params_.temperature);
  // Masked ids (-inf) have probability 0 whatever follows: leaving them out changes nothing and
  // keeps a grammar's few allowed tokens from paying for a sort of the whole vocabulary.
  for (size_t i = 0; i < logits.size(); ++i)
    if (logits[i] != -std::numeric_limits<float>::infinity()) candidates_.emplace_back(logits[i] * inv_t, static_cast<int32_t>(i));
  if (candidates_.empty()) throw Error("no token can be chosen: every logit is -inf");
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = static_cast<size_t>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(keep), candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(keep);
  const float mx = candidates_.front().first;
  probs_.resize(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += probs_[i] = std::exp(static_cast<double>(candidates_[i].first - mx));
  for (auto& p : probs_) p /= sum;
  if (params_.top_p < 1.0) {
    // HF removes tokens whose cumulative probability (ascending order) is <= 1 - top_p; the best always stays.
    double cum = 0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      cum += probs_[i];
      if (cum >= params_.top_p) {
        cut = i + 1;
        break;
      }
    }
    probs_.resize(cut);
    double s = 0;
    for (double p : probs_) s += p;
    for (auto& p : probs_) p /= s;
  }
  if (params_.min_p > 0) {
    // HF MinPLogitsWarper (after top_p): drop tokens below min_p times the best probability.
    const double threshold = params_.min_p * probs_.front();
    size_t cut = 1;
    while (cut < probs_.size() && probs_[cut] >= threshold) ++cut;
    probs_.resize(cut);
    double s = 0;
    for (double p : probs_) s += p;
    for (auto& p : probs_) p /= s;
  }
}

int32_t Sampler::draw() {
  double u = uniform(), acc = 0;
  for (size_t i = 0; i < probs_.size(); ++i) {
    acc += probs_[i];
    if (u < acc) return candidates_[i].second;
  }
  // Rounding left u past the sum: the last candidate that can be chosen (a masked one has p = 0).
  size_t last = probs_.size() - 1;
  while (last > 0 && probs_[last] <= 0) --last;
  return candidates_[last].second;
}

int32_t Sampler::next(std::span<const float> logits, std::span<const int32_t> history, size_t prompt_length,
                      std::span<const uint64_t> allowed) {
  if (!allowed.empty()) {
    // Masked ids get -inf: no penalty, temperature or truncation below can bring them back.
    masked_.assign(logits.size(), -std::numeric_limits<float>::infinity());
    for (size_t w = 0; w < allowed.size() && w * 64 < masked_.size(); ++w)
      for (uint64_t bits = allowed[w]; bits; bits &= bits - 1) {
        const size_t i = w * 64 + static_cast<size_t>(__builtin_ctzll(bits));
        if (i < masked_.size()) masked_[i] = logits[i];
      }
    logits = masked_;
  }
  logits = penalize(logits, history, prompt_length);
  if (!params_.do_sample) return argmax(logits);
  distribution(logits);
  return draw();
}

int32_t Sampler::next_keeping_distribution(std::span<const float> logits, std::span<const int32_t> history,
                                           size_t prompt_length, Distribution& out) {
  distribution(penalize(logits, history, prompt_length));
  out.ids.resize(probs_.size());
  for (size_t i = 0; i < probs_.size(); ++i) out.ids[i] = candidates_[i].second;
  out.probs = probs_;
  return draw();
}

int32_t Sampler::next_with_draft(std::span<const float> logits, std::span<const int32_t> history, size_t prompt_length,
                                 int32_t draft, const Distribution* q) {
  logits = penalize(logits, history, prompt_length);
  if (!params_.do_sample) return argmax(logits);
  distribution(logits);
  size_t at = 0;
  while (at < probs_.size() && candidates_[at].second != draft) ++at;
  if (at < probs_.size()) {
    double q_draft = 1.0;
    if (q) {
      const auto it = std::find(q->ids.begin(), q->ids.end(), draft);
      q_draft = it == q->ids.end() ? 0.0 : q->probs[static_cast<size_t>(it - q->ids.begin())];
    }
    // u < p / q accepts with probability min(1, p / q) (q(draft) = 0, a draft q could not produce: always).
    if (uniform() * q_draft < probs_[at]) return draft;
  }
  // Rejected (always when p(draft) = 0): draw from max(0, p - q), renormalized.
  if (!q) {
    if (at < probs_.size()) probs_[at] = 0;
  } else {
    q_by_id_.resize(std::max(q_by_id_.size(), logits.size()), 0.0);
    for (size_t i = 0; i < q->ids.size(); ++i) q_by_id_[static_cast<size_t>(q->ids[i])] = q->probs[i];
    for (size_t i = 0; i < probs_.size(); ++i)
      probs_[i] = std::max(0.0, probs_[i] - q_by_id_[static_cast<size_t>(candidates_[i].second)]);
    for (int32_t id : q->ids) q_by_id_[static_cast<size_t>(id)] = 0.0;
  }
  double sum = 0;
  for (double x : probs_) sum += x;
  // Nothing left: p <= q everywhere, i.e. p = q up to rounding, where a rejection has probability ~0.
  if (!(sum > 0)) return at < probs_.size() ? draft : candidates_.front().second;
  for (auto& x : probs_) x /= sum;
  return draw();
}

}  // namespace phinfer::generate
