// The generation engine: many requests in one batch give exactly the results of one-at-a-time
// runs; cancel and finish free KV memory; a full KV budget queues requests; the pull-style
// Generator; device selection; concurrent callers.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <thread>

#include "engine/engine_impl.h"
#include "generate/sampler.h"
#include "phinfer/engine.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"
#include "test_util.h"

namespace phinfer {
namespace {

std::vector<int32_t> golden_prompt(const std::filesystem::path& dir, const std::string& name) {
  const auto golden = test::read_json(dir / "golden.json");
  for (const auto& c : golden["cases"])
    if (c["name"] == name) return c["prompt_ids"].get<std::vector<int32_t>>();
  throw std::runtime_error("no case " + name);
}

// 16 requests with different prompts and sampling settings.
std::vector<std::pair<std::vector<int32_t>, GenerationConfig>> sixteen_requests(const Pipeline& p) {
  const char* texts[] = {"Once upon a time", "The little dog", "Lily and Tom went to the park. They saw a big",
                         "One day", "Sam had a red ball. He", "The sun was", "Mom said", "A cat"};
  std::vector<std::pair<std::vector<int32_t>, GenerationConfig>> out;
  for (int i = 0; i < 16; ++i) {
    std::vector<int32_t> ids = p.tokenizer().encode(texts[i % 8], true);
    if (i >= 8) {  // longer prompts: the text repeated, so prefill takes several chunks
      std::vector<int32_t> more = ids;
      for (int k = 0; k < 3 + i; ++k) more.insert(more.end(), ids.begin() + 1, ids.end());
      ids = more;
    }
    GenerationConfig gc;
    gc.max_new_tokens = 12 + 5 * (i % 4);
    gc.ignore_eos = i % 5 == 0;
    if (i % 2 == 1) {
      gc.do_sample = true;
      gc.seed = 100 + static_cast<uint64_t>(i);
      gc.temperature = 0.7 + 0.1 * (i % 3);
      gc.top_k = i % 3 == 0 ? 0 : 20;
      gc.top_p = i % 4 == 1 ? 0.9 : 1.0;
    }
    if (i % 4 == 2) gc.repetition_penalty = 1.3;
    if (i == 6) gc.stop_strings = {"."};
    out.push_back({ids, gc});
  }
  return out;
}

TEST(Engine, SixteenRequestsAddedAtDifferentStepsMatchOneAtATime) {
  const auto dir = test::shared_path("models/stories260K-phi3");
  Pipeline p = Pipeline::load(dir);
  const auto requests = sixteen_requests(p);
  std::vector<GenerationResult> alone;
  for (const auto& [ids, gc] : requests) alone.push_back(p.generate(ids, gc));

  EngineOptions o;
  o.max_step_tokens = 40;  // small budget: prefill is chunked and mixed with decode rows
  o.prefill_chunk = 24;
  Engine engine(p, o);
  std::vector<Engine::RequestId> ids(requests.size());
  std::vector<std::string> streamed(requests.size());
  size_t added = 0;
  int steps = 0, max_running = 0;
  while (added < requests.size() || engine.step()) {
    // Two requests join every third step.
    if (steps % 3 == 0)
      for (int k = 0; k < 2 && added < requests.size(); ++k, ++added)
        ids[added] = engine.add_request(requests[added].first, requests[added].second,
                                        [&, i = added](std::string_view t) {
                                          streamed[i] += t;
                                          return true;
                                        });
    if (added == requests.size() && steps > 0 && engine.running() == 0 && engine.waiting() == 0) break;
    engine.step();
    max_running = std::max<int>(max_running, static_cast<int>(engine.running()));
    ++steps;
    ASSERT_LT(steps, 10000);
  }
  EXPECT_GT(max_running, 4);  // they really ran together
  for (size_t i = 0; i < requests.size(); ++i) {
    auto r = engine.take_result(ids[i]);
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ(r->output_ids, alone[i].output_ids) << "request " << i;
    EXPECT_EQ(r->text, alone[i].text) << "request " << i;
    EXPECT_EQ(r->finish_reason, alone[i].finish_reason) << "request " << i;
    EXPECT_EQ(streamed[i], r->text) << "request " << i;
  }
  EXPECT_EQ(engine.kv_cache_bytes_in_use(), 0u);
}

TEST(Engine, LongRopeCrossingInABatchGivesTheGoldenIds) {
  // One request crosses 4096 tokens (its cache is recomputed with the long table) while another
  // decodes next to it; both give their golden / alone ids.
  const auto dir = test::shared_path("models/phi3-tiny-gqa-longrope");
  const auto golden = test::read_json(dir / "golden.json");
  std::vector<int32_t> cross_prompt, cross_ids;
  for (const auto& c : golden["cases"])
    if (c["name"] == "cross4096") {
      cross_prompt = c["prompt_ids"].get<std::vector<int32_t>>();
      cross_ids = c["greedy_ids"].get<std::vector<int32_t>>();
    }
  ASSERT_FALSE(cross_prompt.empty());
  Pipeline p = Pipeline::load(dir);
  GenerationConfig gc;
  gc.max_new_tokens = static_cast<int64_t>(cross_ids.size());
  gc.ignore_eos = true;
  const auto short_prompt = golden_prompt(dir, "chat");
  const auto short_alone = p.generate(short_prompt, gc);

  Engine engine(p, EngineOptions{0, 256, 128, 64, 0});
  auto a = engine.add_request(short_prompt, gc);
  auto b = engine.add_request(cross_prompt, gc);
  auto rb = engine.run_to_completion(b);
  auto ra = engine.run_to_completion(a);
  EXPECT_EQ(rb.output_ids, cross_ids);
  EXPECT_EQ(ra.output_ids, short_alone.output_ids);
}

TEST(Engine, CancelDuringPrefillAndDuringDecodeFreesTheKVCache) {
  const auto dir = test::shared_path("models/phi3-tiny-mha");
  Pipeline p = Pipeline::load(dir);
  const auto prompt = golden_prompt(dir, "window2600");
  GenerationConfig gc;
  gc.max_new_tokens = 50;
  gc.ignore_eos = true;
  EngineOptions o;
  o.prefill_chunk = 64;
  Engine engine(p, o);
  auto prefilling = engine.add_request(prompt, gc);
  auto decoding = engine.add_request(golden_prompt(dir, "chat"), gc);
  engine.step();
  engine.step();
  EXPECT_EQ(engine.status(prefilling), Engine::Status::Running);
  EXPECT_GT(engine.kv_cache_bytes_in_use(), 0u);
  engine.cancel(prefilling);  // still reading its 2589-token prompt
  engine.step();
  EXPECT_EQ(engine.status(prefilling), Engine::Status::Finished);
  auto r = engine.take_result(prefilling);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->finish_reason, "stopped");
  EXPECT_TRUE(r->output_ids.empty());
  for (int i = 0; i < 5; ++i) engine.step();
  const uint64_t one = engine.kv_cache_bytes_in_use();
  EXPECT_GT(one, 0u);
  engine.cancel(decoding);
  engine.step();
  auto d = engine.take_result(decoding);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->finish_reason, "stopped");
  EXPECT_FALSE(d->output_ids.empty());
  EXPECT_EQ(engine.kv_cache_bytes_in_use(), 0u);
  EXPECT_EQ(engine.running(), 0u);
  // An id never given, or already taken: nothing happens.
  engine.cancel(12345);
  EXPECT_EQ(engine.status(12345), Engine::Status::Unknown);
  EXPECT_FALSE(engine.take_result(decoding).has_value());
}

TEST(Engine, FullKVBudgetQueuesRequestsAndAllFinishCorrectly) {
  const auto dir = test::shared_path("models/stories260K-phi3");
  Pipeline p = Pipeline::load(dir);
  GenerationConfig gc;
  gc.max_new_tokens = 20;
  gc.ignore_eos = true;
  const auto prompt = p.tokenizer().encode("Once upon a time", true);
  const auto alone = p.generate(prompt, gc);
  // Room for exactly two requests' reservations.
  const uint64_t per_position = 2ull * p.config().num_hidden_layers * p.config().num_key_value_heads *
                                p.config().head_dim * sizeof(float);
  const uint64_t one = per_position * (prompt.size() + 20);
  EngineOptions o;
  o.kv_cache_bytes = 2 * one + one / 2;
  Engine engine(p, o);
  std::vector<Engine::RequestId> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(engine.add_request(prompt, gc));
  size_t most = 0;
  bool queued = false;
  while (engine.step()) {
    most = std::max(most, engine.running());
    queued = queued || engine.waiting() > 0;
    EXPECT_LE(engine.kv_cache_bytes_in_use(), o.kv_cache_bytes);
  }
  EXPECT_EQ(most, 2u);
  EXPECT_TRUE(queued);
  for (auto id : ids) {
    auto r = engine.take_result(id);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->output_ids, alone.output_ids);
  }
  // A request that can never fit is refused up front, with the sizes.
  GenerationConfig big = gc;
  big.max_new_tokens = 1000;
  try {
    engine.add_request(prompt, big);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("budget"), std::string::npos) << e.what();
  }
}

TEST(Engine, RequestsFromOtherThreadsWhileStepping) {
  const auto dir = test::shared_path("models/stories260K-phi3");
  Pipeline p = Pipeline::load(dir);
  GenerationConfig gc;
  gc.max_new_tokens = 16;
  const auto prompt = p.tokenizer().encode("The little dog", true);
  const auto alone = p.generate(prompt, gc);
  Engine engine(p);
  std::atomic<bool> stop{false};
  std::thread driver([&] {
    while (!stop) engine.step();
  });
  std::vector<std::thread> clients;
  std::vector<GenerationResult> results(4);
  for (int i = 0; i < 4; ++i)
    clients.emplace_back([&, i] {
      auto id = engine.add_request(prompt, gc);
      for (;;) {
        if (auto r = engine.take_result(id)) {
          results[static_cast<size_t>(i)] = *r;
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  for (auto& t : clients) t.join();
  stop = true;
  driver.join();
  for (const auto& r : results) EXPECT_EQ(r.output_ids, alone.output_ids);
}

TEST(Engine, ConcurrentPipelineGenerateCallsAreSerializedAndCorrect) {
  Pipeline p = Pipeline::load(test::shared_path("models/stories260K-phi3"));
  GenerationConfig gc;
  gc.max_new_tokens = 24;
  const auto a = p.tokenizer().encode("One day", true), b = p.tokenizer().encode("A cat", true);
  const auto ra = p.generate(a, gc), rb = p.generate(b, gc);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      for (int k = 0; k < 3; ++k) {
        const auto r = p.generate(i % 2 ? a : b, gc);
        if (r.output_ids != (i % 2 ? ra : rb).output_ids) ++bad;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(Generator, AppendNextTokenRewindMatchGenerateAndLogits) {
  Pipeline p = Pipeline::load(test::shared_path("models/stories260K-phi3"));
  GenerationConfig gc;
  gc.max_new_tokens = 10;
  gc.ignore_eos = true;
  const auto prompt = p.tokenizer().encode("Lily and Tom", true);
  const auto ref = p.generate(prompt, gc);

  Generator g(p, gc);
  EXPECT_TRUE(g.logits().empty());
  EXPECT_THROW(g.generate_next_token(), Error);
  g.append_tokens(prompt);
  const int64_t last = static_cast<int64_t>(prompt.size()) - 1;
  const auto direct = p.logits(prompt, std::span<const int64_t>(&last, 1));
  ASSERT_EQ(g.logits().size(), direct.size());
  EXPECT_TRUE(std::equal(direct.begin(), direct.end(), g.logits().begin()));
  std::vector<int32_t> out;
  while (!g.is_done()) out.push_back(g.generate_next_token());
  EXPECT_EQ(out, ref.output_ids);
  EXPECT_EQ(g.tokens().size(), prompt.size() + out.size());

  // Rewind to the prompt plus three tokens, append the fourth again: the rest is the same.
  g.rewind_to(prompt.size() + 3);
  g.append_tokens(std::span<const int32_t>(&out[3], 1));
  std::vector<int32_t> again(out.begin(), out.begin() + 4);
  for (int i = 0; i < 4; ++i) again.push_back(g.generate_next_token());
  EXPECT_EQ(again, std::vector<int32_t>(out.begin(), out.begin() + 8));
}

TEST(Device, UnknownDeviceIsAClearErrorAndAutoRunsOnTheCpu) {
  const auto dir = test::shared_path("models/stories260K-phi3");
  PipelineOptions o;
  for (const char* device : {"npu", "gpu:1x", "cuda"}) {
    o.device = device;
    try {
      Pipeline::load(dir, o);
      FAIL() << "expected an error for " << device;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(std::string("'") + device + "'"), std::string::npos) << m;
      EXPECT_NE(m.find("cpu"), std::string::npos) << m;
    }
  }
  o.device = "auto";
  Pipeline p = Pipeline::load(dir, o);
  GenerationConfig gc;
  gc.max_new_tokens = 4;
  EXPECT_FALSE(p.generate(std::vector<int32_t>{1, 403}, gc).output_ids.empty());
}

}  // namespace
}  // namespace phinfer

namespace phinfer {
namespace {

TEST(Engine, HugeMaxNewTokensStopsAtTheContextWithoutOverflow) {
  // 9223372036854775807 (what "1e20" parses to) once overflowed `prompt + max_new_tokens`.
  Pipeline p = Pipeline::load(test::shared_path("models/stories260K-phi3"));
  GenerationConfig gc;
  gc.max_new_tokens = std::numeric_limits<int64_t>::max();
  gc.ignore_eos = true;
  const std::vector<int32_t> prompt = {1, 403, 407};
  auto r = p.generate(prompt, gc);
  EXPECT_EQ(r.finish_reason, "length");
  // Every position of the context is used: the last sampled token is the one that did not fit.
  EXPECT_EQ(static_cast<int64_t>(prompt.size() + r.output_ids.size()), p.config().max_position_embeddings + 1);
}

}  // namespace
}  // namespace phinfer

namespace phinfer {
namespace {

TEST(PrefixReuse, SharedPromptsAndNextTurnsReuseKVAndGiveTheSameTokens) {
  const auto dir = test::shared_path("models/phi3-tiny-mha");
  Pipeline p = Pipeline::load(dir);
  const auto base = golden_prompt(dir, "text300");  // 290 tokens
  GenerationConfig gc;
  gc.max_new_tokens = 8;
  gc.ignore_eos = true;
  EngineOptions o;
  o.prefix_cache_bytes = 64ull << 20;
  Engine engine(p, o);

  // n = 3 samples of one prompt, submitted together: the prefill is computed once.
  std::vector<Engine::RequestId> ids;
  for (int i = 0; i < 3; ++i) {
    GenerationConfig s = gc;
    s.do_sample = true;
    s.seed = static_cast<uint64_t>(i);
    ids.push_back(engine.add_request(base, s));
  }
  for (int i = 0; i < 3; ++i) {
    auto r = engine.run_to_completion(ids[static_cast<size_t>(i)]);
    GenerationConfig s = gc;
    s.do_sample = true;
    s.seed = static_cast<uint64_t>(i);
    EXPECT_EQ(r.output_ids, p.generate(base, s).output_ids) << i;
    EXPECT_EQ(r.stats.reused_prompt_tokens, i == 0 ? 0 : static_cast<int64_t>(base.size()) - 1) << i;
  }

  // The next turn of a conversation (the previous prompt + answer + more) starts from the cache.
  auto first = engine.run_to_completion(engine.add_request(base, gc));
  std::vector<int32_t> turn2 = base;
  turn2.insert(turn2.end(), first.output_ids.begin(), first.output_ids.end());
  turn2.insert(turn2.end(), base.begin() + 10, base.begin() + 40);
  auto second = engine.run_to_completion(engine.add_request(turn2, gc));
  EXPECT_GE(second.stats.reused_prompt_tokens, static_cast<int64_t>(base.size()));
  EXPECT_EQ(second.output_ids, p.generate(turn2, gc).output_ids);

  // A shared system prompt: a different continuation of the first 200 tokens copies them.
  std::vector<int32_t> other(base.begin(), base.begin() + 200);
  other.insert(other.end(), base.begin() + 5, base.begin() + 25);
  auto third = engine.run_to_completion(engine.add_request(other, gc));
  EXPECT_EQ(third.stats.reused_prompt_tokens, 200);
  EXPECT_EQ(third.output_ids, p.generate(other, gc).output_ids);
  const auto st = engine.stats();
  EXPECT_GT(st.reused_prompt_tokens, 0u);
  EXPECT_LE(st.prefix_cache_bytes, o.prefix_cache_bytes);
}

TEST(PrefixReuse, TheCacheStaysWithinItsBudget) {
  const auto dir = test::shared_path("models/phi3-tiny-mha");
  Pipeline p = Pipeline::load(dir);
  const auto base = golden_prompt(dir, "text300");
  GenerationConfig gc;
  gc.max_new_tokens = 2;
  gc.ignore_eos = true;
  const uint64_t per_position = 2ull * p.config().num_hidden_layers * p.config().num_key_value_heads *
                                p.config().head_dim * sizeof(float);
  EngineOptions o;
  o.prefix_cache_bytes = per_position * 700;  // about two entries of ~300 positions
  Engine engine(p, o);
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> prompt = base;
    prompt[1] = 100 + i;  // distinct from the second token on: nothing shared
    engine.run_to_completion(engine.add_request(prompt, gc));
    EXPECT_LE(engine.stats().prefix_cache_bytes, o.prefix_cache_bytes);
    EXPECT_GT(engine.stats().prefix_cache_bytes, 0u);
  }
  // The most recent entry is still there; the oldest is gone.
  std::vector<int32_t> last = base, oldest = base;
  last[1] = 105;
  oldest[1] = 100;
  EXPECT_EQ(engine.run_to_completion(engine.add_request(last, gc)).stats.reused_prompt_tokens,
            static_cast<int64_t>(base.size()) - 1);
  EXPECT_EQ(engine.run_to_completion(engine.add_request(oldest, gc)).stats.reused_prompt_tokens, 0);
}

TEST(TokenEvents, LogprobsAndPenaltiesFollowTheirDefinitions) {
  Pipeline p = Pipeline::load(test::shared_path("models/stories260K-phi3"));
  const auto prompt = p.tokenizer().encode("Once upon a time", true);
  GenerationConfig gc;
  gc.max_new_tokens = 6;
  gc.ignore_eos = true;
  gc.logprobs = true;
  gc.top_logprobs = 3;
  Engine engine(p);
  std::vector<int32_t> seen;
  std::string text;
  GenerationResult done;
  bool finished = false;
  GenerationRequest req;
  req.prompt_ids = prompt;
  req.config = gc;
  req.on_token = [&](const TokenEvent& e) {
    if (e.id >= 0) {
      seen.push_back(e.id);
      EXPECT_NE(e.logprobs, nullptr);
    }
    text += e.text;
    return true;
  };
  req.on_finish = [&](GenerationResult&& r) {
    done = std::move(r);
    finished = true;
  };
  auto id = engine.add_request(std::move(req));
  while (engine.step()) {
  }
  ASSERT_TRUE(finished);
  EXPECT_EQ(engine.status(id), Engine::Status::Unknown);  // delivered through on_finish
  EXPECT_EQ(seen, done.output_ids);
  EXPECT_EQ(text, done.text);
  ASSERT_EQ(done.logprobs.size(), done.output_ids.size());
  // Greedy: the chosen token is the most likely one, and the log-probabilities match the logits.
  std::vector<int32_t> ids = prompt;
  for (size_t i = 0; i < done.logprobs.size(); ++i) {
    const auto& lp = done.logprobs[i];
    ASSERT_EQ(lp.top.size(), 3u);
    EXPECT_EQ(lp.top[0].id, lp.id);
    EXPECT_FLOAT_EQ(lp.top[0].logprob, lp.logprob);
    EXPECT_GE(lp.top[0].logprob, lp.top[1].logprob);
    const int64_t last = static_cast<int64_t>(ids.size()) - 1;
    const auto logits = p.logits(ids, std::span<const int64_t>(&last, 1));
    double z = 0;
    const float mx = *std::max_element(logits.begin(), logits.end());
    for (float l : logits) z += std::exp(static_cast<double>(l) - mx);
    EXPECT_NEAR(lp.logprob, logits[static_cast<size_t>(lp.id)] - mx - std::log(z), 1e-4);
    ids.push_back(lp.id);
  }
  // OpenAI's additive penalties count generated tokens only (from prompt_length on).
  generate::Sampler greedy({false, 1.0, 0, 1.0, 0.0, 1.0, 0.6, 0.0}, 0);
  const std::vector<float> l = {5.0f, 4.5f, 0.0f, 4.9f};
  const std::vector<int32_t> history = {0, 3, 3};  // prompt {0}, generated {3, 3}
  EXPECT_EQ(greedy.next(l, history, 1), 0);        // 4.9 - 0.6 < 5: the prompt's 0 is not penalized
  EXPECT_EQ(greedy.next(l, history, 0), 1);        // 0 and 3 both penalized once: 4.4, 4.3 < 4.5
  generate::Sampler freq({false, 1.0, 0, 1.0, 0.0, 1.0, 0.0, 0.3}, 0);
  EXPECT_EQ(freq.next(l, history, 1), 0);          // 4.9 - 2 * 0.3 = 4.3
  EXPECT_EQ(freq.next(std::vector<float>{4.0f, 4.5f, 0.0f, 4.9f}, history, 1), 1);  // 4.3 < 4.5
  GenerationConfig bad = gc;
  bad.presence_penalty = 3;
  EXPECT_THROW(p.generate(prompt, bad), Error);
}

}  // namespace
}  // namespace phinfer

namespace phinfer {
namespace {

TEST(EngineKVGrowth, DoublesAndTakesTheWholeReservationOnceHalfwayThere) {
  const auto grow = &Engine::Impl::kv_positions_to_reserve;
  // A 500-token prompt in chunks of 256 with 16 tokens to generate: the first chunk reserves all
  // 516 positions, so decoding never copies the cache for its last 4 positions.
  EXPECT_EQ(grow(256, 0, 516), 516);
  // A request allowed 60,000 tokens starts small and doubles.
  EXPECT_EQ(grow(20, 0, 60000), 276);
  EXPECT_EQ(grow(277, 276, 60000), 552);
  EXPECT_EQ(grow(8833, 8832, 60000), 17664);
  EXPECT_EQ(grow(17665, 17664, 60000), 60000);  // doubling to 35,328 would pass half of 60,000
  EXPECT_EQ(grow(30000, 29999, 60000), 60000);
  // Never less than needed (a chunk larger than a doubling).
  EXPECT_EQ(grow(5000, 256, 100000), 5256);
}

}  // namespace
}  // namespace phinfer
