#include "model/sequence.h"

#include <algorithm>

#include "phinfer/error.h"

namespace phinfer::model {

Sequence::Sequence(const Phi3Model& model, kernels::ThreadPool& pool, KVCacheType kv_type)
    : model_(&model), pool_(&pool), cache_(model.new_cache(kv_type)), acts_(model.config(), 1, 1) {}

void Sequence::reset() {
  cache_.clear();
  tokens_.clear();
}

void Sequence::truncate(size_t n) {
  if (n >= tokens_.size()) return;
  if (n == 0) return reset();
  tokens_.resize(n);
  cache_.length = static_cast<int64_t>(n);
}

void Sequence::run(std::span<const int32_t> tokens, std::span<const int64_t> rows, int64_t planned_length) {
  if (tokens.empty()) throw Error("internal: append of no tokens");
  const int64_t total = std::max<int64_t>(planned_length, static_cast<int64_t>(tokens_.size() + tokens.size()));
  const RopeTable table = model_->table_for_length(total);
  batch_.clear();
  if (cache_.length > 0 && cache_.table != table) {
    // The crossing: recompute everything (old tokens + new) with the new table, as transformers does.
    recompute_.assign(tokens_.begin(), tokens_.end());
    recompute_.insert(recompute_.end(), tokens.begin(), tokens.end());
    shifted_.assign(rows.begin(), rows.end());
    for (auto& r : shifted_) r += static_cast<int64_t>(tokens_.size());
    cache_.clear();
    batch_.add(cache_, table, recompute_, shifted_);
    ++recomputations_;
  } else {
    batch_.add(cache_, table, tokens, rows);
  }
  model_->forward(batch_, acts_, *pool_);
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
}

std::vector<float> Sequence::append_with_logits(std::span<const int32_t> tokens, std::span<const int64_t> rows,
                                                int64_t planned_length) {
  run(tokens, rows, planned_length);
  const size_t n = rows.size() * static_cast<size_t>(model_->config().vocab_size);
  return std::vector<float>(acts_.logits.begin(), acts_.logits.begin() + static_cast<std::ptrdiff_t>(n));
}

const std::vector<float>& Sequence::append(std::span<const int32_t> tokens, int64_t planned_length) {
  const int64_t last = static_cast<int64_t>(tokens.size()) - 1;
  run(tokens, std::span<const int64_t>(&last, 1), planned_length);
  last_logits_.assign(acts_.logits.begin(), acts_.logits.begin() + model_->config().vocab_size);
  return last_logits_;
}

}  // namespace phinfer::model
