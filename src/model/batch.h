#pragma once
// One forward call's input: rows from any number of sequences (like llama.cpp's llama_batch:
// every row has a token, a position and a sequence). Rows of one sequence are contiguous and
// continue its KV cache: sequence s owns rows [first_row, first_row + n_rows), at positions
// cache->length, cache->length + 1, ...
#include <cstdint>
#include <span>
#include <vector>

#include "model/kv_cache.h"

namespace phinfer::model {

struct ForwardBatch {
  struct Sequence {
    KVCache* cache = nullptr;
    RopeTable table = RopeTable::Short;  // the table of this call for this sequence (see Phi3Model)
    int64_t first_row = 0, n_rows = 0;
  };
  std::vector<int32_t> tokens;     // [rows]
  std::vector<int32_t> row_seq;    // [rows]: index into seqs
  std::vector<int64_t> positions;  // [rows]
  std::vector<Sequence> seqs;
  std::vector<int64_t> logit_rows;  // rows whose logits the call produces, in output order

  int64_t rows() const { return static_cast<int64_t>(tokens.size()); }
  void clear() {
    tokens.clear();
    row_seq.clear();
    positions.clear();
    seqs.clear();
    logit_rows.clear();
  }
  // Appends tokens of one sequence; `logits`: indices into `tokens` whose logits are wanted.
  void add(KVCache& cache, RopeTable table, std::span<const int32_t> toks, std::span<const int64_t> logits = {}) {
    const int64_t first = rows();
    seqs.push_back({&cache, table, first, static_cast<int64_t>(toks.size())});
    for (size_t i = 0; i < toks.size(); ++i) {
      tokens.push_back(toks[i]);
      row_seq.push_back(static_cast<int32_t>(seqs.size() - 1));
      positions.push_back(cache.length + static_cast<int64_t>(i));
    }
    for (int64_t r : logits) logit_rows.push_back(first + r);
  }
};

}  // namespace phinfer::model
