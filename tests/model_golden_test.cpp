// The forward pass against golden logits and greedy ids from independent references
// (llama.cpp fp32 / float64 numpy for the synthetic models, llama2.c for stories260K).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "model/phi3.h"
#include "model/sequence.h"
#include "test_util.h"

namespace phinfer {
namespace {

using nlohmann::json;

struct Tolerance {
  double logits;       // last_logits and logits_at
  double decode;       // greedy_logits_top20
};

int32_t argmax(const float* v, int64_t n) {
  return static_cast<int32_t>(std::max_element(v, v + n) - v);  // lowest id on ties
}

// Largest |ours - golden| over [[id, logit], ...] pairs.
double top20_error(const float* logits, const json& pairs) {
  double err = 0;
  for (const auto& p : pairs) err = std::max(err, std::abs(logits[p[0].get<int64_t>()] - p[1].get<double>()));
  return err;
}

void run_case(const std::string& model_name, const model::Phi3Model& m, kernels::ThreadPool& pool, const json& c,
              Tolerance tol) {
  SCOPED_TRACE("case " + c["name"].get<std::string>());
  const int64_t V = m.config().vocab_size;
  std::vector<int32_t> prompt = c["prompt_ids"].get<std::vector<int32_t>>();
  const int64_t n = static_cast<int64_t>(prompt.size());

  std::vector<int64_t> rows;
  for (auto it = c["logits_at"].begin(); it != c["logits_at"].end(); ++it) rows.push_back(std::stoll(it.key()));
  rows.push_back(n - 1);
  model::Sequence seq(m, pool);
  std::vector<float> logits = seq.append_with_logits(prompt, rows);

  double at_err = 0;
  for (size_t r = 0; r + 1 < rows.size(); ++r)
    at_err = std::max(at_err, top20_error(logits.data() + r * V, c["logits_at"][std::to_string(rows[r])]));
  const float* last = logits.data() + (rows.size() - 1) * V;
  double last_err = 0;
  if (c.contains("last_logits")) {
    const auto& gold = c["last_logits"];
    EXPECT_EQ(static_cast<int64_t>(gold.size()), V);
    for (int64_t i = 0; i < V; ++i) last_err = std::max(last_err, std::abs(last[i] - gold[i].get<double>()));
  } else {
    last_err = top20_error(last, c["last_logits_top20"]);
  }
  EXPECT_LE(at_err, tol.logits) << "logits_at";
  EXPECT_LE(last_err, tol.logits) << "last logits";

  const auto gold_ids = c["greedy_ids"].get<std::vector<int32_t>>();
  std::vector<int32_t> ids;
  double decode_err = 0;
  std::vector<float> step(last, last + V);
  for (size_t s = 0; s < gold_ids.size(); ++s) {
    decode_err = std::max(decode_err, top20_error(step.data(), c["greedy_logits_top20"][s]));
    int32_t next = argmax(step.data(), V);
    ids.push_back(next);
    if (s + 1 < gold_ids.size()) {
      const auto& l = seq.append(std::span<const int32_t>(&next, 1));
      step.assign(l.begin(), l.end());
    }
  }
  EXPECT_EQ(ids, gold_ids);
  EXPECT_LE(decode_err, tol.decode) << "greedy_logits_top20";
  if (c.contains("rope_switch_at_new_token")) EXPECT_EQ(seq.recomputations(), 1);
  std::printf("[ golden ] %s/%s: n=%lld max|err| last=%.2e at=%.2e decode=%.2e greedy %s\n",
              model_name.c_str(), c["name"].get<std::string>().c_str(), static_cast<long long>(n),
              last_err, at_err, decode_err, ids == gold_ids ? "exact" : "DIFFERS");
}

void run_model(const std::string& name, const std::vector<std::string>& cases, Tolerance tol,
               const std::map<std::string, Tolerance>& per_case = {}) {
  auto dir = test::shared_path("models/" + name);
  auto m = model::Phi3Model::load(dir);
  kernels::ThreadPool pool(0);
  json golden = test::read_json(dir / "golden.json");
  std::vector<std::string> seen;
  for (const auto& c : golden["cases"]) {
    const std::string cname = c["name"].get<std::string>();
    if (std::find(cases.begin(), cases.end(), cname) == cases.end()) continue;
    seen.push_back(cname);
    auto it = per_case.find(cname);
    run_case(name, *m, pool, c, it == per_case.end() ? tol : it->second);
  }
  EXPECT_EQ(seen, cases) << "golden cases missing from " << name;
}

constexpr Tolerance kFp32{1e-3, 1e-3};

TEST(ModelGolden, Phi3TinyMhaShort) { run_model("phi3-tiny-mha", {"chat", "text300"}, kFp32); }
TEST(ModelGolden, Phi3TinyMhaPastSlidingWindow) { run_model("phi3-tiny-mha", {"window2600"}, kFp32); }
TEST(ModelGolden, Phi3LongRopeShortFactors) {
  run_model("phi3-tiny-gqa-longrope", {"chat", "text300", "short100"}, kFp32);
}
TEST(ModelGolden, Phi3LongRopeLongFactors) { run_model("phi3-tiny-gqa-longrope", {"long5000"}, kFp32); }
TEST(ModelGolden, Phi3LongRopeCrossing4096) { run_model("phi3-tiny-gqa-longrope", {"cross4096"}, kFp32); }
TEST(ModelGolden, Phi4TinyShort) { run_model("phi4-tiny-synth", {"chat", "text300"}, {2e-3, 2e-3}); }
TEST(ModelGolden, Phi4TinyLong) { run_model("phi4-tiny-synth", {"long4500"}, {1e-2, 1e-2}); }

TEST(ModelGolden, Stories260KGreedy) {
  auto dir = test::shared_path("models/stories260K-phi3");
  auto m = model::Phi3Model::load(dir);
  kernels::ThreadPool pool(1);
  json golden = test::read_json(dir / "golden.json");
  const int64_t V = m->config().vocab_size;
  int exact = 0;
  for (const auto& p : golden["prompts"]) {
    model::Sequence seq(*m, pool);
    auto prompt = p["prompt_ids"].get<std::vector<int32_t>>();
    std::vector<float> step = seq.append(prompt);
    double err = 0;
    for (int64_t i = 0; i < V; ++i) err = std::max(err, std::abs(step[i] - p["last_prompt_logits"][i].get<double>()));
    EXPECT_LE(err, 1e-4) << p["prompt"];
    std::vector<int32_t> ids;
    for (int s = 0; s < 64; ++s) {
      int32_t next = argmax(step.data(), V);
      ids.push_back(next);
      const auto& l = seq.append(std::span<const int32_t>(&next, 1));
      step.assign(l.begin(), l.end());
    }
    EXPECT_EQ(ids, p["greedy_ids"].get<std::vector<int32_t>>()) << p["prompt"];
    exact += ids == p["greedy_ids"].get<std::vector<int32_t>>();
  }
  std::printf("[ golden ] stories260K: %d/%zu prompts greedy-exact\n", exact, golden["prompts"].size());
}

}  // namespace
}  // namespace phinfer
