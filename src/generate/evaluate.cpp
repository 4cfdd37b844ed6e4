#include "phinfer/evaluate.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include "phinfer/error.h"

namespace phinfer {
namespace {

// log-softmax of one row of logits, in double.
void log_softmax(const float* logits, int64_t n, std::vector<double>& out) {
  out.resize(static_cast<size_t>(n));
  const double mx = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = static_cast<double>(logits[i]) - lse;
}

// Calls fn(window ids, logits of every position [n, vocab]) for each window of the text.
void for_each_window(const Pipeline& p, std::span<const int32_t> ids, const EvalOptions& o,
                     const std::function<void(std::span<const int32_t>, const std::vector<float>&)>& fn) {
  if (o.context < 2) throw Error("the evaluation context must be at least 2 tokens, found " + std::to_string(o.context));
  if (ids.size() < 2) throw Error("the text is too short to score: it needs at least 2 tokens");
  for (size_t start = 0; start + 1 < ids.size(); start += static_cast<size_t>(o.context)) {
    const auto window = ids.subspan(start, std::min<size_t>(static_cast<size_t>(o.context), ids.size() - start));
    if (window.size() < 2) break;
    std::vector<int64_t> positions(window.size() - 1);
    std::iota(positions.begin(), positions.end(), 0);
    fn(window, p.logits(window, positions));
  }
}

}  // namespace

PerplexityResult perplexity(const Pipeline& model, std::span<const int32_t> ids, const EvalOptions& o) {
  const int64_t V = model.config().vocab_size;
  PerplexityResult r;
  double nll = 0;
  std::vector<double> lp;
  for_each_window(model, ids, o, [&](std::span<const int32_t> w, const std::vector<float>& logits) {
    for (size_t t = 0; t + 1 < w.size(); ++t) {
      log_softmax(logits.data() + t * static_cast<size_t>(V), V, lp);
      nll -= lp[static_cast<size_t>(w[t + 1])];
      ++r.tokens;
    }
  });
  r.mean_nll = nll / static_cast<double>(r.tokens);
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

CompareResult compare(const Pipeline& model, const Pipeline& reference, std::span<const int32_t> ids, const EvalOptions& o) {
  const int64_t V = model.config().vocab_size;
  if (reference.config().vocab_size != V)
    throw Error("the models have different vocabularies (" + std::to_string(V) + " vs " +
                std::to_string(reference.config().vocab_size) + " entries)");
  // The reference's log-probabilities, window by window, then the model's against them.
  std::vector<std::vector<float>> ref_logits;
  for_each_window(reference, ids, o, [&](std::span<const int32_t>, const std::vector<float>& l) { ref_logits.push_back(l); });
  CompareResult r;
  size_t window = 0;
  double kl_sum = 0, nll_model = 0, nll_ref = 0;
  int64_t agree = 0, n = 0;
  std::vector<double> lp, lq;
  for_each_window(model, ids, o, [&](std::span<const int32_t> w, const std::vector<float>& logits) {
    const auto& ref = ref_logits[window++];
    for (size_t t = 0; t + 1 < w.size(); ++t) {
      const float* a = logits.data() + t * static_cast<size_t>(V);
      const float* b = ref.data() + t * static_cast<size_t>(V);
      log_softmax(a, V, lq);
      log_softmax(b, V, lp);
      double kl = 0;
      for (int64_t i = 0; i < V; ++i) kl += std::exp(lp[static_cast<size_t>(i)]) * (lp[static_cast<size_t>(i)] - lq[static_cast<size_t>(i)]);
      kl = std::max(kl, 0.0);
      kl_sum += kl;
      r.max_kl = std::max(r.max_kl, kl);
      agree += (std::max_element(a, a + V) - a) == (std::max_element(b, b + V) - b);
      nll_model -= lq[static_cast<size_t>(w[t + 1])];
      nll_ref -= lp[static_cast<size_t>(w[t + 1])];
      ++n;
    }
  });
  r.mean_kl = kl_sum / static_cast<double>(n);
  r.top1_agreement = static_cast<double>(agree) / static_cast<double>(n);
  r.model = {std::exp(nll_model / static_cast<double>(n)), nll_model / static_cast<double>(n), n};
  r.reference = {std::exp(nll_ref / static_cast<double>(n)), nll_ref / static_cast<double>(n), n};
  return r;
}

}  // namespace phinfer
