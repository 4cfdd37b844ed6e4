#pragma once
// Model quality on a text: perplexity, and agreement with a reference model (e.g. a quantized
// model against its fp32 original), as llama.cpp's perplexity / KL-divergence tools report it.
#include <cstdint>
#include <span>

#include "phinfer/export.h"
#include "phinfer/pipeline.h"

namespace phinfer {

struct EvalOptions {
  int64_t context = 512;  // the text is scored in independent windows of this many tokens
};

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;    // nats per token
  int64_t tokens = 0;     // predictions scored
};

struct CompareResult {
  double mean_kl = 0;           // mean over positions of KL(reference || model), nats
  double max_kl = 0;
  double top1_agreement = 0;    // share of positions whose argmax agrees
  PerplexityResult model, reference;
};

// ids: the tokenized text (with its BOS if the tokenizer adds one). Each window predicts its
// tokens 1..n-1 from the ones before, within the window.
PHINFER_API PerplexityResult perplexity(const Pipeline& model, std::span<const int32_t> ids, const EvalOptions& options = {});
PHINFER_API CompareResult compare(const Pipeline& model, const Pipeline& reference, std::span<const int32_t> ids,
                                  const EvalOptions& options = {});

}  // namespace phinfer
