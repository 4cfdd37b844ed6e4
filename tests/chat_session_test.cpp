// ChatSession: the KV cache kept between turns gives what recomputing the conversation gives, the
// earlier conversation is never recomputed, the context policy (drop the oldest turns, keep the
// system message, say so, refuse what cannot fit), interrupted answers, and the JSON conversation.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "phinfer/chat_session.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"
#include "test_util.h"

namespace phinfer {
namespace {

// Loaded once per model for the whole suite (tiny synthetic checkpoints from ../shared).
const Pipeline& model(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Pipeline>> loaded;
  auto& p = loaded[name];
  if (!p) p = std::make_unique<Pipeline>(Pipeline::load(test::shared_path("models/" + name)));
  return *p;
}

GenerationConfig greedy(int64_t max_new_tokens) {
  GenerationConfig gc;
  gc.max_new_tokens = max_new_tokens;
  return gc;
}

const std::vector<std::string> kQuestions = {
    "Hello! Who are you?",
    "Tell me a short story about a dragon.",
    "Why is the sky blue?",
    "Give me three tips for writing clean C++ code.",
    "What is the capital of France, and why is it famous?",
    "Explain the KV cache of a transformer in one paragraph.",
    "Summarize our conversation so far.",
    "Thanks, that was helpful. One more question: what is 17 times 23?",
};

// Each turn of a KV-reusing session equals a fresh greedy generate on the whole rendered
// conversation, and only the previous answer and the new message are computed.
void expect_reuse_matches_recompute(const std::string& name, const std::string& system, int turns, int64_t max_new) {
  const Pipeline& pipe = model(name);
  ChatSession chat(pipe, system);
  const GenerationConfig gc = greedy(max_new);
  GenerationResult prev;
  for (int t = 0; t < turns; ++t) {
    SCOPED_TRACE(name + " turn " + std::to_string(t));
    std::vector<ChatMessage> before = chat.messages();
    before.push_back({"user", kQuestions[static_cast<size_t>(t) % kQuestions.size()]});
    const std::vector<int32_t> full = pipe.encode_chat(before);
    GenerationResult r = chat.send(before.back().content, gc);
    ASSERT_EQ(r.prompt_ids, full) << "the prompt is the rendered conversation";
    GenerationResult fresh = pipe.generate(full, gc);
    EXPECT_EQ(r.output_ids, fresh.output_ids);
    EXPECT_EQ(r.text, fresh.text);
    EXPECT_EQ(r.finish_reason, fresh.finish_reason);
    ASSERT_EQ(chat.messages().size(), before.size() + 1);
    EXPECT_EQ(chat.messages().back().role, "assistant");
    EXPECT_EQ(chat.messages().back().content, r.text);
    // The cache holds the prompt and the answer, less its last token (sampled, never fed back).
    EXPECT_EQ(chat.cached_tokens(), r.stats.prompt_tokens + r.stats.generated_tokens - 1);
    std::printf("[reuse] %s turn %d: %lld prompt tokens, %lld reused, %lld generated (%s)\n", name.c_str(), t,
                static_cast<long long>(r.stats.prompt_tokens), static_cast<long long>(r.stats.reused_prompt_tokens),
                static_cast<long long>(r.stats.generated_tokens), r.finish_reason.c_str());
    if (t == 0) {
      EXPECT_EQ(r.stats.reused_prompt_tokens, 0);
    } else {
      // The earlier conversation (everything up to the previous answer) comes from the cache; at most
      // the previous answer and the new message are computed.
      EXPECT_GE(r.stats.reused_prompt_tokens, prev.stats.prompt_tokens);
      EXPECT_GT(r.stats.reused_prompt_tokens, prev.stats.reused_prompt_tokens) << "reuse grows turn by turn";
    }
    prev = r;
  }
}

TEST(ChatSession, KvReuseMatchesRecomputingTheConversation4kTemplate) {
  expect_reuse_matches_recompute("phi3-tiny-mha", "", 6, 40);
}

TEST(ChatSession, KvReuseMatchesRecomputingTheConversationWithSystem128kTemplate) {
  expect_reuse_matches_recompute("phi3-tiny-gqa-longrope", "You are a terse assistant.", 4, 24);
}

TEST(ChatSession, LongConversationCrossesTheContextLimit) {
  const Pipeline& pipe = model("phi3-tiny-gqa-longrope");  // its template keeps the system message
  const std::string system = "You are a helpful assistant who answers briefly.";
  const int64_t limit = 200, max_new = 20;  // reserve = min(20, 200 / 4) = 20
  ChatSession chat(pipe, system, limit);
  ASSERT_EQ(chat.context_limit(), limit);
  EXPECT_TRUE(chat.take_notices().empty()) << "this template shows the system message";
  EXPECT_NE(pipe.render_chat(chat.messages()).find(system), std::string::npos);
  int drops = 0, turns_after_first_drop = 0;
  for (int t = 0; t < 16; ++t) {
    SCOPED_TRACE("turn " + std::to_string(t));
    const size_t before = chat.messages().size();
    GenerationResult r = chat.send(kQuestions[static_cast<size_t>(t) % kQuestions.size()], greedy(max_new));
    const auto notices = chat.take_notices();
    const auto& msgs = chat.messages();
    // The policy: the system message stays first, the rest starts with a user turn, and the prompt
    // plus the answer's reserve never exceeds the limit; nor does the prompt plus the answer.
    ASSERT_FALSE(msgs.empty());
    EXPECT_EQ(msgs[0].role, "system");
    EXPECT_EQ(msgs[0].content, system);
    ASSERT_GE(msgs.size(), 3u);
    EXPECT_EQ(msgs[1].role, "user");
    EXPECT_LE(r.stats.prompt_tokens + max_new, limit);
    EXPECT_LE(r.stats.prompt_tokens + r.stats.generated_tokens, limit);
    std::vector<ChatMessage> prompt_msgs(msgs.begin(), msgs.end() - 1);
    EXPECT_EQ(r.prompt_ids, pipe.encode_chat(prompt_msgs)) << "the prompt is the kept conversation, rendered";
    EXPECT_NE(pipe.render_chat(prompt_msgs).find(system), std::string::npos);
    if (before + 2 == msgs.size()) {
      EXPECT_TRUE(notices.empty()) << "a notice without a drop";
    } else {
      ASSERT_EQ(notices.size(), 1u) << "turns were dropped without a notice";
      EXPECT_NE(notices[0].find("dropped the"), std::string::npos) << notices[0];
      EXPECT_NE(notices[0].find("200-token context"), std::string::npos) << notices[0];
      // Dropping goes down to half the context (unless only the new message is left), so the next
      // turns reuse the cache instead of recomputing the conversation each time.
      if (msgs.size() > 3) EXPECT_LE(r.stats.prompt_tokens + max_new, limit / 2);
      ++drops;
    }
    if (drops > 0) ++turns_after_first_drop;
  }
  EXPECT_GE(drops, 2) << "the conversation should have crossed the limit more than once";
  EXPECT_LT(drops, turns_after_first_drop) << "not every turn after the first crossing should drop";
}

TEST(ChatSession, TooLongMessageIsRefusedAndChangesNothing) {
  const Pipeline& pipe = model("phi3-tiny-mha");
  ChatSession chat(pipe, "", 96);
  chat.send("Hello there.", greedy(8));
  const auto before = chat.messages();
  std::string huge;
  for (int i = 0; i < 120; ++i) huge += "word ";
  try {
    chat.send(huge, greedy(8));
    FAIL() << "a message longer than the context was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too long"), std::string::npos) << e.what();
  }
  ASSERT_EQ(chat.messages().size(), before.size()) << "a refused message must not cost the conversation";
  for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(chat.messages()[i].content, before[i].content);
  EXPECT_TRUE(chat.take_notices().empty());
  // A message that fits alone but not with the conversation drops the earlier turns, with a notice.
  std::string long_one;
  for (int i = 0; i < 70; ++i) long_one += "word ";
  GenerationResult r = chat.send(long_one, greedy(8));
  EXPECT_LE(r.stats.prompt_tokens + 8, 96);
  EXPECT_EQ(chat.messages().size(), 2u);
  EXPECT_EQ(chat.messages()[0].content, long_one);
  ASSERT_EQ(chat.take_notices().size(), 1u);
}

TEST(ChatSession, InterruptedAnswerIsKeptAndTheChatGoesOn) {
  const Pipeline& pipe = model("phi3-tiny-mha");
  ChatSession chat(pipe);
  int pieces = 0;
  GenerationConfig gc = greedy(1000);
  GenerationResult r = chat.send("Tell me a very long story.", gc, [&](std::string_view) { return ++pieces < 5; });
  EXPECT_EQ(r.finish_reason, "stopped");
  EXPECT_LT(r.stats.generated_tokens, 20);
  ASSERT_EQ(chat.messages().size(), 2u);
  EXPECT_FALSE(r.text.empty());
  EXPECT_EQ(chat.messages()[1].content, r.text);
  GenerationResult next = chat.send("Go on.", greedy(8));
  EXPECT_GE(next.stats.reused_prompt_tokens, r.stats.prompt_tokens);
  EXPECT_EQ(next.output_ids, pipe.generate(next.prompt_ids, greedy(8)).output_ids);
  EXPECT_EQ(chat.messages().size(), 4u);
}

TEST(ChatSession, ResetAndSystemMessage) {
  const Pipeline& mha = model("phi3-tiny-mha");
  ChatSession chat(mha, "Be brief.");
  auto notices = chat.take_notices();
  ASSERT_EQ(notices.size(), 1u) << "the 4k template drops system messages: the user should be told";
  EXPECT_NE(notices[0].find("ignores the system message"), std::string::npos);
  chat.send("Hi", greedy(4));
  EXPECT_EQ(chat.messages().size(), 3u);
  EXPECT_GT(chat.cached_tokens(), 0);
  chat.reset();
  ASSERT_EQ(chat.messages().size(), 1u);
  EXPECT_EQ(chat.messages()[0].role, "system");
  EXPECT_EQ(chat.cached_tokens(), 0);
  chat.set_system("Be verbose.");
  ASSERT_EQ(chat.messages().size(), 1u);
  EXPECT_EQ(chat.messages()[0].content, "Be verbose.");
  chat.set_system("");
  EXPECT_TRUE(chat.messages().empty());

  ChatSession keeps(model("phi3-tiny-gqa-longrope"), "Be brief.");
  EXPECT_TRUE(keeps.take_notices().empty());
}

TEST(ChatSession, JsonRoundTripAndBadJson) {
  const Pipeline& pipe = model("phi3-tiny-gqa-longrope");
  ChatSession chat(pipe, "sys");
  const nlohmann::json conv = nlohmann::json::parse(R"([
    {"role": "system", "content": "You are a pirate."},
    {"role": "user", "content": "Hello\nthere"},
    {"role": "assistant", "content": "Arr! \u00e9\u00e8 \"quoted\"", "name": "bot"},
    {"role": "user", "content": "Where is the treasure?"},
    {"role": "assistant", "content": ""}
  ])");
  chat.load_json(conv);
  EXPECT_EQ(chat.to_json(), conv);
  ASSERT_EQ(chat.messages().size(), 5u);
  EXPECT_EQ(chat.messages()[2].extra["name"], "bot");
  ChatSession other(pipe);
  other.load_json(chat.to_json());
  EXPECT_EQ(other.to_json(), conv);
  // The loaded conversation goes on.
  GenerationResult r = other.send("Thanks", greedy(4));
  std::vector<ChatMessage> expected(other.messages().begin(), other.messages().end() - 1);
  EXPECT_EQ(r.prompt_ids, pipe.encode_chat(expected));
  EXPECT_EQ(other.messages().size(), 7u);

  const char* bad[] = {
      R"({"role": "user", "content": "x"})",                                   // not an array
      R"([1, 2])",                                                             // not objects
      R"([{"role": "user"}])",                                                 // no content
      R"([{"content": "x"}])",                                                 // no role
      R"([{"role": "user", "content": 3}])",                                   // content not a string
      R"([{"role": "wizard", "content": "x"}])",                               // unknown role
      R"([{"role": "user", "content": "x"}, {"role": "system", "content": "late"}])",  // system not first
  };
  for (const char* b : bad) {
    SCOPED_TRACE(b);
    EXPECT_THROW(chat.load_json(nlohmann::json::parse(b)), Error);
    EXPECT_EQ(chat.to_json(), conv) << "a failed load must leave the conversation as it was";
  }
  chat.load_json(nlohmann::json::array());
  EXPECT_TRUE(chat.messages().empty());
}

}  // namespace
}  // namespace phinfer
