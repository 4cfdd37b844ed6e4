// Batch invariance of the forward pass: a sequence's logits are bit-identical whether it runs
// alone (its prompt in one call, then one token per call) or in batches with other sequences,
// with its prompt cut into other chunks, next to decode rows and prefill chunks of others. Checked
// on every golden model, for the stored weights (fp32 compute) and int8 / int4 conversions,
// including a sequence past the 2047-key sliding window.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "kernels/thread_pool.h"
#include "model/phi3.h"
#include "model/sequence.h"
#include "phinfer/convert.h"
#include "converted_models.h"
#include "test_util.h"

namespace phinfer {
namespace {

struct Stream {
  std::vector<int32_t> prompt;
  std::vector<int32_t> decode;                // tokens fed one at a time after the prompt
  std::vector<std::vector<float>> logits;     // after the prompt, then after each decode token
};

std::vector<float> row(const model::Activations& acts, int64_t r, int64_t vocab) {
  return std::vector<float>(acts.logits.begin() + r * vocab, acts.logits.begin() + (r + 1) * vocab);
}

// Alone: the prompt in one call, then greedy tokens one per call (their ids become `decode`).
void run_alone(const model::Phi3Model& m, kernels::ThreadPool& pool, Stream& s, int n_decode, model::KVCacheType kv) {
  const int64_t vocab = m.config().vocab_size;
  model::KVCache cache = m.new_cache(kv);
  model::Activations acts(m.config(), 1, 1);
  model::ForwardBatch b;
  const int64_t last = static_cast<int64_t>(s.prompt.size()) - 1;
  b.add(cache, model::RopeTable::Short, s.prompt, std::span<const int64_t>(&last, 1));
  m.forward(b, acts, pool);
  s.logits = {row(acts, 0, vocab)};
  s.decode.clear();
  for (int i = 0; i < n_decode; ++i) {
    const auto& l = s.logits.back();
    const int32_t next = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
    s.decode.push_back(next);
    const int64_t zero = 0;
    b.clear();
    b.add(cache, model::RopeTable::Short, std::span<const int32_t>(&s.decode.back(), 1), std::span<const int64_t>(&zero, 1));
    m.forward(b, acts, pool);
    s.logits.push_back(row(acts, 0, vocab));
  }
}

// Batched: every call holds rows of several streams. Stream i's prompt is cut into chunks of
// chunk_of(i) tokens; streams start at different calls; decode rows and prefill chunks mix.
void run_batched(const model::Phi3Model& m, kernels::ThreadPool& pool, std::vector<Stream>& streams,
                 std::vector<std::vector<std::vector<float>>>& out, model::KVCacheType kv) {
  const int64_t vocab = m.config().vocab_size;
  const size_t n = streams.size();
  std::vector<model::KVCache> caches;
  for (size_t i = 0; i < n; ++i) caches.push_back(m.new_cache(kv));
  std::vector<size_t> fed(n, 0), decoded(n, 0);
  out.assign(n, {});
  model::Activations acts(m.config(), 8, 2);  // deliberately small: grows on demand
  model::ForwardBatch b;
  for (int call = 0;; ++call) {
    b.clear();
    std::vector<size_t> who;
    std::vector<int64_t> logit_row;
    for (size_t i = 0; i < n; ++i) {
      if (static_cast<size_t>(call) < i) continue;  // stream i joins at call i
      const Stream& s = streams[i];
      const int64_t chunk = static_cast<int64_t>(3 + 61 * i) % 97 + 1;
      if (fed[i] < s.prompt.size()) {
        const size_t len = std::min<size_t>(static_cast<size_t>(chunk), s.prompt.size() - fed[i]);
        const bool last = fed[i] + len == s.prompt.size();
        const int64_t r = static_cast<int64_t>(len) - 1;
        b.add(caches[i], model::RopeTable::Short, std::span<const int32_t>(s.prompt).subspan(fed[i], len),
              last ? std::span<const int64_t>(&r, 1) : std::span<const int64_t>());
        if (last) who.push_back(i);
        fed[i] += len;
      } else if (decoded[i] < s.decode.size()) {
        const int64_t zero = 0;
        b.add(caches[i], model::RopeTable::Short, std::span<const int32_t>(&s.decode[decoded[i]], 1),
              std::span<const int64_t>(&zero, 1));
        who.push_back(i);
        ++decoded[i];
      }
    }
    if (b.rows() == 0) break;
    m.forward(b, acts, pool);
    for (size_t k = 0; k < who.size(); ++k) out[who[k]].push_back(row(acts, static_cast<int64_t>(k), vocab));
  }
}

std::vector<int32_t> prompt_of(const nlohmann::json& golden, const std::string& name, size_t max_len) {
  for (const auto& c : golden["cases"])
    if (c["name"] == name) {
      auto ids = c["prompt_ids"].get<std::vector<int32_t>>();
      if (ids.size() > max_len) ids.resize(max_len);
      return ids;
    }
  throw std::runtime_error("no golden case " + name);
}

void check_invariance(const std::filesystem::path& model_path, const std::vector<std::vector<int32_t>>& prompts,
                      int n_decode, model::KVCacheType kv = model::KVCacheType::F32) {
  auto m = model::Phi3Model::load(model_path);
  kernels::ThreadPool pool(2);
  std::vector<Stream> streams;
  for (const auto& p : prompts) {
    streams.push_back({p, {}, {}});
    run_alone(*m, pool, streams.back(), n_decode, kv);
  }
  std::vector<std::vector<std::vector<float>>> batched;
  run_batched(*m, pool, streams, batched, kv);
  for (size_t i = 0; i < streams.size(); ++i) {
    ASSERT_EQ(batched[i].size(), streams[i].logits.size()) << "stream " << i;
    for (size_t k = 0; k < batched[i].size(); ++k)
      ASSERT_EQ(0, std::memcmp(batched[i][k].data(), streams[i].logits[k].data(), batched[i][k].size() * sizeof(float)))
          << model_path << ": stream " << i << " (prompt " << streams[i].prompt.size() << " tokens), logits " << k
          << " differ between running alone and batched";
  }
  // A different thread count does not change a bit either.
  kernels::ThreadPool one(1);
  Stream again{prompts[0], {}, {}};
  run_alone(*m, one, again, n_decode, kv);
  for (size_t k = 0; k < again.logits.size(); ++k)
    ASSERT_EQ(0, std::memcmp(again.logits[k].data(), streams[0].logits[k].data(), again.logits[k].size() * sizeof(float)));
}

class BatchInvariance : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(BatchInvariance, LogitsAreBitIdenticalAloneAndBatched) {
  const auto& [model, format] = GetParam();
  const auto dir = test::shared_path("models/" + model);
  const auto golden = test::read_json(dir / "golden.json");
  const auto path = format == "stored" ? dir : test::converted_model(model, format);
  std::vector<std::vector<int32_t>> prompts;
  if (model == "stories260K-phi3") {
    // The real trained model: its golden prompts, plus prefixes of different lengths.
    for (const auto& c : golden["prompts"]) prompts.push_back(c["prompt_ids"].get<std::vector<int32_t>>());
    prompts.push_back(std::vector<int32_t>(prompts[1].begin(), prompts[1].begin() + 2));
  } else {
    prompts = {prompt_of(golden, "chat", 1000), prompt_of(golden, "text300", 1000), prompt_of(golden, "text300", 37),
               prompt_of(golden, "chat", 5)};
  }
  check_invariance(path, prompts, 6);
}

INSTANTIATE_TEST_SUITE_P(
    GoldenModels, BatchInvariance,
    ::testing::Combine(::testing::Values("phi3-tiny-mha", "phi3-tiny-gqa-longrope", "phi4-tiny-synth", "stories260K-phi3"),
                       ::testing::Values("stored", "int8", "int4")),
    [](const auto& info) {
      std::string n = std::get<0>(info.param) + "_" + std::get<1>(info.param);
      for (char& c : n)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

TEST(BatchInvarianceWindow, PastTheSlidingWindowBatchedWithShortSequences) {
  // phi3-tiny-mha has a 2047-key window; its window2600 prompt runs past it, in chunks, next to others.
  const auto dir = test::shared_path("models/phi3-tiny-mha");
  const auto golden = test::read_json(dir / "golden.json");
  check_invariance(dir, {prompt_of(golden, "window2600", 100000), prompt_of(golden, "chat", 100)}, 4);
  check_invariance(test::converted_model("phi3-tiny-mha", "int4"), {prompt_of(golden, "window2600", 100000), prompt_of(golden, "text300", 100)}, 4);
}

TEST(BatchInvarianceKvCache, HalfAndInt8CachesAreBatchInvariantToo) {
  // Keys and values are rounded per position (f16) or per position and head (q8), so the rounding
  // cannot depend on the other rows of a batch either.
  const auto dir = test::shared_path("models/phi3-tiny-gqa-longrope");
  const auto golden = test::read_json(dir / "golden.json");
  const std::vector<std::vector<int32_t>> prompts = {prompt_of(golden, "text300", 1000), prompt_of(golden, "chat", 1000),
                                                     prompt_of(golden, "text300", 37)};
  check_invariance(dir, prompts, 6, model::KVCacheType::F16);
  check_invariance(dir, prompts, 6, model::KVCacheType::Q8);
  check_invariance(test::converted_model("phi3-tiny-gqa-longrope", "int4"), prompts, 6, model::KVCacheType::Q8);
}

TEST(BatchInvarianceWindow, ChunkedPrefillEqualsOneCall) {
  // Sequence (single-stream client) cut into chunks gives the logits of one call, bit for bit.
  const auto dir = test::shared_path("models/phi3-tiny-gqa-longrope");
  auto m = model::Phi3Model::load(dir);
  kernels::ThreadPool pool(2);
  const auto prompt = prompt_of(test::read_json(dir / "golden.json"), "text300", 1000);
  model::Sequence whole(*m, pool), chunked(*m, pool);
  const auto a = whole.append(prompt);
  std::vector<float> b;
  for (size_t at = 0; at < prompt.size(); at += 50)
    b = chunked.append(std::span<const int32_t>(prompt).subspan(at, std::min<size_t>(50, prompt.size() - at)),
                       static_cast<int64_t>(prompt.size()));
  ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

}  // namespace
}  // namespace phinfer
